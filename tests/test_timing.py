"""jaxdl.timing: first calls, runners taking turns, a training step's runner on a mesh, a fit's speed."""

import time

import jax
import numpy as np
import optax
import pytest
from tiers import unit_tier

import jaxdl as dl
from jaxdl import devices, timing
from jaxdl.loop import FitResult
from jaxdl.train import TrainState, make_train_step

BATCH = 16


def sleeper(calls: list, name: str, seconds_per_step: float):
    """A runner that records its calls and sleeps ``seconds_per_step`` per step."""
    def run_steps(steps):
        calls.append((name, steps))
        time.sleep(steps * seconds_per_step)
    return run_steps


def test_first_call_runs_one_step_and_times_it():
    calls = []
    run, seconds = timing.first_call(sleeper(calls, "a", 0.05))
    assert calls == [("a", 1)]
    assert 0.05 <= seconds < 1
    run(3)
    assert calls[-1] == ("a", 3)


def test_round_robin_takes_turns_and_keeps_the_median_rate():
    calls = []
    runners = {"fast": sleeper(calls, "fast", 0.002), "slow": sleeper(calls, "slow", 0.01)}
    rates = timing.round_robin(runners, steps=5, repeats=3, batch=8)
    assert calls == [("fast", 5), ("slow", 5)] * 3  # all once, then all again
    # 40 examples in (at least) 10 ms and 50 ms: at most 4000 and 800 examples/s
    assert 1000 < rates["fast"] <= 4000 and 200 < rates["slow"] <= 800
    with pytest.raises(ValueError, match="must be positive"):
        timing.round_robin(runners, steps=0, repeats=3, batch=8)


def test_default_steps_by_platform():
    assert timing.default_steps("cpu") == timing.CPU_STEPS == 20
    assert timing.default_steps("gpu") == timing.default_steps("tpu") == timing.ACCELERATOR_STEPS == 500


def toy(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32)


def recording_loss(seen: list):
    """Softmax cross-entropy that records, at every training step, the batch's labels and its loss."""
    def loss_fn(outputs, labels, mask=None):
        value = dl.softmax_cross_entropy(outputs, labels, mask)
        jax.debug.callback(lambda y, v: seen.append((np.asarray(y).copy(), float(v))), labels, value)
        return value
    return loss_fn


MODEL = dl.serial(dl.Dense(8, name="hidden"), dl.Tanh(), dl.Dense(2, name="output"))


RUNNERS = {"1 device": (1, 1, "float32"), "2 devices": (2, 1, "float32"), "2 steps per call": (1, 2, "float32"),
           "2 devices, 2 steps per call": (2, 2, "float32"), "bfloat16": (1, 1, "bfloat16")}


@pytest.mark.parametrize("count, steps_per_call, dtype", unit_tier(RUNNERS, "2 devices, 2 steps per call", unpack=True))
def test_train_step_runner_trains_the_step_over_batches_in_order(count, steps_per_call, dtype):
    x, y = toy()
    _, params = MODEL.init(jax.random.key(0), (-1, 6))
    optimizer = optax.sgd(0.5)
    seen = []
    run, first_s = timing.train_step_runner(
        MODEL, params, optimizer, x, y, mesh=devices.make_mesh(count), batch_size=BATCH, steps=4,
        key=jax.random.key(1), dtype=dtype, steps_per_call=steps_per_call, loss_fn=recording_loss(seen), pool=3)
    assert first_s > 0
    run(3)  # whole calls: with 2 steps per call, 4 steps

    # The same steps by hand: batches of 16 rows in order, cycling through the 40 examples; every call of
    # the runner starts at the first batch. One step per jitted call goes through a pool of the first 3
    # batches; 2 per call through all 4 steps' batches.
    order = np.arange(4 * BATCH).reshape(4, BATCH) % len(x)
    if steps_per_call == 1:
        batches = [order[0]] + [order[0], order[1], order[2]]  # the first call, then 3 steps (the pool: 3)
    else:
        batches = [order[0], order[1]] + [order[0], order[1], order[2], order[3]]
    done = len(batches)
    reference, losses = make_train_step(dl.mixed_precision(MODEL, dtype), dl.softmax_cross_entropy, optimizer), []
    state = TrainState.create(params, optimizer, jax.random.key(1))
    for ids in batches:
        state, metrics = reference(state, {"x": x[ids], "y": y[ids]})
        losses.append(float(metrics["loss"]))
    assert len(seen) == done
    for (labels, _), ids in zip(seen, batches):
        np.testing.assert_array_equal(labels, y[ids])
    np.testing.assert_allclose([loss for _, loss in seen], losses, rtol=1e-4)
    assert losses[-1] < losses[0]  # it trains


def test_train_step_runner_refuses_what_does_not_split():
    x, y = toy()
    _, params = MODEL.init(jax.random.key(0), (-1, 6))
    with pytest.raises(devices.MeshError, match="does not split over 2 devices"):
        timing.train_step_runner(MODEL, params, optax.sgd(0.1), x, y, mesh=devices.make_mesh(2), batch_size=15,
                                 steps=4, key=jax.random.key(1))
    with pytest.raises(ValueError, match=r"steps \(5\) must be a multiple of steps_per_call \(2\)"):
        timing.train_step_runner(MODEL, params, optax.sgd(0.1), x, y, mesh=devices.make_mesh(1), batch_size=16,
                                 steps=5, key=jax.random.key(1), steps_per_call=2)


def fit_result(history, compile_time_s=0.0):
    return FitResult(None, history, compile_time_s, sum(record["time_s"] for record in history))


def test_steps_per_second_leaves_out_the_first_epoch_or_the_first_step():
    history = [{"step": 10, "time_s": 5.0}, {"step": 20, "time_s": 2.0}, {"step": 30, "time_s": 3.0}]
    assert timing.steps_per_second(fit_result(history)) == pytest.approx(20 / 5.0)  # epochs 2 and 3
    # One epoch: its 9 steps after the first, in its time less the first step's (compilation included)
    assert timing.steps_per_second(fit_result(history[:1], compile_time_s=2.0)) == pytest.approx(9 / 3.0)
