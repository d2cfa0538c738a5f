"""jaxdl.devices: meshes, sharded data-parallel training on 8 simulated CPU devices (see
conftest.py), the model axis, and the errors a bad mesh gives."""

import jax
import numpy as np
import optax
import pytest

from tiers import unit_tier

import jaxdl as dl
from jaxdl import devices, experiment
from jaxdl.loop import fit
from jaxdl.train import TrainState, evaluate, make_eval_step, make_train_step

STEPS = 50
BATCH = 32


@pytest.fixture(scope="module")
def eight_devices():
    if jax.device_count() < 8:
        pytest.fail(f"conftest.py asks XLA for 8 CPU devices, JAX sees {jax.device_count()}: "
                    "was jax imported before conftest.py?")
    return 8


def toy_problem(n=512, seed=0):
    """4 classes of 16-dimensional points (the class is the sign pattern of two coordinates)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    y = ((x[:, 0] > 0) * 2 + (x[:, 1] > 0)).astype(np.int32)
    return {"x": x, "y": y}


MODEL = dl.serial(dl.Dense(1024, name="hidden"), dl.ReLU(), dl.Dropout(0.2), dl.Dense(4, name="output"))
SPLIT = jax.sharding.PartitionSpec(None, "model")  # the hidden kernel (16, 1024) on a model axis: its longer axis
OPTIMIZER = optax.adam(3e-3)


def fresh_state():
    _, params = MODEL.init(jax.random.key(0), (-1, 16))
    return TrainState.create(params, OPTIMIZER, jax.random.key(1))


def step_losses(mesh):
    """The loss of each of 50 steps (dropout on), with the state and batches placed as fit places them."""
    step = make_train_step(MODEL, dl.softmax_cross_entropy, OPTIMIZER)
    state, data = fresh_state(), toy_problem()
    if mesh is not None:
        shardings = devices.state_sharding(state, mesh)
        state = devices.put(state, shardings)
        step = jax.jit(step, out_shardings=(shardings, devices.replicated(mesh)))  # as fit pins them
    losses = []
    for i in range(STEPS):
        rows = slice((i * BATCH) % 512, (i * BATCH) % 512 + BATCH)
        batch = {k: v[rows] for k, v in data.items()}
        if mesh is not None:
            batch = devices.put(batch, devices.batch_sharding(mesh))
        state, values = step(state, batch)
        losses.append(float(values["loss"]))
    return np.array(losses), state


@pytest.fixture(scope="module")
def one_device_run():
    return step_losses(None)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_every_step_on_8_devices_equals_1_device(eight_devices, one_device_run):
    alone, state_alone = one_device_run
    spread, state_spread = step_losses(devices.make_mesh(eight_devices))
    assert spread[-1] < 0.5 * spread[0]  # it learned
    np.testing.assert_allclose(spread, alone, rtol=2e-5, atol=1e-6)
    assert state_spread.params["hidden"]["w"].sharding.is_fully_replicated
    assert len(state_spread.params["hidden"]["w"].sharding.device_set) == 8
    for got, want in zip(jax.tree.leaves(state_spread.params), jax.tree.leaves(state_alone.params)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_a_model_axis_splits_the_largest_parameters_and_trains_alike(eight_devices, one_device_run):
    mesh = devices.make_mesh(eight_devices, model=2)
    assert dict(mesh.shape) == {"data": 4, "model": 2}
    alone, _ = one_device_run
    split, state = step_losses(mesh)
    np.testing.assert_allclose(split, alone, rtol=2e-5, atol=1e-6)
    assert state.params["hidden"]["w"].sharding.spec == SPLIT  # 16,384 elements: split
    assert state.opt_state[0].mu["hidden"]["w"].sharding.spec == SPLIT  # Adam's moments alike
    assert state.params["output"]["w"].sharding.is_fully_replicated  # (1024, 4): under the threshold
    assert devices.param_sharding((3, 5), mesh, min_size=1).is_fully_replicated  # no axis splits in 2
    assert devices.param_sharding((4096,), mesh, min_size=1).is_fully_replicated  # vectors stay whole


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
@pytest.mark.parametrize("steps_per_call", unit_tier({"1": 1, "5": 5}, keep="1"))
def test_fit_on_a_mesh_matches_fit_on_one_device(eight_devices, steps_per_call):
    data, test = toy_problem(256), toy_problem(100, seed=1)
    eval_step = make_eval_step(MODEL, dl.softmax_cross_entropy)

    step = make_train_step(MODEL, dl.softmax_cross_entropy, OPTIMIZER)
    seen = []

    def spy(state, batch):  # traced inside fit's jitted call: the shardings XLA compiles for
        for x in (batch["x"], state.params["hidden"]["w"]):
            jax.debug.inspect_array_sharding(x, callback=lambda sharding: seen.append(getattr(sharding, "spec", None)))
        return step(state, batch)

    def run(mesh):
        result = fit(fresh_state(), spy, data, epochs=2, batch_size=BATCH,
                     eval_step=eval_step, eval_data=test, progress=False, steps_per_call=steps_per_call, mesh=mesh)
        if mesh is not None:
            assert result.state.params["hidden"]["w"].sharding.spec == SPLIT
        return [[r[k] for k in ("train_loss", "val_loss", "val_accuracy")] for r in result.history]

    spread = run(devices.make_mesh(eight_devices, model=2))
    # compiled for the batch split over "data" and the kernel over "model", once per call shape
    # (8 steps an epoch: calls of 5 and 3 steps): the state's layout holds from call to call
    assert seen == [jax.sharding.PartitionSpec("data"), SPLIT] * (1 if steps_per_call == 1 else 2)
    np.testing.assert_allclose(spread, run(None), rtol=1e-5)


# No bias before the BatchNorm: its gradient would be zero up to rounding, which Adam's
# normalised steps turn into a random walk that depends on the order of the sums.
BN_MODEL = dl.serial(dl.Dense(64, bias=False), dl.BatchNorm(momentum=0.9), dl.ReLU(), dl.Dense(4, name="output"))


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
@pytest.mark.parametrize("steps_per_call", unit_tier({"1": 1, "4": 4}, keep="4"))
def test_batch_statistics_on_8_devices_are_those_of_the_global_batch(eight_devices, steps_per_call):
    """Each device holds 4 of a batch's 32 rows; BatchNorm's mean and variance, and so every loss,
    the running statistics and the evaluation that reads them, equal one device's."""
    data, test = toy_problem(256), toy_problem(100, seed=1)
    step = make_train_step(BN_MODEL, dl.softmax_cross_entropy, OPTIMIZER)
    eval_step = make_eval_step(BN_MODEL, dl.softmax_cross_entropy)

    def run(mesh):
        _, params, model_state = BN_MODEL.init(jax.random.key(0), (-1, 16))
        state = TrainState.create(params, OPTIMIZER, jax.random.key(1), model_state=model_state)
        return fit(state, step, data, epochs=2, batch_size=BATCH, eval_step=eval_step, eval_data=test,
                   progress=False, verbose=False, steps_per_call=steps_per_call, mesh=mesh)

    spread, alone = run(devices.make_mesh(eight_devices)), run(None)
    for key in ("train_loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([r[key] for r in spread.history], [r[key] for r in alone.history], rtol=1e-5)
    moved = alone.state.model_state["batchnorm"]["var"]
    assert np.abs(np.asarray(moved) - 1).max() > 0.1  # the statistics moved far from their start
    for got, want in zip(jax.tree.leaves(spread.state.model_state), jax.tree.leaves(alone.state.model_state)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_evaluate_splits_padded_batches_over_the_mesh(eight_devices):
    state, test = fresh_state(), toy_problem(203, seed=2)  # 203 = 6 batches of 32 and a padded one
    eval_step = make_eval_step(MODEL, dl.softmax_cross_entropy)
    alone = evaluate(eval_step, state.params, test, BATCH)
    mesh = devices.make_mesh(eight_devices)
    spread = evaluate(eval_step, devices.put(state.params, devices.replicated(mesh)), test, BATCH, mesh=mesh)
    assert spread == pytest.approx(alone, rel=1e-5)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_a_run_on_8_devices_resumes_on_2(eight_devices, tmp_path):
    data = toy_problem(256)
    step = make_train_step(MODEL, dl.softmax_cross_entropy, OPTIMIZER)
    whole = fit(fresh_state(), step, data, epochs=2, batch_size=BATCH, progress=False)
    first = fit(fresh_state(), step, data, epochs=1, batch_size=BATCH, progress=False, checkpoint_dir=tmp_path,
                mesh=devices.make_mesh(eight_devices, model=2))
    resumed = fit(fresh_state(), step, data, epochs=2, batch_size=BATCH, progress=False, checkpoint_dir=tmp_path,
                  resume=True, mesh=devices.make_mesh(2))
    assert resumed.history[0] == first.history[0]  # epoch 1 was read back, not trained again
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in whole.history],
                                                                        rel=1e-5)


def test_meshes_the_devices_cannot_make_say_why(eight_devices):
    with pytest.raises(devices.MeshError, match="asked for 9 devices, but JAX sees 8"):
        devices.make_mesh(9)
    with pytest.raises(devices.MeshError, match="model axis of 3"):
        devices.make_mesh(8, model=3)
    step = make_train_step(MODEL, dl.softmax_cross_entropy, OPTIMIZER)
    with pytest.raises(devices.MeshError, match="batch size 30 does not split over 8 devices"):
        fit(fresh_state(), step, toy_problem(), epochs=1, batch_size=30, progress=False,
            mesh=devices.make_mesh(8))


def test_experiment_flags_make_the_mesh_or_a_usage_error(eight_devices, capsys):
    parser = experiment.experiment_parser("test", out="runs/x", epochs=1, batch_size=32, scales=True)
    mesh = experiment.device_mesh(parser.parse_args(["--devices", "4", "--model-shards", "2"]), parser)
    assert dict(mesh.shape) == {"data": 2, "model": 2}
    assert "devices: 4 x cpu as data 2 x model 2; compute in float32" in capsys.readouterr().out
    assert experiment.device_mesh(parser.parse_args([]), parser).size == 8  # default: every device
    for flags, message in ((["--devices", "16"], "asked for 16 devices"),
                           (["--batch-size", "12"], "batch size 12 does not split over 8 devices")):
        with pytest.raises(SystemExit) as exit_:
            experiment.device_mesh(parser.parse_args(flags), parser)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--dtype", "float16"])
