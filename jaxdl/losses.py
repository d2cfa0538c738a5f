"""Loss functions: each maps (predictions, targets, mask=None) to a scalar mean.

``mask`` is optional: a 0/1 mask or non-negative weights that broadcast to the
per-example loss (shape ``targets.shape``, e.g. (B,) or (B, T) for sequences).
The result is ``sum(loss * mask) / sum(mask)``: padded positions count for
nothing, and a batch whose mask is all zeros gives 0, not NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def weighted_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``values``, weighted by ``mask`` (broadcast to its shape) when given.

    Masked-out values are dropped, not multiplied by 0: a NaN there (say, the loss
    of an out-of-range padding label) must not turn the mean into NaN.
    """
    if mask is None:
        return values.mean()
    mask = jnp.broadcast_to(jnp.asarray(mask, values.dtype), values.shape)
    return jnp.where(mask != 0, values * mask, 0).sum() / jnp.maximum(mask.sum(), 1e-12)


def _check_shapes(name: str, predictions, targets, expected: tuple) -> None:
    if tuple(targets.shape) != tuple(expected):
        raise ValueError(
            f"{name}: predictions of shape {tuple(predictions.shape)} need targets of shape "
            f"{tuple(expected)}, got {tuple(targets.shape)}"
        )


def _binary_targets(name: str, logits, targets):
    """Accept logits (..., 1) with targets (...): squeeze the unit axis."""
    if logits.ndim == targets.ndim + 1 and logits.shape[-1] == 1:
        logits = logits[..., 0]
    _check_shapes(name, logits, targets, logits.shape)
    return logits, targets


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Cross-entropy of integer ``labels`` (...) under ``softmax(logits)`` (..., classes)."""
    _check_shapes("softmax_cross_entropy", logits, labels, logits.shape[:-1])
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"softmax_cross_entropy: labels must be integer class ids, got dtype {labels.dtype}")
    return weighted_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels), mask)


def binary_cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Cross-entropy of 0/1 ``targets`` under ``sigmoid(logits)``, computed stably from logits.

    ``logits`` may carry a trailing unit axis: (..., 1) with targets (...).
    """
    logits, targets = _binary_targets("binary_cross_entropy", logits, targets)
    return weighted_mean(optax.sigmoid_binary_cross_entropy(logits, targets.astype(logits.dtype)), mask)


def mean_squared_error(predictions: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``(predictions - targets) ** 2`` over every element."""
    _check_shapes("mean_squared_error", predictions, targets, predictions.shape)
    errors = jnp.square(predictions - targets.astype(predictions.dtype))
    if mask is not None and jnp.ndim(mask) < errors.ndim:
        mask = jnp.reshape(mask, jnp.shape(mask) + (1,) * (errors.ndim - jnp.ndim(mask)))
    return weighted_mean(errors, mask)
