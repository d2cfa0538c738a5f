"""Train a tiny dropout MLP (with BatchNorm, on request) with checkpoints and, on request,
SIGKILL this process part-way.

Used by tests/test_train.py to show that a run killed at any point and resumed
from its checkpoints ends with exactly the params of an uninterrupted run::

    python train_and_die.py --checkpoint-dir D --out-params P.npz [--die-after-epoch K | --die-at-step S]
        [--interrupt-at-step S | --interrupt-in-evaluation E] [--batch-norm]

Every run resumes from ``--checkpoint-dir`` if it holds checkpoints. The final
params (flattened to ``params/<layer>/<name>``), the model's state (BatchNorm's
statistics, ``model_state/...``) and the history's losses go to
``--out-params`` (with ``steps_run``, the updates this process did)
only when training finishes, so a killed run leaves no file. ``--interrupt-*`` sends this
process a real SIGINT (Ctrl-C) instead; the run then ends as a script does
(:func:`jaxdl.experiment.reported_errors`): one line on stderr, exit status 130.
"""

from __future__ import annotations

import argparse
import os
import signal

import jax
import numpy as np
import optax

import jaxdl as dl
from jaxdl import experiment
from jaxdl.loop import fit
from jaxdl.train import TrainState, make_eval_step, make_train_step

EXAMPLES, BATCH_SIZE, LR = 64, 16, 0.05  # 4 shuffled steps per epoch


def toy_data(n: int = EXAMPLES, seed: int = 0) -> dict:
    """Points in the plane; the class is whether they lie in the 1st/3rd quadrant (XOR-like)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return {"x": x, "y": (x[:, 0] * x[:, 1] > 0).astype(np.int32)}


def flatten(tree, prefix: str = "") -> dict:
    """Nested dicts of arrays -> {"a/b/c": array}."""
    flat = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}/"))
        else:
            flat[prefix + name] = np.asarray(value)
    return flat


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def interrupt() -> None:
    # Python raises KeyboardInterrupt at the next instruction, also where this process was started with
    # SIGINT ignored (a job sent to the background by a non-interactive shell, as some CI runners do)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.kill(os.getpid(), signal.SIGINT)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--out-params", required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--die-after-epoch", type=int, help="SIGKILL in the callback of this epoch (1-based)")
    parser.add_argument("--die-at-step", type=int, help="SIGKILL instead of doing update number S (1-based)")
    parser.add_argument("--interrupt-at-step", type=int, help="SIGINT instead of doing update number S (1-based)")
    parser.add_argument("--interrupt-in-evaluation", type=int, help="SIGINT in the evaluation after epoch E")
    parser.add_argument("--batch-norm", action="store_true", help="a BatchNorm after the hidden layer")
    args = parser.parse_args(argv)

    model = dl.serial(dl.Dense(16), *([dl.BatchNorm(momentum=0.8)] if args.batch_norm else []), dl.Tanh(),
                      dl.Dropout(0.3), dl.Dense(2))
    _, params, *model_state = model.init(jax.random.key(0), (-1, 2))
    optimizer = optax.adam(LR)
    state = TrainState.create(params, optimizer, jax.random.key(1), *model_state)
    train_step = make_train_step(model, dl.softmax_cross_entropy, optimizer)
    eval_step = make_eval_step(model, dl.softmax_cross_entropy)

    steps_run = 0  # updates done by this process: shows that a resumed run did not start over

    def step_fn(state, batch):  # fit only needs (state, batch) -> (state, metrics)
        nonlocal steps_run
        if int(state.step) + 1 == args.die_at_step:
            die()
        if int(state.step) + 1 == args.interrupt_at_step:
            interrupt()
        steps_run += 1
        return train_step(state, batch)

    evaluations = 0

    def eval_fn(params, batch, *model_state):
        nonlocal evaluations
        evaluations += 1
        if args.interrupt_in_evaluation and evaluations == args.interrupt_in_evaluation * (EXAMPLES // BATCH_SIZE) - 1:
            interrupt()
        return eval_step(params, batch, *model_state)

    def die_after_epoch(state, record) -> None:
        if record["epoch"] == args.die_after_epoch:
            die()

    data = toy_data()
    result = fit(
        state,
        step_fn,
        data,
        epochs=args.epochs,
        batch_size=BATCH_SIZE,
        eval_step=eval_fn,
        eval_data=data,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=1,
        resume=True,
        config={"epochs": args.epochs, "batch_size": BATCH_SIZE, "lr": LR, "batch_norm": args.batch_norm},
        progress=False,
        callbacks=[die_after_epoch],
    )
    history = result.history
    np.savez(
        args.out_params,
        **{f"params/{k}": v for k, v in flatten(jax.device_get(result.state.params)).items()},
        **{f"model_state/{k}": v for k, v in flatten(jax.device_get(result.state.model_state or {})).items()},
        step=np.asarray(result.state.step),
        steps_run=np.asarray(steps_run),
        train_loss=np.array([r["train_loss"] for r in history]),
        train_accuracy=np.array([r["train_accuracy"] for r in history]),
        val_loss=np.array([r["val_loss"] for r in history]),
        epoch=np.array([r["epoch"] for r in history]),
    )


if __name__ == "__main__":
    with experiment.reported_errors():
        main()
