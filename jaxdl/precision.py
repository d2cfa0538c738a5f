"""Mixed precision: compute in a low-precision dtype, keep parameters and the loss in float32.

``mixed_precision(model.apply, "bfloat16")`` is an ``apply`` like the model's that
casts the float32 parameters and floating inputs to bfloat16, runs the network,
and returns float32 outputs. The gradient flows back through the casts, so the
optimizer updates float32 "master" parameters; the loss (softmax, log) is computed
from float32 outputs. bfloat16 has float32's range, so no loss scaling is needed.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

DTYPES = ("float32", "bfloat16")


def _cast_floats(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree)


def mixed_precision(apply_fn: Callable, dtype: str | jnp.dtype = "bfloat16") -> Callable:
    """``apply_fn`` computing in ``dtype``: ``apply(params, x, **kwargs)`` casts the floating
    arrays of ``params`` and ``x`` to ``dtype`` and the floating outputs back to float32.

    ``dtype`` "float32" returns ``apply_fn`` itself. (float16 is not offered: its narrow
    range needs loss scaling, which this does not do.)
    """
    dtype = jnp.dtype(dtype)
    if dtype.name not in DTYPES:
        raise ValueError(f"compute dtype must be one of {', '.join(DTYPES)}; got {dtype.name}")
    if dtype == jnp.float32:
        return apply_fn

    def apply(params, x, **kwargs):
        outputs = apply_fn(_cast_floats(params, dtype), _cast_floats(x, dtype), **kwargs)
        return _cast_floats(outputs, jnp.float32)

    return apply
