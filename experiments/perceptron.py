"""Lecture section 1: a single threshold unit and the perceptron learning rule.

The unit outputs y = 1 if x1*w1 + x2*w2 > threshold, else 0. Rosenblatt's rule
(w += lr (t - y) x, threshold -= lr (t - y)) learns the lecture's truth table,
which a line separates. On XOR it never settles: no line separates XOR, so no
threshold unit gets more than 3 of the 4 rows right (a search over weights shows it).

    python experiments/perceptron.py                  # both tables, plots in runs/perceptron
    python experiments/perceptron.py --epochs 50 --lr 0.5 --seed 3
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import checkpoint, experiment, runs, viz
from jaxdl.models import perceptron, perceptron_learning_rule, perceptron_threshold
from jaxdl.tables import format_table

INPUTS = np.array([[0, 0], [1, 1], [1, 0], [0, 1]], np.float32)
TABLES = {
    "lecture": np.array([0, 1, 1, 0], np.float32),  # the lecture's table: y = x1
    "xor": np.array([0, 0, 1, 1], np.float32),  # 1 when exactly one input is 1
}


def best_line_accuracy(inputs, targets, *, steps: int = 41, limit: float = 2.0) -> float:
    """The best accuracy of any threshold unit whose w1, w2, threshold lie on a grid in [-limit, limit]."""
    grid = jnp.linspace(-limit, limit, steps)
    w1, w2, threshold = (a.ravel() for a in jnp.meshgrid(grid, grid, grid))
    outputs = (inputs @ jnp.stack([w1, w2]) > threshold).astype(jnp.float32)  # (rows, units)
    return float((outputs == targets[:, None]).mean(0).max())


def learn(name, targets, params, args, checkpoints: Path):
    """Run the rule for the remaining epochs (all of them unless resuming); checkpoint the result."""
    directory = checkpoints / name
    done, errors = 0, []
    if args.resume and checkpoint.latest_checkpoint(directory):
        saved = checkpoint.load_checkpoint(directory, target=params)
        params, done, errors = saved.state, saved.meta["epochs_done"], saved.meta["errors_per_epoch"]
    remaining = max(args.epochs - done, 0)
    rule = jax.jit(perceptron_learning_rule, static_argnames=("epochs",))
    started = time.perf_counter()
    compiled = rule.lower(params, INPUTS, targets, epochs=remaining, lr=args.lr).compile()
    compile_time = time.perf_counter() - started
    started = time.perf_counter()
    params, wrong = jax.block_until_ready(compiled(params, INPUTS, targets, lr=args.lr))
    train_time = time.perf_counter() - started
    errors = errors + [int(e) for e in wrong]
    meta = {"epochs_done": done + remaining, "errors_per_epoch": errors}
    checkpoint.save_checkpoint(directory, params, done + remaining, config=runs.identity(vars(args)), meta=meta)
    return params, errors, compile_time, train_time


def report(name, targets, params, errors) -> dict:
    model = perceptron()
    outputs = np.asarray(model.apply(params, INPUTS))[:, 0]
    weights = np.asarray(params["unit"]["w"])[:, 0]
    threshold = float(perceptron_threshold(params))
    rows = [
        (int(x[0]), int(x[1]), int(y), int(t), "ok" if y == t else "WRONG")
        for x, y, t in zip(INPUTS, outputs, targets)
    ]
    accuracy = float((outputs == targets).mean())
    converged = next((i + 1 for i, e in enumerate(errors) if e == 0), None)
    print(f"\n== {name} table ==")
    print(format_table(("x1", "x2", "output", "target", ""), rows, right=(0, 1, 2, 3)))
    print(f"learned: w1 = {weights[0]:+.3f}, w2 = {weights[1]:+.3f}, threshold = {threshold:+.3f}")
    print(f"accuracy: {accuracy:.0%}", end="; ")
    print(f"first epoch without a mistake: {converged}" if converged else "it never went an epoch without a mistake")
    best = best_line_accuracy(INPUTS, targets)
    print(f"best accuracy of any threshold unit (grid search over w1, w2, threshold): {best:.0%}")
    return {
        "accuracy": accuracy,
        "weights": weights.tolist(),
        "threshold": threshold,
        "first_epoch_without_mistake": converged,
        "mistakes_per_epoch": errors,
        "best_line_accuracy": best,
    }


@experiment.script
def main(argv=None) -> dict:
    parser = experiment.experiment_parser(__doc__.split("\n\n")[0], out="runs/perceptron", epochs=20, lr=1.0)
    args = parser.parse_args(argv)
    experiment.new_or_resumed(args, parser)
    checkpoints = args.out / "checkpoints"
    model = perceptron()
    metrics = {"train_time_s": 0.0, "compile_time_s": 0.0}  # summed over both tables
    for name, targets in TABLES.items():
        _, params = model.init(jax.random.key(args.seed), (-1, 2))
        params, errors, compile_time, train_time = learn(name, targets, params, args, checkpoints)
        metrics[name] = report(name, targets, params, errors)
        metrics["train_time_s"] += train_time
        metrics["compile_time_s"] += compile_time
        viz.plot_decision_surface(
            lambda x, p=params: model.apply(p, jnp.asarray(x))[:, 0], INPUTS, targets,
            args.out / f"{name}_decision.png", title=f"threshold unit on the {name} table", label="output",
        )
    metrics["train_time_s"], metrics["compile_time_s"] = round(metrics["train_time_s"], 4), round(metrics["compile_time_s"], 3)
    path = runs.write_metrics(args.out, metrics)
    print(f"\nwrote {path} and plots to {args.out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
