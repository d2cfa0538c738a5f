"""Training throughput of one small CNN in jaxdl, flax.linen and PyTorch, in the same run.

The network: conv32 3x3 SAME -> ReLU -> avgpool 2 -> conv64 3x3 SAME -> ReLU ->
avgpool 2 -> dense256 -> ReLU -> dense10, on 28x28x1 images, batch 128, softmax
cross-entropy, SGD with momentum 0.9, float32. Data are random images already in
memory (the input pipeline is not measured). Each framework takes one step (for
jax: compilation included), then trains ``--steps`` steps per timed run; timed
runs go round-robin over the frameworks, so a noisy machine's slow spells are
shared; the figure is images per second of wall time, the median of
``--repeats`` runs.

PyTorch is optional: install its CPU build (here: ``pip install torch==2.13.0``);
without it that row is skipped. The last line printed is a JSON object of images/s.

    .venv/bin/python benchmarks/cnn_throughput.py
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import harness

import jaxdl as dl
from jaxdl.compiler import compiler_options
from jaxdl.train import make_multi_step

BATCH, CLASSES, SHAPE = 128, 10, (28, 28, 1)
LR, MOMENTUM = 0.01, 0.9


def make_data(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((steps * BATCH, *SHAPE), dtype=np.float32)
    y = rng.integers(0, CLASSES, steps * BATCH).astype(np.int32)
    return x, y


# ----------------------------------------------------------------------------- jaxdl
def bench_jaxdl(x, y, args) -> tuple[Callable, float]:
    model = dl.serial(
        dl.Conv(32, 3), dl.ReLU(), dl.AvgPool(2), dl.Conv(64, 3), dl.ReLU(), dl.AvgPool(2),
        dl.Flatten(), dl.Dense(256), dl.ReLU(), dl.Dense(CLASSES),
    )
    optimizer = optax.sgd(LR, momentum=MOMENTUM)
    _, params = model.init(jax.random.key(0), (-1, *SHAPE))
    state = dl.TrainState.create(params, optimizer, jax.random.key(1))
    step = dl.make_train_step(model, dl.softmax_cross_entropy, optimizer)
    data = jax.device_put({"x": x, "y": y})
    order = jnp.arange(args.steps * BATCH).reshape(args.steps, BATCH)
    if args.steps_per_call > 1:  # many steps per call: a lax.scan over on-device batches
        multi = make_multi_step(step)
        calls = [order[i : i + args.steps_per_call] for i in range(0, args.steps, args.steps_per_call)]
        call = lambda state, ids: multi(state, data, ids)  # noqa: E731
    else:  # one jitted step per call, batches already on the device
        calls = [jax.tree.map(lambda column: column[ids], data) for ids in order]
        call = step

    began = time.perf_counter()
    state, _ = jax.block_until_ready(call(state, calls[0]))
    compile_s = time.perf_counter() - began

    def run_steps(steps):  # always all of --steps, in the calls prepared above
        nonlocal state
        for arguments in calls:
            state, metrics = call(state, arguments)
        jax.block_until_ready(metrics)

    return run_steps, compile_s


# ------------------------------------------------------------------------ flax.linen
def bench_flax(x, y, args, compiler_options=None) -> tuple[Callable, float]:
    """flax.linen as its examples write it; ``compiler_options`` as in ``jax.jit``."""
    import flax.linen as nn

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.avg_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
            x = nn.avg_pool(nn.relu(nn.Conv(64, (3, 3))(x)), (2, 2), (2, 2))
            x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
            return nn.Dense(CLASSES)(x)

    model = CNN()
    params = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))
    xs = jax.device_put(x.reshape(args.steps, BATCH, *SHAPE))
    ys = jax.device_put(y.reshape(args.steps, BATCH))
    return harness.flax_runner(model, params, optax.sgd(LR, momentum=MOMENTUM), xs, ys, compiler_options)


# --------------------------------------------------------------------------- PyTorch
def bench_torch(x, y, args) -> tuple[Callable, float] | None:
    torch = harness.import_torch()
    if torch is None:
        return None
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, CLASSES),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xs = torch.from_numpy(x.reshape(args.steps, BATCH, *SHAPE)).permute(0, 1, 4, 2, 3).contiguous()
    ys = torch.from_numpy(y.reshape(args.steps, BATCH)).long()
    return harness.torch_runner(model, optimizer, xs, ys)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per framework (the median is kept)")
    parser.add_argument(
        "--steps-per-call", type=int, default=1,
        help="jaxdl training steps per jitted call (>1: lax.scan; on CPUs XLA runs convolutions "
        "inside loops slowly, jax-ml/jax#12868, so 1 is faster there; on GPUs more removes dispatch)",
    )
    args = parser.parse_args(argv)
    x, y = make_data(args.steps)
    if args.steps % args.steps_per_call:
        parser.error(f"--steps ({args.steps}) must be a multiple of --steps-per-call ({args.steps_per_call})")
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, jaxdl's XLA options: {compiler_options()}")
    print(f"batch {BATCH}, "
          f"{args.steps} steps x {args.repeats}, jaxdl steps per call: {args.steps_per_call}")
    setups = {"jaxdl": bench_jaxdl(x, y, args), "flax_linen": bench_flax(x, y, args)}
    if compiler_options():  # what jaxdl's speed owes to its XLA options (jaxdl.compiler)
        setups["flax_linen + jaxdl's XLA options"] = bench_flax(x, y, args, compiler_options())
    setups["torch"] = bench_torch(x, y, args)
    setups = {name: setup for name, setup in setups.items() if setup is not None}
    return harness.report(setups, args.steps, args.repeats, BATCH, "images/s")

if __name__ == "__main__":
    main()
