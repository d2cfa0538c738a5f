"""Tests of jaxdl.layers: shape inference, gradients, numerics (against flax.linen), dropout, errors,
pools, embeddings, BatchNorm and Take."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from tiers import unit_tier

from jaxdl.core import Layer, LayerError, abstract_init, parallel, serial
from jaxdl.layers import (
    AvgPool,
    BatchNorm,
    CharCNN,
    Conv,
    Dense,
    Dropout,
    Embedding,
    FanInConcat,
    FanInSum,
    FanOut,
    Flatten,
    Identity,
    LayerNorm,
    LogSoftmax,
    MaxPool,
    RandomShift,
    ReLU,
    Sigmoid,
    Softmax,
    Step,
    Take,
    Tanh,
    WordDropout,
)

KEY = jax.random.key(0)
PROPERTY = settings(max_examples=20, deadline=None)
ACTIVATIONS = [Step, Sigmoid, Tanh, ReLU, Softmax, LogSoftmax, Identity]


# ------------------------------------------------------------------------ helpers
def is_shape(spec) -> bool:
    """A shape is a tuple of ints; anything else here is a tuple of shapes."""
    return all(isinstance(d, int) for d in spec)


def with_batch(spec, batch: int):
    """(d1, ...) -> (batch, d1, ...), through nested tuples of shapes."""
    return (batch, *spec) if is_shape(spec) else tuple(with_batch(s, batch) for s in spec)


def set_batch(shape, batch: int):
    """Replace the leading axis of every shape in a (nested) output shape."""
    return (batch, *shape[1:]) if is_shape(shape) else tuple(set_batch(s, batch) for s in shape)


def random_input(shape, seed: int = 0, vocab: int = 0, dtype=jnp.float32):
    """Normal floats (or ids below ``vocab``) of ``shape``, through nested tuples of shapes.

    NumPy makes the data: jax.random would compile its ops anew for every shape.
    """
    if not is_shape(shape):
        return tuple(random_input(s, seed + i, vocab, dtype) for i, s in enumerate(shape))
    rng = np.random.default_rng(seed)
    if vocab:
        return jnp.asarray(rng.integers(0, vocab, shape), jnp.int32)
    return jnp.asarray(rng.standard_normal(shape), dtype)


def shapes_of(outputs):
    """The shape of an array, or the tuple of shapes of a tuple of arrays."""
    return tuple(shapes_of(o) for o in outputs) if isinstance(outputs, tuple) else tuple(outputs.shape)


def random_params(layer, input_shape, seed: int = 1, dtype=jnp.float32):
    """Params of the shapes ``layer.init`` gives, filled with normal noise (biases and scales too)."""
    _, params, *_ = abstract_init(layer, input_shape)  # a stateful layer's state too: not filled here
    leaves, tree = jax.tree.flatten(params)
    return jax.tree.unflatten(tree, [random_input(p.shape, seed + i, dtype=dtype) for i, p in enumerate(leaves)])


def distinct(shape, seed: int = 0, dtype=jnp.float32):
    """Values spaced 4/n apart, none within 1/n of 0: no ties for max, no ReLU kinks."""
    n = int(np.prod(shape))
    perm = np.random.default_rng(seed).permutation(n)
    return jnp.asarray((perm + 0.75 - n / 2) * (4 / n), dtype).reshape(shape)


# --------------------------------------------------------------- 1. shape inference
class Case(NamedTuple):
    layer: Layer
    shape: tuple  # input shape without the batch axis (or a tuple of them)
    vocab: int = 0  # > 0: the input is token ids
    train: bool = False


dims = st.integers(1, 5)
paddings = st.sampled_from(["SAME", "VALID"])
int_or_pair = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))


def as_pair(value):
    return (value, value) if isinstance(value, int) else value


@st.composite
def image_shape(draw, window, padding):
    """(H, W, C) that a ``window`` fits under ``padding``."""
    kh, kw = as_pair(window)
    low_h, low_w = (kh, kw) if padding == "VALID" else (1, 1)
    return (draw(st.integers(low_h, 8)), draw(st.integers(low_w, 8)), draw(st.integers(1, 3)))


@st.composite
def dense_cases(draw):
    return Case(Dense(draw(dims)), (*draw(st.lists(dims, max_size=2)), draw(dims)))


@st.composite
def conv_cases(draw):
    kernel, strides, padding = draw(int_or_pair), draw(int_or_pair), draw(paddings)
    layer = Conv(draw(dims), kernel, strides=strides, padding=padding)
    return Case(layer, draw(image_shape(kernel, padding)))


@st.composite
def pool_cases(draw, make):
    window, padding = draw(int_or_pair), draw(paddings)
    strides = draw(st.one_of(st.none(), int_or_pair))
    return Case(make(window, strides, padding), draw(image_shape(window, padding)))


@st.composite
def flatten_cases(draw):
    return Case(Flatten(), tuple(draw(st.lists(dims, min_size=1, max_size=3))))


@st.composite
def dropout_cases(draw):
    layer = Dropout(draw(st.floats(0.0, 0.9)))
    return Case(layer, tuple(draw(st.lists(dims, max_size=3))), train=draw(st.booleans()))


@st.composite
def embedding_cases(draw):
    vocab = draw(st.integers(1, 10))
    return Case(Embedding(vocab, draw(dims)), tuple(draw(st.lists(dims, max_size=2))), vocab=vocab)


@st.composite
def layernorm_cases(draw):
    return Case(LayerNorm(), (*draw(st.lists(dims, max_size=2)), draw(dims)))


@st.composite
def elementwise_cases(draw, make):
    return Case(make(), tuple(draw(st.lists(dims, min_size=1, max_size=3))))


# Layers that take any float (..., F): the pieces of random serial stacks.
vector_layers = st.one_of(
    st.builds(Dense, dims),
    st.builds(LayerNorm),
    st.builds(Dropout, st.floats(0.0, 0.9)),
    st.sampled_from(ACTIVATIONS).map(lambda make: make()),
)


@st.composite
def serial_cases(draw):
    nest = lambda inner: st.lists(inner, min_size=1, max_size=3).map(lambda ls: serial(*ls))  # noqa: E731
    stacks = st.recursive(vector_layers, nest, max_leaves=6)
    layers = draw(st.lists(stacks, min_size=1, max_size=4))
    return Case(serial(*layers), (*draw(st.lists(dims, max_size=1)), draw(dims)), train=draw(st.booleans()))


@st.composite
def parallel_cases(draw):
    branches = st.one_of(dense_cases(), conv_cases(), pool_cases(MaxPool), flatten_cases(), layernorm_cases())
    cases = draw(st.lists(branches, min_size=1, max_size=3))
    return Case(parallel(*(c.layer for c in cases)), tuple(c.shape for c in cases))


@st.composite
def fanout_cases(draw):
    return Case(FanOut(draw(st.integers(1, 3))), (draw(dims), draw(dims)))


@st.composite
def fanin_sum_cases(draw):
    """serial(FanOut(n), parallel(n branches with equal outputs), FanInSum())."""
    features = draw(dims)
    out = draw(st.one_of(st.just(features), dims))
    choices = [Dense(out), serial(Dense(out), Tanh())] + ([Identity(), LayerNorm()] if out == features else [])
    branches = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3))
    model = serial(FanOut(len(branches)), parallel(*branches), FanInSum())
    return Case(model, (draw(dims), features))


@st.composite
def fanin_concat_cases(draw):
    """serial(FanOut(n), parallel(n Dense), FanInConcat(axis)) on (N, T, F)."""
    axis = draw(st.sampled_from([0, 1, -2, -1]))
    n = draw(st.integers(1, 3))
    outs = [draw(dims) for _ in range(n)] if axis == -1 else [draw(dims)] * n
    model = serial(FanOut(n), parallel(*map(Dense, outs)), FanInConcat(axis))
    return Case(model, (draw(dims), draw(dims)))


SHAPE_CASES = {
    "dense": dense_cases(),
    "conv": conv_cases(),
    "maxpool": pool_cases(MaxPool),
    "avgpool": pool_cases(AvgPool),
    "flatten": flatten_cases(),
    "dropout": dropout_cases(),
    "embedding": embedding_cases(),
    "layernorm": layernorm_cases(),
    **{make.__name__.lower(): elementwise_cases(make) for make in ACTIVATIONS},
    "serial": serial_cases(),
    "parallel": parallel_cases(),
    "fanout": fanout_cases(),
    "fanout-parallel-faninsum": fanin_sum_cases(),
    "fanout-parallel-faninconcat": fanin_concat_cases(),
}


def abstract_input(shape, vocab: int = 0):
    """A ShapeDtypeStruct (ids when ``vocab``) for ``shape``, through nested tuples of shapes."""
    if not is_shape(shape):
        return tuple(abstract_input(s, vocab) for s in shape)
    return jax.ShapeDtypeStruct(shape, jnp.int32 if vocab else jnp.float32)


@pytest.mark.parametrize("cases", SHAPE_CASES.values(), ids=SHAPE_CASES.keys())
@PROPERTY
@given(data=st.data(), batch=st.integers(1, 3))
def test_apply_output_shape_is_the_inferred_shape(cases, data, batch):
    # Both init and apply run under jax.eval_shape: the shapes are exactly those of
    # a real call, without compiling every op for every random shape (real calls
    # are covered by the numerics and gradient tests below).
    case = data.draw(cases)
    inferred, params = abstract_init(case.layer, with_batch(case.shape, batch))
    apply = partial(case.layer.apply, key=jax.random.key(2), train=case.train)
    y = jax.eval_shape(apply, params, abstract_input(with_batch(case.shape, batch), case.vocab))
    assert shapes_of(y) == inferred
    unknown, unknown_params = abstract_init(case.layer, with_batch(case.shape, -1))
    assert unknown == set_batch(inferred, -1)
    assert jax.tree.map(jnp.shape, unknown_params) == jax.tree.map(jnp.shape, params)


# ---------------------------------------------------------------------- 2. gradients
@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


GRAD_CASES = {
    "dense": (Dense(3), (2, 4)),
    "dense-leading-axes": (Dense(2), (2, 3, 4)),
    "conv-same": (Conv(3, 3), (2, 5, 5, 2)),
    "conv-valid-strided": (Conv(2, (2, 3), strides=2, padding="VALID"), (1, 6, 7, 2)),
    "conv-same-strided": (Conv(2, (3, 1), strides=(1, 2)), (1, 5, 6, 3)),
    "layernorm": (LayerNorm(), (3, 5)),
    "maxpool": (MaxPool(2), (2, 4, 4, 2)),
    "maxpool-same-strided": (MaxPool(3, strides=2, padding="SAME"), (1, 5, 5, 2)),
    "avgpool": (AvgPool(2), (2, 4, 4, 2)),
    "avgpool-same": (AvgPool((2, 3), strides=1, padding="SAME"), (1, 4, 5, 2)),
    "flatten": (Flatten(), (2, 3, 2)),
    "sigmoid": (Sigmoid(), (3, 4)),
    "tanh": (Tanh(), (3, 4)),
    "relu": (ReLU(), (3, 4)),
    "softmax": (Softmax(), (3, 4)),
    "softmax-axis0": (Softmax(axis=0), (3, 4)),
    "logsoftmax": (LogSoftmax(), (3, 4)),
    "identity": (Identity(), (3, 4)),
    "step": (Step(), (3, 4)),
    "mlp": (serial(Dense(4), Tanh(), LayerNorm(), Dense(2), LogSoftmax()), (3, 5)),
    "residual": (serial(FanOut(2), parallel(serial(Dense(3), Sigmoid()), Identity()), FanInSum()), (2, 3)),
}


@pytest.mark.parametrize("layer, shape", GRAD_CASES.values(), ids=GRAD_CASES.keys())
def test_gradients_match_finite_differences(x64, layer, shape):
    params = random_params(layer, shape, dtype=jnp.float64)
    x = distinct(shape, dtype=jnp.float64)
    check_grads(lambda p, x: layer.apply(p, x), (params, x), order=1, modes=["rev"])


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_second_order_gradients_of_a_smooth_stack(x64):
    layer, shape = GRAD_CASES["mlp"]
    params, x = random_params(layer, shape, dtype=jnp.float64), distinct(shape, dtype=jnp.float64)
    check_grads(lambda p, x: layer.apply(p, x), (params, x), order=2, modes=["rev"])


def test_dropout_gradient_with_a_fixed_key(x64):
    layer = Dropout(0.4)
    x = distinct((4, 5), dtype=jnp.float64)
    check_grads(lambda x: layer.apply({}, x, key=jax.random.key(3), train=True), (x,), order=2, modes=["rev"])


def test_embedding_gradient_accumulates_repeated_ids(x64):
    layer = Embedding(6, 3)
    params = random_params(layer, (2, 4), dtype=jnp.float64)
    ids = jnp.array([[0, 2, 2, 5], [5, 5, 1, 2]])
    check_grads(lambda p: jnp.tanh(layer.apply(p, ids)), (params,), order=2, modes=["rev"])
    counts = jax.grad(lambda p: layer.apply(p, ids).sum())(params)["table"][:, 0]
    np.testing.assert_array_equal(counts, [1, 1, 3, 0, 0, 3])


def test_step_has_zero_gradient():
    grad = jax.grad(lambda x: Step().apply({}, x).sum())(jnp.linspace(-2.0, 2.0, 7))
    np.testing.assert_array_equal(grad, np.zeros(7))


# ----------------------------------------------------------- 3. numerics vs flax.linen
def assert_close(actual, expected, tol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


def init_random(layer, shape, vocab=0):
    """Random params (biases and scales too) and a random input for ``layer``."""
    return random_params(layer, shape), random_input(shape, 2, vocab)


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3)])
def test_dense_matches_flax(shape):
    params, x = init_random(Dense(6), shape)
    flax_params = {"kernel": params["w"], "bias": params["b"]}
    assert_close(Dense(6).apply(params, x), nn.Dense(6).apply({"params": flax_params}, x))


@pytest.mark.parametrize(
    "kernel, strides, padding, shape",
    [
        ((3, 3), (1, 1), "SAME", (2, 7, 7, 3)),
        ((3, 3), (1, 1), "VALID", (2, 7, 7, 3)),
        ((2, 3), (2, 2), "SAME", (1, 7, 8, 2)),
        ((3, 2), (2, 3), "VALID", (1, 9, 8, 2)),
        ((1, 1), (1, 1), "VALID", (2, 4, 4, 3)),
    ],
)
def test_conv_matches_flax(kernel, strides, padding, shape):
    layer = Conv(5, kernel, strides=strides, padding=padding)
    params, x = init_random(layer, shape)
    flax_conv = nn.Conv(5, kernel_size=kernel, strides=strides, padding=padding)
    expected = flax_conv.apply({"params": {"kernel": params["w"], "bias": params["b"]}}, x)
    assert layer.init(KEY, shape)[0] == expected.shape
    assert_close(layer.apply(params, x), expected)


@pytest.mark.parametrize(
    "window, strides, padding",
    [((2, 2), None, "VALID"), ((3, 3), (2, 2), "SAME"), ((2, 3), (1, 2), "VALID"), ((3, 2), (1, 1), "SAME")],
)
@pytest.mark.parametrize("ours, theirs", [(MaxPool, nn.max_pool), (AvgPool, nn.avg_pool)], ids=["max", "avg"])
def test_pools_match_flax(ours, theirs, window, strides, padding):
    layer = ours(window, strides, padding)
    x = random_input((2, 7, 6, 3))
    expected = theirs(x, window, strides=strides or window, padding=padding)  # flax's default stride is 1
    assert layer.init(KEY, x.shape)[0] == expected.shape
    assert_close(layer.apply({}, x), expected)


def test_layernorm_matches_flax():
    params, x = init_random(LayerNorm(), (3, 4, 8))
    x = 3.0 * x + 1.5  # a non-zero mean and non-unit variance to remove
    assert_close(LayerNorm().apply(params, x), nn.LayerNorm().apply({"params": params}, x))


def test_embedding_matches_flax():
    params, ids = init_random(Embedding(7, 4), (3, 5), vocab=7)
    expected = nn.Embed(7, 4).apply({"params": {"embedding": params["table"]}}, ids)
    assert_close(Embedding(7, 4).apply(params, ids), expected, tol=0)


@pytest.mark.parametrize(
    "threshold, expected", [(0.0, [0, 0, 1, 1, 1]), (0.5, [0, 0, 0, 1, 1]), (-1.0, [0, 1, 1, 1, 1])]
)
def test_step_is_one_above_the_threshold(threshold, expected):
    y = Step(threshold).apply({}, jnp.array([-1.0, 0.0, 0.5, 0.5001, 2.0]))
    np.testing.assert_array_equal(y, np.array(expected, np.float32))
    assert y.dtype == jnp.float32


def test_softmax_by_hand():
    x = jnp.log(jnp.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])) + 100.0  # a shift changes nothing
    expected = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    assert_close(Softmax().apply({}, x), expected)
    assert_close(LogSoftmax().apply({}, x), np.log(expected))
    assert_close(Softmax(axis=0).apply({}, x)[:, 0], [0.5, 0.5])


# ------------------------------------------------------------------------- 4. dropout
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.7])
def test_dropout_drops_a_fraction_rate_and_preserves_the_mean(rate):
    n = 200_000
    x = 1.0 + jax.random.uniform(KEY, (400, 500))
    y = Dropout(rate).apply({}, x, key=jax.random.key(1), train=True)
    kept = y != 0
    # Each element is kept with probability 1 - rate: a binomial fraction.
    assert abs(float(kept.mean()) - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
    # Kept elements are scaled by 1 / (1 - rate), so E[y] = E[x].
    assert_close(y[kept], x[kept] / (1 - rate))
    mean_sigma = np.sqrt(float(jnp.mean(x**2)) * rate / (1 - rate) / n)
    assert abs(float(y.mean() - x.mean())) < 5 * mean_sigma


def test_dropout_is_identity_at_evaluation():
    x = random_input((4, 6))
    np.testing.assert_array_equal(Dropout(0.5).apply({}, x), x)
    np.testing.assert_array_equal(Dropout(0.5).apply({}, x, key=KEY, train=False), x)
    np.testing.assert_array_equal(Dropout(0.0).apply({}, x, key=KEY, train=True), x)


def test_dropout_masks_follow_the_key():
    x = jnp.ones((50, 40))
    drop = lambda key: Dropout(0.5).apply({}, x, key=key, train=True) != 0  # noqa: E731
    np.testing.assert_array_equal(drop(jax.random.key(1)), drop(jax.random.key(1)))
    assert (drop(jax.random.key(1)) != drop(jax.random.key(2))).any()


def test_serial_gives_each_dropout_its_own_key():
    x = jnp.ones((50, 40))
    y1, y2 = serial(FanOut(2), parallel(Dropout(0.5), Dropout(0.5))).apply({}, x, key=KEY, train=True)
    assert ((y1 != 0) != (y2 != 0)).any()


@pytest.mark.parametrize(
    "model, where",
    [
        (Dropout(0.5), "dropout"),
        (serial(Dense(3), Dropout(0.5)), "serial/dropout"),
        (serial(Dense(3), serial(Dropout(0.5), name="block")), "serial/block/dropout"),
    ],
)
def test_dropout_training_without_a_key_raises(model, where):
    params = random_params(model, (2, 3))
    with pytest.raises(LayerError, match=rf"'{where}'.*key"):
        model.apply(params, jnp.ones((2, 3)), train=True)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_rate_outside_zero_one_raises(rate):
    with pytest.raises(ValueError, match=r"probability of dropping, in \[0, 1\)"):
        Dropout(rate)


def test_word_dropout_replaces_a_fraction_rate_of_words_by_unk_and_keeps_padding():
    ids = jnp.concatenate([jax.random.randint(KEY, (400, 250), 2, 50), jnp.zeros((400, 50), jnp.int32)], axis=1)
    out = WordDropout(0.2, unk_id=1, padding_id=0).apply({}, ids, key=jax.random.key(1), train=True)
    assert out.dtype == ids.dtype
    np.testing.assert_array_equal(out[:, 250:], 0)  # padding stays padding
    changed = out[:, :250] != ids[:, :250]
    np.testing.assert_array_equal(out[:, :250][changed], 1)  # a dropped word becomes <unk>
    n = changed.size
    assert abs(float(changed.mean()) - 0.2) < 5 * np.sqrt(0.2 * 0.8 / n)


def test_word_dropout_is_identity_at_evaluation_and_needs_a_key_to_train():
    ids = jnp.arange(12).reshape(3, 4)
    layer = WordDropout(0.5)
    np.testing.assert_array_equal(layer.apply({}, ids), ids)
    with pytest.raises(LayerError, match="key"):
        layer.apply({}, ids, train=True)
    with pytest.raises(ValueError, match=r"probability of dropping, in \[0, 1\)"):
        WordDropout(1.0)


# ------------------------------------------------------------------ 5. error messages
ERROR_CASES = {
    "dense-last-axis": (Dense(3), (-1, 4), jnp.ones((2, 5)), ["'dense'", "(Dense)", "(..., 4)", "(2, 5)"]),
    "dense-int": (Dense(3), (-1, 4), jnp.ones((2, 4), jnp.int32), ["'dense'", "floating-point", "dtype int32"]),
    "serial-dense1": (
        serial(Dense(3), ReLU(), Dense(2)), (-1, 4), jnp.ones((2, 5)), ["'serial/dense1'", "(..., 4)", "(2, 5)"]
    ),
    "serial-explicit-name": (
        serial(Dense(3, name="hidden"), Dense(2)), (-1, 4), jnp.ones((2, 5)), ["'serial/hidden'", "(..., 4)", "(2, 5)"]
    ),
    "nested-serial": (
        serial(serial(Dense(3), ReLU(), name="block"), Dense(2)),
        (-1, 4),
        jnp.ones((2, 5)),
        ["'serial/block/dense'", "(..., 4)", "(2, 5)"],
    ),
    "nested-serial-int": (
        serial(serial(Dense(3), name="block"), Dense(2)),
        (-1, 4),
        jnp.ones((2, 4), jnp.int32),
        ["'serial/block/dense'", "dtype int32"],
    ),
    "conv-3d": (Conv(4), (-1, 8, 8, 3), jnp.ones((8, 8, 3)), ["'conv'", "4-D", "(N, H, W, C)", "(8, 8, 3)"]),
    "conv-channels": (Conv(4), (-1, 8, 8, 3), jnp.ones((2, 8, 8, 2)), ["'conv'", "(..., 3)", "(2, 8, 8, 2)"]),
    "serial-conv-3d": (
        serial(Conv(4), ReLU(), Flatten(), Dense(2)),
        (-1, 4, 4, 1),
        jnp.ones((4, 4, 1)),
        ["'serial/conv'", "4-D", "(4, 4, 1)"],
    ),
    "embedding-float": (Embedding(5, 2), (-1, 3), jnp.ones((2, 3)), ["'embedding'", "integer", "float32"]),
    "layernorm": (LayerNorm(), (-1, 4), jnp.ones((2, 3)), ["'layernorm'", "(..., 4)", "(2, 3)"]),
    "maxpool-2d": (MaxPool(2), (-1, 4, 4, 1), jnp.ones((4, 4)), ["'maxpool'", "4-D", "(4, 4)"]),
    "flatten-1d": (Flatten(), (-1, 4), jnp.ones((4,)), ["'flatten'", "(N, ...)", "(4)"]),
    "parallel-not-a-tuple": (
        parallel(Dense(2), Dense(2)), ((-1, 3), (-1, 3)), jnp.ones((2, 3)), ["'parallel'", "tuple of 2 inputs"]
    ),
    "parallel-branch": (
        serial(FanOut(2), parallel(Dense(2), Dense(2)), FanInSum()),
        (-1, 3),
        jnp.ones((2, 4)),
        ["'serial/parallel/dense1'", "(..., 3)", "(2, 4)"],
    ),
}


def error_message(model, init_shape, x, jit) -> str:
    params = random_params(model, init_shape)
    apply = jax.jit(model.apply) if jit else model.apply
    with pytest.raises(LayerError) as error:
        apply(params, x)
    assert isinstance(error.value, ValueError)
    return str(error.value)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("model, init_shape, x, parts", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_wrong_input_names_layer_and_shapes(model, init_shape, x, parts, jit):
    message = error_message(model, init_shape, x, jit)
    for part in parts:
        assert part in message


INIT_ERROR_CASES = {
    "conv-3d": (serial(Conv(4), Dense(2)), (-1, 8, 8), ["'serial/conv'", "4-D", "(-1, 8, 8)"]),
    "valid-conv-too-big": (Conv(2, 5, padding="VALID"), (-1, 3, 3, 1), ["'conv'", "does not fit", "3x3"]),
    "pool-too-big": (serial(Dense(1), MaxPool(3), name="net"), (-1, 2, 2, 1), ["'net/maxpool'", "does not fit"]),
    "dense-unknown-features": (serial(Flatten(), Dense(2)), (-1, -1), ["'serial/dense'", "known last axis"]),
    "faninsum-mismatch": (
        serial(FanOut(2), parallel(Dense(2), Dense(3)), FanInSum()),
        (-1, 4),
        ["'serial/faninsum'", "share one shape", "(-1, 2)", "(-1, 3)"],
    ),
}


@pytest.mark.parametrize("model, shape, parts", INIT_ERROR_CASES.values(), ids=INIT_ERROR_CASES.keys())
def test_init_with_an_impossible_shape_raises(model, shape, parts):
    with pytest.raises(LayerError) as error:
        model.init(KEY, shape)
    for part in parts:
        assert part in str(error.value)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: Dense(0), "Dense features must be a positive int, got 0"),
        (lambda: Dense(2.5), "Dense features must be a positive int, got 2.5"),
        (lambda: Conv(4, padding="FULL"), "padding must be 'SAME' or 'VALID', got 'FULL'"),
        (lambda: Conv(4, kernel_size=(3,)), r"kernel_size must be a positive int or a pair of them, got \(3,\)"),
        (lambda: Conv(4, kernel_size=(3, 0)), "kernel_size must be a positive int or a pair"),
        (lambda: Conv(4, strides=0), "strides must be a positive int or a pair"),
        (lambda: MaxPool(window=(2, 2, 2)), "MaxPool window must be a positive int or a pair"),
        (lambda: AvgPool(2, padding="same"), "padding must be 'SAME' or 'VALID'"),
        (lambda: Embedding(0, 3), "Embedding vocab_size must be a positive int"),
        (lambda: FanOut(0), "FanOut n must be a positive int"),
        (lambda: serial(), "serial needs at least one layer"),
        (lambda: parallel(), "parallel needs at least one layer"),
    ],
)
def test_invalid_constructor_arguments_raise(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


# ------------------------------------------------------------------ 6. pools
@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
@pytest.mark.parametrize("size", unit_tier({"8x8": (8, 8), "7x9": (7, 9), "5x6": (5, 6)}, keep="7x9"))
@pytest.mark.parametrize("pool, init, op", [(MaxPool, -jnp.inf, lax.max), (AvgPool, 0.0, lax.add)], ids=["max", "avg"])
def test_non_overlapping_pools_equal_reduce_window_with_gradients(pool, init, op, size):
    """Pools whose strides equal their window reduce blocks of a reshape (odd sizes are cropped, as VALID does)."""
    x = jax.random.normal(jax.random.key(0), (2, *size, 3))  # no ties: the max's gradient is unambiguous
    scale = 1.0 if op is lax.max else 1.0 / 4

    def reference(x):
        return scale * lax.reduce_window(x, init, op, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def ours(x):
        return pool(2).apply({}, x)

    np.testing.assert_allclose(ours(x), reference(x), rtol=1e-6)
    weights = jax.random.normal(jax.random.key(1), reference(x).shape)
    grad_ours = jax.grad(lambda x: (ours(x) * weights).sum())(x)
    grad_reference = jax.grad(lambda x: (reference(x) * weights).sum())(x)
    np.testing.assert_allclose(grad_ours, grad_reference, rtol=1e-6)


def test_random_shift_moves_each_image_within_its_bound():
    x = jnp.zeros((64, 9, 9, 1)).at[:, 4, 4, 0].set(1.0)  # one dot in the centre of each image
    shifted = RandomShift(2).apply({}, x, key=jax.random.key(0), train=True)
    where = np.argwhere(np.asarray(shifted)[..., 0])  # (image, row, col) of each dot
    assert len(where) == 64  # a dot two pixels from the edge is never shifted out
    assert np.all(np.abs(where[:, 1:] - 4) <= 2)
    assert len({tuple(p) for p in where[:, 1:]}) > 10  # images move independently
    np.testing.assert_array_equal(RandomShift(2).apply({}, x), x)  # evaluation: identity
    with pytest.raises(LayerError, match="needs a random key"):
        RandomShift(2).apply({}, x, train=True)
    with pytest.raises(ValueError, match="max_shift must be an int >= 0"):
        RandomShift(-1)


# ------------------------------------------------------------ Embedding padding_id
def test_embedding_padding_row_starts_at_zero():
    _, params = Embedding(6, 4, padding_id=2).init(KEY, (-1, 5))
    np.testing.assert_array_equal(params["table"][2], np.zeros(4))
    assert (params["table"][np.arange(6) != 2] != 0).all()


def test_embedding_padding_id_embeds_to_zeros_and_gets_no_gradient():
    layer = Embedding(6, 3, padding_id=0)
    params = random_params(layer, (2, 4))  # a non-zero padding row: its output is zero all the same
    ids = jnp.array([[0, 2, 2, 5], [5, 0, 1, 0]])
    vectors = layer.apply(params, ids)
    np.testing.assert_array_equal(vectors[ids == 0], np.zeros((3, 3)))
    np.testing.assert_array_equal(vectors[ids != 0], Embedding(6, 3).apply(params, ids)[ids != 0])
    counts = jax.grad(lambda p: layer.apply(p, ids).sum())(params)["table"][:, 0]
    np.testing.assert_array_equal(counts, [0, 1, 2, 0, 0, 2])


@pytest.mark.parametrize("padding_id", [6, -1, 2.0, "0"])
def test_embedding_padding_id_outside_the_vocabulary_raises(padding_id):
    with pytest.raises(ValueError, match=r"padding_id must be an id in \[0, 6\) or None"):
        Embedding(6, 3, padding_id=padding_id)


# ------------------------------------------------------------------ character CNN
def char_cnn_by_hand(params, ids, width):
    """CharCNN of one word's ids (C,) in numpy: embed, convolve with zero padding, max over characters."""
    table, w, b = (np.asarray(a, np.float64) for a in (params["embedding"]["table"], params["conv"]["w"][0], params["conv"]["b"]))
    vectors = np.where((ids != 0)[:, None], table[ids], 0.0)
    half = (width - 1) // 2
    padded = np.concatenate([np.zeros((half, table.shape[1])), vectors, np.zeros((width - 1 - half, table.shape[1]))])
    responses = np.stack([sum(padded[j + k] @ w[k] for k in range(width)) + b for j in range(len(ids))])
    return responses[ids != 0].max(0) if (ids != 0).any() else np.zeros(len(b))


def test_char_cnn_by_hand():
    layer = CharCNN(9, 5, embed=4, width=3)
    params = random_params(layer, (2, 3, 6))
    ids = np.array([[[3, 1, 4, 1, 5, 0], [2, 6, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]],
                    [[8, 7, 6, 5, 4, 3], [1, 0, 0, 0, 0, 0], [5, 5, 0, 0, 0, 0]]], np.int32)
    got = layer.apply(params, ids)
    assert got.shape == (2, 3, 5)
    for n in range(2):
        for t in range(3):
            np.testing.assert_allclose(got[n, t], char_cnn_by_hand(params, ids[n, t], 3), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_char_cnn_ignores_trailing_padding_and_gives_zeros_for_no_word():
    layer = CharCNN(9, 5, embed=4, width=3)
    params = random_params(layer, (1, 8))
    short = layer.apply(params, jnp.array([[3, 1, 4]]))
    padded = layer.apply(params, jnp.array([[3, 1, 4, 0, 0, 0, 0, 0]]))
    np.testing.assert_allclose(short, padded, rtol=1e-6)
    np.testing.assert_array_equal(layer.apply(params, jnp.zeros((2, 8), jnp.int32)), np.zeros((2, 5)))
    grads = jax.grad(lambda p: layer.apply(p, jnp.zeros((2, 8), jnp.int32)).sum())(params)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_char_cnn_shapes_and_errors():
    out_shape, params = CharCNN(20, 7, embed=3, width=5).init(KEY, (-1, 11, 16))
    assert out_shape == (-1, 11, 7)
    assert params["conv"]["w"].shape == (1, 5, 3, 7) and params["embedding"]["table"].shape == (20, 3)
    with pytest.raises(LayerError, match=r"character ids of shape \(\.\.\., C\)"):
        CharCNN(20).init(KEY, ())


# ------------------------------------------------------------------------- BatchNorm
BATCH_NORM_CASES = {
    "dense": ((16, 5), {}),
    "conv-nhwc": ((4, 6, 6, 3), {}),
    "momentum-epsilon": ((12, 4), {"momentum": 0.7, "epsilon": 1e-3}),
    "no-scale-no-bias": ((8, 4), {"scale": False, "bias": False}),
}
FLAX_NAMES = {"momentum": "momentum", "epsilon": "epsilon", "scale": "use_scale", "bias": "use_bias"}


@pytest.mark.parametrize("shape, settings", BATCH_NORM_CASES.values(), ids=BATCH_NORM_CASES.keys())
def test_batch_norm_matches_flax_in_training_and_evaluation_over_several_steps(shape, settings):
    ours = BatchNorm(**settings)
    theirs = nn.BatchNorm(**{FLAX_NAMES[k]: v for k, v in settings.items()})
    params = random_params(ours, shape)  # random scale and bias, given to both
    _, _, state = ours.init(KEY, (-1, *shape[1:]))
    batch_stats = theirs.init(KEY, jnp.ones(shape), use_running_average=False)["batch_stats"]
    assert jax.tree.map(jnp.shape, state) == jax.tree.map(jnp.shape, batch_stats)
    for step in range(4):  # batches whose distribution drifts: the running statistics follow
        x = random_input(shape, step) * (step + 1) + step
        y, state = ours.apply(params, x, state=state, train=True)
        expected, updates = theirs.apply({"params": params, "batch_stats": batch_stats}, x,
                                         use_running_average=False, mutable=["batch_stats"])
        batch_stats = updates["batch_stats"]
        assert_close(y, expected)
        assert_close(state["mean"], batch_stats["mean"])
        assert_close(state["var"], batch_stats["var"])
    assert float(jnp.abs(state["mean"]).min()) > 0.02  # moved from zero: the means were 0 to 3
    x = random_input(shape, 9) * 2 + 1
    evaluated, unchanged = ours.apply(params, x, state=state)
    assert_close(evaluated, theirs.apply({"params": params, "batch_stats": batch_stats}, x, use_running_average=True))
    assert unchanged is state


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
@pytest.mark.parametrize("train", unit_tier({"train": True, "eval": False}, keep="train"))
def test_batch_norm_gradients_match_finite_differences(x64, train):
    model = serial(Dense(4), BatchNorm(momentum=0.5), Tanh(), Dense(2))
    params = random_params(model, (6, 3), dtype=jnp.float64)
    _, _, state = model.init(KEY, (-1, 3))
    state = jax.tree.map(lambda s: s + 0.5, state)  # statistics that are not the identity's
    check_grads(lambda p, x: model.apply(p, x, state=state, train=train)[0],
                (params, distinct((6, 3), dtype=jnp.float64)), order=1, modes=["rev"])


def test_batch_norm_keeps_float32_statistics_for_bfloat16_inputs():
    layer = BatchNorm()
    params = random_params(layer, (32, 4))
    _, _, state = layer.init(KEY, (-1, 4))
    x = random_input((32, 4), 1) * 3 + 2
    y, moved = layer.apply(params, x.astype(jnp.bfloat16), state=state, train=True)
    exact_y, exact = layer.apply(params, x, state=state, train=True)
    assert y.dtype == jnp.bfloat16 and moved["mean"].dtype == moved["var"].dtype == jnp.float32
    assert_close(moved["mean"], exact["mean"], 2e-3)
    assert_close(y.astype(jnp.float32), exact_y, 5e-2)


def test_batch_norm_errors():
    with pytest.raises(LayerError, match=r"needs a batch with a known feature axis \(N, \.\.\., F\)"):
        BatchNorm().init(KEY, (-1, -1))
    with pytest.raises(LayerError, match=r"needs a batch"):
        BatchNorm().init(KEY, (4,))
    _, params, state = BatchNorm().init(KEY, (-1, 4))
    with pytest.raises(LayerError, match=r"expected input of shape \(\.\.\., 4\), got \(2, 3\)"):
        BatchNorm().apply(params, jnp.ones((2, 3)), state=state)
    with pytest.raises(ValueError, match="momentum must be in"):
        BatchNorm(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        BatchNorm(epsilon=0.0)


# ------------------------------------------------------------------ Dense/Conv bias
def test_dense_and_conv_without_bias():
    dense = Dense(3, bias=False)
    _, params = dense.init(KEY, (-1, 4))
    assert set(params) == {"w"}
    x = random_input((2, 4), 1)
    assert_close(dense.apply(params, x), x @ params["w"])
    conv = Conv(2, 3, bias=False)
    _, conv_params = conv.init(KEY, (-1, 5, 5, 1))
    assert set(conv_params) == {"w"}
    image = random_input((1, 5, 5, 1), 2)
    assert_close(conv.apply(conv_params, image), Conv(2, 3).apply({**conv_params, "b": jnp.zeros(2)}, image))


# --------------------------------------------------------------------------- Take
@pytest.mark.parametrize(
    "layer, expected, shape",
    [
        (Take(0), lambda x: x[..., 0], (-1, 3)),
        (Take(slice(1, None)), lambda x: x[..., 1:], (-1, 3, 3)),
        (Take(-1, axis=1), lambda x: x[:, -1], (-1, 4)),
        (Take(slice(0, 3, 2), axis=2), lambda x: x[:, :, 0:3:2], (-1, 3, 2)),
    ],
)
def test_take_picks_an_index_or_a_slice_of_an_axis(layer, expected, shape):
    x = jnp.arange(24).reshape(2, 3, 4)
    assert layer.init(KEY, (-1, 3, 4)) == (shape, {})
    np.testing.assert_array_equal(layer.apply({}, x), expected(x))


def test_take_errors():
    with pytest.raises(LayerError, match=r"index 4 is outside an axis of size 4 \(shape \(-1, 3, 4\)\)"):
        Take(4).init(KEY, (-1, 3, 4))
    for index in ("0", True, 1.0):
        with pytest.raises(TypeError, match="Take needs an int or a slice"):
            Take(index)


# ------------------------------------------------------------ Embedding id range
def test_embedding_refuses_ids_outside_the_vocabulary_at_once_and_inside_jit():
    layer = Embedding(5, 3)
    _, params = layer.init(KEY, (-1, 2))
    np.testing.assert_array_equal(layer.apply(params, jnp.array([[0, 4]])), params["table"][jnp.array([[0, 4]])])
    for bad, (lowest, highest) in ((jnp.array([[1, 5]]), (1, 5)), (jnp.array([[-1, 2]]), (-1, 2))):
        message = rf"layer 'embedding' \(Embedding\): ids must be in \[0, 5\), got ids from {lowest} to {highest}"
        with pytest.raises(LayerError, match=message):
            layer.apply(params, bad)
        with pytest.raises(Exception, match=message):  # a runtime error of the compiled program
            jax.block_until_ready(jax.jit(layer.apply)(params, bad))
    vectors = jax.jit(layer.apply)(params, jnp.array([[4, 0]]))  # good ids pass the check
    np.testing.assert_array_equal(vectors, params["table"][jnp.array([[4, 0]])])
