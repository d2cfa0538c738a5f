"""Building blocks: layers as pure ``(init, apply)`` pairs (the contract: :mod:`jaxdl.core`).

Dense, convolution and pooling layers, dropout and augmentation, embeddings,
normalisation (BatchNorm keeps running statistics as state), activations, and the
fan-out / fan-in layers that :func:`jaxdl.core.parallel` branches between.
Parameters are plain dicts of arrays with readable names (``{"w", "b"}``).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.nn import initializers

from jaxdl.core import Layer, LayerError, apply_child, composite, init_child, raise_if

Initializer = Callable[..., jax.Array]  # jax.nn.initializers signature


def _fmt(shape) -> str:
    return "(" + ", ".join("..." if d is Ellipsis else str(d) for d in shape) + ")"


def _check_rank(kind: str, shape, rank: int, layout: str) -> None:
    if len(shape) != rank:
        raise LayerError(kind, f"expected a {rank}-D input {layout}, got shape {_fmt(shape)}")


def _check_last_dim(kind: str, shape, size: int) -> None:
    if len(shape) < 1 or shape[-1] != size:
        raise LayerError(
            kind, f"expected input of shape {_fmt((Ellipsis, size))}, got {_fmt(shape)}"
        )


def _check_float(kind: str, x) -> None:
    if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
        raise LayerError(
            kind,
            f"expected a floating-point input, got dtype {jnp.asarray(x).dtype}; "
            "convert it with x.astype(jnp.float32) (token ids go to an Embedding)",
        )


def _pair(value, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return pair


def _padding(value: str) -> str:
    if value not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {value!r}")
    return value


def _spatial_size(size: int, window: int, stride: int, padding: str) -> int:
    if size < 0:
        return -1
    if padding == "SAME":
        return -(-size // stride)
    return max(0, -(-(size - window + 1) // stride))


def _positive(value, what: str) -> int:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


# --------------------------------------------------------------------------- layers
def Dense(
    features: int,
    *,
    w_init: Initializer = initializers.lecun_normal(),
    b_init: Initializer = initializers.zeros,
    bias: bool = True,
    name: str = "dense",
) -> Layer:
    """Affine map of the last axis: ``y = x @ w + b``; (..., in) -> (..., features).

    Params: ``w`` (in, features), ``b`` (features,) unless ``bias=False`` (before a
    BatchNorm, which subtracts any bias again).
    """
    _positive(features, "Dense features")

    def init(key, input_shape):
        if len(input_shape) < 1 or input_shape[-1] <= 0:
            raise LayerError("Dense", f"needs a known last axis, got input shape {_fmt(input_shape)}")
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (input_shape[-1], features))}
        if bias:
            params["b"] = b_init(b_key, (features,))
        return (*input_shape[:-1], features), params

    def apply(params, x, *, key=None, train=False):
        _check_last_dim("Dense", x.shape, params["w"].shape[0])
        _check_float("Dense", x)
        y = x @ params["w"]
        return y + params["b"] if bias else y

    return Layer(init, apply, name, "Dense")


def Conv(
    features: int,
    kernel_size: int | Sequence[int] = 3,
    *,
    strides: int | Sequence[int] = 1,
    padding: str = "SAME",
    w_init: Initializer = initializers.lecun_normal(),
    b_init: Initializer = initializers.zeros,
    bias: bool = True,
    name: str = "conv",
) -> Layer:
    """2-D convolution over NHWC images: (N, H, W, C) -> (N, H', W', features).

    ``padding`` is ``"SAME"`` (H' = ceil(H / stride)) or ``"VALID"``.
    Params: ``w`` (kh, kw, C, features), ``b`` (features,) unless ``bias=False`` (before
    a BatchNorm, which subtracts any bias again).
    """
    _positive(features, "Conv features")
    kernel = _pair(kernel_size, "Conv kernel_size")
    stride = _pair(strides, "Conv strides")
    padding = _padding(padding)

    def out_shape(shape):
        _check_rank("Conv", shape, 4, "(N, H, W, C)")
        h, w = (_spatial_size(shape[i + 1], kernel[i], stride[i], padding) for i in range(2))
        if h == 0 or w == 0:
            raise LayerError("Conv", f"kernel {kernel} does not fit a {shape[1]}x{shape[2]} image with VALID padding")
        return (shape[0], h, w, features)

    def init(key, input_shape):
        output_shape = out_shape(input_shape)
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (*kernel, input_shape[3], features))}
        if bias:
            params["b"] = b_init(b_key, (features,))
        return output_shape, params

    def apply(params, x, *, key=None, train=False):
        out_shape(x.shape)
        _check_last_dim("Conv", x.shape, params["w"].shape[2])
        _check_float("Conv", x)
        y = lax.conv_general_dilated(
            x, params["w"], stride, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + params["b"] if bias else y

    return Layer(init, apply, name, "Conv")


def _pool(kind: str, reduce: Callable, block_reduce: Callable, window, strides, padding, name: str) -> Layer:
    window = _pair(window, f"{kind} window")
    stride = window if strides is None else _pair(strides, f"{kind} strides")
    padding = _padding(padding)

    def out_shape(shape):
        _check_rank(kind, shape, 4, "(N, H, W, C)")
        h, w = (_spatial_size(shape[i + 1], window[i], stride[i], padding) for i in range(2))
        if h == 0 or w == 0:
            raise LayerError(kind, f"window {window} does not fit a {shape[1]}x{shape[2]} image")
        return (shape[0], h, w, shape[3])

    def init(key, input_shape):
        return out_shape(input_shape), {}

    def apply(params, x, *, key=None, train=False):
        _, h, w, _ = out_shape(x.shape)
        if padding == "VALID" and stride == window:
            # Non-overlapping windows: reduce blocks of a reshape. Same result, and its
            # gradient is elementwise: on CPUs about 2x faster to train than the
            # select-and-scatter that reduce_window's max differentiates into.
            (kh, kw), (n, _, _, c) = window, x.shape
            blocks = x[:, : h * kh, : w * kw].reshape(n, h, kh, w, kw, c)
            return block_reduce(blocks, axis=(2, 4))
        return reduce(x, (1, *window, 1), (1, *stride, 1), padding)

    return Layer(init, apply, name, kind)


def _max_reduce(x, window, strides, padding):
    return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, padding)


def _mean_reduce(x, window, strides, padding):
    return lax.reduce_window(x, 0.0, lax.add, window, strides, padding) / math.prod(window)


def MaxPool(window=2, strides=None, padding: str = "VALID", *, name: str = "maxpool") -> Layer:
    """Max over ``window`` patches of NHWC images (strides default to the window)."""
    return _pool("MaxPool", _max_reduce, jnp.max, window, strides, padding, name)


def AvgPool(window=2, strides=None, padding: str = "VALID", *, name: str = "avgpool") -> Layer:
    """Mean over ``window`` patches of NHWC images (strides default to the window).

    With SAME padding, padded cells count as zeros (as in flax's ``avg_pool``).
    """
    return _pool("AvgPool", _mean_reduce, jnp.mean, window, strides, padding, name)


def Flatten(*, name: str = "flatten") -> Layer:
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def init(key, input_shape):
        if len(input_shape) < 2:
            raise LayerError("Flatten", f"expected a batch of arrays (N, ...), got shape {_fmt(input_shape)}")
        return (input_shape[0], math.prod(input_shape[1:])), {}

    def apply(params, x, *, key=None, train=False):
        if x.ndim < 2:
            raise LayerError("Flatten", f"expected a batch of arrays (N, ...), got shape {_fmt(x.shape)}")
        return x.reshape(x.shape[0], -1)

    return Layer(init, apply, name, "Flatten")


def Dropout(rate: float, *, name: str = "dropout") -> Layer:
    """Zero each element with probability ``rate`` while training; scale the rest by 1/(1-rate).

    At evaluation (``train=False``) it is the identity. Training needs a ``key``.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"Dropout rate is the probability of dropping, in [0, 1); got {rate!r}")

    def init(key, input_shape):
        return tuple(input_shape), {}

    def apply(params, x, *, key=None, train=False):
        if not train or rate == 0.0:
            return x
        if key is None:
            raise LayerError("Dropout", "train=True needs a random key: call apply(params, x, key=key, train=True)")
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))

    return Layer(init, apply, name, "Dropout")


def WordDropout(rate: float, *, unk_id: int = 1, padding_id: int | None = 0, name: str = "worddropout") -> Layer:
    """Replace each token id by ``unk_id`` with probability ``rate`` while training (ids (...) -> (...)).

    The network learns not to lean on any single word and meets ``unk_id`` in
    training as it will for unknown words at test time. ``padding_id`` stays as it
    is. At evaluation (``train=False``) it is the identity. Training needs a ``key``.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"WordDropout rate is the probability of dropping, in [0, 1); got {rate!r}")

    def init(key, input_shape):
        return tuple(input_shape), {}

    def apply(params, ids, *, key=None, train=False):
        if not train or rate == 0.0:
            return ids
        if key is None:
            raise LayerError("WordDropout", "train=True needs a random key: call apply(params, ids, key=key, train=True)")
        drop = jax.random.bernoulli(key, rate, ids.shape)
        if padding_id is not None:
            drop &= ids != padding_id
        return jnp.where(drop, jnp.asarray(unk_id, ids.dtype), ids)

    return Layer(init, apply, name, "WordDropout")


def _augmentation(kind: str, name: str, transform: Callable, active: bool) -> Layer:
    """An image augmentation layer: while training (and ``active``), ``transform(x, key)`` of the
    NHWC images ``x``; at evaluation the identity. Training needs a ``key``."""

    def init(key, input_shape):
        _check_rank(kind, input_shape, 4, "(N, H, W, C)")
        return tuple(input_shape), {}

    def apply(params, x, *, key=None, train=False):
        _check_rank(kind, x.shape, 4, "(N, H, W, C)")
        if not train or not active:
            return x
        if key is None:
            raise LayerError(kind, "train=True needs a random key: call apply(params, x, key=key, train=True)")
        return transform(x, key)

    return Layer(init, apply, name, kind)


def RandomShift(max_shift: int, *, name: str = "randomshift") -> Layer:
    """Data augmentation: while training, move each NHWC image by up to ``max_shift``
    pixels along each axis (uniformly, zeros shifted in). At evaluation it is the
    identity. Training needs a ``key``.
    """
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"RandomShift max_shift must be an int >= 0, got {max_shift!r}")

    def shift(x, key):
        n, h, w, c = x.shape
        m = max_shift
        padded = jnp.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
        corners = jax.random.randint(key, (n, 2), 0, 2 * m + 1)
        crop = lambda image, corner: lax.dynamic_slice(image, (corner[0], corner[1], 0), (h, w, c))  # noqa: E731
        return jax.vmap(crop)(padded, corners)

    return _augmentation("RandomShift", name, shift, active=max_shift > 0)


def Embedding(
    vocab_size: int,
    features: int,
    *,
    init_fn: Initializer = initializers.normal(stddev=1.0),
    padding_id: int | None = None,
    name: str = "embedding",
) -> Layer:
    """Look up integer ids in a table: (...) int -> (..., features).

    With ``padding_id``, that id embeds to zeros: its row starts at zero and
    never gets a gradient (like torch's ``padding_idx``). An id outside
    ``[0, vocab_size)`` is an error: at once for concrete ids, and inside ``jit``
    when the compiled program runs (:func:`jaxdl.core.raise_if`).
    Params: ``table`` (vocab_size, features).
    """
    _positive(vocab_size, "Embedding vocab_size")
    _positive(features, "Embedding features")
    if padding_id is not None and not (isinstance(padding_id, int) and 0 <= padding_id < vocab_size):
        raise ValueError(f"Embedding padding_id must be an id in [0, {vocab_size}) or None, got {padding_id!r}")

    def out_of_range(lowest, highest):
        return LayerError("Embedding", f"ids must be in [0, {vocab_size}), got ids from {lowest} to {highest}: "
                                       "build the Embedding with the vocabulary the ids come from")

    def init(key, input_shape):
        table = init_fn(key, (vocab_size, features))
        if padding_id is not None:
            table = table.at[padding_id].set(0)
        return (*input_shape, features), {"table": table}

    def apply(params, ids, *, key=None, train=False):
        dtype = jnp.asarray(ids).dtype
        if not jnp.issubdtype(dtype, jnp.integer):
            raise LayerError("Embedding", f"expected integer token ids, got dtype {dtype}")
        if jnp.size(ids):
            raise_if(lambda lo, hi: (lo < 0) | (hi >= vocab_size), out_of_range, jnp.min(ids), jnp.max(ids))
        vectors = jnp.take(params["table"], ids, axis=0)
        if padding_id is None:
            return vectors
        return jnp.where((ids != padding_id)[..., None], vectors, 0)

    return Layer(init, apply, name, "Embedding")


def CharCNN(
    vocab_size: int, features: int = 50, *, embed: int = 30, width: int = 3, padding_id: int = 0,
    name: str = "charcnn",
) -> Layer:
    """A word's vector from its characters: ids (..., C) -> (..., features).

    Each character is embedded, ``width`` neighbouring characters are convolved
    into ``features`` detectors (prefixes, suffixes, capitals, digits...), and each
    detector keeps its largest response over the word (max pooling over
    characters). ``padding_id`` marks no character; a word without characters
    (a padded token) gives zeros.
    Params: ``embedding`` (``table``), ``conv`` (``w`` (1, width, embed, features), ``b``).
    """
    embedding = Embedding(vocab_size, embed, padding_id=padding_id)
    conv = Conv(features, (1, width), padding="SAME", name="conv")

    def init(key, input_shape):
        if len(input_shape) < 1 or input_shape[-1] <= 0:
            raise LayerError("CharCNN", f"needs character ids of shape (..., C), got input shape {_fmt(input_shape)}")
        chars = input_shape[-1]
        embed_key, conv_key = jax.random.split(key)
        _, params, state = init_child("embedding", embedding, embed_key, (-1, 1, chars), {}, {})
        _, params, state = init_child("conv", conv, conv_key, (-1, 1, chars, embed), params, state)
        return (*input_shape[:-1], features), params, state

    def apply(params, ids, *, state, key=None, train=False):
        words = ids.reshape(-1, 1, ids.shape[-1])  # (M, 1, C): each word an image one row high
        vectors, state = apply_child("embedding", embedding, params, state, words)
        detected, state = apply_child("conv", conv, params, state, vectors)
        present = (words != padding_id)[..., None]
        strongest = jnp.where(present, detected, -jnp.inf).max(axis=(1, 2))
        strongest = jnp.where(present.any(axis=(1, 2)), strongest, 0.0)
        return strongest.reshape(*ids.shape[:-1], features), state

    return composite(init, apply, name, "CharCNN", (("embedding", embedding), ("conv", conv)))


def Take(index: int | slice, *, axis: int = -1, name: str = "take") -> Layer:
    """Part of the input along ``axis`` (``x[..., index]`` for the last): an int index drops
    the axis, a slice keeps it. Token rows (N, T, 1 + C) give their word ids with
    ``Take(0)`` (N, T) and their characters with ``Take(slice(1, None))`` (N, T, C).
    """
    if isinstance(index, bool) or not isinstance(index, (int, slice)):
        raise TypeError(f"Take needs an int or a slice, got {index!r}")

    def out_shape(shape):
        if not shape:
            raise LayerError("Take", "expected an array with at least one axis, got a scalar")
        ax = axis % len(shape)
        size = shape[ax]
        if isinstance(index, int):
            if size >= 0 and not -size <= index < size:
                raise LayerError("Take", f"index {index} is outside an axis of size {size} (shape {_fmt(shape)})")
            return (*shape[:ax], *shape[ax + 1 :])
        kept = -1 if size < 0 else len(range(*index.indices(size)))
        return (*shape[:ax], kept, *shape[ax + 1 :])

    def init(key, input_shape):
        return out_shape(tuple(input_shape)), {}

    def apply(params, x, *, key=None, train=False):
        out_shape(x.shape)
        where = [slice(None)] * x.ndim
        where[axis] = index
        return x[tuple(where)]

    return Layer(init, apply, name, "Take")


def BatchNorm(
    *, momentum: float = 0.99, epsilon: float = 1e-5, scale: bool = True, bias: bool = True, name: str = "batchnorm",
) -> Layer:
    """Normalise each feature (the last axis) over the batch and every other axis: (..., F) -> (..., F).

    Training (``train=True``) normalises with the batch's mean and (biased) variance and
    moves the running statistics toward them, ``mean <- momentum * mean + (1 - momentum) *
    batch_mean`` (the same for ``var``); evaluation normalises with the running statistics.
    Then ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``. Numerics as
    ``flax.linen.BatchNorm`` (same defaults), statistics in float32 also for bfloat16
    inputs; the output keeps the input's dtype (flax's turns a bfloat16 input into a
    float32 output unless given ``dtype``). On a device mesh the batch statistics are
    those of the whole (global) batch. Every row counts, padding too: train it on full
    batches (as ``fit`` draws from arrays), not on padded sequences.

    Params: ``scale`` (ones) and ``bias`` (zeros), (F,), each unless turned off.
    State: ``mean`` (zeros) and ``var`` (ones), (F,), float32.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum!r}")
    if not epsilon > 0:
        raise ValueError(f"BatchNorm epsilon must be > 0, got {epsilon!r}")

    def init(key, input_shape):
        if len(input_shape) < 2 or input_shape[-1] <= 0:
            raise LayerError("BatchNorm", f"needs a batch with a known feature axis (N, ..., F), got input shape "
                                          f"{_fmt(input_shape)}")
        features = input_shape[-1]
        params = {**({"scale": jnp.ones((features,))} if scale else {}),
                  **({"bias": jnp.zeros((features,))} if bias else {})}
        state = {"mean": jnp.zeros((features,), jnp.float32), "var": jnp.ones((features,), jnp.float32)}
        return tuple(input_shape), params, state

    def apply(params, x, *, state, key=None, train=False):
        _check_last_dim("BatchNorm", x.shape, state["mean"].shape[0])
        _check_float("BatchNorm", x)
        if train:
            wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            axes = tuple(range(x.ndim - 1))
            mean = wide.mean(axes)
            var = jnp.maximum(0.0, jnp.square(wide).mean(axes) - jnp.square(mean))  # one pass, as flax
            state = {"mean": momentum * state["mean"] + (1 - momentum) * mean,
                     "var": momentum * state["var"] + (1 - momentum) * var}
        else:
            mean, var = state["mean"], state["var"]
        factor = lax.rsqrt(var + epsilon)
        if scale:
            factor = factor * params["scale"]
        y = (x - mean) * factor
        if bias:
            y = y + params["bias"]
        return y.astype(x.dtype), state

    return Layer(init, apply, name, "BatchNorm", stateful=True)


def LayerNorm(*, epsilon: float = 1e-6, name: str = "layernorm") -> Layer:
    """Normalise the last axis to zero mean and unit variance, then scale and shift.

    Params: ``scale`` and ``bias``, each (features,). ``epsilon`` matches flax's default.
    """

    def init(key, input_shape):
        if len(input_shape) < 1 or input_shape[-1] <= 0:
            raise LayerError("LayerNorm", f"needs a known last axis, got input shape {_fmt(input_shape)}")
        features = input_shape[-1]
        return tuple(input_shape), {"scale": jnp.ones((features,)), "bias": jnp.zeros((features,))}

    def apply(params, x, *, key=None, train=False):
        _check_last_dim("LayerNorm", x.shape, params["scale"].shape[0])
        _check_float("LayerNorm", x)
        mean = x.mean(-1, keepdims=True)
        var = jnp.square(x - mean).mean(-1, keepdims=True)
        return (x - mean) * lax.rsqrt(var + epsilon) * params["scale"] + params["bias"]

    return Layer(init, apply, name, "LayerNorm")


def elementwise(fn: Callable[[jax.Array], jax.Array], kind: str, *, name: str | None = None) -> Layer:
    """A parameterless layer that applies ``fn`` to its input; the shape is kept."""

    def init(key, input_shape):
        return tuple(input_shape), {}

    def apply(params, x, *, key=None, train=False):
        return fn(x)

    return Layer(init, apply, name or kind.lower(), kind)


def Step(threshold: float = 0.0, *, name: str = "step") -> Layer:
    """The threshold unit: 1 where ``x > threshold``, else 0. Its gradient is zero."""
    return elementwise(lambda x: (x > threshold).astype(jnp.result_type(x, jnp.float32)), "Step", name=name)


def Sigmoid(*, name: str = "sigmoid") -> Layer:
    """``1 / (1 + exp(-x))``."""
    return elementwise(jax.nn.sigmoid, "Sigmoid", name=name)


def Tanh(*, name: str = "tanh") -> Layer:
    """``tanh(x)``."""
    return elementwise(jnp.tanh, "Tanh", name=name)


def ReLU(*, name: str = "relu") -> Layer:
    """``max(x, 0)``."""
    return elementwise(jax.nn.relu, "ReLU", name=name)


def Softmax(axis: int = -1, *, name: str = "softmax") -> Layer:
    """A probability distribution over ``axis``."""
    return elementwise(lambda x: jax.nn.softmax(x, axis=axis), "Softmax", name=name)


def LogSoftmax(axis: int = -1, *, name: str = "logsoftmax") -> Layer:
    """Log-probabilities over ``axis`` (numerically stable)."""
    return elementwise(lambda x: jax.nn.log_softmax(x, axis=axis), "LogSoftmax", name=name)


def Identity(*, name: str = "identity") -> Layer:
    """Pass the input through unchanged."""
    return elementwise(lambda x: x, "Identity", name=name)


# ------------------------------------------------------------- fan-out and fan-in
def FanOut(n: int, *, name: str = "fanout") -> Layer:
    """Copy the input into a tuple of ``n``."""
    _positive(n, "FanOut n")

    def init(key, input_shape):
        return (tuple(input_shape),) * n, {}

    def apply(params, x, *, key=None, train=False):
        return (x,) * n

    return Layer(init, apply, name, "FanOut")


def FanInSum(*, name: str = "faninsum") -> Layer:
    """Sum a tuple of same-shaped inputs."""

    def init(key, input_shape):
        if len(set(map(tuple, input_shape))) != 1:
            raise LayerError("FanInSum", f"inputs must share one shape, got {list(input_shape)}")
        return tuple(input_shape[0]), {}

    def apply(params, inputs, *, key=None, train=False):
        return sum(inputs[1:], inputs[0])

    return Layer(init, apply, name, "FanInSum")


def FanInConcat(axis: int = -1, *, name: str = "faninconcat") -> Layer:
    """Concatenate a tuple of inputs along ``axis``."""

    def init(key, input_shape):
        first = list(input_shape[0])
        ax = axis % len(first)
        sizes = [shape[ax] for shape in input_shape]
        first[ax] = -1 if min(sizes) < 0 else sum(sizes)  # unknown stays -1, not -n
        return tuple(first), {}

    def apply(params, inputs, *, key=None, train=False):
        return jnp.concatenate(inputs, axis=axis)

    return Layer(init, apply, name, "FanInConcat")
