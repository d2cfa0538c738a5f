"""Timing training fairly: steps and examples per second, and what a first call costs.

A *runner* is ``run_steps(steps)``: it trains that many steps and returns when they are done
(for JAX, after ``jax.block_until_ready``: JAX runs asynchronously). :func:`first_call`
makes a runner's first call (for a jitted step, compilation included) and times it;
:func:`round_robin` times several runners in turns, so that the slow spells of a machine
shared with other work fall on all of them alike; :func:`train_step_runner` makes a runner
of jaxdl's training step on a mesh, over batches already on its devices (the input pipeline
is not timed). :func:`steps_per_second` reads the speed of a :func:`jaxdl.loop.fit` from
its history.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from jaxdl import devices
from jaxdl.core import Layer
from jaxdl.losses import softmax_cross_entropy
from jaxdl.loop import FitResult
from jaxdl.precision import mixed_precision
from jaxdl.train import TrainState, make_multi_step, make_train_step

Runner = Callable[[int], None]
"""``run_steps(steps)``: trains that many steps (at least) and blocks until they are done."""

CPU_STEPS, ACCELERATOR_STEPS = 20, 500
POOL = 50  # distinct batches a train_step_runner keeps on the device; longer runs go through them again


def default_steps(platform: str) -> int:
    """Training steps per timed run by default on ``platform`` (``jax.default_backend()``):
    20 on ``"cpu"`` (a whole benchmark in minutes), 500 on a GPU or TPU."""
    return CPU_STEPS if platform == "cpu" else ACCELERATOR_STEPS


def first_call(run_steps: Runner) -> tuple[Runner, float]:
    """``run_steps`` and the seconds its first call, of one step, took (for a jitted step:
    tracing and compilation included)."""
    began = time.perf_counter()
    run_steps(1)
    return run_steps, time.perf_counter() - began


def round_robin(runners: dict[str, Runner], steps: int, repeats: int, batch: int) -> dict[str, float]:
    """Each runner's median examples per second of wall time over ``repeats`` timed calls
    ``run_steps(steps)`` of ``batch`` examples a step, the runners taking turns (all of them
    once, then all again, ...): ``{name: examples/s}``."""
    if steps < 1 or repeats < 1 or batch < 1:
        raise ValueError(f"steps, repeats and batch must be positive; got {steps}, {repeats}, {batch}")
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run_steps in runners.items():
            began = time.perf_counter()
            run_steps(steps)
            rates[name].append(steps * batch / (time.perf_counter() - began))
    return {name: statistics.median(values) for name, values in rates.items()}


def train_step_runner(model: Layer, params, optimizer: optax.GradientTransformation, x: np.ndarray, y: np.ndarray, *,
                      mesh: Mesh, batch_size: int, steps: int, key: jax.Array, dtype: str = "float32",
                      steps_per_call: int = 1, loss_fn=softmax_cross_entropy, pool: int = POOL) -> tuple[Runner, float]:
    """A runner of :func:`jaxdl.train.make_train_step` (``model`` computing in ``dtype``, see
    :func:`jaxdl.precision.mixed_precision`; ``loss_fn`` against labels ``y``) from ``params``
    and ``optimizer`` (a fresh train state with ``key``) on ``mesh``, data-parallel: the state
    replicated, every batch split over the mesh's ``"data"`` axis; and the seconds of its
    first call (:func:`first_call`, compilation included).

    Batches of ``batch_size`` rows of ``x`` (N, ...) and ``y`` (N,) in order, cycling through
    them, are put on the devices beforehand. With ``steps_per_call`` 1, one jitted step per
    batch, over a pool of the first ``pool`` batches; with more, ``steps_per_call`` steps per
    jitted call (:func:`jaxdl.train.make_multi_step`: a ``lax.scan`` over batches gathered on
    the devices from the whole of ``x`` and ``y``), covering ``steps`` steps before starting
    again. Every call of the runner starts again at the first batch and trains whole jitted
    calls: at least the steps asked for.
    """
    devices.check_batch_size(batch_size, mesh)
    if steps_per_call > 1 and steps % steps_per_call:
        raise ValueError(f"steps ({steps}) must be a multiple of steps_per_call ({steps_per_call})")
    state = TrainState.create(params, optimizer, key)
    state = devices.put(state, devices.state_sharding(state, mesh))  # replicated: the mesh has no "model" axis
    step = make_train_step(mixed_precision(model, dtype), loss_fn, optimizer)
    order = np.arange(steps * batch_size).reshape(steps, batch_size) % len(x)  # cycles through x
    if steps_per_call > 1:
        multi = make_multi_step(step, devices.batch_sharding(mesh))
        data = devices.put({"x": x, "y": y}, devices.replicated(mesh))
        calls = [devices.put(order[i : i + steps_per_call], devices.replicated(mesh))
                 for i in range(0, steps, steps_per_call)]

        def call(state, i):
            return multi(state, data, calls[i])
    else:
        steps_per_call = 1
        calls = [devices.put({"x": x[ids], "y": y[ids]}, devices.batch_sharding(mesh)) for ids in order[:pool]]

        def call(state, i):
            return step(state, calls[i])

    def run_steps(steps: int) -> None:
        nonlocal state
        for i in range(-(-steps // steps_per_call)):
            state, metrics = call(state, i % len(calls))
        jax.block_until_ready((state, metrics))

    return first_call(run_steps)


def steps_per_second(result: FitResult) -> float:
    """Training steps per second of a :func:`jaxdl.loop.fit` in the epochs after the first
    (which compiles the step and prepares the data); with one epoch, in that epoch without
    its first step (``result.compile_time_s``)."""
    first, *rest = result.history
    if rest:
        return (rest[-1]["step"] - first["step"]) / max(sum(record["time_s"] for record in rest), 1e-9)
    return (first["step"] - 1) / max(first["time_s"] - result.compile_time_s, 1e-9)
