"""Tests of jaxdl.core: the layer contract. Combinators, state threaded through any nesting,
context reaching the layers that read it, the errors of a bad call, composites of your own,
summaries of every model, named scopes in the compiled program, and runtime checks."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_layers import KEY, assert_close, random_input, random_params

import jaxdl as dl
from jaxdl import models
from jaxdl.core import (
    Layer,
    LayerError,
    abstract_init,
    apply_child,
    composite,
    count_params,
    init_child,
    initial_state,
    parallel,
    raise_if,
    serial,
    summary,
)
from jaxdl.layers import (
    BatchNorm,
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
    MaxPool,
    ReLU,
    Tanh,
)


# -------------------------------------------------------------- 6. serial / parallel
@pytest.mark.parametrize(
    "model, children, param_names",
    [
        (serial(Dense(3), ReLU(), Dense(2)), ["dense1", "relu", "dense2"], {"dense1", "dense2"}),
        (serial(Dense(3), ReLU(), Dense(3), ReLU()), ["dense1", "relu1", "dense2", "relu2"], {"dense1", "dense2"}),
        (serial(Conv(2), MaxPool(), Flatten(), Dense(2)), ["conv", "maxpool", "flatten", "dense"], {"conv", "dense"}),
        (serial(Dense(3, name="in"), Tanh(), Dense(2, name="out")), ["in", "tanh", "out"], {"in", "out"}),
        (serial(Dense(3, name="a"), Dense(3, name="a")), ["a1", "a2"], {"a1", "a2"}),
    ],
)
def test_serial_names_its_layers(model, children, param_names):
    assert [name for name, _ in model.children] == children
    _, params = model.init(KEY, (-1, 4, 4, 2) if children[0] == "conv" else (-1, 4))
    assert set(params) == param_names


def test_serial_composes_in_order():
    model = serial(Dense(5), Tanh(), Dense(2))
    params = random_params(model, (-1, 3))
    x = random_input((4, 3), 2)
    hidden = jnp.tanh(x @ params["dense1"]["w"] + params["dense1"]["b"])
    assert_close(model.apply(params, x), hidden @ params["dense2"]["w"] + params["dense2"]["b"])


def test_nested_serial_nests_params():
    model = serial(serial(Dense(3), ReLU(), name="block"), Dense(2))
    _, params = model.init(KEY, (-1, 4))
    assert jax.tree.map(jnp.shape, params) == {
        "block": {"dense": {"w": (4, 3), "b": (3,)}},
        "dense": {"w": (3, 2), "b": (2,)},
    }


def test_parallel_applies_layer_i_to_input_i():
    dense_a, dense_b = Dense(2), Dense(3)
    model = parallel(dense_a, Tanh(), dense_b)
    out_shape, params = model.init(KEY, ((-1, 4), (-1, 7), (-1, 5)))
    assert out_shape == ((-1, 2), (-1, 7), (-1, 3))
    assert set(params) == {"dense1", "dense2"}
    a, b, c = random_input(((2, 4), (2, 7), (2, 5)), 1)
    ya, yb, yc = model.apply(params, (a, b, c))
    assert_close(ya, dense_a.apply(params["dense1"], a))
    assert_close(yb, jnp.tanh(b))
    assert_close(yc, dense_b.apply(params["dense2"], c))


def test_residual_block_adds_its_input():
    block = serial(Dense(4), Tanh(), Dense(4), name="block")
    model = serial(FanOut(2), parallel(block, Identity()), FanInSum())
    params = random_params(model, (-1, 4))
    x = random_input((3, 4), 2)
    assert_close(model.apply(params, x), x + block.apply(params["parallel"]["block"], x))


def test_fan_in_concat_concatenates_the_branches():
    model = serial(FanOut(2), parallel(Identity(), Dense(3)), FanInConcat())
    out_shape, params = model.init(KEY, (-1, 2))
    assert out_shape == (-1, 5)
    x = random_input((4, 2), 1)
    y = model.apply(params, x)
    assert_close(y[:, :2], x)
    assert_close(y[:, 2:], Dense(3).apply(params["parallel"]["dense"], x))


# ------------------------------------------------------------------------- 7. summary
def summary_lines(model, input_shape):
    printed = []
    total = summary(model, input_shape, print_fn=printed.append)
    return total, "\n".join(printed).splitlines()


def find_row(lines, name):
    rows = [line for line in lines if line.split() and line.split()[0] == name]
    assert len(rows) == 1, f"no single row for {name!r} in\n" + "\n".join(lines)
    return rows[0]


SUMMARY_CASES = {
    "mlp": (
        serial(Dense(3), ReLU(), Dense(1), name="mlp"),
        (-1, 2),
        [("mlp", (-1, 1), 13), ("dense1", (-1, 3), 9), ("relu", (-1, 3), 0), ("dense2", (-1, 1), 4)],
    ),
    "cnn": (
        serial(Conv(4, 3), ReLU(), MaxPool(2), Flatten(), Dense(10), Dropout(0.5), LayerNorm(), name="cnn"),
        (8, 8, 8, 3),
        [
            ("cnn", (8, 10), 782),
            ("conv", (8, 8, 8, 4), 3 * 3 * 3 * 4 + 4),
            ("maxpool", (8, 4, 4, 4), 0),
            ("flatten", (8, 64), 0),
            ("dense", (8, 10), 64 * 10 + 10),
            ("dropout", (8, 10), 0),
            ("layernorm", (8, 10), 20),
        ],
    ),
    "residual": (
        serial(Embedding(100, 16), FanOut(2), parallel(serial(Dense(16), name="block"), Identity()), FanInSum()),
        (-1, 5),
        [("serial", (-1, 5, 16), 1600 + 272), ("embedding", (-1, 5, 16), 1600), ("block", (-1, 5, 16), 272)],
    ),
}


@pytest.mark.parametrize("model, input_shape, rows", SUMMARY_CASES.values(), ids=SUMMARY_CASES.keys())
def test_summary_lists_layers_shapes_and_param_counts(model, input_shape, rows):
    total, lines = summary_lines(model, input_shape)
    for name, shape, count in rows:
        row = find_row(lines, name)
        assert str(shape) in row
        assert row.split()[-1] == f"{count:,}"
    expected_total = rows[0][2]
    assert total == expected_total == count_params(abstract_init(model, input_shape)[1])
    assert re.search(rf"^total params: {expected_total:,} \(", lines[-1])


def test_summary_prints_by_default(capsys):
    assert summary(Dense(3), (-1, 2)) == 9
    out = capsys.readouterr().out
    assert "Dense" in find_row(out.splitlines(), "dense") and "total params: 9 " in out


# --------------------------------------------------------------------------- 8. state
def nested_batch_norms():
    """BatchNorms at three depths, one inside a branch of a parallel."""
    left = serial(Dense(4), BatchNorm(), name="left")
    return serial(Dense(4), BatchNorm(), FanOut(2), parallel(left, Identity()), FanInSum(), BatchNorm(), name="net")


def test_state_is_named_like_the_params_and_threaded_through_any_nesting():
    model = nested_batch_norms()
    assert model.stateful and not dict(model.children)["dense"].stateful
    shape, params, state = model.init(KEY, (-1, 3))
    assert shape == (-1, 4)
    assert jax.tree.map(jnp.shape, state) == {
        "batchnorm1": {"mean": (4,), "var": (4,)},
        "parallel": {"left": {"batchnorm": {"mean": (4,), "var": (4,)}}},
        "batchnorm2": {"mean": (4,), "var": (4,)},
    }
    assert set(params) == {"dense", "batchnorm1", "parallel", "batchnorm2"}
    x = random_input((8, 3), 1)
    y, moved = model.apply(params, x, state=state, train=True)
    assert jax.tree.structure(moved) == jax.tree.structure(state)
    # each BatchNorm moved its own statistics, by what it saw: the first one, by hand
    hidden = Dense(4).apply(params["dense"], x)
    _, first = BatchNorm().apply(params["batchnorm1"], hidden, state=state["batchnorm1"], train=True)
    for got, want in zip(jax.tree.leaves(moved["batchnorm1"]), jax.tree.leaves(first)):
        assert_close(got, want, 1e-6)
    for path in (("batchnorm1",), ("parallel", "left", "batchnorm"), ("batchnorm2",)):
        got, before = moved, state
        for name in path:
            got, before = got[name], before[name]
        assert not np.allclose(got["var"], before["var"]), path  # every one moved its statistics
    # evaluation reads the state and returns it as it came
    y_eval, same = model.apply(params, x, state=moved)
    assert y_eval.shape == y.shape
    for got, want in zip(jax.tree.leaves(same), jax.tree.leaves(moved)):
        np.testing.assert_array_equal(got, want)


def test_a_model_without_state_keeps_the_plain_call():
    model = serial(Dense(3), ReLU(), Dense(2))
    assert not model.stateful
    out = model.init(KEY, (-1, 4))
    assert len(out) == 2
    assert model.apply(out[1], jnp.ones((2, 4))).shape == (2, 2)
    with pytest.raises(LayerError, match=r"layer 'serial' \(serial\): keeps no state: call apply\(params, x\)"):
        model.apply(out[1], jnp.ones((2, 4)), state={})
    assert initial_state(model, (-1, 4)) is None


def test_a_missing_state_names_every_layer_that_keeps_one():
    model = nested_batch_norms()
    _, params, state = model.init(KEY, (-1, 3))
    with pytest.raises(LayerError) as error:
        model.apply(params, jnp.ones((2, 3)))
    assert "keeps state (net/batchnorm1, net/parallel/left/batchnorm, net/batchnorm2)" in str(error.value)
    assert "apply(params, x, state=state) -> (y, state)" in str(error.value)
    with pytest.raises(LayerError, match=r"'net/parallel/left/batchnorm'.*has no entry 'batchnorm'"):
        model.apply(params, jnp.ones((2, 3)), state={**state, "parallel": {"left": {}}})


def test_initial_state_is_the_state_init_returns():
    model = nested_batch_norms()
    _, _, state = model.init(KEY, (-1, 3))
    for got, want in zip(jax.tree.leaves(initial_state(model, (-1, 3))), jax.tree.leaves(state)):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------- 9. context
def probe(reads, name="probe"):
    """A layer adding the sum of the context it is given to x, and recording the names it got."""
    seen = []

    def apply(params, x, *, key=None, train=False, **context):
        seen.append(sorted(context))
        return x + sum((value.sum() for value in context.values()), 0.0)

    return Layer(lambda key, shape: (tuple(shape), {}), apply, name, "Probe", reads=tuple(reads)), seen


def test_context_reaches_each_layer_that_reads_it_at_any_depth_and_no_other():
    lengths_probe, got_lengths = probe(["lengths"], "a")
    weights_probe, got_weights = probe(["weights", "lengths"], "b")
    blind, got_nothing = probe([], "c")
    model = serial(lengths_probe, FanOut(2), parallel(serial(Dense(2), weights_probe, name="deep"), blind),
                   FanInConcat(), name="net")
    assert model.reads == ("lengths", "weights")
    _, params = model.init(KEY, (-1, 2))
    x = jnp.zeros((3, 2))
    y = jax.jit(model.apply)(params, x, lengths=jnp.array([1, 2, 3]), weights=jnp.full((3,), 10.0))
    assert got_lengths == [["lengths"]] and got_weights == [["lengths", "weights"]] and got_nothing == [[]]
    hidden = Dense(2).apply(params["parallel"]["deep"]["dense"], x + 6)
    assert_close(y, jnp.concatenate([hidden + 6 + 30, x + 6], axis=-1))


def test_a_context_name_no_layer_reads_is_an_error_naming_it():
    model = serial(Embedding(10, 4), dl.RNN(dl.GRUCell(4), output="last"), Dense(2), name="reader")
    _, params = model.init(KEY, (-1, 5))
    ids = jnp.ones((2, 5), jnp.int32)
    with pytest.raises(LayerError) as error:
        model.apply(params, ids, lenghts=jnp.array([5, 3]))
    assert str(error.value) == ("layer 'reader' (serial): got context 'lenghts', which none of its layers reads "
                                "(it reads lengths, step_mask); check the name")
    with pytest.raises(LayerError, match="it reads nothing"):
        Dense(2).apply({"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}, jnp.ones((1, 3)), lengths=jnp.ones(1))


# --------------------------------------------------------------- 10. composites of your own
def Residual(layer, name="residual"):
    """x + layer(x), written once for stateless and stateful children (as docs/extending.md)."""

    def init(key, input_shape):
        return init_child(layer.name, layer, key, input_shape, {}, {})

    def apply(params, x, *, state, key=None, train=False, **context):
        y, state = apply_child(layer.name, layer, params, state, x, key=key, train=train, context=context)
        return x + y, state

    return composite(init, apply, name, "Residual", [(layer.name, layer)])


def test_a_composite_keeps_state_and_reads_context_only_when_a_child_does():
    plain = Residual(Dense(3))
    assert not plain.stateful and plain.reads == ()
    shape, params = plain.init(KEY, (-1, 3))
    x = random_input((2, 3), 1)
    assert_close(plain.apply(params, x), x + Dense(3).apply(params["dense"], x))

    normalised = Residual(serial(Dense(3), BatchNorm(), name="block"))
    assert normalised.stateful
    _, params, state = normalised.init(KEY, (-1, 3))
    y, moved = normalised.apply(params, x, state=state, train=True)
    block_y, block_moved = dict(normalised.children)["block"].apply(params["block"], x, state=state["block"],
                                                                     train=True)
    assert_close(y, x + block_y)
    assert_close(moved["block"]["batchnorm"]["mean"], block_moved["batchnorm"]["mean"])

    reading = Residual(probe(["lengths"])[0])
    assert reading.reads == ("lengths",)
    assert_close(reading.apply({}, jnp.zeros((2, 1)), lengths=jnp.array([1, 2])), jnp.full((2, 1), 3.0))


def test_a_composites_errors_and_scopes_carry_the_childs_name():
    model = serial(Residual(Dense(3), name="res"), name="net")
    _, params = model.init(KEY, (-1, 3))
    with pytest.raises(LayerError, match=r"^layer 'net/res/dense' \(Dense\): expected input of shape \(\.\.\., 3\)"):
        model.apply(params, jnp.ones((2, 4)))
    text = jax.jit(model.apply).lower(params, jnp.ones((2, 3))).as_text(debug_info=True)
    assert "net/res/dense/dot_general" in text


# ------------------------------------------------------------------ 11. summary of models
MODELS = {
    "perceptron": (models.perceptron(), (-1, 2), ["perceptron", "unit", "step"]),
    "logistic_unit": (models.logistic_unit(), (-1, 7), ["logistic_unit", "unit"]),
    "mlp": (models.mlp([8, 8], 2), (-1, 2), ["mlp", "hidden1", "sigmoid1", "hidden2", "sigmoid2", "output"]),
    "cnn": (models.cnn(features=(4, 8), hidden=16, shift=2), (-1, 28, 28, 1),
            ["cnn", "randomshift", "conv1", "relu1", "maxpool1", "conv2", "relu2", "maxpool2", "flatten", "hidden",
             "relu3", "dropout", "output"]),
    "rnn_classifier": (models.rnn_classifier(50, 2, embed=8, hidden=8), (-1, 12),
                       ["rnn_classifier", "worddropout", "embedding", "embed_dropout", "rnn", "dropout", "output"]),
    "tagger": (models.tagger(40, 20, 9, embed=8, char_features=6, hidden=8), (-1, 12, 5),
               ["tagger", "fanout", "features", "words", "take", "worddropout", "embedding", "spelling", "take",
                "charcnn", "embedding", "conv", "faninconcat", "dropout1", "rnn", "dropout2", "output"]),
    "char_language_model": (models.char_language_model(30, embed=8, hidden=16), (-1, 20),
                            ["char_language_model", "embedding", "rnn", "dropout", "output"]),
}


@pytest.mark.parametrize("model, input_shape, names", MODELS.values(), ids=MODELS.keys())
def test_the_summary_of_every_model_lists_every_layer(model, input_shape, names):
    total, lines = summary_lines(model, input_shape)
    rows = lines[2:-1]
    assert [row.split()[0] for row in rows] == names
    assert total == count_params(abstract_init(model, input_shape)[1])
    counts = [int(row.split()[-1].replace(",", "")) for row in rows]
    leaves = [count for row, count in zip(rows, counts) if row.split()[1] not in ("serial", "parallel")]
    assert counts[0] == total and sum(leaves) >= total  # a composite's count holds its children's


def test_the_summary_of_a_stateful_model_shows_its_state():
    total, lines = summary_lines(nested_batch_norms(), (-1, 3))
    assert lines[0].split() == ["layer", "kind", "output", "shape", "params", "state"]
    assert find_row(lines, "net").split()[-2:] == [f"{total:,}", "24"]  # 3 BatchNorms, mean and var of 4
    assert find_row(lines, "batchnorm1").split()[-2:] == ["8", "8"]  # scale and bias; mean and var
    assert lines[-1] == f"total params: {total:,} ({total * 4 / 1024:,.1f} KiB); state: 24 (0.1 KiB)"


# ------------------------------------------------------------------- 12. named scopes
@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_every_layer_runs_under_its_path_in_the_compiled_program():
    model = models.cnn(features=(4, 8), hidden=16)
    _, params = model.init(KEY, (-1, 28, 28, 1))
    lowered = jax.jit(model.apply).lower(params, jnp.ones((2, 28, 28, 1))).as_text(debug_info=True)
    names = set(re.findall(r'loc\("([^"]+)"', lowered))  # each operation's location: where the profiler puts its time
    for path in ("cnn/conv1/conv_general_dilated", "cnn/conv2/conv_general_dilated", "cnn/hidden/dot_general",
                 "cnn/output/dot_general", "cnn/maxpool1/reduce_max"):
        assert any(name.endswith(path) for name in names), path

    tagger = models.tagger(40, 20, 9, embed=8, char_features=6, hidden=8, layers=1)
    _, params = tagger.init(KEY, (-1, 12, 5))
    text = jax.jit(tagger.apply).lower(params, jnp.ones((2, 12, 5), jnp.int32), lengths=jnp.array([12, 3])).as_text(
        debug_info=True)
    for path in ("tagger/features/words/embedding/", "tagger/features/spelling/charcnn/conv/conv_general_dilated",
                 "tagger/rnn/", "tagger/output/dot_general"):
        assert path in text, path


# ---------------------------------------------------------------- 13. checks in jit
def too_big(highest):
    return ValueError(f"an id reached {highest}")


def test_raise_if_raises_at_once_for_concrete_values_and_when_the_compiled_program_runs():
    with pytest.raises(ValueError, match="an id reached 12"):
        raise_if(lambda highest: highest >= 10, too_big, jnp.int32(12))
    raise_if(lambda highest: highest >= 10, too_big, jnp.int32(9))

    @jax.jit
    def checked(ids):
        raise_if(lambda highest: highest >= 10, too_big, ids.max())
        return ids * 2

    np.testing.assert_array_equal(checked(jnp.arange(10)), 2 * np.arange(10))
    with pytest.raises(Exception, match="an id reached 11"):
        jax.block_until_ready(checked(jnp.arange(12)))
    # under vmap the callback runs for every row: good rows still pass, a bad one still fails
    np.testing.assert_array_equal(jax.jit(jax.vmap(checked))(jnp.arange(6).reshape(2, 3)), 2 * np.arange(6).reshape(2, 3))
    with pytest.raises(Exception, match="an id reached 13"):
        jax.block_until_ready(jax.jit(jax.vmap(checked))(jnp.array([[1, 2], [3, 13]])))


def test_a_layer_prints_briefly():
    assert repr(Dense(3)) == "Layer('dense', Dense)"
    assert repr(nested_batch_norms()) == "Layer('net', serial; 6 children; stateful)"
    assert repr(dl.RNN(dl.LSTMCell(3))) == "Layer('lstm', LSTM; reads lengths, step_mask)"


def test_a_failed_check_inside_jit_comes_back_as_the_layers_error_with_its_path():
    model = serial(Embedding(5, 3), Dense(2), name="m")
    _, params = model.init(KEY, (-1, 2))
    with pytest.raises(LayerError) as error:
        with dl.core.device_errors():
            jax.block_until_ready(jax.jit(model.apply)(params, jnp.array([[1, 7]])))
    assert str(error.value).startswith("layer 'm/embedding' (Embedding): ids must be in [0, 5), got ids from 1 to 7")
    with pytest.raises(ZeroDivisionError):  # other errors pass through as they are
        with dl.core.device_errors():
            1 / 0


def test_params_of_another_model_are_named_not_a_bare_key_error():
    model = serial(Embedding(5, 3), Dense(2), name="m")
    _, params = model.init(KEY, (-1, 2))
    with pytest.raises(LayerError, match=r"'m/embedding' \(Embedding\): the params or state given have no entry "
                                         r"'table'"):
        model.apply({"dense": params["dense"]}, jnp.array([[1, 2]]))
