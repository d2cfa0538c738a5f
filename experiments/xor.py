"""Lecture section 1: a multilayer perceptron learns XOR by gradient descent.

A hidden layer of sigmoid units B(W1 X) feeds a sigmoid output unit A, scored by
the binary cross-entropy L: the network is L(A(B(W X))). Backpropagation is the
chain rule applied to that composition; this script does it by hand and checks
it against jax.grad, trains with optax, then counts over many seeds how often
gradient descent finds a solution for 2, 3 and 4 hidden units.

    python experiments/xor.py                       # hidden 3, plots in runs/xor
    python experiments/xor.py --hidden 2 --lr 1 --epochs 5000 --out runs/xor2
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl import experiment, runs, viz
from jaxdl.core import summary
from jaxdl.lecture import INPUTS, TABLES, mlp_gradients_by_hand
from jaxdl.losses import binary_cross_entropy
from jaxdl.models import mlp
from jaxdl.tables import format_table
from jaxdl.train import TrainState, evaluate, make_eval_step, make_train_step, train_seeds

# Settings: the shared flags with this script's defaults, and its own (--help lists them).
parser = experiment.experiment_parser(__doc__.split("\n\n")[0], out="runs/xor", epochs=2000, batch_size=4, lr=2.0)
parser.add_argument("--hidden", type=experiment.positive_int, default=3, help="sigmoid units in the hidden layer")
parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0: plain gradient descent)")
parser.add_argument("--study-seeds", type=experiment.non_negative_int, default=20,
                    help="seeds per hidden size in the convergence study (0: skip)")
STUDY_SIZES = (2, 3, 4)  # hidden sizes of the convergence study
TARGETS = TABLES["xor"]


@experiment.script
def main(argv=None) -> dict:
    args = parser.parse_args(argv)
    if not 0.0 <= args.momentum < 1.0:
        parser.error(f"--momentum must be in [0, 1), got {args.momentum}")
    if args.batch_size > len(INPUTS):
        parser.error(f"--batch-size must be at most {len(INPUTS)} (XOR has {len(INPUTS)} rows), got {args.batch_size}")
    experiment.new_or_resumed(args, parser)
    data = {"x": INPUTS, "y": TARGETS}
    optimizer = optax.sgd(args.lr, momentum=args.momentum or None)

    # Model: 2 inputs -> hidden sigmoids -> 1 sigmoid output
    model = mlp([args.hidden], 1)
    summary(model, (-1, 2))
    [member] = runs.members(args.out, args.seed)
    init_key, state_key = jax.random.split(jax.random.key(member.seed))
    _, params = model.init(init_key, (-1, 2))

    # Backpropagation by hand: the chain rule, factor by factor, against jax.grad
    x, y = jnp.asarray(INPUTS), jnp.asarray(TARGETS)
    by_hand = jax.jit(mlp_gradients_by_hand)(params, x, y)
    by_jax = jax.jit(jax.grad(lambda p: binary_cross_entropy(model.apply(p, x), y)))(params)
    rows, chain_rule_diff = [], 0.0
    for (path, hand), auto in zip(jax.tree_util.tree_leaves_with_path(by_hand), jax.tree_util.tree_leaves(by_jax)):
        chain_rule_diff = max(chain_rule_diff, float(jnp.abs(hand - auto).max()))
        for i, (h, g) in enumerate(zip(np.ravel(hand), np.ravel(auto))):
            rows.append((jax.tree_util.keystr(path) if i == 0 else "", f"{h:+.8f}", f"{g:+.8f}", f"{abs(h - g):.1e}"))
    print("\nthe chain rule by hand against jax.grad, at the initial weights:")
    print(format_table(("parameter", "by hand", "jax.grad", "|difference|"), rows, right=(1, 2, 3)))
    print(f"largest difference: {chain_rule_diff:.2e}")

    # Train
    result = experiment.fit_member(
        args, member, TrainState.create(params, optimizer, state_key),
        make_train_step(model, binary_cross_entropy, optimizer), data, checkpoint_every=max(args.epochs // 20, 1),
    )
    params = result.state.params

    # Report: the network's outputs, its loss curve and decision surface
    final = evaluate(make_eval_step(model, binary_cross_entropy), params, data, len(INPUTS))
    probabilities = jax.nn.sigmoid(model.apply(params, INPUTS))[:, 0]
    print(f"\nafter {args.epochs} epochs: loss {final['loss']:.5f}, accuracy {final['accuracy']:.0%}")
    rows = [(int(x[0]), int(x[1]), f"{p:.4f}", int(p > 0.5), int(t)) for x, p, t in zip(INPUTS, probabilities, TARGETS)]
    print(format_table(("x1", "x2", "P(y = 1)", "output", "target"), rows, right=(0, 1, 2, 3, 4)))
    metrics = {
        "accuracy": final["accuracy"],
        "loss": final["loss"],
        "train_time_s": round(result.train_time_s, 3),
        "compile_time_s": round(result.compile_time_s, 3),
        "chain_rule_max_abs_diff": chain_rule_diff,
    }
    viz.plot_curves({"train loss": [r["train_loss"] for r in result.history]}, args.out / "loss.png",
                    title=f"XOR, {args.hidden} hidden sigmoid units", log_y=True)
    viz.plot_decision_surface(
        lambda x: jax.nn.sigmoid(model.apply(params, jnp.asarray(x)))[:, 0], INPUTS, TARGETS,
        args.out / "decision_surface.png", title=f"XOR: the MLP's output ({args.hidden} hidden units)",
    )

    # The convergence study: --study-seeds networks per hidden size, all at once; a network
    # converged when it classifies all four rows and its loss is < 0.01
    if args.study_seeds:
        keys = jax.vmap(jax.random.key)(jnp.arange(args.seed, args.seed + args.study_seeds))
        converged, curves = {}, {}
        for hidden in STUDY_SIZES:
            final, losses = train_seeds(mlp([hidden], 1), binary_cross_entropy, optimizer, jax.tree.map(jnp.asarray, data),
                                        keys, steps=args.epochs)
            converged[hidden] = int(((final["accuracy"] == 1.0) & (final["loss"] < 0.01)).sum())
            curves[f"{hidden} hidden units"] = np.asarray(losses)
        print(f"\nconvergence over {args.study_seeds} seeds ({args.epochs} epochs, lr {args.lr}, momentum {args.momentum}):")
        print(format_table(("hidden units", "converged (accuracy 100%, loss < 0.01)"),
                           [(h, f"{n} / {args.study_seeds}") for h, n in converged.items()], right=(0,)))
        metrics["convergence"] = {str(h): {"converged": n, "seeds": args.study_seeds} for h, n in converged.items()}
        viz.plot_curve_bundles(curves, args.out / "convergence.png", ylabel="train loss", log_y=True)

    path = runs.write_metrics(args.out, metrics)
    print(f"\nwrote {path} and plots to {args.out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
