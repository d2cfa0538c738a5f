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
from jaxdl.losses import binary_cross_entropy
from jaxdl.models import mlp
from jaxdl.tables import format_table
from jaxdl.loop import fit
from jaxdl.train import TrainState, evaluate, make_eval_step, make_train_step

INPUTS = np.array([[0, 0], [1, 1], [1, 0], [0, 1]], np.float32)
TARGETS = np.array([0, 0, 1, 1], np.float32)
DATA = {"x": INPUTS, "y": TARGETS}
STUDY_SIZES = (2, 3, 4)


def parse_args(argv):
    parser = experiment.experiment_parser(__doc__.split("\n\n")[0], out="runs/xor", epochs=2000, batch_size=4, lr=2.0)
    parser.add_argument("--hidden", type=experiment.positive_int, default=3, help="sigmoid units in the hidden layer")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0: plain gradient descent)")
    parser.add_argument("--study-seeds", type=int, default=20, help="seeds per hidden size in the convergence study (0: skip)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.momentum < 1.0:
        parser.error(f"--momentum must be in [0, 1), got {args.momentum}")
    if args.study_seeds < 0:
        parser.error(f"--study-seeds must be >= 0, got {args.study_seeds}")
    if args.batch_size > len(INPUTS):
        parser.error(f"--batch-size must be at most {len(INPUTS)} (XOR has {len(INPUTS)} rows), got {args.batch_size}")
    return parser, args


def init_state(key, hidden: int, optimizer) -> TrainState:
    """A fresh MLP (2 -> hidden -> 1) and optimizer state from one key."""
    init_key, state_key = jax.random.split(key)
    _, params = mlp([hidden], 1).init(init_key, (-1, 2))
    return TrainState.create(params, optimizer, state_key)


def backprop_by_hand(params, x, y):
    """Gradients of L(A(B(W X))) by the chain rule, written out factor by factor.

    B = sigmoid(x W1 + b1) (N, H); A = sigmoid(B W2 + b2) (N, 1);
    L = mean over N of -[y log A + (1 - y) log(1 - A)].
    """
    w1, b1 = params["hidden"]["w"], params["hidden"]["b"]
    w2, b2 = params["output"]["w"], params["output"]["b"]
    y = y.reshape(-1, 1)
    n = x.shape[0]
    # forward, keeping what the backward pass needs
    b = jax.nn.sigmoid(x @ w1 + b1)
    a = jax.nn.sigmoid(b @ w2 + b2)
    # backward: each line multiplies by one more factor of the chain
    dl_da = -(y / a - (1 - y) / (1 - a)) / n  # dL/dA
    dl_dz2 = dl_da * a * (1 - a)  # dA/dz2 = A (1 - A) for the sigmoid
    dl_dw2, dl_db2 = b.T @ dl_dz2, dl_dz2.sum(0)  # dz2/dW2 = B, dz2/db2 = 1
    dl_db = dl_dz2 @ w2.T  # dz2/dB = W2
    dl_dz1 = dl_db * b * (1 - b)  # dB/dz1 = B (1 - B)
    dl_dw1, dl_db1 = x.T @ dl_dz1, dl_dz1.sum(0)  # dz1/dW1 = X, dz1/db1 = 1
    return {"hidden": {"w": dl_dw1, "b": dl_db1}, "output": {"w": dl_dw2, "b": dl_db2}}


def chain_rule_check(params) -> float:
    """Print the hand-written gradients beside jax.grad's; return the largest difference."""
    model = mlp([params["hidden"]["w"].shape[1]], 1)
    x, y = jnp.asarray(INPUTS), jnp.asarray(TARGETS)
    by_hand = jax.jit(backprop_by_hand)(params, x, y)
    by_jax = jax.jit(jax.grad(lambda p: binary_cross_entropy(model.apply(p, x), y)))(params)
    rows, worst = [], 0.0
    for (path, hand), auto in zip(jax.tree_util.tree_leaves_with_path(by_hand), jax.tree_util.tree_leaves(by_jax)):
        diff = float(jnp.abs(hand - auto).max())
        worst = max(worst, diff)
        for i, (h, g) in enumerate(zip(np.ravel(hand), np.ravel(auto))):
            rows.append((jax.tree_util.keystr(path) if i == 0 else "", f"{h:+.8f}", f"{g:+.8f}", f"{abs(h - g):.1e}"))
    print("\nthe chain rule by hand against jax.grad, at the initial weights:")
    print(format_table(("parameter", "by hand", "jax.grad", "|difference|"), rows, right=(1, 2, 3)))
    print(f"largest difference: {worst:.2e}")
    return worst


def convergence_study(args, optimizer) -> tuple[dict, dict]:
    """Train ``--study-seeds`` networks per hidden size at once (vmap over seeds, scan over epochs).

    A run converges when it classifies all four rows and its loss is < 0.01.
    Returns the number of converged runs and the loss curves (seeds, epochs) per size.
    """
    batch = jax.tree.map(jnp.asarray, DATA)
    converged, curves = {}, {}
    for hidden in STUDY_SIZES:
        model = mlp([hidden], 1)
        train_step = make_train_step(model, binary_cross_entropy, optimizer)
        eval_step = make_eval_step(model, binary_cross_entropy)

        def run(key):
            state = init_state(key, hidden, optimizer)
            state, history = jax.lax.scan(lambda s, _: train_step(s, batch), state, None, length=args.epochs)
            return eval_step(state.params, batch), history["loss"]

        seeds = jnp.arange(args.seed, args.seed + args.study_seeds)
        final, losses = jax.jit(jax.vmap(run))(jax.vmap(jax.random.key)(seeds))
        ok = (final["accuracy"] == 1.0) & (final["loss"] < 0.01)
        converged[hidden], curves[f"{hidden} hidden units"] = int(ok.sum()), np.asarray(losses)
    print(f"\nconvergence over {args.study_seeds} seeds ({args.epochs} epochs, lr {args.lr}, momentum {args.momentum}):")
    rows = [(h, f"{n} / {args.study_seeds}") for h, n in converged.items()]
    print(format_table(("hidden units", "converged (accuracy 100%, loss < 0.01)"), rows, right=(0,)))
    return converged, curves


@experiment.script
def main(argv=None) -> dict:
    parser, args = parse_args(argv)
    experiment.new_or_resumed(args, parser)
    checkpoints = args.out / "checkpoints"
    optimizer = optax.sgd(args.lr, momentum=args.momentum or None)
    model = mlp([args.hidden], 1)
    summary(model, (-1, 2))
    state = init_state(jax.random.key(args.seed), args.hidden, optimizer)
    chain_rule_diff = chain_rule_check(state.params)

    train_step = make_train_step(model, binary_cross_entropy, optimizer)
    eval_step = make_eval_step(model, binary_cross_entropy)
    result = fit(
        state, train_step, DATA, epochs=args.epochs, batch_size=args.batch_size,
        checkpoint_dir=checkpoints, checkpoint_every=max(args.epochs // 20, 1), resume=args.resume,
        config=runs.identity(vars(args)), progress=args.progress,
    )
    final = evaluate(eval_step, result.state.params, DATA, len(INPUTS))
    probabilities = jax.nn.sigmoid(model.apply(result.state.params, INPUTS))[:, 0]
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
    viz.plot_curves(
        {"train loss": [r["train_loss"] for r in result.history]}, args.out / "loss.png",
        title=f"XOR, {args.hidden} hidden sigmoid units", log_y=True,
    )
    viz.plot_decision_surface(
        lambda x: jax.nn.sigmoid(model.apply(result.state.params, jnp.asarray(x)))[:, 0],
        INPUTS, TARGETS, args.out / "decision_surface.png", title=f"XOR: the MLP's output ({args.hidden} hidden units)",
    )
    if args.study_seeds:
        converged, curves = convergence_study(args, optimizer)
        metrics["convergence"] = {str(h): {"converged": n, "seeds": args.study_seeds} for h, n in converged.items()}
        viz.plot_curve_bundles(curves, args.out / "convergence.png", ylabel="train loss", log_y=True)
    path = runs.write_metrics(args.out, metrics)
    print(f"\nwrote {path} and plots to {args.out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
