"""The lecture's own examples, and what it computes by hand.

Section 1: the four inputs of a two-input truth table, the lecture's table (the output
copies x1) and XOR; the best any threshold unit does on a table (a grid search); the
gradients of a sigmoid MLP by the chain rule, written out factor by factor.
Section 2: the lecture's 14x14 image of a "1" and its four hand-made 3x3 filters, each a
line of three ones, as a convolution and a max pooling compute them; where a filter's whole
line lies on ink; a few digits of different classes to show them on.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.layers import Conv, MaxPool

# ------------------------------------------------------------------ section 1: the unit
INPUTS = np.array([[0, 0], [1, 1], [1, 0], [0, 1]], np.float32)
"""The four inputs (x1, x2), in the lecture's order."""

TABLES = {
    "lecture": np.array([0, 1, 1, 0], np.float32),  # the lecture's table: the output is x1
    "xor": np.array([0, 0, 1, 1], np.float32),  # 1 when exactly one input is 1
}
"""Two truth tables over :data:`INPUTS`: one a line separates, and XOR, which no line does."""


def best_threshold_unit_accuracy(inputs, targets, *, steps: int = 41, limit: float = 2.0) -> float:
    """The best accuracy of any threshold unit ``x . w > threshold`` whose w1, w2 and threshold
    lie on a grid of ``steps`` values in [-limit, limit] (41**3 = 68,921 units at once)."""
    grid = jnp.linspace(-limit, limit, steps)
    w1, w2, threshold = (a.ravel() for a in jnp.meshgrid(grid, grid, grid))
    outputs = (jnp.asarray(inputs) @ jnp.stack([w1, w2]) > threshold).astype(jnp.float32)  # (rows, units)
    return float((outputs == jnp.asarray(targets)[:, None]).mean(0).max())


def mlp_gradients_by_hand(params: Mapping, x, y) -> dict:
    """The gradients of L(A(B(W X))) by the chain rule, written out factor by factor, for
    :func:`jaxdl.models.mlp` with one hidden layer of sigmoids and one output, and the
    binary cross-entropy: B = sigmoid(x W1 + b1) (N, H), A = sigmoid(B W2 + b2) (N, 1),
    L = mean over N of -[y log A + (1 - y) log(1 - A)]. ``jax.grad`` gives the same."""
    w1, b1 = params["hidden"]["w"], params["hidden"]["b"]
    w2, b2 = params["output"]["w"], params["output"]["b"]
    y = jnp.reshape(y, (-1, 1))
    n = x.shape[0]
    b = jax.nn.sigmoid(x @ w1 + b1)  # forward, keeping what the backward pass needs
    a = jax.nn.sigmoid(b @ w2 + b2)
    dl_da = -(y / a - (1 - y) / (1 - a)) / n  # dL/dA
    dl_dz2 = dl_da * a * (1 - a)  # * dA/dz2 = A (1 - A), the sigmoid's slope
    dl_dw2, dl_db2 = b.T @ dl_dz2, dl_dz2.sum(0)  # * dz2/dW2 = B, dz2/db2 = 1
    dl_db = dl_dz2 @ w2.T  # * dz2/dB = W2
    dl_dz1 = dl_db * b * (1 - b)  # * dB/dz1 = B (1 - B)
    dl_dw1, dl_db1 = x.T @ dl_dz1, dl_dz1.sum(0)  # * dz1/dW1 = X, dz1/db1 = 1
    return {"hidden": {"w": dl_dw1, "b": dl_db1}, "output": {"w": dl_dw2, "b": dl_db2}}


# ------------------------------------------------------------- section 2: filters by hand
ONE = np.array(
    [[int(c) for c in row.split()] for row in """
    0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 1 1 0 0 0 0 0 0
    0 0 0 0 0 0 1 1 0 0 0 0 0 0
    0 0 0 0 0 0 1 1 1 0 0 0 0 0
    0 0 0 0 0 0 0 1 1 0 0 0 0 0
    0 0 0 0 0 0 0 1 1 0 0 0 0 0
    0 0 0 0 0 0 0 1 1 0 0 0 0 0
    0 0 0 0 0 0 0 1 1 1 0 0 0 0
    0 0 0 0 0 0 0 0 1 1 0 0 0 0
    0 0 0 0 0 0 0 0 1 1 0 0 0 0
    0 0 0 0 0 0 0 0 1 1 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0
    """.strip().splitlines()],
    np.float32,
)
"""The lecture's 14x14 image of a "1" (1 = ink)."""

FILTERS = {
    "vertical": np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], np.float32),
    "horizontal": np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], np.float32),
    "diagonal \\": np.eye(3, dtype=np.float32),
    "diagonal /": np.fliplr(np.eye(3, dtype=np.float32)),
}
"""The lecture's four hand-made 3x3 filters, each a line of three ones."""

FULL_MATCH = 2.5
"""A response this high needs all three pixels of a filter's line inked."""


def filter_params() -> dict:
    """The :data:`FILTERS` as a 4-filter ``Conv``'s params: ``w`` (3, 3, 1, 4) in HWIO order, ``b`` zero."""
    w = np.stack(list(FILTERS.values()), axis=-1)[:, :, None, :]
    return {"w": jnp.asarray(w), "b": jnp.zeros(len(FILTERS))}


def filter_responses(maps) -> dict[str, dict]:
    """Per filter, for one image's feature maps (H', W', 4): its largest response and its full
    matches, the positions where its whole line lies on ink (response >= :data:`FULL_MATCH`).

    The maximum alone does not tell the filters apart: on the "1" three of them reach 3, and
    a stroke 2-3 pixels thick holds a line of three in every direction.
    """
    maps = np.asarray(maps)
    return {name: {"max": float(maps[..., c].max()), "full_matches": int((maps[..., c] >= FULL_MATCH).sum())}
            for c, name in enumerate(FILTERS)}


def strongest_filter(responses: Mapping[str, dict]) -> str:
    """The filter with the most full matches (ties: the higher maximum, then the first named)."""
    return max(FILTERS, key=lambda name: (responses[name]["full_matches"], responses[name]["max"]))


def filter_feature_maps(images, padding: str = "VALID") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, 1) through the four :data:`FILTERS` (a ``Conv`` with :func:`filter_params`)
    -> their feature maps (N, H', W', 4) and those max-pooled 2x2 (N, H' // 2, W' // 2, 4).

    ``padding`` "VALID" computes only where the 3x3 window lies wholly on the image (H' = H - 2),
    as one does by hand; "SAME" pads a border of zeros (H' = H). Conv computes a
    cross-correlation (the kernel is not flipped); these filters look the same after a half
    turn, so it equals the convolution.
    """
    conv = Conv(len(FILTERS), 3, padding=padding, name="filters")
    maps = conv.apply(filter_params(), jnp.asarray(images, jnp.float32))
    return np.asarray(maps), np.asarray(MaxPool(2).apply({}, maps))


def pick_digits(labels, n: int, seed: int) -> list[int]:
    """Indices into ``labels`` (N,) of the first example of ``n`` different classes; ``seed``
    chooses the classes (a seeded permutation of those present, the first ``n``, in ascending
    order). A ValueError when ``labels`` hold fewer than ``n`` classes."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if n > len(classes):
        raise ValueError(f"asked for {n} digits of different classes, but the labels hold only {len(classes)} classes")
    chosen = np.sort(np.asarray(jax.random.permutation(jax.random.key(seed), classes))[:n])
    return [int(np.argmax(labels == c)) for c in chosen]
