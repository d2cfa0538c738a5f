"""Tests of jaxdl.metrics: accuracy (multi-class and binary) and the confusion matrix."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.metrics import accuracy, confusion_matrix, predict_labels

# argmax per row: 0, 2, 1, 1
LOGITS = jnp.array([[2.0, 1.0, 0.0], [0.1, 0.2, 0.3], [-1.0, 5.0, 4.0], [0.0, 1.0, -1.0]])
LABELS = jnp.array([0, 2, 2, 1])  # the third prediction is wrong

# logit > 0 means class 1: 1, 0, 0 (a logit of exactly 0 is class 0), 1, 0
BINARY_LOGITS = jnp.array([[2.0], [-1.0], [0.0], [0.5], [-3.0]])
BINARY_LABELS = jnp.array([1, 1, 0, 1, 0])  # the second prediction is wrong


@pytest.mark.parametrize(
    "logits, labels, mask, expected",
    [
        (LOGITS, LABELS, None, 0.75),
        (LOGITS, LABELS, jnp.array([1, 1, 0, 1]), 1.0),
        (LOGITS, LABELS, jnp.array([0, 0, 1, 0]), 0.0),
        (LOGITS, LABELS, jnp.array([0.5, 0.0, 0.5, 0.0]), 0.5),
        (BINARY_LOGITS, BINARY_LABELS, None, 0.8),
        (BINARY_LOGITS, BINARY_LABELS, jnp.array([1, 1, 1, 0, 0]), 2 / 3),
        (BINARY_LOGITS, BINARY_LABELS.astype(jnp.float32), None, 0.8),  # 0./1. float targets
        (LOGITS, LABELS, jnp.zeros(4), 0.0),  # all masked: 0, not NaN
    ],
    ids=["multi", "multi-mask", "multi-only-wrong", "multi-weights", "binary", "binary-mask", "binary-float", "empty"],
)
def test_accuracy_by_hand(logits, labels, mask, expected):
    assert float(accuracy(logits, labels, mask)) == pytest.approx(expected)
    assert float(jax.jit(accuracy)(logits, labels, mask)) == pytest.approx(expected)


def test_predict_labels():
    np.testing.assert_array_equal(predict_labels(LOGITS), [0, 2, 1, 1])
    np.testing.assert_array_equal(predict_labels(BINARY_LOGITS), [1, 0, 0, 1, 0])


def test_accuracy_over_sequences():
    logits = jnp.stack([LOGITS, LOGITS[::-1]])  # (2, 4, 3): argmax [[0, 2, 1, 1], [1, 1, 2, 0]]
    labels = jnp.array([[0, 2, 2, 1], [1, 1, 2, 2]])
    assert float(accuracy(logits, labels)) == pytest.approx(6 / 8)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert float(accuracy(logits, labels, mask)) == pytest.approx(5 / 6)


@pytest.mark.parametrize("logits, labels", [(LOGITS, LABELS[:3]), (BINARY_LOGITS, BINARY_LABELS[:, None])])
def test_accuracy_shape_mismatch_raises(logits, labels):
    with pytest.raises(ValueError, match=r"accuracy: logits of shape .* need labels of shape .*, got"):
        accuracy(logits, labels)


def test_confusion_matrix_by_hand():
    labels = jnp.array([0, 0, 1, 2, 2, 2])
    predictions = jnp.array([0, 1, 1, 2, 0, 2])
    expected = [
        [1, 1, 0],  # true 0: once right, once called 1
        [0, 1, 0],  # true 1: right
        [1, 0, 2],  # true 2: once called 0, twice right
    ]
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3), expected)
    masked = confusion_matrix(labels, predictions, 3, mask=jnp.array([1, 1, 1, 1, 0, 1]))
    np.testing.assert_array_equal(masked, [[1, 1, 0], [0, 1, 0], [0, 0, 2]])


def test_confusion_matrix_flattens_sequences_and_ignores_masked_padding():
    labels = jnp.array([[1, 0, -1], [2, 2, -1]])  # -1: padding, masked out
    predictions = jnp.array([[1, 1, 0], [2, 0, 2]])
    mask = labels >= 0
    expected = [[0, 1, 0], [0, 1, 0], [1, 0, 1]]
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3, mask), expected)


@settings(max_examples=20, deadline=None)
@given(
    # A fixed length (the mask varies how many count) compiles the scatter once.
    pairs=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.booleans()), min_size=24, max_size=24),
)
def test_confusion_matrix_counts_pairs(pairs):
    labels, predictions, mask = (np.array(column) for column in zip(*pairs))
    expected = np.zeros((4, 4), int)
    for true, predicted in zip(labels[mask], predictions[mask]):
        expected[true, predicted] += 1
    matrix = confusion_matrix(jnp.asarray(labels), jnp.asarray(predictions), 4, jnp.asarray(mask))
    np.testing.assert_array_equal(matrix, expected)


def test_confusion_matrix_agrees_with_accuracy():
    matrix = confusion_matrix(LABELS, predict_labels(LOGITS), 3)
    assert int(matrix.sum()) == 4
    assert float(jnp.trace(matrix) / matrix.sum()) == pytest.approx(float(accuracy(LOGITS, LABELS)))


def test_confusion_matrix_size_mismatch_raises():
    with pytest.raises(ValueError, match="5 labels but 4 predictions"):
        confusion_matrix(jnp.zeros(5, jnp.int32), jnp.zeros(4, jnp.int32), 3)
