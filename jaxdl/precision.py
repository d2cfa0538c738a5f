"""Mixed precision: compute in a low-precision dtype, keep parameters and the loss in float32.

``mixed_precision(model, "bfloat16")`` is the model computing in bfloat16: its
float32 parameters and floating inputs (and context) are cast to bfloat16, the
network runs, and its outputs come back as float32. The gradient flows back through
the casts, so the optimizer updates float32 "master" parameters; the loss (softmax,
log) is computed from float32 outputs. bfloat16 has float32's range, so no loss
scaling is needed. A model's state (BatchNorm's running statistics) stays float32:
its small updates would vanish in bfloat16's 8 bits of precision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.core import Layer

DTYPES = ("float32", "bfloat16")


def _cast_floats(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree)


def mixed_precision(model: Layer, dtype: str | jnp.dtype = "bfloat16") -> Layer:
    """``model`` computing in ``dtype``: the same layer, whose ``apply`` casts the floating
    arrays of the params, the input and the context to ``dtype`` and the outputs back to
    float32; the state is passed as it is.

    ``dtype`` "float32" returns ``model`` itself. (float16 is not offered: its narrow
    range needs loss scaling, which this does not do.)
    """
    if not isinstance(model, Layer):
        raise TypeError(f"mixed_precision takes the model (a jaxdl Layer), got {model!r:.80}")
    dtype = jnp.dtype(dtype)
    if dtype.name not in DTYPES:
        raise ValueError(f"compute dtype must be one of {', '.join(DTYPES)}; got {dtype.name}")
    if dtype == jnp.float32:
        return model

    def apply_fn(params, x, *, key=None, train=False, **context):
        state = {"state": context.pop("state")} if model.stateful else {}
        outputs = model.apply_fn(_cast_floats(params, dtype), _cast_floats(x, dtype), key=key, train=train,
                                 **state, **_cast_floats(context, dtype))
        return _cast_floats(outputs, jnp.float32)

    return model._replace(apply_fn=apply_fn)
