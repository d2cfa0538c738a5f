"""Image augmentation on the device: one affine resampling per image, inside the jitted step.

``affine_transform`` rotates, scales and moves a batch of NHWC images about their centres
(bilinear interpolation, zeros outside); ``RandomAffine`` draws those parameters per image
from a key while training and is the identity at evaluation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.core import Layer
from jaxdl.layers import _augmentation, _check_rank


def affine_transform(images: jax.Array, angle: jax.Array, scale: jax.Array, shift: jax.Array) -> jax.Array:
    """Rotate each image by ``angle`` degrees (counter-clockwise as displayed, rows downward),
    scale it by ``scale`` about its centre, then move it by ``shift`` pixels (rows, columns).

    Args:
      images: (N, H, W, C).
      angle, scale: (N,) per image; ``0`` and ``1`` leave an image as it is.
      shift: (N, 2) per image, in pixels, down and right; may be fractional.

    Returns:
      (N, H, W, C) in the images' dtype: each output pixel is the bilinear interpolation of
      the input at the point the transform carries onto it; points outside the input read 0.
    """
    _check_rank("affine_transform", images.shape, 4, "(N, H, W, C)")
    n, h, w, _ = images.shape
    if jnp.shape(angle) != (n,) or jnp.shape(scale) != (n,) or jnp.shape(shift) != (n, 2):
        raise ValueError(f"affine_transform of {n} images takes angle ({n},), scale ({n},) and shift ({n}, 2), got "
                         f"{jnp.shape(angle)}, {jnp.shape(scale)} and {jnp.shape(shift)}")
    centre_y, centre_x = (h - 1) / 2, (w - 1) / 2
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    # Each output pixel relative to the centre, the shift undone: (N, H, W)
    y = rows - centre_y - shift[:, 0, None, None]
    x = cols - centre_x - shift[:, 1, None, None]
    theta = jnp.deg2rad(angle)[:, None, None]
    cos, sin, zoom = jnp.cos(theta), jnp.sin(theta), scale[:, None, None]
    # The forward map turns (x, y) into (x cos + y sin, -x sin + y cos) * scale; its inverse:
    source_x = (x * cos - y * sin) / zoom + centre_x
    source_y = (x * sin + y * cos) / zoom + centre_y
    return _bilinear(images, source_y, source_x)


def _bilinear(images: jax.Array, y: jax.Array, x: jax.Array) -> jax.Array:
    """``images`` (N, H, W, C) read at the points (y, x), each (N, H', W'), zero outside."""
    n, h, w, _ = images.shape
    top, left = jnp.floor(y), jnp.floor(x)
    dy, dx = (y - top)[..., None], (x - left)[..., None]
    batch = jnp.arange(n)[:, None, None]

    def read(row, col):
        inside = ((row >= 0) & (row < h) & (col >= 0) & (col < w))[..., None]
        pixels = images[batch, jnp.clip(row, 0, h - 1).astype(jnp.int32), jnp.clip(col, 0, w - 1).astype(jnp.int32)]
        return jnp.where(inside, pixels, 0)

    out = ((1 - dy) * ((1 - dx) * read(top, left) + dx * read(top, left + 1))
           + dy * ((1 - dx) * read(top + 1, left) + dx * read(top + 1, left + 1)))
    return out.astype(images.dtype)


def RandomAffine(rotation: float = 0.0, zoom: float = 0.0, shift: float = 0.0, *,
                 name: str = "randomaffine") -> Layer:
    """Data augmentation: while training, rotate each NHWC image by an angle drawn uniformly
    from [-rotation, rotation] degrees, scale it by a factor from [1 - zoom, 1 + zoom] and
    move it by up to ``shift`` pixels along each axis, in one bilinear resampling
    (:func:`affine_transform`). At evaluation it is the identity. Training needs a ``key``.
    """
    for what, value in (("rotation", rotation), ("zoom", zoom), ("shift", shift)):
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"RandomAffine {what} must be a number >= 0, got {value!r}")
    if zoom >= 1:
        raise ValueError(f"RandomAffine zoom must be below 1 (a scale in [1 - zoom, 1 + zoom]), got {zoom!r}")

    def transform(x, key):
        n = x.shape[0]
        angle_key, scale_key, shift_key = jax.random.split(key, 3)
        angle = jax.random.uniform(angle_key, (n,), minval=-rotation, maxval=rotation)
        scale = jax.random.uniform(scale_key, (n,), minval=1 - zoom, maxval=1 + zoom)
        moves = jax.random.uniform(shift_key, (n, 2), minval=-shift, maxval=shift)
        return affine_transform(x, angle, scale, moves)

    return _augmentation("RandomAffine", name, transform, active=bool(rotation or zoom or shift))
