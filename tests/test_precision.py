"""jaxdl.precision: bfloat16 compute with float32 master parameters and loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_devices import toy_problem

import jaxdl as dl
from jaxdl.models import cnn, rnn_classifier
from jaxdl.precision import mixed_precision


def test_the_network_sees_bfloat16_and_returns_float32():
    seen = {}

    def apply(params, x, *, key=None, train=False, ids, weights):
        seen.update(params=params["w"].dtype, x=x.dtype, ids=ids.dtype, weights=weights.dtype)
        return x @ params["w"]

    probe = dl.Layer(lambda key, shape: ((*shape[:-1], 2), {"w": jnp.ones((3, 2))}), apply, "probe", "Probe",
                     reads=("ids", "weights"))
    params = {"w": jnp.ones((3, 2))}
    out = mixed_precision(probe, "bfloat16").apply(params, jnp.ones((4, 3)), ids=jnp.arange(4), weights=jnp.ones(4))
    assert seen == {"params": jnp.bfloat16, "x": jnp.bfloat16, "ids": jnp.int32, "weights": jnp.bfloat16}
    assert out.dtype == jnp.float32
    assert mixed_precision(probe, "float32") is probe
    with pytest.raises(ValueError, match="float32, bfloat16; got float16"):
        mixed_precision(probe, "float16")
    with pytest.raises(TypeError, match="takes the model"):
        mixed_precision(apply)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_batch_norm_state_stays_float32_and_moves_as_in_float32():
    model = dl.serial(dl.Dense(8), dl.BatchNorm(momentum=0.9), dl.ReLU(), dl.Dense(2))
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    x = jax.random.normal(jax.random.key(1), (32, 4)) * 3 + 1
    y, moved = mixed_precision(model).apply(params, x, state=state, train=True)
    _, exact = model.apply(params, x, state=state, train=True)
    assert y.dtype == jnp.float32
    for got, want, before in zip(jax.tree.leaves(moved), jax.tree.leaves(exact), jax.tree.leaves(state)):
        assert got.dtype == jnp.float32
        assert np.abs(np.asarray(got - before)).max() > 1e-3  # the statistics moved
        np.testing.assert_allclose(got, want, rtol=0.02, atol=0.02)  # as far as in float32, to bfloat16 precision


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_gradients_reach_float32_params_and_match_float32_to_bfloat16_precision():
    model = dl.serial(dl.Dense(64), dl.ReLU(), dl.Dense(4))
    _, params = model.init(jax.random.key(0), (-1, 16))
    batch = toy_problem(64)

    def loss(params, apply):
        return dl.softmax_cross_entropy(apply(params, batch["x"]), batch["y"])

    exact = jax.jit(jax.grad(loss), static_argnums=1)(params, model.apply)
    low = jax.jit(jax.grad(loss), static_argnums=1)(params, mixed_precision(model).apply)
    for got, want in zip(jax.tree.leaves(low), jax.tree.leaves(exact)):
        assert got.dtype == jnp.float32
        assert np.linalg.norm(got - want) <= 0.02 * np.linalg.norm(want)  # bfloat16 keeps 8 bits of mantissa


@pytest.mark.slow  # training
def test_bfloat16_training_reaches_float32_accuracy():
    """The lecture's lines (vertical or horizontal) learned by a CNN in each dtype from the same start."""
    from test_mnist_cnn import lines_dataset

    model = cnn(2, features=(8, 16), hidden=16, dropout=0.0)
    optimizer = optax.adam(3e-3)
    _, params = model.init(jax.random.key(0), (-1, 12, 12, 1))
    train, test = lines_dataset(512), lines_dataset(512, seed=1)
    accuracies = {}
    for dtype in ("float32", "bfloat16"):
        apply = mixed_precision(model, dtype)
        result = dl.fit(dl.TrainState.create(params, optimizer, jax.random.key(1)),
                        dl.make_train_step(apply, dl.softmax_cross_entropy, optimizer), train,
                        epochs=4, batch_size=32, progress=False)
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(result.state.params))  # master weights
        accuracies[dtype] = dl.evaluate(dl.make_eval_step(apply, dl.softmax_cross_entropy), result.state.params,
                                        test, 64)["accuracy"]
    assert accuracies["float32"] > 0.95
    assert abs(accuracies["bfloat16"] - accuracies["float32"]) <= 0.01


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_recurrent_networks_run_in_bfloat16():
    model = rnn_classifier(50, 2, embed=8, hidden=8, cell="lstm", layers=2, bidirectional=True)
    _, params = model.init(jax.random.key(0), (-1, 7))
    ids = jax.random.randint(jax.random.key(1), (3, 7), 1, 50)
    lengths = jnp.array([7, 3, 1])
    exact = jax.jit(model.apply)(params, ids, lengths=lengths)
    low = jax.jit(mixed_precision(model).apply)(params, ids, lengths=lengths)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, exact, atol=0.05)
