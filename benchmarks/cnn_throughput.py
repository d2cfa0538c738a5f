"""Training throughput of a small CNN in jaxdl, flax.linen and PyTorch, in the same run.

``--network`` picks the network; both take 28x28x1 images, batch 128, softmax
cross-entropy, float32, training mode:

* ``lecture`` (the default): conv32 3x3 SAME -> ReLU -> avgpool 2 -> conv64 3x3 SAME ->
  ReLU -> avgpool 2 -> dense256 -> ReLU -> dense10; SGD with momentum 0.9, learning
  rate 0.01.
* ``batchnorm``: the BatchNorm CNN that ``experiments/mnist_cnn.py`` trains, in jaxdl
  ``models.cnn(10, features=FEATURES, hidden=HIDDEN, dropout=DROPOUT, batch_norm=True)``
  (no augmentation): per block of ``FEATURES``, per width in it, conv 3x3 SAME without
  bias -> BatchNorm -> ReLU, then maxpool 2 after the block; dense HIDDEN without bias ->
  BatchNorm -> ReLU -> dropout DROPOUT -> dense10. BatchNorm: the momentum of ``cnn``'s
  BatchNorms, BN_MOMENTUM (PyTorch's momentum is 1 - BN_MOMENTUM), epsilon 1e-5; batch
  statistics, running statistics updated every step (flax: the ``batch_stats``
  collection); dropout draws a fresh rng every step. Adam, learning rate 1e-3. The flax
  and PyTorch versions are built from the same module constants FEATURES, HIDDEN, DROPOUT
  and BN_MOMENTUM (tests/test_cnn_benchmark.py checks that the three agree); the printed
  header gives their values.

Data are random images already in memory (the input pipeline is not measured). Each
framework takes one step (for jax: compilation included), then trains ``--steps`` steps
per timed run; timed runs go round-robin over the frameworks, so a noisy machine's slow
spells are shared; the figure is images per second of wall time, the median of
``--repeats`` runs.

PyTorch is optional: install its CPU build (here: ``pip install torch==2.13.0``);
without it that row is skipped. The first lines printed name the device and the
network; the last is a JSON object of images/s.

    .venv/bin/python benchmarks/cnn_throughput.py                        # lecture
    .venv/bin/python benchmarks/cnn_throughput.py --network batchnorm
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import harness

import jaxdl as dl
from jaxdl.compiler import compiler_options
from jaxdl.models import cnn
from jaxdl.train import make_multi_step

BATCH, CLASSES, SHAPE = 128, 10, (28, 28, 1)
LR, MOMENTUM = 0.01, 0.9  # lecture: SGD
FEATURES = (32, 64)  # batchnorm: as experiments/mnist_cnn.py's default cnn(...)
HIDDEN = 128
DROPOUT = 0.25
ADAM_LR = 1e-3  # batchnorm: Adam
BN_MOMENTUM = 0.9  # as jaxdl.models.cnn's BatchNorms (momentum=0.9; the layer's default is 0.99, flax's too)
BN_EPSILON = 1e-5  # jaxdl's and flax.linen's default


def make_data(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((steps * BATCH, *SHAPE), dtype=np.float32)
    y = rng.integers(0, CLASSES, steps * BATCH).astype(np.int32)
    return x, y


# --------------------------------------------------------------------------- lecture
def lecture_jaxdl() -> dl.Layer:
    return dl.serial(
        dl.Conv(32, 3), dl.ReLU(), dl.AvgPool(2), dl.Conv(64, 3), dl.ReLU(), dl.AvgPool(2),
        dl.Flatten(), dl.Dense(256), dl.ReLU(), dl.Dense(CLASSES),
    )


def lecture_flax():
    """flax.linen as its examples write it."""
    import flax.linen as nn

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.avg_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
            x = nn.avg_pool(nn.relu(nn.Conv(64, (3, 3))(x)), (2, 2), (2, 2))
            x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
            return nn.Dense(CLASSES)(x)

    return CNN()


def lecture_torch():
    import torch

    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, CLASSES),
    )


def sgd_torch(parameters):
    import torch

    return torch.optim.SGD(parameters, lr=LR, momentum=MOMENTUM)


# ------------------------------------------------------------------------- batchnorm
def blocks(features=FEATURES) -> list[tuple[int, ...]]:
    """``features`` as ``jaxdl.models.cnn`` reads it: each block's convolution widths
    (an int: one convolution)."""
    return [(block,) if isinstance(block, int) else tuple(block) for block in features]


def batchnorm_jaxdl(dropout: float = DROPOUT) -> dl.Layer:
    return cnn(CLASSES, features=FEATURES, hidden=HIDDEN, dropout=dropout, batch_norm=True)


def batchnorm_flax(dropout: float = DROPOUT):
    """flax.linen as its examples write a model with BatchNorm and Dropout: ``train`` an
    argument of the call, ``batch_stats`` updated as a mutable collection."""
    import flax.linen as nn

    class BatchNormCNN(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=BN_MOMENTUM,
                                     epsilon=BN_EPSILON)
            for widths in blocks():
                for width in widths:
                    x = nn.relu(norm()(nn.Conv(width, (3, 3), use_bias=False)(x)))
                x = nn.max_pool(x, (2, 2), (2, 2))
            x = nn.relu(norm()(nn.Dense(HIDDEN, use_bias=False)(x.reshape(x.shape[0], -1))))
            x = nn.Dropout(dropout, deterministic=not train)(x)
            return nn.Dense(CLASSES)(x)

    return BatchNormCNN()


def batchnorm_torch(dropout: float = DROPOUT):
    """NCHW, as PyTorch's examples write it; flattening goes over (C, H, W)."""
    import torch

    nn = torch.nn
    rows, cols, channels = SHAPE
    layers = []
    for widths in blocks():
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width, eps=BN_EPSILON, momentum=1 - BN_MOMENTUM), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))
        rows, cols = rows // 2, cols // 2
    return nn.Sequential(
        *layers, nn.Flatten(), nn.Linear(channels * rows * cols, HIDDEN, bias=False),
        nn.BatchNorm1d(HIDDEN, eps=BN_EPSILON, momentum=1 - BN_MOMENTUM), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(HIDDEN, CLASSES),
    )


def adam_torch(parameters):
    import torch

    return torch.optim.Adam(parameters, lr=ADAM_LR)


# -------------------------------------------------------------------------- networks
@dataclasses.dataclass(frozen=True)
class Network:
    """One network in the three frameworks (builders of fresh models) and its optimizer in each.

    ``train_mode``: the flax module takes ``train`` (BatchNorm, Dropout): initialised with
    ``train=False``, trained with ``train=True`` and a ``"dropout"`` rng."""

    description: str
    jaxdl: Callable[[], dl.Layer]
    flax: Callable[[], Any]
    torch: Callable[[], Any]
    optax: Callable[[], optax.GradientTransformation]
    torch_optimizer: Callable[[Any], Any]  # the model's parameters -> the optimizer
    train_mode: bool = False


def _batchnorm_description() -> str:
    convs = " -> ".join(
        " -> ".join(f"conv{width} 3x3 SAME no bias -> BatchNorm -> ReLU" for width in widths) + " -> maxpool 2"
        for widths in blocks()
    )
    return (f"{convs} -> dense{HIDDEN} no bias -> BatchNorm -> ReLU -> dropout {DROPOUT} -> dense{CLASSES} "
            f"(FEATURES={FEATURES}; BatchNorm momentum {BN_MOMENTUM}, epsilon {BN_EPSILON}); Adam lr {ADAM_LR}")


NETWORKS = {
    "lecture": Network(
        "conv32 3x3 SAME -> ReLU -> avgpool 2 -> conv64 3x3 SAME -> ReLU -> avgpool 2 -> dense256 -> ReLU -> dense10; "
        f"SGD lr {LR} momentum {MOMENTUM}",
        lecture_jaxdl, lecture_flax, lecture_torch, lambda: optax.sgd(LR, momentum=MOMENTUM), sgd_torch,
    ),
    "batchnorm": Network(
        _batchnorm_description(), batchnorm_jaxdl, batchnorm_flax, batchnorm_torch, lambda: optax.adam(ADAM_LR),
        adam_torch, train_mode=True,
    ),
}


# ----------------------------------------------------------------------------- jaxdl
def bench_jaxdl(network: Network, x, y, args) -> tuple[Callable, float]:
    model, optimizer = network.jaxdl(), network.optax()
    _, params, *model_state = model.init(jax.random.key(0), (-1, *SHAPE))  # BatchNorm: its running statistics
    state = dl.TrainState.create(params, optimizer, jax.random.key(1), *model_state)
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
def bench_flax(network: Network, x, y, args, compiler_options=None) -> tuple[Callable, float]:
    """The network's flax.linen model in ``harness.flax_train_step``; ``compiler_options`` as in ``jax.jit``."""
    model = network.flax()
    sample = jnp.zeros((1, *SHAPE))
    if network.train_mode:  # batch_stats with the params; training calls: train=True, a dropout rng
        variables = model.init(jax.random.key(0), sample, train=False)
        extra = {"key": jax.random.key(1), "train": True}
    else:
        variables, extra = model.init(jax.random.key(0), sample), {}
    xs = jax.device_put(x.reshape(args.steps, BATCH, *SHAPE))
    ys = jax.device_put(y.reshape(args.steps, BATCH))
    return harness.flax_runner(model, variables, network.optax(), xs, ys, compiler_options, **extra)


# --------------------------------------------------------------------------- PyTorch
def bench_torch(network: Network, x, y, args) -> tuple[Callable, float] | None:
    torch = harness.import_torch()
    if torch is None:
        return None
    torch.manual_seed(0)
    model = network.torch()
    model.train()
    optimizer = network.torch_optimizer(model.parameters())
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
    parser.add_argument("--network", choices=tuple(NETWORKS), default="lecture",
                        help="the network to train (see the module docstring): lecture (the default) or batchnorm")
    args = parser.parse_args(argv)
    network = NETWORKS[args.network]
    x, y = make_data(args.steps)
    if args.steps % args.steps_per_call:
        parser.error(f"--steps ({args.steps}) must be a multiple of --steps-per-call ({args.steps_per_call})")
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, jaxdl's XLA options: {compiler_options()}")
    print(f"network: {args.network}: {network.description}")
    print(f"batch {BATCH}, "
          f"{args.steps} steps x {args.repeats}, jaxdl steps per call: {args.steps_per_call}")
    setups = {"jaxdl": bench_jaxdl(network, x, y, args), "flax_linen": bench_flax(network, x, y, args)}
    if compiler_options():  # what jaxdl's speed owes to its XLA options (jaxdl.compiler)
        setups["flax_linen + jaxdl's XLA options"] = bench_flax(network, x, y, args, compiler_options())
    setups["torch"] = bench_torch(network, x, y, args)
    setups = {name: setup for name, setup in setups.items() if setup is not None}
    return harness.report(setups, args.steps, args.repeats, BATCH, "images/s")

if __name__ == "__main__":
    main()
