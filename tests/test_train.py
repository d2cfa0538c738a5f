"""Training: the train state, the jitted step, evaluation, early stopping and ``fit``
(checkpoints, resuming, non-finite losses, Ctrl-C, and runs killed with SIGKILL)."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdl as dl
from jaxdl import crf
from jaxdl.checkpoint import checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint
from jaxdl.metrics import accuracy
from jaxdl.loop import EarlyStopping, NonFiniteLossError, fit, scores_by_step
from jaxdl.train import (
    TrainState,
    evaluate,
    make_eval_step,
    make_multi_step,
    make_per_example_train_step,
    make_train_step,
    per_example_grads,
    per_example_norms,
)

REPO = Path(__file__).resolve().parents[1]
HELPER = REPO / "tests" / "helpers" / "train_and_die.py"
BATCH_SIZE = 16
STEPS_PER_EPOCH = 4  # 64 examples / 16


# ----------------------------------------------------------------------- fixtures
def toy_data(n=64, seed=0):
    """Points in the plane; class 1 in the 1st and 3rd quadrants (XOR-like)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return {"x": x, "y": (x[:, 0] * x[:, 1] > 0).astype(np.int32)}


class Toy(NamedTuple):
    model: dl.Layer
    state: TrainState  # freshly initialised
    train_step: Callable
    eval_step: Callable
    data: dict


@pytest.fixture(scope="module")
def toy():
    """A dropout MLP with adam; its jitted steps compile once for the whole module."""
    model = dl.serial(dl.Dense(16), dl.Tanh(), dl.Dropout(0.3), dl.Dense(2))
    _, params = model.init(jax.random.key(0), (-1, 2))
    optimizer = optax.adam(0.05)
    return Toy(
        model,
        TrainState.create(params, optimizer, jax.random.key(1)),
        make_train_step(model, dl.softmax_cross_entropy, optimizer),
        make_eval_step(model, dl.softmax_cross_entropy),
        toy_data(),
    )


def run(toy, *, train_step=None, **kwargs):
    """fit the toy model: 4 epochs of 4 steps, scored on its training data, unless told otherwise."""
    kwargs = {"epochs": 4, "batch_size": BATCH_SIZE, "eval_step": toy.eval_step, "eval_data": toy.data,
              "progress": False, **kwargs}
    return fit(toy.state, train_step or toy.train_step, toy.data, **kwargs)


@pytest.fixture(scope="module")
def reference(toy):
    """The uninterrupted 4-epoch run that interrupted and resumed runs must reproduce."""
    return run(toy)


class CountingStep:
    """Wraps a train step (fit only needs ``(state, batch) -> (state, metrics)``) and counts calls.

    ``before(update, batch)`` runs before each update, numbered from 1 over the
    whole run (``state.step + 1``); it may raise, or return a batch to use instead.
    """

    def __init__(self, step, before=None):
        self.step, self.before, self.calls = step, before, 0

    def __call__(self, state, batch):
        self.calls += 1
        if self.before is not None:
            batch = self.before(int(state.step) + 1, batch) or batch
        return self.step(state, batch)


def host(tree):
    """Leaves as numpy arrays; typed PRNG keys as their key data."""

    def to_numpy(x):
        is_key = jax.dtypes.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key)
        return np.asarray(jax.random.key_data(x) if is_key else x)

    return jax.tree.map(to_numpy, tree)


def assert_trees_equal(a, b):
    """Same structure, dtypes and bits (PRNG keys compared by their data)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(host(a)), jax.tree.leaves(host(b))):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def steps_on_disk(directory):
    return [int(load_checkpoint(p).state["step"]) for p in list_checkpoints(directory)]


# ------------------------------------------------------------------ state and step
def test_train_state_create_starts_at_step_zero():
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    optimizer = optax.adam(1e-3)
    key = jax.random.key(7)
    state = TrainState.create(params, optimizer, key)
    assert state.step.shape == () and state.step.dtype == jnp.int32 and int(state.step) == 0
    assert state.params is params
    assert_trees_equal(state.opt_state, optimizer.init(params))
    assert jnp.array_equal(jax.random.key_data(state.key), jax.random.key_data(key))


def test_sgd_step_is_params_minus_lr_times_the_gradient():
    model = dl.serial(dl.Dense(3), dl.Sigmoid(), dl.Dense(1))
    _, params = model.init(jax.random.key(0), (-1, 2))
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
    y = jnp.array([0, 1, 1, 0])
    lr = 0.5
    optimizer = optax.sgd(lr)
    state = TrainState.create(params, optimizer, jax.random.key(3))

    new_state, metrics = make_train_step(model, dl.binary_cross_entropy, optimizer)(state, {"x": x, "y": y})

    def loss(p):
        return dl.binary_cross_entropy(model.apply(p, x), y)

    grads = jax.grad(loss)(params)
    expected = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert int(new_state.step) == 1
    assert jnp.array_equal(jax.random.key_data(new_state.key), jax.random.key_data(state.key))
    # the metrics are those of the params before the update
    np.testing.assert_allclose(metrics["loss"], loss(params), rtol=1e-6)
    np.testing.assert_allclose(metrics["accuracy"], accuracy(model.apply(params, x), y), rtol=1e-6)


def test_step_randomness_depends_only_on_key_and_step(toy):
    batch = {k: v[:BATCH_SIZE] for k, v in toy.data.items()}

    def params_after(state):
        return jax.tree.leaves(toy.train_step(state, batch)[0].params)

    again = params_after(toy.state)
    for a, b in zip(params_after(toy.state), again):
        np.testing.assert_array_equal(a, b)  # pure: same state, same result
    other_key = params_after(toy.state._replace(key=jax.random.key(2)))
    other_step = params_after(toy.state._replace(step=jnp.ones((), jnp.int32)))
    assert not all(np.array_equal(a, b) for a, b in zip(again, other_key)), "dropout ignores the key"
    assert not all(np.array_equal(a, b) for a, b in zip(again, other_step)), "dropout ignores the step"


# ------------------------------------------------------------- a model with state
BN_MODEL = dl.serial(dl.Dense(16), dl.BatchNorm(momentum=0.8), dl.Tanh(), dl.Dense(2), name="bn")


@pytest.fixture(scope="module")
def bn():
    _, params, model_state = BN_MODEL.init(jax.random.key(0), (-1, 2))
    optimizer = optax.adam(0.05)
    state = TrainState.create(params, optimizer, jax.random.key(1), model_state=model_state)
    return state, make_train_step(BN_MODEL, dl.softmax_cross_entropy, optimizer), make_eval_step(
        BN_MODEL, dl.softmax_cross_entropy)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_the_train_step_returns_the_model_state_a_training_call_returns(bn):
    state, train_step, _ = bn
    batch = toy_data(16)
    new_state, metrics = train_step(state, batch)
    key = jax.random.fold_in(jax.random.split(state.key)[0], state.step)
    logits, moved = BN_MODEL.apply(state.params, batch["x"], state=state.model_state, key=key, train=True)
    for got, want in zip(jax.tree.leaves(new_state.model_state), jax.tree.leaves(moved)):  # jitted vs eager
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert not np.allclose(moved["batchnorm"]["mean"], state.model_state["batchnorm"]["mean"])
    assert float(metrics["loss"]) == pytest.approx(float(dl.softmax_cross_entropy(logits, batch["y"])), rel=1e-6)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_evaluation_and_predict_read_the_running_statistics(bn):
    state, train_step, eval_step = bn
    data = toy_data()
    result = fit(state, train_step, data, epochs=3, batch_size=BATCH_SIZE, progress=False, verbose=False)
    trained = result.state
    logits, _ = BN_MODEL.apply(trained.params, data["x"], state=trained.model_state)  # train=False
    expected = float(dl.softmax_cross_entropy(logits, data["y"]))
    assert evaluate(eval_step, trained.params, data, 16, model_state=trained.model_state)["loss"] == pytest.approx(
        expected, rel=1e-5)
    np.testing.assert_allclose(dl.predict(BN_MODEL, trained.params, data["x"], 16, model_state=trained.model_state),
                               logits, rtol=1e-5, atol=1e-6)
    batch_statistics, _ = BN_MODEL.apply(trained.params, data["x"], state=trained.model_state, train=True)
    assert not np.allclose(batch_statistics, logits, atol=1e-3)  # evaluation really uses the running averages


def test_a_model_with_state_without_one_is_a_clear_error(bn):
    state, train_step, eval_step = bn
    with pytest.raises(ValueError, match=r"model 'bn' keeps state \(bn/batchnorm\) but none was given"):
        train_step(state._replace(model_state=None), toy_data(16))
    with pytest.raises(ValueError, match="model_state= for evaluate and predict"):
        evaluate(eval_step, state.params, toy_data(), 16)


def test_per_example_gradients_refuse_a_model_with_batch_statistics(bn):
    message = r"runs each example alone, and model 'bn' keeps state \(bn/batchnorm\).* means nothing for one"
    with pytest.raises(ValueError, match=message):
        per_example_grads(BN_MODEL, dl.softmax_cross_entropy, bn[0].params, toy_data(4))
    with pytest.raises(ValueError, match=message):  # when the step is built, not at its first call
        make_per_example_train_step(BN_MODEL, dl.softmax_cross_entropy, optax.sgd(0.1))


@pytest.mark.parametrize("build", [make_train_step, make_eval_step, make_per_example_train_step])
def test_the_steps_take_the_model_not_its_apply(toy, build):
    with pytest.raises(TypeError, match=r"takes the model .*not \w+\(model.apply, ...\)"):
        build(toy.model.apply, dl.softmax_cross_entropy, *([optax.sgd(0.1)] if build is not make_eval_step else []))


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_an_id_outside_the_vocabulary_stops_fit_with_the_layers_error():
    model = dl.serial(dl.Embedding(4, 3), dl.Flatten(), dl.Dense(2), name="ids")
    _, params = model.init(jax.random.key(0), (-1, 2))
    data = {"x": np.array([[0, 1], [2, 3], [1, 6], [3, 0]], np.int32), "y": np.array([0, 1, 0, 1], np.int32)}
    optimizer = optax.sgd(0.1)
    with pytest.raises(dl.LayerError, match=r"^layer 'ids/embedding' \(Embedding\): ids must be in \[0, 4\), "
                                            r"got ids from 0 to 6"):
        fit(TrainState.create(params, optimizer, jax.random.key(1)), make_train_step(model, dl.softmax_cross_entropy,
            optimizer), data, epochs=1, batch_size=4, progress=False, verbose=False)


def test_predict_compiles_once_per_model_and_batch_shape():
    traced = []
    probe = dl.Layer(lambda key, shape: (tuple(shape), {}),
                     lambda params, x, *, key=None, train=False: traced.append(x.shape) or x * 2, "probe", "Probe")
    model = dl.serial(probe, dl.Dense(2))
    _, params = model.init(jax.random.key(0), (-1, 3))
    for n in (10, 7, 16):  # batches of 8: the last one padded to 8 too
        assert dl.predict(model, params, np.ones((n, 3), np.float32), 8).shape == (n, 2)
    assert traced == [(8, 3)]


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_batch_norm_in_bfloat16_trains_checkpoints_and_resumes_to_the_same_run(tmp_path):
    model = dl.mixed_precision(BN_MODEL, "bfloat16")
    _, params, model_state = BN_MODEL.init(jax.random.key(0), (-1, 2))
    optimizer = optax.adam(0.05)
    state = TrainState.create(params, optimizer, jax.random.key(1), model_state=model_state)
    step, data = make_train_step(model, dl.softmax_cross_entropy, optimizer), toy_data()

    def run(epochs, **kwargs):
        return fit(state, step, data, epochs=epochs, batch_size=BATCH_SIZE, progress=False, verbose=False, **kwargs)

    straight = run(4)
    run(2, checkpoint_dir=tmp_path)
    resumed = run(4, checkpoint_dir=tmp_path, resume=True)
    assert jax.tree.leaves(straight.state.model_state)[0].dtype == jnp.float32
    assert_trees_equal(resumed.state.model_state, straight.state.model_state)
    assert_trees_equal(resumed.state.params, straight.state.params)


# ---------------------------------------------------------------------- evaluation
@pytest.mark.parametrize("batch_size", [3, 4, 10, 16])
def test_evaluate_equals_a_full_batch_computation(toy, batch_size):
    data = toy_data(n=10, seed=1)  # 10 is no multiple of 3, 4 or 16: the last batch is padded
    outputs = toy.model.apply(toy.state.params, data["x"])
    scores = evaluate(toy.eval_step, toy.state.params, data, batch_size)
    assert set(scores) == {"loss", "accuracy"}
    np.testing.assert_allclose(scores["loss"], dl.softmax_cross_entropy(outputs, data["y"]), rtol=1e-5)
    np.testing.assert_allclose(scores["accuracy"], accuracy(outputs, data["y"]), rtol=1e-6)


def test_evaluate_honours_the_datasets_own_mask(toy):
    data = toy_data(n=10, seed=1)
    mask = np.ones(10, np.float32)
    mask[:4] = 0.0
    scores = evaluate(toy.eval_step, toy.state.params, {**data, "mask": mask}, 4)
    kept = toy.model.apply(toy.state.params, data["x"][4:])
    np.testing.assert_allclose(scores["loss"], dl.softmax_cross_entropy(kept, data["y"][4:]), rtol=1e-5)
    np.testing.assert_allclose(scores["accuracy"], accuracy(kept, data["y"][4:]), rtol=1e-6)


# ------------------------------------------------------------------ early stopping
@pytest.mark.parametrize(
    "mode, values, patience, min_delta, stop",
    [
        ("min", [1.0, 0.9, 0.95, 0.96], 2, 0.0, True),  # no better than 0.9 for 2 epochs
        ("min", [1.0, 0.9, 0.95, 0.85], 2, 0.0, False),  # improved in the last epoch
        ("min", [1.0, 0.9, 0.8], 2, 0.0, False),
        ("min", [1.0, 1.0, 1.0], 2, 0.0, True),  # a flat plateau is no improvement
        ("min", [1.0, 0.95, 0.96], 2, 0.1, True),  # improved, but by less than min_delta
        ("min", [1.0, 0.85, 0.96], 2, 0.1, False),
        ("min", [1.0, 2.0], 2, 0.0, False),  # not enough epochs to judge
        ("max", [0.5, 0.8, 0.7, 0.75], 2, 0.0, True),
        ("max", [0.5, 0.8, 0.7, 0.9], 2, 0.0, False),
        ("max", [1.0, 1.0, 1.0], 2, 0.0, True),  # accuracy stuck at 1.0
        ("max", [0.5, 0.55, 0.56], 2, 0.1, True),
    ],
)
def test_early_stopping_should_stop(mode, values, patience, min_delta, stop):
    stopper = EarlyStopping(monitor="val_x", patience=patience, mode=mode, min_delta=min_delta)
    history = [{"epoch": i + 1, "val_x": v} for i, v in enumerate(values)]
    assert stopper.should_stop(history) is stop
    # records without the monitored value are skipped
    assert stopper.should_stop([{"epoch": 0}] + history) is stop


def test_early_stopping_needs_more_than_patience_values():
    assert not EarlyStopping(monitor="val_loss", patience=3).should_stop([{"val_loss": 1.0}] * 3)
    assert EarlyStopping(monitor="val_loss", patience=3).should_stop([{"val_loss": 1.0}] * 4)


@pytest.mark.parametrize("monitor, mode", [("val_loss", "min"), ("val_accuracy", "max")])
def test_fit_stops_early_on_a_plateau(toy, tmp_path, monitor, mode):
    def frozen(state, batch):  # a step that changes nothing but the count: every epoch scores the same
        _, metrics = toy.train_step(state, batch)
        return state._replace(step=state.step + 1), metrics

    result = run(toy, epochs=10, train_step=frozen, checkpoint_dir=tmp_path, checkpoint_every=100,
                 early_stopping=EarlyStopping(monitor=monitor, patience=2, mode=mode))
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert int(result.state.step) == 3 * STEPS_PER_EPOCH
    # a stopped run is saved although checkpoint_every was not reached
    assert steps_on_disk(tmp_path) == [3 * STEPS_PER_EPOCH]


def test_resuming_a_run_that_stopped_early_trains_no_further(toy, tmp_path):
    # the loss falls, but by less than min_delta: no improvement that counts
    settings = dict(epochs=10, checkpoint_dir=tmp_path, early_stopping=EarlyStopping(patience=2, min_delta=1.0))
    result = run(toy, **settings)
    assert len(result.history) == 3 and result.history[-1]["val_loss"] < result.history[0]["val_loss"]

    counted = CountingStep(toy.train_step)
    again = run(toy, train_step=counted, resume=True, **settings)
    assert counted.calls == 0
    assert again.history == result.history
    assert_trees_equal(again.state, result.state)


# -------------------------------------------------------------------------- fit
def test_fit_learns_and_records_one_history_record_per_epoch(toy):
    result = run(toy, epochs=20)
    history = result.history
    assert [r["epoch"] for r in history] == list(range(1, 21))
    assert [r["step"] for r in history] == [STEPS_PER_EPOCH * e for e in range(1, 21)]
    assert int(result.state.step) == 20 * STEPS_PER_EPOCH
    for record in history:
        assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "time_s"} <= set(record)
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert history[-1]["val_loss"] < 0.6 * history[0]["val_loss"]
    assert history[-1]["val_accuracy"] >= 0.9 > history[0]["val_accuracy"]
    # val_* is evaluate() of the params at the end of the epoch
    scores = evaluate(toy.eval_step, result.state.params, toy.data, BATCH_SIZE)
    assert history[-1]["val_loss"] == pytest.approx(scores["loss"], rel=1e-6)
    assert history[-1]["val_accuracy"] == pytest.approx(scores["accuracy"], rel=1e-6)


def test_metrics_a_callback_adds_show_in_the_epoch_line_and_the_checkpoint(toy, tmp_path, capsys):
    def score(state, record):
        record["val_f1"] = 0.25 * record["epoch"]

    result = run(toy, epochs=2, callbacks=[score], checkpoint_dir=tmp_path)
    assert [r["val_f1"] for r in result.history] == [0.25, 0.5]
    last_line = capsys.readouterr().out.splitlines()[-1]
    assert last_line.startswith("epoch 2/2 ") and "val_f1=0.5 " in last_line
    saved = load_checkpoint(latest_checkpoint(tmp_path)).meta["history"]
    assert [r["val_f1"] for r in saved] == [0.25, 0.5]


def test_fit_prints_a_line_per_epoch_unless_not_verbose(toy, capsys):
    run(toy, epochs=2, progress=False)
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()] == [["epoch", "1/2"], ["epoch", "2/2"]]
    result = run(toy, epochs=2, progress=False, verbose=False)
    assert capsys.readouterr().out == "" and len(result.history) == 2


def test_fit_without_eval_data_records_only_train_metrics(toy):
    result = run(toy, epochs=1, eval_step=None, eval_data=None)
    (record,) = result.history
    assert {"train_loss", "train_accuracy"} <= set(record)
    assert not [k for k in record if k.startswith("val_")]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"epochs": 0}, "epochs must be a positive int, got 0"),
        ({"epochs": -1}, "epochs must be a positive int, got -1"),
        ({"epochs": 2.5}, "epochs must be a positive int, got 2.5"),
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"batch_size": -1}, "batch_size must be a positive int, got -1"),
        ({"batch_size": 65}, r"batch_size 65 is larger than the training set \(64 examples\)"),
        ({"log_every": 0}, "log_every must be a positive int, got 0"),
    ],
)
def test_fit_rejects_invalid_sizes(toy, tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        run(toy, checkpoint_dir=tmp_path, **settings)
    assert list(tmp_path.iterdir()) == []


def test_fit_refuses_a_directory_with_checkpoints_unless_resuming(toy, tmp_path):
    run(toy, epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"already holds checkpoints \(step_000000004\.ckpt\).*resume"):
        run(toy, epochs=2, checkpoint_dir=tmp_path)
    assert steps_on_disk(tmp_path) == [STEPS_PER_EPOCH]


def test_fit_refuses_to_resume_with_other_settings(toy, tmp_path):
    run(toy, epochs=1, checkpoint_dir=tmp_path, config={"lr": 0.05, "hidden": 16})
    with pytest.raises(ValueError, match=r"cannot resume .*step_000000004\.ckpt.*hidden: 16 -> 32, lr: 0\.05 -> 0\.1"):
        run(toy, epochs=2, checkpoint_dir=tmp_path, resume=True, config={"lr": 0.1, "hidden": 32})
    # A setting one side lacks is not compared: a flag added to jaxdl since, or one the run saved
    # that no longer identifies a run (an older jaxdl saved every flag).
    resumed = run(toy, epochs=2, checkpoint_dir=tmp_path, resume=True, config={"lr": 0.05, "dtype": "float32"})
    assert len(resumed.history) == 2


def test_fit_resumes_with_more_epochs_as_if_never_stopped(toy, tmp_path, reference):
    # tuples are saved as JSON lists: the resumed run's tuple must still count as the same setting
    config = {"lr": 0.05, "hidden": (16,)}
    first = run(toy, epochs=2, checkpoint_dir=tmp_path, config=config)
    assert len(first.history) == 2
    counted = CountingStep(toy.train_step)
    resumed = run(toy, train_step=counted, epochs=4, checkpoint_dir=tmp_path, resume=True, config=config)
    assert counted.calls == 2 * STEPS_PER_EPOCH
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in reference.history]
    assert_trees_equal(resumed.state, reference.state)
    assert load_checkpoint(tmp_path).config == {"lr": 0.05, "hidden": [16]}


def test_fit_resuming_a_finished_run_does_nothing(toy, tmp_path, reference):
    run(toy, checkpoint_dir=tmp_path)
    counted = CountingStep(toy.train_step)
    again = run(toy, train_step=counted, checkpoint_dir=tmp_path, resume=True)
    assert counted.calls == 0
    assert again.history == load_checkpoint(tmp_path).meta["history"]
    assert_trees_equal(again.state.params, reference.state.params)


def test_fit_keeps_the_newest_checkpoints(toy, tmp_path):
    run(toy, checkpoint_dir=tmp_path, keep_checkpoints=2)
    assert steps_on_disk(tmp_path) == [12, 16]
    meta = load_checkpoint(tmp_path).meta
    assert [r["epoch"] for r in meta["history"]] == [1, 2, 3, 4] and meta["train_time_s"] > 0


# -------------------------------------------------------------- non-finite losses
@pytest.mark.parametrize(
    "bad_step, log_every, last_good",
    [
        (1, 20, None),  # no checkpoint yet
        (6, 20, 4),  # inside epoch 2; read from the device at the end of the epoch
        (6, 1, 4),  # read at once
        (8, 20, 4),  # the last step of epoch 2: epoch 2 must not be saved
        (13, 3, 12),
    ],
)
def test_non_finite_loss_names_the_step_and_the_last_good_checkpoint(toy, tmp_path, bad_step, log_every, last_good):
    def poison(update, batch):  # a NaN input makes that step's loss (and every later one) NaN
        if update == bad_step:
            return {**batch, "x": jnp.full_like(batch["x"], jnp.nan)}

    with pytest.raises(NonFiniteLossError) as caught:
        run(toy, train_step=CountingStep(toy.train_step, poison), checkpoint_dir=tmp_path,
            keep_checkpoints=100, log_every=log_every)
    error = caught.value
    assert error.step == bad_step and np.isnan(error.loss)
    assert f"became nan at step {bad_step};" in str(error)
    assert all(step < bad_step for step in steps_on_disk(tmp_path))
    if last_good is None:
        assert error.checkpoint is None and "no checkpoint was written" in str(error)
        assert list_checkpoints(tmp_path) == []
    else:
        assert error.checkpoint == str(checkpoint_path(tmp_path, last_good)) and error.checkpoint in str(error)
        assert steps_on_disk(tmp_path)[-1] == last_good
        saved = load_checkpoint(error.checkpoint, target=toy.state).state
        assert int(saved.step) == last_good
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(saved.params))


def test_a_diverging_learning_rate_stops_at_the_first_non_finite_loss(tmp_path):
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(32, 2)).astype(np.float32), "y": rng.normal(size=(32, 1)).astype(np.float32)}
    model = dl.serial(dl.Dense(1))
    _, params = model.init(jax.random.key(0), (-1, 2))
    optimizer = optax.sgd(100.0)  # the weights grow ~100x per step until the loss overflows
    step = make_train_step(model, dl.mean_squared_error, optimizer, metrics={})
    losses = []

    def observed(state, batch):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
        return state, metrics

    with pytest.raises(NonFiniteLossError) as caught:
        fit(TrainState.create(params, optimizer, jax.random.key(0)), observed, data, epochs=20, batch_size=8,
            checkpoint_dir=tmp_path, keep_checkpoints=100, progress=False)
    first_bad = next(i for i, loss in enumerate(losses, 1) if not np.isfinite(loss))
    assert first_bad > 4, "the loss should stay finite for the first epoch"
    assert caught.value.step == first_bad and f"at step {first_bad};" in str(caught.value)
    assert Path(caught.value.checkpoint) == latest_checkpoint(tmp_path)
    assert all(step < first_bad for step in steps_on_disk(tmp_path))
    saved = load_checkpoint(caught.value.checkpoint).state
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(saved["params"]))


# ------------------------------------------------------------------------ Ctrl-C
def interrupt_in_callback(state, record):
    if record["epoch"] == 2:
        raise KeyboardInterrupt


def interrupt_before_update_6(update, batch):
    if update == 6:
        raise KeyboardInterrupt


class EvalInterruptedAtEpoch2:
    """An eval step (fit only needs ``(params, batch) -> metrics``) that is interrupted in epoch 2's evaluation."""

    def __init__(self, eval_step):
        self.eval_step, self.calls = eval_step, 0

    def __call__(self, params, batch, *model_state):
        self.calls += 1
        if self.calls == 2 * (64 // BATCH_SIZE) - 1:  # 4 evaluation batches an epoch: inside the second evaluation
            raise KeyboardInterrupt
        return self.eval_step(params, batch, *model_state)


def same_history(ours, theirs):
    """Every figure but the times equals: epochs, steps, training and evaluation metrics."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert {k: v for k, v in a.items() if not k.endswith("_s")} == {k: v for k, v in b.items() if not k.endswith("_s")}


@pytest.mark.parametrize(
    "where, saved_step, records",
    [("callback", 8, 1), ("evaluation", 8, 1), ("step", 5, 1)],  # epoch 2's steps done, no record; 5 updates
    ids=["in-callback", "in-evaluation", "mid-epoch"],
)
def test_keyboard_interrupt_saves_and_the_resumed_run_matches(toy, tmp_path, reference, where, saved_step, records):
    settings = dict(checkpoint_dir=tmp_path, checkpoint_every=3)  # no regular save before epoch 3
    interrupted = dict(settings)
    if where == "callback":
        interrupted["callbacks"] = [interrupt_in_callback]
    elif where == "evaluation":
        interrupted["eval_step"] = EvalInterruptedAtEpoch2(toy.eval_step)
    else:
        interrupted["train_step"] = CountingStep(toy.train_step, interrupt_before_update_6)
    with pytest.raises(KeyboardInterrupt):
        run(toy, **interrupted)
    assert steps_on_disk(tmp_path) == [saved_step]
    meta = load_checkpoint(tmp_path).meta
    assert len(meta["history"]) == records and meta["epoch"]["steps"] == saved_step - 4 * records

    counted = CountingStep(toy.train_step)
    resumed = run(toy, train_step=counted, resume=True, **settings)
    assert counted.calls == 4 * STEPS_PER_EPOCH - saved_step
    same_history(resumed.history, reference.history)  # epoch 2's means count the steps before the interruption
    assert_trees_equal(resumed.state.params, reference.state.params)
    assert_trees_equal(resumed.state.opt_state, reference.state.opt_state)


# ------------------------------------------------------------- scoring inside an epoch
def interrupt_before_update_7(update, batch):
    if update == 7:
        raise KeyboardInterrupt


def test_eval_every_scores_inside_epochs_without_changing_the_training(toy, tmp_path, reference):
    result = run(toy, eval_every=3)
    assert_trees_equal(result.state.params, reference.state.params)
    points = scores_by_step(result.history)
    # steps 3, 6, 9, 15 inside epochs (12 is an epoch's end), every epoch's end: in step order
    assert [p["step"] for p in points] == [3, 4, 6, 8, 9, 12, 15, 16]
    assert [r["step"] for r in result.history] == [4, 8, 12, 16]
    assert [p["step"] for p in result.history[1]["evaluations"]] == [6]
    ends = [p for p in points if p["step"] % 4 == 0]
    assert [p["val_loss"] for p in ends] == [r["val_loss"] for r in reference.history]
    elapsed = [p["elapsed_s"] for p in points]
    assert elapsed == sorted(elapsed)

    # the score at step 6 is the evaluation of the state after 6 updates (saved by an interruption)
    with pytest.raises(KeyboardInterrupt):
        run(toy, train_step=CountingStep(toy.train_step, interrupt_before_update_7), checkpoint_dir=tmp_path)
    after_6 = load_checkpoint(tmp_path, target=toy.state).state
    assert int(after_6.step) == 6
    scores = dl.evaluate(toy.eval_step, after_6.params, toy.data, BATCH_SIZE)
    assert points[2]["val_loss"] == pytest.approx(scores["loss"], rel=1e-6)
    assert points[2]["val_accuracy"] == pytest.approx(scores["accuracy"])


def test_eval_every_resumes_inside_an_epoch_with_its_scores_so_far(toy, tmp_path):
    whole = run(toy, eval_every=2)
    with pytest.raises(KeyboardInterrupt):  # after the score at step 6, before update 7
        run(toy, train_step=CountingStep(toy.train_step, interrupt_before_update_7), checkpoint_dir=tmp_path,
            eval_every=2)
    resumed = run(toy, resume=True, checkpoint_dir=tmp_path, eval_every=2)
    strip = lambda points: [{k: v for k, v in p.items() if not k.endswith("_s")} for p in points]  # noqa: E731
    assert strip(scores_by_step(resumed.history)) == strip(scores_by_step(whole.history))


# ------------------------------------------------------------------- weight averaging
def test_average_weights_keeps_the_optimizers_updates_and_averages_by_hand():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = [{"w": jnp.array([0.5, 1.0]) * (t + 1)} for t in range(12)]
    plain, averaged = optax.sgd(0.1), dl.average_weights(optax.sgd(0.1), decay=0.5)
    plain_state, state = plain.init(params), averaged.init(params)
    p, expected = params, np.array([1.0, -2.0])
    for t, g in enumerate(grads, start=1):
        want, plain_state = plain.update(g, plain_state, p)
        got, state = averaged.update(g, state, p)
        np.testing.assert_array_equal(got["w"], want["w"])  # the optimizer's own updates
        p = optax.apply_updates(p, got)
        d = min(0.5, t / (t + 9))  # 0.1, 0.18, ..., then the decay itself from t = 9
        expected = d * expected + (1 - d) * np.asarray(p["w"])
        np.testing.assert_allclose(state.averaged_params["w"], expected, rtol=1e-6)
    assert int(state.count) == 12


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_average_weights_refuses_a_decay_outside_zero_one(decay):
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        dl.average_weights(optax.sgd(0.1), decay=decay)


def test_fit_scores_the_averaged_weights_which_checkpoints_keep(toy, tmp_path, reference):
    optimizer = dl.average_weights(optax.adam(0.05), decay=0.9)
    state = TrainState.create(toy.state.params, optimizer, toy.state.key)
    train_step = make_train_step(toy.model, dl.softmax_cross_entropy, optimizer)
    result = fit(state, train_step, toy.data, epochs=4, batch_size=BATCH_SIZE, eval_step=toy.eval_step,
                 eval_data=toy.data, checkpoint_dir=tmp_path, progress=False)
    assert_trees_equal(result.state.params, reference.state.params)  # the same training
    averaged = dl.eval_params(result.state)
    assert not np.allclose(averaged["dense1"]["w"], result.state.params["dense1"]["w"])
    scores = dl.evaluate(toy.eval_step, averaged, toy.data, BATCH_SIZE)
    assert result.history[-1]["val_loss"] == pytest.approx(scores["loss"], rel=1e-6)
    assert result.history[-1]["val_loss"] != reference.history[-1]["val_loss"]
    saved = load_checkpoint(tmp_path).state  # nested dicts, as a saved run is read
    assert_trees_equal(dl.eval_params(saved), host(averaged))
    assert dl.eval_params(toy.state) is toy.state.params  # no average kept: the params


@pytest.mark.parametrize("settings, message", [
    ({"eval_every": 0}, "eval_every must be a positive int, got 0"),
    ({"eval_every": 2, "eval_data": None}, "eval_every needs eval_step and eval_data"),
])
def test_eval_every_refuses_a_bad_setting(toy, settings, message):
    with pytest.raises(ValueError, match=message):
        run(toy, **settings)


# ------------------------------------------------------------- SIGKILL and resume
@pytest.fixture(scope="module")
def child_env(tmp_path_factory):
    """Environment for helper processes: a shared persistent compilation cache keeps them fast."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


def train_and_die(directory, out, env, *extra):
    return subprocess.run(
        [sys.executable, str(HELPER), "--checkpoint-dir", str(directory), "--out-params", str(out), *extra],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, child_env):
    """The uninterrupted runs' results, without and with BatchNorm."""
    results = {}
    for extra in ((), ("--batch-norm",)):
        directory = tmp_path_factory.mktemp("uninterrupted")
        done = train_and_die(directory / "checkpoints", directory / "params.npz", child_env, *extra)
        assert done.returncode == 0, done.stderr
        params = dict(np.load(directory / "params.npz"))
        assert int(params.pop("steps_run")) == 16
        results[extra] = params
    return results


@pytest.mark.slow
@pytest.mark.parametrize(
    "die, on_disk, extra",
    [
        # fit saves after the callbacks: killed in epoch 2's callback, epoch 1 is the latest checkpoint
        (["--die-after-epoch", "2"], 4, ()),
        (["--die-at-step", "7"], 4, ()),  # killed inside epoch 2
        (["--die-after-epoch", "4"], 12, ()),  # killed before the final save
        (["--die-at-step", "7"], 4, ("--batch-norm",)),  # the running statistics resume too
    ],
    ids=["after-epoch-2", "at-step-7", "after-epoch-4", "batch-norm-at-step-7"],
)
def test_a_killed_run_resumes_to_the_same_params(tmp_path, child_env, uninterrupted, die, on_disk, extra):
    checkpoints, out = tmp_path / "checkpoints", tmp_path / "params.npz"
    killed = train_and_die(checkpoints, out, child_env, *die, *extra)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    assert latest_checkpoint(checkpoints) == checkpoint_path(checkpoints, on_disk)

    resumed = train_and_die(checkpoints, out, child_env, *extra)
    assert resumed.returncode == 0, resumed.stderr
    got, uninterrupted = dict(np.load(out)), uninterrupted[extra]
    assert int(got.pop("steps_run")) == 16 - on_disk  # it went on from the checkpoint
    assert sorted(got) == sorted(uninterrupted)
    params = [k for k in got if k.startswith(("params/", "model_state/"))]
    assert len(params) == (8 if extra else 4)  # BatchNorm: scale, bias, mean, var
    if extra:
        assert np.abs(got["model_state/batchnorm/mean"]).min() > 0  # the statistics moved
    for name in params:
        assert got[name].dtype == uninterrupted[name].dtype
        assert np.array_equal(got[name], uninterrupted[name]), name
    assert int(got["step"]) == int(uninterrupted["step"]) == 16
    assert got["epoch"].tolist() == uninterrupted["epoch"].tolist() == [1, 2, 3, 4]
    assert np.array_equal(got["train_loss"], uninterrupted["train_loss"])
    assert np.array_equal(got["val_loss"], uninterrupted["val_loss"])
    assert steps_on_disk(checkpoints)[-1] == 16


@pytest.mark.slow
@pytest.mark.parametrize(
    "interrupt, on_disk",
    [(["--interrupt-at-step", "7"], 6), (["--interrupt-in-evaluation", "2"], 8)],  # mid-epoch; in epoch 2's evaluation
    ids=["mid-epoch", "in-evaluation"],
)
def test_ctrl_c_ends_with_one_line_and_the_resumed_run_has_the_uninterrupted_history(
        tmp_path, child_env, uninterrupted, interrupt, on_disk):
    checkpoints, out = tmp_path / "checkpoints", tmp_path / "params.npz"
    stopped = train_and_die(checkpoints, out, child_env, *interrupt)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"interrupted; the run is saved in {checkpoint_path(checkpoints, on_disk)}: the same command with --resume "
        "goes on")
    resumed = train_and_die(checkpoints, out, child_env)
    assert resumed.returncode == 0, resumed.stderr
    got, want = dict(np.load(out)), uninterrupted[()]
    assert int(got.pop("steps_run")) == 16 - on_disk
    for name in want:
        if name != "steps_run":
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)  # params, losses and accuracies


# ------------------------------------------------------------ many steps per call
def flat(params):
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(host(params))])


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
@pytest.mark.parametrize("steps_per_call", [2, 3, 4, 16])
def test_many_steps_per_call_gives_the_same_run(toy, reference, steps_per_call):
    """A lax.scan over on-device batches (chunks of 2, 3 or a whole epoch) equals one call per step.

    On the CPU the two compile to the same arithmetic: the parameters agree bit for bit.
    """
    result = run(toy, steps_per_call=steps_per_call)
    assert_trees_equal(result.state.params, reference.state.params)
    assert int(result.state.step) == int(reference.state.step)
    for ours, theirs in zip(result.history, reference.history):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_many_steps_per_call_resumes_exactly(toy, tmp_path):
    """Killed (here: interrupted) inside an epoch, a chunked run resumes on the same chunk boundaries."""
    straight = run(toy, steps_per_call=3)
    calls = 0

    def interrupt(state, record):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(toy, steps_per_call=3, checkpoint_dir=tmp_path, callbacks=[interrupt])
    resumed = run(toy, steps_per_call=3, checkpoint_dir=tmp_path, resume=True)
    assert_trees_equal(resumed.state.params, straight.state.params)


def test_many_steps_per_call_names_the_exact_non_finite_step(toy, tmp_path):
    data = {name: np.array(column) for name, column in toy.data.items()}
    data["x"][:] = np.nan  # every batch is bad: the very first step must be named
    with pytest.raises(NonFiniteLossError, match="at step 1;"):
        fit(toy.state, toy.train_step, data, epochs=2, batch_size=BATCH_SIZE, steps_per_call=4, progress=False)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_make_multi_step_equals_a_loop_of_steps(toy):
    order = jnp.arange(12).reshape(3, 4)
    data = jax.tree.map(jnp.asarray, toy.data)
    state, stacked = make_multi_step(toy.train_step)(toy.state, data, order)
    looped, losses = toy.state, []
    for ids in order:
        looped, values = toy.train_step(looped, jax.tree.map(lambda column: column[ids], data))
        losses.append(values["loss"])
    assert stacked["loss"].shape == (3,)
    np.testing.assert_allclose(stacked["loss"], losses, rtol=1e-6)
    np.testing.assert_allclose(flat(state.params), flat(looped.params), rtol=1e-6)


# ------------------------------------------------------------ per-example gradients
def plain_mlp():
    model = dl.serial(dl.Dense(8), dl.Tanh(), dl.Dense(2))
    return model, model.init(jax.random.key(3), (-1, 2))[1]


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_per_example_grads_equal_a_loop_over_single_examples(toy):
    model, params = plain_mlp()
    batch = {k: v[:6] for k, v in toy.data.items()}
    grads, losses, outputs = per_example_grads(model, dl.softmax_cross_entropy, params, batch)
    assert losses.shape == (6,) and outputs.shape == (6, 2)
    for i in range(6):
        single = {k: v[i : i + 1] for k, v in batch.items()}
        loss_i, grad_i = jax.value_and_grad(
            lambda p: dl.softmax_cross_entropy(model.apply(p, single["x"]), single["y"]))(params)
        np.testing.assert_allclose(losses[i], loss_i, rtol=1e-6)
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(grad_i)):
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-7)
    norms = per_example_norms(grads)
    by_hand = [np.sqrt(sum(np.sum(np.square(g[i])) for g in jax.tree.leaves(grads))) for i in range(6)]
    np.testing.assert_allclose(norms, by_hand, rtol=1e-6)


def dp_sgd(clip, noise=0.0, lr=0.1):
    return optax.chain(optax.contrib.differentially_private_aggregate(clip, noise, jax.random.key(0)), optax.sgd(lr))


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_unclipped_noiseless_per_example_step_equals_the_ordinary_step(toy):
    model, params = plain_mlp()
    batch = {k: v[:16] for k, v in toy.data.items()}
    ordinary = make_train_step(model, dl.softmax_cross_entropy, optax.sgd(0.1))
    per_example = make_per_example_train_step(model, dl.softmax_cross_entropy, dp_sgd(clip=1e6))
    a = TrainState.create(params, optax.sgd(0.1), jax.random.key(1))
    b = TrainState.create(params, dp_sgd(clip=1e6), jax.random.key(1))
    for _ in range(3):
        a, a_metrics = ordinary(a, batch)
        b, b_metrics = per_example(b, batch)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b_metrics["loss"], a_metrics["loss"], rtol=1e-5)
    np.testing.assert_allclose(b_metrics["accuracy"], a_metrics["accuracy"])


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_clipping_bounds_each_example_and_padded_rows_count_for_nothing(toy):
    model, params = plain_mlp()
    batch = {**{k: v[:8] for k, v in toy.data.items()}, "mask": np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)}
    clip, lr = 1e-3, 1.0
    step = make_per_example_train_step(model, dl.softmax_cross_entropy, dp_sgd(clip, lr=lr))
    after, metrics = step(TrainState.create(params, dp_sgd(clip, lr=lr), jax.random.key(1)), batch)
    grads, _, _ = per_example_grads(model, dl.softmax_cross_entropy, params, batch)
    norms = np.asarray(per_example_norms(grads))
    np.testing.assert_allclose(metrics["grad_norm"], norms[:5].mean(), rtol=1e-5)  # the 5 real rows
    clipped = [np.asarray(g[:5]) * (clip / norms[:5]).reshape(-1, *[1] * (g.ndim - 1)) for g in jax.tree.leaves(grads)]
    expected = [p - lr * c.sum(0) / 8 for p, c in zip(jax.tree.leaves(params), clipped)]  # sum of 5 clipped, / B
    for got, want in zip(jax.tree.leaves(after.params), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_dp_sgd_trains_with_fit(toy):
    model, params = plain_mlp()
    optimizer = dp_sgd(clip=1.0, noise=0.3, lr=2.0)
    step = make_per_example_train_step(model, dl.softmax_cross_entropy, optimizer)
    result = fit(TrainState.create(params, optimizer, jax.random.key(1)), step, toy.data, epochs=40,
                 batch_size=BATCH_SIZE, eval_step=make_eval_step(model, dl.softmax_cross_entropy),
                 eval_data=toy.data, progress=False)
    assert result.history[0]["val_accuracy"] < 0.8 and result.history[-1]["val_accuracy"] > 0.9
    assert all("train_grad_norm" in record for record in result.history)


def test_freeze_keeps_the_named_params_and_trains_the_others():
    params = {"features": {"words": {"embedding": {"table": jnp.ones((4, 2))}},
                           "spelling": {"embedding": {"table": jnp.ones((3, 2))}}},
              "output": {"w": jnp.ones(2)}}
    optimizer = dl.freeze(optax.sgd(0.1), "features/words/embedding")
    state = optimizer.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = optimizer.update(grads, state, params)
    assert not jnp.any(updates["features"]["words"]["embedding"]["table"])  # frozen
    np.testing.assert_allclose(updates["features"]["spelling"]["embedding"]["table"], -0.1)  # same name, other path
    np.testing.assert_allclose(updates["output"]["w"], -0.1)
    with pytest.raises(ValueError, match=r"no params under 'embedding'; the layers with params are "
                                         r"\['features/spelling/embedding', 'features/words/embedding', 'output'\]"):
        dl.freeze(optax.sgd(0.1), "embedding").init(params)


def test_predict_of_a_crf_model_asks_for_a_transform():
    model = dl.serial(dl.Dense(3), dl.CRF(3))
    _, params = model.init(jax.random.key(0), (-1, 4, 2))
    x = np.asarray(jax.random.normal(jax.random.key(1), (5, 4, 2)))
    with pytest.raises(TypeError, match="ends in a CRF, whose outputs are ChainScores.*transform=lambda scores: "
                                        r"jaxdl.crf.viterbi\(scores\)\[0\]"):
        dl.predict(model, params, x, 4)
    tags = dl.predict(model, params, x, 4, transform=lambda scores: crf.viterbi(scores)[0])
    np.testing.assert_array_equal(tags, crf.viterbi(model.apply(params, x))[0])
