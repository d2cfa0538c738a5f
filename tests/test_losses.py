"""Tests of jaxdl.losses against hand and NumPy computations, with masks and shape errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.losses import binary_cross_entropy, mean_squared_error, softmax_cross_entropy, weighted_mean

PROPERTY = settings(max_examples=20, deadline=None)


def normal(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def reference_cross_entropy(logits, labels):
    """Per-example -log softmax(logits)[label], in NumPy."""
    return -np.take_along_axis(log_softmax(logits), labels[..., None], -1)[..., 0]


def reference_bce(logits, targets):
    """Per-example -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], in NumPy."""
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    return -(targets * np.log(p) + (1 - targets) * np.log(1 - p))


def assert_close(actual, expected, tol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


# ------------------------------------------------------------ softmax_cross_entropy
@pytest.mark.parametrize("batch", [(6,), (3, 4)], ids=["(B,)", "(B,T)"])
def test_softmax_cross_entropy_is_minus_log_softmax_at_the_label(batch):
    logits = normal((*batch, 5))
    labels = np.random.default_rng(1).integers(0, 5, batch)
    loss = softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
    assert loss.shape == ()
    assert_close(loss, reference_cross_entropy(logits, labels).mean())


def test_softmax_cross_entropy_by_hand():
    # Uniform logits over 4 classes: -log(1/4) whatever the label.
    assert_close(softmax_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])), np.log(4.0))
    # Logits log(0.1), log(0.2), log(0.7): loss -log(0.7) for label 2, -log(0.1) for label 0.
    logits = jnp.log(jnp.array([[0.1, 0.2, 0.7], [0.1, 0.2, 0.7]]))
    assert_close(softmax_cross_entropy(logits, jnp.array([2, 0])), -(np.log(0.7) + np.log(0.1)) / 2)


def test_softmax_cross_entropy_weights_examples():
    logits, labels = normal((4, 3)), np.array([0, 1, 2, 1])
    weights = np.array([1.0, 0.0, 2.0, 0.5], np.float32)
    per_example = reference_cross_entropy(logits, labels)
    loss = softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights))
    assert_close(loss, (per_example * weights).sum() / weights.sum())


@PROPERTY
@given(mask=st.lists(st.booleans(), min_size=8, max_size=8).filter(any), seed=st.integers(0, 1000))
def test_masked_out_elements_do_not_change_the_loss(mask, seed):
    mask = np.array(mask).reshape(2, 4)
    logits, labels = normal((2, 4, 3), seed), np.random.default_rng(seed).integers(0, 3, (2, 4))
    loss = softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
    # Only the unmasked elements count ...
    assert_close(loss, reference_cross_entropy(logits[mask], labels[mask]).mean())
    # ... so garbage at masked positions (huge logits, a padding label out of range) changes nothing.
    garbage_logits = jnp.asarray(np.where(mask[..., None], logits, 1e4))
    garbage_labels = jnp.asarray(np.where(mask, labels, 99))
    assert_close(softmax_cross_entropy(garbage_logits, garbage_labels, jnp.asarray(mask)), loss)


@pytest.mark.parametrize(
    "loss_fn, predictions, targets",
    [
        (softmax_cross_entropy, normal((3, 4)), np.array([0, 1, 99])),
        (binary_cross_entropy, normal((3, 1)), np.array([0.0, 1.0, 1.0])),
        (mean_squared_error, normal((3, 2)), normal((3, 2), seed=1)),
    ],
)
def test_all_zero_mask_gives_zero_loss_and_zero_gradient(loss_fn, predictions, targets):
    mask = jnp.zeros(3)
    loss, grad = jax.value_and_grad(loss_fn)(jnp.asarray(predictions), jnp.asarray(targets), mask)
    assert float(loss) == 0.0
    np.testing.assert_array_equal(grad, np.zeros_like(predictions))


def test_weighted_mean():
    values = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    assert_close(weighted_mean(values), 2.5)
    assert_close(weighted_mean(values, jnp.array([1.0, 0.0])), 2.0)  # broadcasts over rows: (1 + 3) / 2
    assert_close(weighted_mean(values, jnp.array([[0.0, 1.0], [3.0, 0.0]])), (2.0 + 9.0) / 4)


def test_softmax_cross_entropy_rejects_float_labels():
    with pytest.raises(ValueError, match="labels must be integer class ids, got dtype float32"):
        softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0.0, 1.0]))


# ------------------------------------------------------------- binary_cross_entropy
@pytest.mark.parametrize("logits_shape", [(6,), (6, 1)], ids=["(N,)", "(N,1)"])
def test_binary_cross_entropy_matches_the_formula(logits_shape):
    logits = 2 * normal(logits_shape)
    targets = np.array([0, 1, 1, 0, 1, 0], np.float32)
    expected = reference_bce(logits.reshape(6), targets).mean()
    assert_close(binary_cross_entropy(jnp.asarray(logits), jnp.asarray(targets)), expected)


def test_binary_cross_entropy_accepts_int_targets_and_a_mask():
    logits, targets, mask = normal((4, 1)), np.array([1, 0, 1, 1]), np.array([1, 1, 0, 1])
    per_example = reference_bce(logits[:, 0], targets)
    loss = binary_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    assert_close(loss, per_example[mask == 1].mean())


def test_binary_cross_entropy_is_stable_for_large_logits():
    # log(1 - sigmoid(100)) underflows in a naive formula; the loss is 100 for a confident mistake.
    loss = binary_cross_entropy(jnp.array([100.0, -100.0, 100.0]), jnp.array([0.0, 1.0, 1.0]))
    assert_close(loss, 200.0 / 3)


# --------------------------------------------------------------- mean_squared_error
PREDICTIONS = jnp.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
TARGETS = jnp.array([[1.0, 0.0], [0.0, 4.0], [1.0, 1.0]])  # squared errors [[0, 4], [9, 0], [1, 1]]


@pytest.mark.parametrize(
    "mask, expected",
    [
        (None, 15 / 6),
        (jnp.array([1.0, 0.0, 1.0]), (0 + 4 + 1 + 1) / 4),  # (B,) mask on (B, D)
        (jnp.array([0.0, 1.0, 0.0]), 9 / 2),
        (jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]), 9 / 3),  # (B, D) mask
    ],
)
def test_mean_squared_error_by_hand(mask, expected):
    assert_close(mean_squared_error(PREDICTIONS, TARGETS, mask), expected)


def test_mean_squared_error_casts_int_targets():
    assert_close(mean_squared_error(jnp.array([0.5, 1.0]), jnp.array([1, 1])), 0.125)


# ---------------------------------------------------------------------- shape errors
@pytest.mark.parametrize(
    "loss_fn, predictions, targets, shapes",
    [
        (softmax_cross_entropy, jnp.zeros((4, 3)), jnp.zeros(3, jnp.int32), ["(4, 3)", "(4,)", "(3,)"]),
        (softmax_cross_entropy, jnp.zeros((4, 3)), jnp.zeros((4, 3), jnp.int32), ["(4, 3)", "(4,)"]),
        (binary_cross_entropy, jnp.zeros((4, 2)), jnp.zeros(4), ["(4, 2)", "(4,)"]),
        (binary_cross_entropy, jnp.zeros((4, 1)), jnp.zeros(5), ["(4,)", "(5,)"]),
        (mean_squared_error, jnp.zeros((4, 2)), jnp.zeros((4, 3)), ["(4, 2)", "(4, 3)"]),
        (mean_squared_error, jnp.zeros((4, 2)), jnp.zeros(4), ["(4, 2)", "(4,)"]),
    ],
)
def test_shape_mismatch_raises_with_the_shapes(loss_fn, predictions, targets, shapes):
    with pytest.raises(ValueError) as error:
        loss_fn(predictions, targets)
    assert str(error.value).startswith(loss_fn.__name__)
    for shape in shapes:
        assert shape in str(error.value)


@pytest.mark.parametrize(
    "loss_fn, predictions, targets",
    [
        (softmax_cross_entropy, normal((5, 3)), np.array([0, 2, 1, 1, 0])),
        (binary_cross_entropy, normal((5, 1)), np.array([0.0, 1.0, 1.0, 0.0, 1.0])),
        (mean_squared_error, normal((5, 2)), normal((5, 2), seed=1)),
    ],
)
def test_losses_work_under_jit(loss_fn, predictions, targets):
    args = (jnp.asarray(predictions), jnp.asarray(targets), jnp.array([1.0, 1.0, 0.0, 1.0, 0.0]))
    assert_close(jax.jit(loss_fn)(*args), loss_fn(*args))
