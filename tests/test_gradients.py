"""jaxdl.gradients: the gradient's norm per layer (vanishing with sigmoids) and per example."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.gradients import layer_gradient_norms, per_example_gradient_norms
from jaxdl.layers import ReLU, Sigmoid
from jaxdl.losses import softmax_cross_entropy
from jaxdl.models import mlp
from jaxdl.train import per_example_grads, per_example_norms

DEPTH = 12


def with_loss(case):
    model, params, batch = case
    return model, softmax_cross_entropy, params, batch


def synthetic_case(activation, seed: int = 0):
    """A 12-hidden-layer MLP at initialisation and one batch of random inputs and labels."""
    x_key, y_key, init_key = jax.random.split(jax.random.key(seed), 3)
    batch = {"x": jax.random.normal(x_key, (64, 20)), "y": jax.random.randint(y_key, (64,), 0, 5)}
    model = mlp([32] * DEPTH, 5, activation=activation)
    _, params = model.init(init_key, (-1, 20))
    return model, params, batch


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_sigmoid_gradients_vanish_toward_the_input_and_relu_gradients_do_not():
    sigmoid_norms = layer_gradient_norms(*with_loss(synthetic_case(Sigmoid)))
    relu_norms = layer_gradient_norms(*with_loss(synthetic_case(ReLU)))
    names = [f"hidden{i}" for i in range(1, DEPTH + 1)] + ["output"]
    assert list(sigmoid_norms) == names and list(relu_norms) == names  # layer 1 = nearest the input

    sigmoid, relu = np.array(list(sigmoid_norms.values())), np.array(list(relu_norms.values()))
    assert np.all(np.diff(sigmoid) > 0)  # smaller at every step toward the input
    assert sigmoid[0] / sigmoid[-1] < 1e-5  # about 1e-8 here: each sigmoid layer takes about 4x
    assert np.all((relu > relu[-1] / 10) & (relu < relu[-1] * 10))  # level, within 10x of the output's


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_gradient_norms_equal_a_direct_jax_grad():
    model, params, batch = synthetic_case(Sigmoid, seed=1)
    norms = layer_gradient_norms(model, softmax_cross_entropy, params, batch)

    def loss_of_hidden3(w):
        changed = {**params, "hidden3": {**params["hidden3"], "w": w}}
        return softmax_cross_entropy(model.apply(changed, batch["x"]), batch["y"])

    direct = jnp.sqrt(jnp.sum(jax.grad(loss_of_hidden3)(params["hidden3"]["w"]) ** 2))
    np.testing.assert_allclose(norms["hidden3"], float(direct), rtol=1e-5)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_per_example_norms_over_a_dataset_equal_one_vmap_and_come_with_the_outputs():
    model, params, batch = synthetic_case(ReLU, seed=2)
    data = {"x": batch["x"][:50], "y": batch["y"][:50]}  # 50: two batches of 32, the second padded
    norms, outputs = per_example_gradient_norms(model, softmax_cross_entropy, params, data, batch_size=32)
    grads, _, expected_outputs = per_example_grads(model, softmax_cross_entropy, params, data)
    np.testing.assert_allclose(norms, per_example_norms(grads), rtol=1e-5)
    np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-5, atol=1e-6)
    assert norms.shape == (50,) and outputs.shape == (50, 5) and (norms > 0).all()
