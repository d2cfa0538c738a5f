"""The lecture's section 1 by hand: its truth tables, the best threshold unit, and the chain rule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.lecture import INPUTS, TABLES, best_threshold_unit_accuracy, mlp_gradients_by_hand
from jaxdl.losses import binary_cross_entropy
from jaxdl.models import mlp
from jaxdl.train import train_seeds
from tiers import unit_tier


def test_tables_are_the_lectures():
    np.testing.assert_array_equal(TABLES["lecture"], INPUTS[:, 0])  # the output copies x1
    np.testing.assert_array_equal(TABLES["xor"], INPUTS[:, 0] != INPUTS[:, 1])


def test_no_threshold_unit_computes_xor_but_one_computes_the_lecture_table():
    assert best_threshold_unit_accuracy(INPUTS, TABLES["lecture"]) == 1.0
    assert best_threshold_unit_accuracy(INPUTS, TABLES["xor"]) == 0.75  # 3 of the 4 rows at best
    assert best_threshold_unit_accuracy(INPUTS, 1 - TABLES["xor"]) == 0.75  # XNOR neither
    assert best_threshold_unit_accuracy(INPUTS, np.array([0, 1, 0, 0], np.float32)) == 1.0  # AND


def test_best_threshold_unit_accuracy_is_a_brute_force_over_its_grid():
    # on a grid with no unit that separates the rows (every weight and threshold 0), all outputs are 0
    assert best_threshold_unit_accuracy(INPUTS, TABLES["lecture"], steps=1, limit=0.0) == 0.5


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
@pytest.mark.parametrize("hidden", unit_tier({"2": 2, "3": 3, "4": 4}, keep="2"))
def test_mlp_gradients_by_hand_equal_jax_grad(hidden):
    model = mlp([hidden], 1)
    _, params = model.init(jax.random.key(hidden), (-1, 2))
    params = jax.tree.map(lambda p: 3.0 * p, params)  # larger weights: less trivial gradients
    x, y = jnp.asarray(INPUTS), jnp.asarray(TABLES["xor"])
    by_hand = mlp_gradients_by_hand(params, x, y)
    by_jax = jax.grad(lambda p: binary_cross_entropy(model.apply(p, x), y))(params)
    assert jax.tree.structure(by_hand) == jax.tree.structure(by_jax)
    for hand, auto in zip(jax.tree.leaves(by_hand), jax.tree.leaves(by_jax)):
        assert hand.shape == auto.shape
        np.testing.assert_allclose(hand, auto, atol=1e-6, rtol=0)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(by_jax)) > 1e-3


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_train_seeds_trains_each_key_as_one_network_would_be():
    """Each vmapped network equals the same network trained alone, and seeds differ."""
    model, optimizer = mlp([3], 1), optax.sgd(2.0)
    batch = {"x": jnp.asarray(INPUTS), "y": jnp.asarray(TABLES["xor"])}
    keys = jax.vmap(jax.random.key)(jnp.arange(3))
    final, losses = train_seeds(model, binary_cross_entropy, optimizer, batch, keys, steps=300)
    assert losses.shape == (3, 300) and final["loss"].shape == final["accuracy"].shape == (3,)
    assert len(set(np.round(np.asarray(losses[:, 0]), 6))) == 3  # three different starts

    init_key, _ = jax.random.split(jax.random.key(1))
    _, params = model.init(init_key, (-1, 2))
    loss_of = lambda p: binary_cross_entropy(model.apply(p, batch["x"]), batch["y"])
    state = optimizer.init(params)
    for _ in range(300):
        updates, state = optimizer.update(jax.grad(loss_of)(params), state)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(final["loss"][1], loss_of(params), rtol=1e-4)
    assert losses[1, -1] < losses[1, 0]
