"""Metrics: accuracy and the confusion matrix.

Scalar metrics share the losses' signature, ``(logits, labels, mask=None)``,
so the training loop treats them alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.losses import weighted_mean


def predict_labels(logits: jax.Array) -> jax.Array:
    """Class ids from logits: argmax over classes, or ``logit > 0`` for a single unit (..., 1)."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1)


def accuracy(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Fraction of correct predictions; logits (..., classes) or (..., 1) for binary."""
    predictions = predict_labels(logits)
    if predictions.shape != labels.shape:
        raise ValueError(
            f"accuracy: logits of shape {tuple(logits.shape)} need labels of shape "
            f"{tuple(predictions.shape)}, got {tuple(labels.shape)}"
        )
    return weighted_mean((predictions == labels.astype(predictions.dtype)).astype(jnp.float32), mask)


def confusion_matrix(
    labels: jax.Array, predictions: jax.Array, num_classes: int, mask: jax.Array | None = None
) -> jax.Array:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    labels, predictions = jnp.ravel(labels), jnp.ravel(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"confusion_matrix: {labels.size} labels but {predictions.size} predictions")
    weights = jnp.ones_like(labels) if mask is None else jnp.ravel(mask).astype(labels.dtype)
    flat = labels * num_classes + predictions
    return jnp.zeros(num_classes * num_classes, jnp.int32).at[flat].add(weights).reshape(num_classes, num_classes)
