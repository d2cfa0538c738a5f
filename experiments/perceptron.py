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

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import checkpoint, experiment, runs, viz
from jaxdl.lecture import INPUTS, TABLES, best_threshold_unit_accuracy
from jaxdl.models import perceptron, perceptron_learning_rule, perceptron_threshold
from jaxdl.tables import format_table

# Settings: the shared flags with this script's defaults (--help lists them).
parser = experiment.experiment_parser(__doc__.split("\n\n")[0], out="runs/perceptron", epochs=20, lr=1.0)


@experiment.script
def main(argv=None) -> dict:
    args = parser.parse_args(argv)
    experiment.new_or_resumed(args, parser)
    model, rule = perceptron(), jax.jit(perceptron_learning_rule, static_argnames=("epochs",))
    metrics = {"train_time_s": 0.0, "compile_time_s": 0.0}  # summed over both tables

    for name, targets in TABLES.items():
        # Learn: the rule for the epochs not done yet (all of them, unless resuming), then a checkpoint
        folder = args.out / "checkpoints" / name
        _, params = model.init(jax.random.key(args.seed), (-1, 2))
        done, mistakes = 0, []
        if args.resume and checkpoint.latest_checkpoint(folder):
            saved = checkpoint.load_checkpoint(folder, target=params)
            params, done, mistakes = saved.state, saved.meta["epochs_done"], saved.meta["errors_per_epoch"]
        remaining = max(args.epochs - done, 0)
        began = time.perf_counter()
        compiled = rule.lower(params, INPUTS, targets, epochs=remaining, lr=args.lr).compile()
        metrics["compile_time_s"] += time.perf_counter() - began
        began = time.perf_counter()
        params, wrong = jax.block_until_ready(compiled(params, INPUTS, targets, lr=args.lr))
        metrics["train_time_s"] += time.perf_counter() - began
        mistakes = mistakes + [int(e) for e in wrong]
        checkpoint.save_checkpoint(folder, params, done + remaining, config=runs.identity(vars(args)),
                                   meta={"epochs_done": done + remaining, "errors_per_epoch": mistakes})

        # Report: the unit's outputs beside the targets, what it learned, and the best any unit does
        outputs = np.asarray(model.apply(params, INPUTS))[:, 0]
        weights, threshold = np.asarray(params["unit"]["w"])[:, 0], float(perceptron_threshold(params))
        accuracy = float((outputs == targets).mean())
        converged = next((i + 1 for i, e in enumerate(mistakes) if e == 0), None)
        best = best_threshold_unit_accuracy(INPUTS, targets)
        print(f"\n== {name} table ==")
        print(format_table(("x1", "x2", "output", "target", ""), [
            (int(x[0]), int(x[1]), int(y), int(t), "ok" if y == t else "WRONG") for x, y, t in zip(INPUTS, outputs, targets)
        ], right=(0, 1, 2, 3)))
        print(f"learned: w1 = {weights[0]:+.3f}, w2 = {weights[1]:+.3f}, threshold = {threshold:+.3f}")
        print(f"accuracy: {accuracy:.0%}", end="; ")
        print(f"first epoch without a mistake: {converged}" if converged else "it never went an epoch without a mistake")
        print(f"best accuracy of any threshold unit (grid search over w1, w2, threshold): {best:.0%}")
        metrics[name] = {"accuracy": accuracy, "weights": weights.tolist(), "threshold": threshold,
                         "first_epoch_without_mistake": converged, "mistakes_per_epoch": mistakes,
                         "best_line_accuracy": best}
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
