"""Tests of jaxdl.recurrent: shapes, numerics against flax.linen, padding, gradients, time scaling, errors,
learning."""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.nn import initializers
from jax.test_util import check_grads

from jaxdl.core import LayerError, abstract_init, serial, summary
from jaxdl.layers import Dense, Embedding
from jaxdl.losses import softmax_cross_entropy
from jaxdl.recurrent import OUTPUTS, RNN, AttentionPool, GRUCell, LSTMCell, SimpleCell, reverse_valid
from jaxdl.train import TrainState, make_train_step
from tiers import unit_tier

KEY = jax.random.key(0)
CELLS = {"simple": SimpleCell, "lstm": LSTMCell, "gru": GRUCell}
LENGTHS = jnp.array([5, 3, 1, 4])  # a padded batch of (4, 5, D)


# ------------------------------------------------------------------------ helpers
def random_params(layer, input_shape, seed: int = 1, scale: float = 0.5, dtype=jnp.float32):
    """Params of the shapes ``layer.init`` gives, filled with normal noise (biases too)."""
    _, params = abstract_init(layer, input_shape)
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(tree, [jnp.asarray(scale * rng.standard_normal(p.shape), dtype) for p in leaves])


def random_input(shape, seed: int = 2, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def valid_steps(lengths, steps: int):
    """(N, T) bool: True at the first lengths[n] steps of row n."""
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def assert_close(actual, expected, tol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


def every_output(**options):
    """A jitted ``(params, x, lengths=None) -> {output: y}`` over every output of one set of params."""
    layers = {output: RNN(**options, output=output) for output in OUTPUTS}

    def apply(params, x, lengths=None):
        return {output: layer.apply(params, x, lengths=lengths) for output, layer in layers.items()}

    return jax.jit(apply)


# --------------------------------------------------------------- 1. shapes and params
@settings(max_examples=20, deadline=None)
@given(
    cell=st.sampled_from(list(CELLS.values())),
    hidden=st.integers(1, 4),
    layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    merge=st.sampled_from(["concat", "sum"]),
    output=st.sampled_from(OUTPUTS),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 4)),
)
def test_apply_output_shape_is_the_inferred_shape(cell, hidden, layers, bidirectional, merge, output, shape):
    layer = RNN(cell(hidden), layers=layers, bidirectional=bidirectional, merge=merge, output=output)
    inferred, params = abstract_init(layer, shape)
    lengths = jax.ShapeDtypeStruct(shape[:1], jnp.int32)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    y = jax.eval_shape(partial(layer.apply, train=True, key=KEY), params, x, lengths=lengths)
    assert y.shape == inferred
    features = 2 * hidden if bidirectional and merge == "concat" else hidden
    assert inferred == ((*shape[:2], features) if output == "sequence" else (shape[0], features))
    unknown, _ = abstract_init(layer, (-1, -1, shape[2]))
    assert unknown == ((-1, -1, features) if output == "sequence" else (-1, features))


@pytest.mark.parametrize(
    "cell, expected",
    [
        (SimpleCell(3), {"w_i": (5, 3), "w_h": (3, 3), "b": (3,)}),
        (LSTMCell(3), {"w_i": (5, 12), "w_h": (3, 12), "b": (12,)}),
        (GRUCell(3), {"w_i": (5, 9), "w_h": (3, 9), "b": (9,), "b_hn": (3,)}),
    ],
    ids=CELLS.keys(),
)
def test_cell_params_have_readable_names(cell, expected):
    assert jax.tree.map(jnp.shape, cell.init(KEY, 5)) == expected


def test_stacked_bidirectional_params_nest_by_layer_and_direction():
    _, params = RNN(GRUCell(3), layers=3, bidirectional=True).init(KEY, (-1, -1, 5))
    shapes = jax.tree.map(jnp.shape, params)
    assert set(shapes) == {"layer1", "layer2", "layer3"}
    assert all(set(shapes[layer]) == {"forward", "backward"} for layer in shapes)
    assert shapes["layer1"]["backward"]["w_i"] == (5, 9)
    assert shapes["layer2"]["forward"]["w_i"] == (6, 9)  # reads both directions, concatenated
    _, params = RNN(GRUCell(3), layers=2, bidirectional=True, merge="sum").init(KEY, (-1, -1, 5))
    assert params["layer2"]["forward"]["w_i"].shape == (3, 9)
    assert not jnp.array_equal(params["layer1"]["forward"]["w_h"], params["layer1"]["backward"]["w_h"])


@pytest.mark.parametrize("make, gates", [(SimpleCell, 1), (LSTMCell, 4), (GRUCell, 3)], ids=CELLS.keys())
def test_each_gates_recurrent_kernel_is_orthogonal(make, gates):
    w_h = make(6).init(KEY, 4)["w_h"]
    for block in jnp.split(w_h, gates, axis=1):
        assert_close(block @ block.T, jnp.eye(6))


def test_initializers_are_configurable():
    cell = LSTMCell(3, kernel_init=initializers.zeros, recurrent_init=initializers.ones, bias_init=initializers.ones)
    params = cell.init(KEY, 2)
    np.testing.assert_array_equal(params["w_i"], np.zeros((2, 12)))
    np.testing.assert_array_equal(params["w_h"], np.ones((3, 12)))
    np.testing.assert_array_equal(params["b"], np.ones(12))
    assert (GRUCell(2, bias_init=initializers.ones).init(KEY, 2)["b_hn"] == 1).all()


def test_summary_shows_a_recurrent_model():
    model = serial(Embedding(50, 8), RNN(LSTMCell(16), layers=2, bidirectional=True, output="mean"), Dense(3))
    printed = []
    total = summary(model, (-1, 7), print_fn=printed.append)
    per_direction = (8 * 64 + 16 * 64 + 64) + (32 * 64 + 16 * 64 + 64)
    row = next(line for line in printed[0].splitlines() if line.split()[0] == "bilstm")
    assert "BiLSTM" in row and "(-1, 32)" in row and row.split()[-1] == f"{2 * per_direction:,}"
    assert total == 50 * 8 + 2 * per_direction + 32 * 3 + 3


# ---------------------------------------------------------------- 2. flax.linen numerics
def split_gates(w, gates):
    return jnp.split(w, gates, axis=-1)


def lstm_to_flax(p):
    kernels_i, kernels_h, biases = (split_gates(p[k], 4) for k in ("w_i", "w_h", "b"))
    params = {f"i{g}": {"kernel": k} for g, k in zip("ifgo", kernels_i)}
    params |= {f"h{g}": {"kernel": k, "bias": b} for g, k, b in zip("ifgo", kernels_h, biases)}
    return params


def gru_to_flax(p):
    kernels_i, kernels_h, biases = (split_gates(p[k], 3) for k in ("w_i", "w_h", "b"))
    params = {f"i{g}": {"kernel": k, "bias": b} for g, k, b in zip("rzn", kernels_i, biases)}
    params |= {f"h{g}": {"kernel": k} for g, k in zip("rzn", kernels_h)}
    params["hn"]["bias"] = p["b_hn"]
    return params


def simple_to_flax(p):
    return {"i": {"kernel": p["w_i"], "bias": p["b"]}, "h": {"kernel": p["w_h"]}}


FLAX_CELLS = {
    "simple": (SimpleCell, nn.SimpleCell, simple_to_flax, lambda carry: carry),
    "lstm": (LSTMCell, nn.LSTMCell, lstm_to_flax, lambda carry: carry[1]),
    "gru": (GRUCell, nn.GRUCell, gru_to_flax, lambda carry: carry),
}


def flax_run(flax_cell, params, x, lengths, reverse=False):
    """flax.linen's RNN over a padded batch: (last valid carry, outputs)."""
    rnn = nn.RNN(flax_cell, return_carry=True, reverse=reverse, keep_order=True)
    return jax.jit(rnn.apply)({"params": {"cell": params}}, x, seq_lengths=lengths)


@pytest.mark.parametrize("ours, theirs, to_flax, hidden_of", FLAX_CELLS.values(), ids=FLAX_CELLS.keys())
def test_bidirectional_cells_match_flax_on_a_padded_batch(ours, theirs, to_flax, hidden_of):
    x = random_input((4, 5, 3))
    params = random_params(RNN(ours(6), bidirectional=True), x.shape)
    forward, backward = (to_flax(params["layer1"][direction]) for direction in ("forward", "backward"))
    carry_f, outputs_f = flax_run(theirs(6), forward, x, LENGTHS)
    carry_b, outputs_b = flax_run(theirs(6), backward, x, LENGTHS, reverse=True)

    ours_ = every_output(cell=ours(6), bidirectional=True)(params, x, LENGTHS)
    valid = valid_steps(LENGTHS, 5)
    assert_close(ours_["sequence"][..., :6][valid], outputs_f[valid])
    assert_close(ours_["sequence"][..., 6:][valid], outputs_b[valid])
    assert_close(ours_["last"], jnp.concatenate([hidden_of(carry_f), hidden_of(carry_b)], axis=-1))


# --------------------------------------------------------------------- 3. padding
CONFIGS = {
    "simple": {"cell": SimpleCell(4)},
    "lstm-bi": {"cell": LSTMCell(4), "bidirectional": True},
    "gru-bi-sum-2layers": {"cell": GRUCell(4), "bidirectional": True, "merge": "sum", "layers": 2},
    "lstm-3layers": {"cell": LSTMCell(3), "layers": 3},
}


def garbage_at_padding(x, lengths, seed=7):
    """``x`` with huge values, infinities and NaN at the padded steps."""
    junk = 1e30 * random_input(x.shape, seed)
    junk = junk.at[:, -1, 0].set(jnp.nan).at[:, -1, 1].set(jnp.inf)
    return jnp.where(valid_steps(lengths, x.shape[1])[..., None], x, junk)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
@pytest.mark.parametrize("options", unit_tier(CONFIGS, keep="lstm-bi"))
def test_padded_steps_change_neither_outputs_nor_gradients(options):
    x = random_input((4, 5, 3))
    params = random_params(RNN(**options), x.shape)
    lengths = LENGTHS.at[0].set(4)  # every row is padded: the last column is all garbage
    valid = valid_steps(lengths, 5)
    apply = every_output(**options)

    @jax.jit
    def outputs_and_gradients(x):
        """Every output, and the gradient of a random projection of them all with respect to the params."""
        outputs, vjp = jax.vjp(lambda p: apply(p, x, lengths), params)
        return outputs, vjp({output: jax.random.normal(KEY, y.shape) for output, y in outputs.items()})[0]

    clean = outputs_and_gradients(jnp.where(valid[..., None], x, 0))
    junk = outputs_and_gradients(garbage_at_padding(x, lengths))
    jax.tree.map(np.testing.assert_array_equal, junk, clean)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(clean))
    np.testing.assert_array_equal(clean[0]["sequence"][~valid], 0)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
@pytest.mark.parametrize("options", unit_tier(CONFIGS, keep="gru-bi-sum-2layers"))
def test_padded_batch_equals_each_sequence_alone(options):
    apply = every_output(**options)
    x = random_input((4, 5, 3))
    params = random_params(RNN(**options), x.shape)
    batched = apply(params, x, LENGTHS)
    for n, length in enumerate(LENGTHS.tolist()):
        alone = apply(params, x[n : n + 1, :length])
        assert_close(batched["sequence"][n, :length], alone["sequence"][0])
        for output in OUTPUTS[1:]:
            assert_close(batched[output][n], alone[output][0])


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_backward_direction_reads_the_valid_part_backward():
    """The backward half of a bidirectional layer is a forward run over the reversed valid steps."""
    x = random_input((4, 5, 3))
    bidirectional = RNN(GRUCell(4), bidirectional=True)
    params = random_params(bidirectional, x.shape)
    backward = jax.jit(bidirectional.apply)(params, x, lengths=LENGTHS)[..., 4:]
    forward_only = {"layer1": {"forward": params["layer1"]["backward"]}}
    forward = jax.jit(RNN(GRUCell(4)).apply)
    for n, length in enumerate(LENGTHS.tolist()):
        reversed_alone = x[n : n + 1, :length][:, ::-1]
        assert_close(backward[n, :length], forward(forward_only, reversed_alone)[0, ::-1])


def test_reverse_valid_reverses_only_the_valid_prefix():
    x = jnp.array([[1, 2, 3, 0, 0], [1, 2, 3, 4, 5], [9, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    lengths = jnp.array([3, 5, 1, 0])
    expected = [[3, 2, 1, 0, 0], [5, 4, 3, 2, 1], [9, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    np.testing.assert_array_equal(reverse_valid(x, lengths), expected)
    features = random_input((4, 5, 2, 3))  # any trailing axes
    np.testing.assert_array_equal(reverse_valid(reverse_valid(features, lengths), lengths), features)
    np.testing.assert_array_equal(reverse_valid(features, lengths)[0, 0], features[0, 2])


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_mask_and_lengths_give_the_same_result():
    layer = RNN(LSTMCell(4), bidirectional=True, layers=2)
    x = random_input((4, 5, 3))
    params = random_params(layer, x.shape)
    apply = jax.jit(layer.apply)
    mask = valid_steps(LENGTHS, 5)
    expected = apply(params, x, lengths=LENGTHS)
    np.testing.assert_array_equal(apply(params, x, step_mask=mask), expected)
    np.testing.assert_array_equal(apply(params, x, step_mask=mask.astype(np.float32)), expected)  # 0/1 masks too
    np.testing.assert_array_equal(apply(params, x), apply(params, x, lengths=jnp.full((4,), 5)))
    np.testing.assert_array_equal(apply(params, x, lengths=LENGTHS.at[0].set(9)), expected)  # clipped to T


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_empty_sequences_give_zeros_and_finite_gradients():
    options = {"cell": LSTMCell(4), "bidirectional": True, "layers": 2}
    apply = every_output(**options)
    x = random_input((2, 5, 3))
    params = random_params(RNN(**options), x.shape)
    lengths = jnp.array([0, 3])
    outputs = apply(params, x, lengths)
    for output, y in outputs.items():
        np.testing.assert_array_equal(y[0], np.zeros(y.shape[1:]), err_msg=output)
        assert np.abs(np.asarray(y[1])).sum() > 0, output

    @jax.jit
    def gradients(params, x):
        def total(p, x, output):
            return apply(p, x, lengths)[output].sum()

        return {output: jax.grad(total, argnums=(0, 1))(params, x, output) for output in OUTPUTS}

    for output, (to_params, to_x) in gradients(params, x).items():
        assert all(np.isfinite(g).all() for g in jax.tree.leaves(to_params)), output
        np.testing.assert_array_equal(to_x[0], 0, err_msg=output)  # the empty sequence is never read


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_stacking_composes_single_layers():
    x = random_input((4, 5, 3))
    stacked = RNN(GRUCell(4), layers=2, bidirectional=True)
    params = random_params(stacked, x.shape)
    single = jax.jit(RNN(GRUCell(4), bidirectional=True).apply)
    first = single({"layer1": params["layer1"]}, x, lengths=LENGTHS)
    second = single({"layer1": params["layer2"]}, first, lengths=LENGTHS)
    assert_close(jax.jit(stacked.apply)(params, x, lengths=LENGTHS), second)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_sum_merge_adds_the_directions_that_concat_puts_side_by_side():
    x = random_input((4, 5, 3))
    params = random_params(RNN(SimpleCell(4), bidirectional=True), x.shape)
    concat = every_output(cell=SimpleCell(4), bidirectional=True)(params, x, LENGTHS)
    summed = every_output(cell=SimpleCell(4), bidirectional=True, merge="sum")(params, x, LENGTHS)
    for output in ("sequence", "last", "mean"):  # linear in each direction (max is not)
        assert_close(summed[output], concat[output][..., :4] + concat[output][..., 4:])


def test_pooled_outputs_by_hand():
    x = random_input((4, 5, 3))
    params = random_params(RNN(GRUCell(4)), x.shape)
    outputs = jax.tree.map(np.asarray, every_output(cell=GRUCell(4))(params, x, LENGTHS))
    for n, length in enumerate(LENGTHS.tolist()):
        valid = outputs["sequence"][n, :length]
        assert_close(outputs["last"][n], valid[-1])
        assert_close(outputs["mean"][n], valid.mean(0))
        assert_close(outputs["max"][n], valid.max(0))


# ----------------------------------------------------------------- 4. gradients
@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


GRAD_CASES = {
    "simple": {"cell": SimpleCell(3)},
    "lstm-bi-2layers": {"cell": LSTMCell(3), "bidirectional": True, "layers": 2},
    "gru-bi-sum": {"cell": GRUCell(3), "bidirectional": True, "merge": "sum"},
}


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
@pytest.mark.parametrize("options", unit_tier(GRAD_CASES, keep="lstm-bi-2layers"))
def test_gradients_match_finite_differences(x64, options):
    """Every output at once: sequence, last, mean and max (no ties in random data)."""
    apply = every_output(**options)
    x = random_input((3, 4, 2), dtype=jnp.float64)
    params = random_params(RNN(**options), x.shape, dtype=jnp.float64)
    lengths = jnp.array([4, 2, 1])
    check_grads(lambda p, x: apply(p, x, lengths), (params, x), order=1, modes=["rev"])


@pytest.mark.parametrize("options", unit_tier(CONFIGS, keep="lstm-bi"))
def test_fused_loop_equals_jaxs_autodiff_on_padded_and_empty_sequences(options):
    """The same outputs, bit for bit, and the same gradients (params and inputs) within float rounding."""
    x = random_input((4, 5, 3))
    lengths = jnp.array([5, 3, 0, 2])
    params = random_params(RNN(**options), x.shape)

    def outputs_and_gradients(fused):
        apply = every_output(**options, fused=fused)
        outputs, vjp = jax.vjp(lambda p, x: apply(p, x, lengths), params, x)
        return outputs, vjp({output: jax.random.normal(KEY, y.shape) for output, y in outputs.items()})

    (fused_outputs, fused_gradients), (outputs, gradients) = outputs_and_gradients(True), outputs_and_gradients(False)
    jax.tree.map(np.testing.assert_array_equal, fused_outputs, outputs)
    jax.tree.map(assert_close, fused_gradients, gradients)


@pytest.mark.parametrize("shape", [(0, 5, 3), (2, 0, 3)], ids=["no-sequences", "no-steps"])
def test_fused_loop_runs_and_differentiates_empty_batches(shape):
    x = jnp.ones(shape)
    outputs = {}
    for fused in (True, False):
        layer = RNN(LSTMCell(4), bidirectional=True, output="last", fused=fused)
        params = random_params(layer, (-1, -1, 3))
        y, grads = jax.value_and_grad(lambda p: jnp.sum(layer.apply(p, x)))(params)
        outputs[fused] = (y, grads)
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))
    jax.tree.map(assert_close, outputs[True], outputs[False])


@pytest.mark.parametrize("make", unit_tier(CELLS, keep="gru"))
def test_fused_stream_gradients_reach_the_state_it_starts_from(make):
    x = random_input((2, 4, 3))
    lengths = jnp.array([4, 1])

    def gradients(fused):
        rnn = RNN(make(3), layers=2, stream=True, fused=fused)
        _, params, state = rnn.init(KEY, x.shape)
        state = jax.tree.map(lambda c: random_input(c.shape, seed=5), state)

        def loss(params, state):
            y, carried = rnn.apply(params, x, state=state, lengths=lengths)
            return jnp.sum(jnp.sin(y)) + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(carried))

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, state)

    jax.tree.map(assert_close, gradients(True), gradients(False))


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_fused_gradients_of_gradients_match_finite_differences(x64):
    layer = RNN(LSTMCell(2), output="last")
    x = random_input((2, 3, 2), dtype=jnp.float64)
    params = random_params(layer, x.shape, dtype=jnp.float64)
    check_grads(jax.jit(lambda p, x: layer.apply(p, x, lengths=jnp.array([3, 1]))), (params, x), order=2,
                modes=["rev"])


def test_forward_mode_needs_the_autodiff_loop():
    x = random_input((2, 3, 2))
    layer = RNN(GRUCell(2), output="last")
    params = random_params(layer, x.shape)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda x: layer.apply(params, x), (x,), (x,))
    autodiff = RNN(GRUCell(2), output="last", fused=False)
    _, tangent = jax.jvp(lambda x: autodiff.apply(params, x), (x,), (x,))
    _, vjp = jax.vjp(lambda x: layer.apply(params, x), x)
    # <J x, J x> two ways: forward mode of the autodiff loop against reverse mode of the fused one
    assert_close(jnp.vdot(tangent, tangent), jnp.vdot(vjp(tangent)[0], x), tol=1e-4)


# ------------------------------------------------------------------- 5. time and compile
def equations(layer, steps):
    x = jnp.zeros((2, steps, 3))
    params = random_params(layer, x.shape)
    return jax.make_jaxpr(partial(layer.apply, lengths=jnp.array([steps, 1])))(params, x).jaxpr.eqns


def find(eqns, primitive: str, *, into_scans: bool = True) -> list:
    """The equations of ``primitive`` in ``eqns`` and in the jaxprs inside them (calls, custom
    derivatives and, with ``into_scans``, scan bodies)."""
    found = []
    for eqn in eqns:
        if eqn.primitive.name == primitive:
            found.append(eqn)
        if eqn.primitive.name == "scan" and not into_scans:
            continue
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                found += find(inner.eqns, primitive, into_scans=into_scans)
    return found


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_unrolling_changes_neither_outputs_nor_gradients():
    """2 steps per loop iteration over 5 steps (the last iteration is partial), both directions, padded."""
    x = random_input((4, 5, 3))
    params = random_params(RNN(LSTMCell(4), bidirectional=True), x.shape)

    def outputs_and_gradients(unroll):
        layers = {output: RNN(LSTMCell(4), bidirectional=True, output=output, unroll=unroll)
                  for output in ("sequence", "last")}

        @jax.jit
        def run(params):
            def apply(p):
                return {output: layer.apply(p, x, lengths=LENGTHS) for output, layer in layers.items()}

            outputs, vjp = jax.vjp(apply, params)
            return outputs, vjp({output: jax.random.normal(KEY, y.shape) for output, y in outputs.items()})[0]

        return run(params)

    jax.tree.map(assert_close, outputs_and_gradients(2), outputs_and_gradients(1))
    scans = find(equations(RNN(LSTMCell(4), bidirectional=True, unroll=2), 5), "scan")
    assert [e.params["unroll"] for e in scans] == [2, 2]


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_program_size_does_not_grow_with_sequence_length(options):
    layer = RNN(**options)
    assert len(equations(layer, 5)) == len(equations(layer, 50))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autodiff"])
@pytest.mark.parametrize("make", CELLS.values(), ids=CELLS.keys())
def test_loop_body_has_only_the_recurrent_matmul(make, fused):
    eqns = equations(RNN(make(4), fused=fused), 5)
    (scan,) = find(eqns, "scan")
    assert len(find(scan.params["jaxpr"].jaxpr.eqns, "dot_general")) == 1
    assert len(find(eqns, "dot_general", into_scans=False)) == 1  # all inputs projected before the loop


def weight_gradient_dots(layer, params, x):
    """The matmuls of ``layer``'s gradient inside its backward loop, and the shapes of those after it."""
    eqns = jax.make_jaxpr(jax.grad(lambda p: jnp.sum(jnp.sin(layer.apply(p, x, lengths=jnp.array([5, 2])))))
                          )(params).jaxpr.eqns
    (backward,) = [scan for scan in find(eqns, "scan") if scan.params["reverse"]]
    inside = find(backward.params["jaxpr"].jaxpr.eqns, "dot_general")
    after = [eqn.outvars[0].aval.shape for eqn in find(eqns, "dot_general", into_scans=False)]
    return inside, after


@pytest.mark.parametrize("make", CELLS.values(), ids=CELLS.keys())
def test_fused_backward_computes_the_recurrent_weights_gradient_after_the_loop(make):
    x = jnp.ones((2, 5, 3))
    layer = RNN(make(4))
    params = random_params(layer, x.shape)
    w_h = params["layer1"]["forward"]["w_h"].shape  # (4, G)
    inside, after = weight_gradient_dots(layer, params, x)
    assert len(inside) == 1 and inside[0].outvars[0].aval.shape == (2, 4)  # only d h_prev = d h_proj @ w_h.T
    assert w_h in after
    inside, after = weight_gradient_dots(RNN(make(4), fused=False), params, x)  # JAX's: d w_h in the loop
    assert len(inside) == 2 and w_h not in after and w_h[::-1] not in after


# ---------------------------------------------------------------------- 6. dropout
@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_dropout_acts_between_layers_only_while_training():
    x = random_input((4, 5, 3))
    layer = RNN(LSTMCell(8), layers=2, dropout=0.5)
    params = random_params(layer, x.shape)
    apply = jax.jit(partial(layer.apply, lengths=LENGTHS), static_argnames="train")
    evaluation = apply(params, x)
    trained = [apply(params, x, key=jax.random.key(k), train=True) for k in (1, 1, 2)]
    np.testing.assert_array_equal(evaluation, jax.jit(RNN(LSTMCell(8), layers=2).apply)(params, x, lengths=LENGTHS))
    np.testing.assert_array_equal(trained[0], trained[1])
    assert not np.allclose(trained[0], evaluation)
    assert not np.allclose(trained[0], trained[2])
    np.testing.assert_array_equal(trained[0][~valid_steps(LENGTHS, 5)], 0)
    one_layer = jax.jit(RNN(LSTMCell(8), dropout=0.5).apply, static_argnames="train")
    one = {"layer1": params["layer1"]}
    np.testing.assert_array_equal(one_layer(one, x, key=KEY, train=True), one_layer(one, x))


def test_dropout_training_without_a_key_raises():
    layer = RNN(GRUCell(2), layers=2, dropout=0.3, name="encoder")
    x = random_input((2, 3, 2))
    with pytest.raises(LayerError, match="'serial/encoder'.*needs a random key"):
        serial(layer).apply({"encoder": random_params(layer, x.shape)}, x, train=True)


# ------------------------------------------------------------------ 7. error messages
X = jnp.ones((2, 5, 3))
ERROR_CASES = {
    "rank": ({}, jnp.ones((5, 3)), ["'lstm'", "(LSTM)", "3-D input (N, T, D)", "(5, 3)"]),
    "features": ({}, jnp.ones((2, 5, 4)), ["'lstm'", "(..., 3)", "(2, 5, 4)"]),
    "int": ({}, X.astype(jnp.int32), ["floating-point", "int32"]),
    "mask-shape": ({"step_mask": jnp.ones((2, 4), bool)}, X,
                   ["step_mask must be (N, T) = (2, 5)", "(2, 5, 3)", "got (2, 4)"]),
    "lengths-shape": ({"lengths": jnp.array([5, 5, 5])}, X, ["lengths must be (N,) = (2,)", "got (3)"]),
    "lengths-float": ({"lengths": jnp.array([5.0, 2.0])}, X, ["lengths must be integers", "float32"]),
    "mask-and-lengths": ({"step_mask": jnp.ones((2, 5), bool), "lengths": jnp.array([5, 5])}, X,
                         ["both step_mask and lengths"]),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("kwargs, x, parts", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_wrong_input_names_layer_and_shapes(kwargs, x, parts, jit):
    layer = RNN(LSTMCell(4))
    params = random_params(layer, (2, 5, 3))
    apply = jax.jit(layer.apply) if jit else layer.apply
    with pytest.raises(LayerError) as error:
        apply(params, x, **kwargs)
    for part in parts:
        assert part in str(error.value)


def test_errors_inside_serial_name_the_path():
    model = serial(RNN(LSTMCell(4), name="encoder", output="last"), Dense(2))
    _, params = model.init(KEY, (-1, -1, 3))
    with pytest.raises(LayerError, match=r"'serial/encoder' \(LSTM\).*\(\.\.\., 3\)"):
        model.apply(params, jnp.ones((2, 5, 4)))


@pytest.mark.parametrize(
    "shape, parts",
    [((-1, 5), ["3-D input (N, T, D)", "(-1, 5)"]), ((-1, 5, -1), ["known feature axis D", "(-1, 5, -1)"])],
)
def test_init_with_an_impossible_shape_raises(shape, parts):
    with pytest.raises(LayerError) as error:
        RNN(GRUCell(2), bidirectional=True).init(KEY, shape)
    assert "'bigru' (BiGRU)" in str(error.value)
    for part in parts:
        assert part in str(error.value)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: LSTMCell(0), "LSTMCell hidden must be a positive int, got 0"),
        (lambda: GRUCell(2.5), "GRUCell hidden must be a positive int"),
        (lambda: RNN(LSTMCell(3), layers=0), "RNN layers must be a positive int"),
        (lambda: RNN(LSTMCell(3), unroll=0), "RNN unroll must be a positive int, got 0"),
        (lambda: RNN(LSTMCell(3), merge="mean"), r"merge must be one of \('concat', 'sum'\), got 'mean'"),
        (lambda: RNN(LSTMCell(3), output="first"), r"output must be one of \('sequence', 'last', 'mean', 'max'\)"),
        (lambda: RNN(LSTMCell(3), dropout=1.0), r"probability of dropping, in \[0, 1\)"),
    ],
)
def test_invalid_constructor_arguments_raise(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_rnn_of_something_else_than_a_cell_raises():
    with pytest.raises(TypeError, match=r"RNN needs a Cell such as LSTMCell\(64\), got LSTMCell"):
        RNN(nn.LSTMCell(3))


def test_negative_lengths_are_a_callers_bug_said_at_once_and_inside_jit():
    layer = RNN(GRUCell(3))
    params = random_params(layer, (2, 4, 2))
    message = r"lengths must be >= 0, got -1: a negative length is a bug in the caller"
    with pytest.raises(LayerError, match=message):
        layer.apply(params, random_input((2, 4, 2)), lengths=jnp.array([3, -1]))
    with pytest.raises(Exception, match=message):
        jax.block_until_ready(jax.jit(layer.apply)(params, random_input((2, 4, 2)), lengths=jnp.array([3, -1])))
    clipped = jax.jit(layer.apply)(params, random_input((2, 4, 2)), lengths=jnp.array([9, 4]))  # above T: all steps
    assert_close(clipped, layer.apply(params, random_input((2, 4, 2))))


# ------------------------------------------------------------ 8. step by step (stream)
@pytest.mark.parametrize("cell, layers", unit_tier({"lstm-2": ("lstm", 2), "gru-1": ("gru", 1), "simple-3": ("simple", 3)},
                                                   keep="lstm-2", unpack=True))
@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_a_stream_read_in_pieces_or_step_by_step_equals_the_full_sequence(cell, layers):
    full, stream = RNN(CELLS[cell](4), layers=layers), RNN(CELLS[cell](4), layers=layers, stream=True)
    params = random_params(full, (3, 9, 2))
    _, stream_params, state = stream.init(KEY, (3, 1, 2))
    assert jax.tree.structure(stream_params) == jax.tree.structure(params)  # the same params serve both
    x = random_input((3, 9, 2))
    expected = full.apply(params, x)
    apply = jax.jit(stream.apply)
    pieces, carry = [], state
    for begin, end in ((0, 4), (4, 5), (5, 9)):
        y, carry = apply(params, x[:, begin:end], state=carry)
        pieces.append(y)
    assert_close(jnp.concatenate(pieces, axis=1), expected)
    steps, carry = [], state
    for t in range(9):
        y, carry = apply(params, x[:, t : t + 1], state=carry)
        steps.append(y)
    assert_close(jnp.concatenate(steps, axis=1), expected)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_a_stream_with_padding_carries_the_state_after_the_last_valid_step():
    full, stream = RNN(LSTMCell(4), output="last"), RNN(LSTMCell(4), output="last", stream=True)
    params = random_params(full, (2, 6, 3))
    _, _, state = stream.init(KEY, (2, 1, 3))
    x = random_input((2, 6, 3))
    _, carry = stream.apply(params, x[:, :3], state=state, lengths=jnp.array([3, 2]))  # row 1 stops at step 2
    last, _ = stream.apply(params, x[:, 3:], state=carry, lengths=jnp.array([3, 0]))  # and reads nothing more
    assert_close(last[0], full.apply(params, x)[0])
    second, _ = stream.apply(params, x[1:, :2], state=jax.tree.map(lambda c: c[1:], state))
    assert_close(carry["layer1"]["forward"][1][1], second[0])  # the carry (c, h): h after its 2 valid steps
    np.testing.assert_array_equal(last[1], np.zeros(4))  # no step read in that call: "last" is zeros


def test_stream_errors():
    with pytest.raises(ValueError, match="stream reads forward only"):
        RNN(GRUCell(2), bidirectional=True, stream=True)
    with pytest.raises(LayerError, match=r"init needs the batch size, e.g. \(1, T, D\)"):
        RNN(GRUCell(2), stream=True).init(KEY, (-1, 5, 3))
    stream = RNN(GRUCell(2), layers=2, stream=True)
    _, params, state = stream.init(KEY, (1, 1, 3))
    with pytest.raises(LayerError, match="keeps state"):
        stream.apply(params, jnp.ones((1, 1, 3)))
    with pytest.raises(LayerError, match=r"the state given holds \['layer1'\], not this layer's"):
        stream.apply(params, jnp.ones((1, 1, 3)), state={"layer1": state["layer1"]})
    with pytest.raises(LayerError, match=r"the state carries 1 sequences \(the batch size init was given\), got a "
                                         r"batch of 2"):
        stream.apply(params, jnp.ones((2, 1, 3)), state=state)


def test_a_layer_that_needs_lengths_refuses_a_call_without_them():
    layer = RNN(LSTMCell(3), needs_lengths=True)
    params = random_params(layer, (2, 4, 2))
    with pytest.raises(LayerError, match=r"needs to know where each one ends: give lengths= \(N,\)"):
        layer.apply(params, random_input((2, 4, 2)))
    assert_close(layer.apply(params, random_input((2, 4, 2)), lengths=jnp.array([4, 4])),
                 RNN(LSTMCell(3)).apply(params, random_input((2, 4, 2))))


# ------------------------------------------------------------------------ 9. learning
def recall_first_symbol(key, n: int, steps: int = 12, symbols: int = 3):
    """Random one-hot symbols x (n, steps, symbols); the label y (n,) is the first of them."""
    ids = jax.random.randint(key, (n, steps), 0, symbols)
    return {"x": jax.nn.one_hot(ids, symbols), "y": ids[:, 0]}


@pytest.mark.slow  # training
@pytest.mark.parametrize("make", CELLS.values(), ids=CELLS.keys())
def test_each_cell_learns_to_recall_the_first_symbol_of_a_sequence(make):
    """Only the state carried over 11 later symbols can tell the first one: chance (1/3) before training."""
    train, test = (recall_first_symbol(jax.random.key(seed), 256) for seed in (1, 2))
    model = serial(RNN(make(16), output="last"), Dense(3))
    _, params = model.init(KEY, (-1, 12, 3))
    optimizer = optax.adam(0.02)
    state = TrainState.create(params, optimizer, KEY)
    step = make_train_step(model, softmax_cross_entropy, optimizer)

    def test_accuracy(state):  # a step's metrics are those of the params it is given; its update is dropped
        return step(state, test)[1]["accuracy"]

    assert test_accuracy(state) < 0.5
    for _ in range(100):
        state, _ = step(state, train)
    assert test_accuracy(state) > 0.95


# ---------------------------------------------------------------------- attention pooling
def test_attention_pool_is_the_softmax_weighted_mean_of_the_valid_steps_by_hand():
    layer = AttentionPool(4)
    shape, params = layer.init(jax.random.key(0), (-1, 5, 3))
    assert shape == (-1, 3) and {k: v.shape for k, v in params.items()} == {"w": (3, 4), "b": (4,), "v": (4,)}
    x = np.asarray(jax.random.normal(jax.random.key(1), (3, 5, 3)))
    lengths = np.array([5, 2, 0])
    pooled = layer.apply(params, x, lengths=lengths)

    def by_hand(states):
        scores = np.tanh(states @ np.asarray(params["w"]) + np.asarray(params["b"])) @ np.asarray(params["v"])
        weights = np.exp(scores - scores.max())
        return (weights / weights.sum()) @ states

    np.testing.assert_allclose(pooled[0], by_hand(x[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled[1], by_hand(x[1, :2]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pooled[2], 0)  # an empty sequence
    padded = x.copy()
    padded[1, 2:] = 1e6  # whatever the padding holds
    np.testing.assert_array_equal(layer.apply(params, padded, lengths=lengths), pooled)
    grads = jax.grad(lambda x: layer.apply(params, x, lengths=lengths).sum())(padded)
    assert np.isfinite(grads).all() and not grads[1, 2:].any() and not grads[2].any()
    np.testing.assert_allclose(layer.apply(params, x), layer.apply(params, x, lengths=np.array([5, 5, 5])))
    with pytest.raises(LayerError, match=r"attentionpool.*lengths must be \(N,\) = \(3,\)"):
        layer.apply(params, x, lengths=lengths[:2])
    with pytest.raises(LayerError, match=r"attentionpool.*expected input of shape \(..., 3\), got \(3, 5, 2\)"):
        layer.apply(params, x[..., :2], lengths=lengths)
