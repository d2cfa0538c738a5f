"""Stateless building blocks as pure ``(init, apply)`` pairs, and combinators.

Every layer is a :class:`Layer`: a named tuple of two pure functions::

    init(key, input_shape) -> (output_shape, params)
    apply(params, x, *, key=None, train=False) -> y

Shapes include the batch axis first; use ``-1`` where it is not known yet.
``init`` infers every shape without data, so :func:`summary` costs nothing.
Parameters are plain dicts of arrays with readable names (``{"w", "b"}``);
:func:`serial` and :func:`parallel` nest them under the names of their layers
(``{"conv1": {"w", "b"}, "dense1": ...}``).

A wrong input shape or dtype raises :class:`LayerError` (a ``ValueError``)
naming the layer, what it expected and what it got. The checks run while
tracing, so they cost nothing inside ``jit``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.nn import initializers

from jaxdl.tables import format_table

Shape = tuple  # (batch, ...) with -1 for an unknown size, or a tuple of shapes
Params = Any  # a pytree of dicts of arrays
Initializer = Callable[..., jax.Array]  # jax.nn.initializers signature


class Layer(NamedTuple):
    """A layer: a pair of pure functions, a name, and (for combinators) children.

    Attributes:
      init: ``(key, input_shape) -> (output_shape, params)``.
      apply: ``(params, x, *, key=None, train=False) -> y``.
      name: what a combinator calls this layer in its parameter dict.
      kind: the layer's type, e.g. ``"Dense"``, shown by :func:`summary`.
      children: ``(name, Layer)`` pairs of a combinator, in order.
    """

    init: Callable[[jax.Array, Shape], tuple[Shape, Params]]
    apply: Callable[..., Any]
    name: str
    kind: str
    children: tuple[tuple[str, "Layer"], ...] = ()


class LayerError(ValueError):
    """A layer got an input it cannot take (wrong shape, dtype or missing key).

    ``path`` is the chain of names from the outermost combinator to the layer.
    """

    def __init__(self, kind: str, problem: str, path: tuple[str, ...] = ()):
        self.kind, self.problem, self.path = kind, problem, path
        where = "/".join(path) if path else kind.lower()
        super().__init__(f"layer '{where}' ({kind}): {problem}")

    def within(self, name: str) -> "LayerError":
        """The same error, seen from the combinator that calls the layer ``name``."""
        return LayerError(self.kind, self.problem, (name, *self.path))


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
    name: str = "dense",
) -> Layer:
    """Affine map of the last axis: ``y = x @ w + b``; (..., in) -> (..., features).

    Params: ``w`` (in, features), ``b`` (features,).
    """
    _positive(features, "Dense features")

    def init(key, input_shape):
        if len(input_shape) < 1 or input_shape[-1] <= 0:
            raise LayerError("Dense", f"needs a known last axis, got input shape {_fmt(input_shape)}")
        w_key, b_key = jax.random.split(key)
        params = {
            "w": w_init(w_key, (input_shape[-1], features)),
            "b": b_init(b_key, (features,)),
        }
        return (*input_shape[:-1], features), params

    def apply(params, x, *, key=None, train=False):
        _check_last_dim("Dense", x.shape, params["w"].shape[0])
        _check_float("Dense", x)
        return x @ params["w"] + params["b"]

    return Layer(init, apply, name, "Dense")


def Conv(
    features: int,
    kernel_size: int | Sequence[int] = 3,
    *,
    strides: int | Sequence[int] = 1,
    padding: str = "SAME",
    w_init: Initializer = initializers.lecun_normal(),
    b_init: Initializer = initializers.zeros,
    name: str = "conv",
) -> Layer:
    """2-D convolution over NHWC images: (N, H, W, C) -> (N, H', W', features).

    ``padding`` is ``"SAME"`` (H' = ceil(H / stride)) or ``"VALID"``.
    Params: ``w`` (kh, kw, C, features), ``b`` (features,).
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
        params = {
            "w": w_init(w_key, (*kernel, input_shape[3], features)),
            "b": b_init(b_key, (features,)),
        }
        return output_shape, params

    def apply(params, x, *, key=None, train=False):
        out_shape(x.shape)
        _check_last_dim("Conv", x.shape, params["w"].shape[2])
        _check_float("Conv", x)
        y = lax.conv_general_dilated(
            x, params["w"], stride, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + params["b"]

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


def RandomShift(max_shift: int, *, name: str = "randomshift") -> Layer:
    """Data augmentation: while training, move each NHWC image by up to ``max_shift``
    pixels along each axis (uniformly, zeros shifted in). At evaluation it is the
    identity. Training needs a ``key``.
    """
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"RandomShift max_shift must be an int >= 0, got {max_shift!r}")

    def init(key, input_shape):
        _check_rank("RandomShift", input_shape, 4, "(N, H, W, C)")
        return tuple(input_shape), {}

    def apply(params, x, *, key=None, train=False):
        _check_rank("RandomShift", x.shape, 4, "(N, H, W, C)")
        if not train or max_shift == 0:
            return x
        if key is None:
            raise LayerError("RandomShift", "train=True needs a random key: call apply(params, x, key=key, train=True)")
        n, h, w, c = x.shape
        m = max_shift
        padded = jnp.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
        corners = jax.random.randint(key, (n, 2), 0, 2 * m + 1)
        crop = lambda image, corner: lax.dynamic_slice(image, (corner[0], corner[1], 0), (h, w, c))  # noqa: E731
        return jax.vmap(crop)(padded, corners)

    return Layer(init, apply, name, "RandomShift")


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
    never gets a gradient (like torch's ``padding_idx``).
    Params: ``table`` (vocab_size, features).
    """
    _positive(vocab_size, "Embedding vocab_size")
    _positive(features, "Embedding features")
    if padding_id is not None and not (isinstance(padding_id, int) and 0 <= padding_id < vocab_size):
        raise ValueError(f"Embedding padding_id must be an id in [0, {vocab_size}) or None, got {padding_id!r}")

    def init(key, input_shape):
        table = init_fn(key, (vocab_size, features))
        if padding_id is not None:
            table = table.at[padding_id].set(0)
        return (*input_shape, features), {"table": table}

    def apply(params, ids, *, key=None, train=False):
        dtype = jnp.asarray(ids).dtype
        if not jnp.issubdtype(dtype, jnp.integer):
            raise LayerError("Embedding", f"expected integer token ids, got dtype {dtype}")
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
        embed_key, conv_key = jax.random.split(key)
        _, embedding_params = embedding.init(embed_key, (-1, input_shape[-1]))
        _, conv_params = conv.init(conv_key, (-1, 1, input_shape[-1], embed))
        return (*input_shape[:-1], features), {"embedding": embedding_params, "conv": conv_params}

    def apply(params, ids, *, key=None, train=False):
        words = ids.reshape(-1, 1, ids.shape[-1])  # (M, 1, C): each word an image one row high
        detected = conv.apply(params["conv"], embedding.apply(params["embedding"], words))
        present = (words != padding_id)[..., None]
        strongest = jnp.where(present, detected, -jnp.inf).max(axis=(1, 2))
        strongest = jnp.where(present.any(axis=(1, 2)), strongest, 0.0)
        return strongest.reshape(*ids.shape[:-1], features)

    return Layer(init, apply, name, "CharCNN")


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


# ---------------------------------------------------------------------- combinators
def _unique_names(layers: Sequence[Layer]) -> list[str]:
    """Layer names, numbered from 1 where several layers share one: dense1, dense2."""
    totals = Counter(layer.name for layer in layers)
    seen: Counter = Counter()
    names = []
    for layer in layers:
        seen[layer.name] += 1
        names.append(f"{layer.name}{seen[layer.name]}" if totals[layer.name] > 1 else layer.name)
    return names


def _has_params(params) -> bool:
    return bool(jax.tree_util.tree_leaves(params))


def _call(name: str, layer: Layer, params, x, key, train):
    try:
        return layer.apply(params.get(name, {}), x, key=key, train=train)
    except LayerError as error:
        raise error.within(name) from None


def _init(name: str, layer: Layer, key, shape):
    try:
        return layer.init(key, shape)
    except LayerError as error:
        raise error.within(name) from None


def _keys(key, n: int):
    return [None] * n if key is None else list(jax.random.split(key, n))


def serial(*layers: Layer, name: str = "serial") -> Layer:
    """Compose layers in sequence: the output of each is the input of the next.

    Params: a dict from each layer's name (numbered where names repeat) to its
    params; layers without parameters are left out.
    """
    if not layers:
        raise ValueError("serial needs at least one layer")
    names = _unique_names(layers)
    children = tuple(zip(names, layers))

    def init(key, input_shape):
        params, shape = {}, input_shape
        for (child, layer), k in zip(children, jax.random.split(key, len(children))):
            shape, p = _init(child, layer, k, shape)
            if _has_params(p):
                params[child] = p
        return shape, params

    def apply(params, x, *, key=None, train=False):
        for (child, layer), k in zip(children, _keys(key, len(children))):
            x = _call(child, layer, params, x, k, train)
        return x

    return Layer(init, apply, name, "serial", children)


def parallel(*layers: Layer, name: str = "parallel") -> Layer:
    """Apply layer i to input i of a tuple; returns the tuple of outputs.

    Pair it with :func:`FanOut` and :func:`FanInSum` / :func:`FanInConcat`.
    """
    if not layers:
        raise ValueError("parallel needs at least one layer")
    names = _unique_names(layers)
    children = tuple(zip(names, layers))

    def check(inputs, what):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != len(children):
            raise LayerError("parallel", f"expected a tuple of {len(children)} {what}, got {inputs!r:.80}")

    def init(key, input_shape):
        check(input_shape, "shapes")
        params, shapes = {}, []
        for (child, layer), k, shape in zip(children, jax.random.split(key, len(children)), input_shape):
            out, p = _init(child, layer, k, shape)
            shapes.append(out)
            if _has_params(p):
                params[child] = p
        return tuple(shapes), params

    def apply(params, inputs, *, key=None, train=False):
        check(inputs, "inputs")
        return tuple(
            _call(child, layer, params, x, k, train)
            for (child, layer), k, x in zip(children, _keys(key, len(children)), inputs)
        )

    return Layer(init, apply, name, "parallel", children)


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


# -------------------------------------------------------------------------- summary
def abstract_init(layer: Layer, input_shape: Shape) -> tuple[Shape, Params]:
    """``layer.init`` without computing anything: params come back as ShapeDtypeStructs."""
    result = {}

    def init(key):
        result["shape"], params = layer.init(key, input_shape)
        return params

    params = jax.eval_shape(init, jax.random.key(0))
    return result["shape"], params


def count_params(params: Params) -> int:
    """The number of scalars in a params pytree (arrays or ShapeDtypeStructs)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


def _summary_rows(layer: Layer, shape, path: str, depth: int, rows: list):
    out_shape, params = abstract_init(layer, shape)
    nbytes = sum(math.prod(p.shape) * p.dtype.itemsize for p in jax.tree_util.tree_leaves(params))
    rows.append((depth, path or layer.name, layer.kind, out_shape, count_params(params), nbytes))
    if layer.kind == "serial":
        for child, sub in layer.children:
            shape = _summary_rows(sub, shape, child, depth + 1, rows)
    elif layer.kind == "parallel":
        for (child, sub), sub_shape in zip(layer.children, shape):
            _summary_rows(sub, sub_shape, child, depth + 1, rows)
    return out_shape


def summary(model: Layer, input_shape: Shape, *, print_fn: Callable[[str], None] = print) -> int:
    """Print each layer's output shape and parameter count, and the totals.

    Nothing is computed: shapes come from ``init`` under ``jax.eval_shape``.
    Returns the total number of parameters.
    """
    rows: list = []
    _summary_rows(model, tuple(input_shape), "", 0, rows)
    table = format_table(
        ("layer", "kind", "output shape", "params"),
        [("  " * depth + name, kind, shape, f"{n:,}") for depth, name, kind, shape, n, _ in rows],
        right=(3,),
    )
    total, size = rows[0][4:]
    print_fn(f"{table}\ntotal params: {total:,} ({size / 1024:,.1f} KiB)")
    return total
