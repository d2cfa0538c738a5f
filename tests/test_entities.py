"""Tests of jaxdl.entities: the tagger (jaxdl.models.tagger) built from a run's settings, its
tags for sentences and raw text, the logistic unit on the hand-made features, and the tables
that compare them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.checkpoint import load_checkpoint
from jaxdl.core import LayerError
from jaxdl.crf import bio_constraints, negative_log_likelihood, viterbi
from jaxdl.data.tagging import FEATURES, encode_tokens, word_form
from jaxdl.data.text import Vocabulary, bucket_examples, pad_batch
from jaxdl.data.vectors import pretrained
from jaxdl.entities import (
    FEATURE_UNIT,
    TAGGER_SETTINGS,
    build_tagger,
    entity_table,
    feature_arrays,
    feature_last_names,
    fit_feature_unit,
    last_name_table,
    predicted_tags,
    sentence_features,
    tag_texts,
    tagger_loss,
    tagger_optimizer,
)
from jaxdl.losses import softmax_cross_entropy
from jaxdl.loop import fit
from jaxdl.metrics import Scores, binary_scores, span_scores
from jaxdl.models import tagger
from jaxdl.train import TrainState, make_train_step

TAGS = ["O", "B-PER", "B-LOC"]
FILLER = ["the", "a", "met", "in", "said", "of", "and", "to", "on", "was"]


def toy_sentence(rng, names):
    """Lower-case filler words; "mr" + a capitalised name is a person (B-PER), a capitalised
    word without "mr" a place (B-LOC): the tag needs both the context and the spelling."""
    tokens, tags = [], []
    for _ in range(rng.integers(2, 5)):
        tokens.append(rng.choice(FILLER))
        tags.append("O")
        name = rng.choice(names)
        if rng.random() < 0.5:
            tokens += ["mr", name]
            tags += ["O", "B-PER"]
        else:
            tokens.append(name)
            tags.append("B-LOC")
    return tokens, tags


def make_names(rng, count):
    letters = np.array(list("bcdfghklmnprstvz"))
    return ["".join(rng.choice(letters, 5)).capitalize() for _ in range(count)]


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    seen, unseen = make_names(rng, 30), make_names(rng, 30)
    train = [toy_sentence(rng, seen) for _ in range(600)]
    test = [toy_sentence(rng, unseen) for _ in range(100)]  # every name new: its word id is <unk>
    words = Vocabulary.build([word_form(t) for t in tokens] for tokens, _ in train)
    chars = Vocabulary.build(list(t) for tokens, _ in train for t in tokens)
    model = tagger(len(words), len(chars), len(TAGS), embed=16, char_embed=8, char_features=16, hidden=16,
                   layers=1, dropout=0.1, word_dropout=0.2)

    def rows(sentences):
        return [encode_tokens(tokens, words, chars, 6) for tokens, _ in sentences]

    data = bucket_examples(rows(train), (8, 16), token_columns={"y": [[TAGS.index(t) for t in tags] for _, tags in train]})
    _, params = model.init(jax.random.key(0), (-1, 16, 7))
    return model, params, rows, test, words, data


@pytest.fixture(scope="module")
def trained(toy):
    """The toy tagger trained for 8 epochs: its params replace the untrained ones."""
    model, params, rows, test, words, data = toy
    optimizer = optax.adam(1e-2)
    result = fit(TrainState.create(params, optimizer, jax.random.key(1)),
                 make_train_step(model, softmax_cross_entropy, optimizer), data, epochs=8, batch_size=32)
    return model, result.state.params, rows, test, words


def tags_of(model, params, rows):
    x, lengths = pad_batch(rows)
    best = np.asarray(jnp.argmax(model.apply(params, x, lengths=lengths), -1))
    return [[TAGS[i] for i in row[:n]] for row, n in zip(best, lengths)]


@pytest.mark.slow  # training
def test_tiny_tagger_learns_the_toy_pattern_and_tags_unknown_words(trained):
    model, params, rows, test, words = trained
    assert all(word_form(token) not in words for tokens, tags in test for token, tag in zip(tokens, tags) if tag != "O")
    untrained = model.init(jax.random.key(0), (-1, 16, 7))[1]
    gold = [tags for _, tags in test]
    assert span_scores(gold, tags_of(model, untrained, rows(test)))["overall"].f1 < 0.5
    scores = span_scores(gold, tags_of(model, params, rows(test)))
    assert scores["PER"].f1 > 0.95 and scores["LOC"].f1 > 0.95, scores


@pytest.mark.slow  # training
def test_the_context_speaks_for_a_word_of_unknown_characters(trained):
    model, params, rows, _, _ = trained

    def p_person(tokens, where):
        x, lengths = pad_batch(rows([(tokens, None)]))
        return float(jax.nn.softmax(model.apply(params, x, lengths=lengths))[0, where, TAGS.index("B-PER")])

    tokens = ["the", "mr", "Ωξçé", "said"]  # no character of the name was seen in training: all <unk>
    assert (rows([(tokens, None)])[0][2, 1:5] == 1).all()
    # An input never seen in training: how sure the network is varies from seed to seed, but "mr" raises it.
    assert p_person(tokens, 2) > 5 * p_person(["the", "Ωξçé", "said"], 1)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_predicted_tags_come_in_input_order_across_buckets(toy):
    model, params, rows, test, *_ = toy  # untrained: the tags are arbitrary, but differ from sentence to sentence
    data = bucket_examples(rows(test), (8, 16))
    assert len(data.arrays[0]["x"]) and len(data.arrays[1]["x"])  # both buckets used
    one_by_one = tags_of(model, params, rows(test))
    assert len({tuple(tags) for tags in one_by_one}) > 50
    assert predicted_tags(model, [params], data, TAGS) == one_by_one
    assert predicted_tags(model, [params, params], data, TAGS) == one_by_one  # an ensemble of equals agrees


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_padding_does_not_change_the_tags_logits(toy):
    model, params, rows, test, *_ = toy
    (row,) = rows(test[:1])
    short, lengths = pad_batch([row])
    long, _ = pad_batch([row], len(row) + 9)
    np.testing.assert_allclose(model.apply(params, long, lengths=lengths)[:, : len(row)],
                               model.apply(params, short, lengths=lengths), atol=1e-5)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_tagger_is_a_plain_composition_that_reads_lengths():
    model = tagger(10, 10, 3, layers=1, hidden=4)
    assert model.kind == "serial" and model.reads == ("lengths", "step_mask")
    assert [name for name, _ in model.children] == [
        "fanout", "features", "faninconcat", "dropout1", "rnn", "dropout2", "output"]
    with pytest.raises(LayerError, match="'tagger/rnn'.*3-D input"):  # word ids alone: no characters
        model.init(jax.random.key(0), (-1, 5))
    with pytest.raises(ValueError, match="cell must be one of"):
        tagger(10, 10, 3, cell="transformer")


# ------------------------------------------------------------ jaxdl.entities on raw text
@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_tag_texts_splits_raw_text_as_conll_and_tags_every_token(toy):
    model, params, rows, test, words, _ = toy
    chars = Vocabulary.build(list(t) for tokens, _ in test for t in tokens)
    texts = ["the mr Bcdfg said.", "Kzzz met mr Bcdfg in Pdfgh and the mr Zzt said"]
    tagged = tag_texts(model, [params], texts, words, chars, TAGS, max_chars=6, boundaries=(8,))
    assert [tokens for tokens, _ in tagged] == [["the", "mr", "Bcdfg", "said", "."],
                                                ["Kzzz", "met", "mr", "Bcdfg", "in", "Pdfgh", "and", "the", "mr", "Zzt",
                                                 "said"]]
    for (tokens, tags), text in zip(tagged, texts):  # each text alone, unpadded: the same tags
        x, lengths = pad_batch([encode_tokens(tokens, words, chars, 6)])
        alone = np.asarray(model.apply(params, x, lengths=lengths))[0].argmax(-1)
        assert tags == [TAGS[i] for i in alone]
    with pytest.raises(ValueError, match="holds no token"):
        tag_texts(model, [params], ["  "], words, chars, TAGS, max_chars=6)


def test_the_features_last_names_are_the_tokens_whose_logit_passes_the_threshold():
    sentences = [["Yesterday", "Mr.", "John", "Doe", "met", "Jane", "Smith"], ["Smith", "said"]]
    features = sentence_features(sentences)
    assert features.shape == (9, 7)
    weights = np.zeros((7, 1), np.float32)
    weights[1] = 1.0  # "capitalised"
    params = {"unit": {"w": weights, "b": np.zeros(1, np.float32)}}
    assert feature_last_names(params, 0.5, sentences) == [[1, 1, 1, 1, 0, 1, 1], [1, 0]]
    assert feature_last_names(params, 1.5, sentences) == [[0] * 7, [0, 0]]


# ------------------------------------------------------------------- building the tagger
SETTINGS = {"tags": TAGS, "embed": 16, "char_embed": 8, "char_features": 12, "char_width": 3, "hidden": 10,
            "cell": "gru", "layers": 1, "dropout": 0.1, "word_dropout": 0.2,
            "seed": 3, "max_chars": 6, "boundaries": [8, 16]}  # a run's other settings are ignored


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_build_tagger_is_the_tagger_of_a_runs_settings_and_vocabularies():
    words = Vocabulary.build([["the", "mr", "doe"], ["the", "smith"]])
    chars = Vocabulary.build([list("theMrDoe")])
    model = build_tagger(SETTINGS, {"words": words, "chars": chars})
    _, params = model.init(jax.random.key(0), (-1, 16, 7))
    direct = tagger(len(words), len(chars), len(TAGS), embed=16, char_embed=8, char_features=12, char_width=3,
                    hidden=10, cell="gru", layers=1, dropout=0.1, word_dropout=0.2)
    _, expected = direct.init(jax.random.key(0), (-1, 16, 7))
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, expected)
    assert params["features"]["words"]["embedding"]["table"].shape == (len(words), 16)
    assert params["output"]["w"].shape == (2 * 10, len(TAGS))  # both directions' states -> each tag
    x, lengths = pad_batch([encode_tokens(["the", "Mr", "Doe"], words, chars, 6)])
    np.testing.assert_array_equal(model.apply(params, x, lengths=lengths), direct.apply(expected, x, lengths=lengths))
    assert set(TAGGER_SETTINGS) < set(SETTINGS)
    with pytest.raises(KeyError, match=r"lack \['hidden'\]"):
        build_tagger({k: v for k, v in SETTINGS.items() if k != "hidden"}, {"words": words, "chars": chars})


def test_tagger_optimizer_clips_to_norm_5_then_decays_adam_to_zero():
    optimizer = tagger_optimizer(0.1, 10)
    params = {"w": jnp.zeros(3)}
    state = optimizer.init(params)
    grads = {"w": jnp.array([300.0, 400.0, 0.0])}  # norm 500
    updates, state = optimizer.update(grads, state, params)
    _, (adam, _) = state  # clipping keeps no state; Adam, then the schedule's step count
    np.testing.assert_allclose(adam.mu["w"], 0.1 * np.array([3.0, 4.0, 0.0]), rtol=1e-5)  # (1 - b1) * clipped
    np.testing.assert_allclose(updates["w"], [-0.1, -0.1, 0.0], rtol=1e-4)  # Adam's first step: lr * sign
    for _ in range(9):
        updates, state = optimizer.update(grads, state, params)
    step_10 = 0.1 * 0.5 * (1 + np.cos(np.pi * 9 / 10))  # the cosine from 0.1 at step 1 ...
    np.testing.assert_allclose(updates["w"], [-step_10, -step_10, 0.0], rtol=1e-4)
    updates, state = optimizer.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], 0.0, atol=1e-7)  # ... to 0 after 10 steps


# ------------------------------------------------------------- the hand-made features' unit
def test_feature_arrays_stack_every_tokens_features_and_label():
    sentences = [["Mr.", "Doe", "said"], ["Smith", "left"]]
    data = feature_arrays(sentences, [[0, 1, 0], [1, 0]])
    assert data["x"].shape == (5, len(FEATURES)) and data["x"].dtype == np.float32
    np.testing.assert_array_equal(data["x"], sentence_features(sentences))
    assert data["y"].tolist() == [0, 1, 0, 1, 0] and data["y"].dtype == np.int32
    with pytest.raises(ValueError, match="5 tokens but 4 last-name labels"):
        feature_arrays(sentences, [[0, 1, 0], [1]])


def person_sentences(rng, count):
    """Sentences where the word after a title is the last name; other capitalised words are not."""
    sentences, labels = [], []
    for _ in range(count):
        tokens = [str(rng.choice(["the", "a", "then"])), str(rng.choice(["Mr.", "Dr.", "Mrs."])), "Doe",
                  str(rng.choice(["met", "left", "saw"])), "the", str(rng.choice(["Bank", "Paris", "Rome"])), "."]
        sentences.append(tokens)
        labels.append([0, 0, 1, 0, 0, 0, 0])
    return sentences, labels


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_fit_feature_unit_learns_the_title_clue_and_the_best_threshold(tmp_path):
    sentences, labels = person_sentences(np.random.default_rng(0), 1000)
    data = feature_arrays(sentences, labels)
    result, threshold = fit_feature_unit(data, seed=0, config={"train_examples": 1000},
                                         checkpoint_dir=tmp_path, verbose=False)
    assert len(result.history) == FEATURE_UNIT["epochs"]
    assert int(result.state.step) == FEATURE_UNIT["epochs"] * (len(data["y"]) // FEATURE_UNIT["batch_size"])
    weights = result.state.params["unit"]["w"][:, 0]
    assert weights[FEATURES.index("previous word is a title")] > 0
    found = feature_last_names(result.state.params, threshold, sentences)
    assert binary_scores(labels, found).f1 == 1.0  # the threshold separates Doe from Bank, Paris and Rome
    config = load_checkpoint(tmp_path).config
    assert config == {"features": list(FEATURES), **FEATURE_UNIT, "seed": 0, "train_examples": 1000}
    again, same = fit_feature_unit(data, seed=0, verbose=False)  # the same seed: the same unit
    np.testing.assert_array_equal(again.state.params["unit"]["w"], result.state.params["unit"]["w"])
    assert same == threshold


# ------------------------------------------------------------------------------ tables
def scores(precision, recall, f1):
    return Scores(precision, recall, f1, 0, 0, 0)


def test_last_name_table_puts_features_and_network_side_by_side():
    table = last_name_table({"dev": scores(0.5, 0.25, 1 / 3), "test": scores(0.1, 0.2, 0.3)},
                            {"dev": scores(0.9, 0.8, 0.85), "test": scores(0.7, 0.6, 0.65)})
    lines = table.splitlines()
    assert "hand-made features + logistic unit" in lines[0] and "learned features (BiLSTM tagger)" in lines[0]
    rows = [line.split() for line in lines if line.startswith(("dev", "test"))]
    assert rows == [["dev", "precision", "50.00%", "90.00%"], ["dev", "recall", "25.00%", "80.00%"],
                    ["dev", "f1", "33.33%", "85.00%"], ["test", "precision", "10.00%", "70.00%"],
                    ["test", "recall", "20.00%", "60.00%"], ["test", "f1", "30.00%", "65.00%"]]


def test_entity_table_gives_dev_f1_and_test_scores_per_kind_overall_last():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    dev = span_scores(gold, [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]])
    test = span_scores(gold, [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O"]])
    rows = [line.split() for line in entity_table({"dev": dev, "test": test}).splitlines()[2:]]
    assert [row[0] for row in rows] == ["LOC", "ORG", "PER", "overall"]
    assert rows[0] == ["LOC", "0.00%", "100.00%", "100.00%", "100.00%"]
    assert rows[2] == ["PER", "100.00%", "0.00%", "0.00%", "0.00%"]  # "B-PER O" is not the gold span
    assert rows[3][1] == f"{dev['overall'].f1:.2%}" and rows[3][4] == f"{test['overall'].f1:.2%}"


# ------------------------------------------------------------------------ a CRF on top
@pytest.mark.slow  # training
def test_a_crf_tagger_learns_the_toy_pattern_and_tags_by_viterbi(toy):
    _, toy_params, rows, test, words, data = toy
    num_chars = toy_params["features"]["spelling"]["charcnn"]["embedding"]["table"].shape[0]
    model = tagger(len(words), num_chars, len(TAGS), embed=16, char_embed=8, char_features=16, hidden=16, layers=1,
                   dropout=0.1, word_dropout=0.2, crf=True, allowed=bio_constraints(TAGS))
    _, params = model.init(jax.random.key(0), (-1, 16, 7))
    optimizer = optax.adam(1e-2)
    result = fit(TrainState.create(params, optimizer, jax.random.key(1)),
                 make_train_step(model, negative_log_likelihood, optimizer), data, epochs=8, batch_size=32)
    params = result.state.params
    assert result.history[-1]["train_accuracy"] > 0.95  # the training metric reads the Viterbi tags
    test_data = bucket_examples(rows(test), (8, 16))
    found = predicted_tags(model, [params], test_data, TAGS)
    x, lengths = pad_batch(rows(test))
    best = np.asarray(viterbi(model.apply(params, x, lengths=lengths))[0])
    assert found == [[TAGS[i] for i in row[:n]] for row, n in zip(best, lengths)]
    scores = span_scores([tags for _, tags in test], found)
    assert scores["PER"].f1 > 0.95 and scores["LOC"].f1 > 0.95, scores


def test_build_tagger_adds_a_crf_with_the_iob2_rules_only_when_the_settings_say():
    words = Vocabulary.build([["the", "mr", "doe"]])
    chars = Vocabulary.build([list("theMrDoe")])
    tags = ["O", "B-PER", "I-PER"]
    plain = build_tagger({**SETTINGS, "tags": tags}, {"words": words, "chars": chars})  # a run from before the flag
    assert plain.children[-1][1].kind == "Dense" and tagger_loss(SETTINGS) is softmax_cross_entropy
    model = build_tagger({**SETTINGS, "tags": tags, "crf": True}, {"words": words, "chars": chars})
    assert tagger_loss({"crf": True}) is negative_log_likelihood
    _, params = jax.eval_shape(lambda k: model.init(k, (-1, 5, 7)), jax.random.key(0))
    assert jax.tree.map(jnp.shape, params["crf"]) == {"transitions": (3, 3), "start": (3,), "end": (3,)}
    scores = model.apply(jax.tree.map(jnp.zeros_like, params), jnp.ones((1, 5, 7), jnp.int32), lengths=jnp.array([5]))
    assert np.isneginf(scores.start[2]) and np.isneginf(scores.transitions[0, 2])  # no I-PER first, nor after O
    with pytest.raises(ValueError, match="allowed= limits the moves of a CRF; pass crf=True too"):
        tagger(5, 5, 3, allowed=scores)


def test_build_tagger_starts_the_word_vectors_from_a_given_table():
    words = Vocabulary.build([["the", "mr", "doe"]])
    chars = Vocabulary.build([list("theMrDoe")])
    table = np.arange(len(words) * 16, dtype=np.float32).reshape(len(words), 16)
    model = build_tagger(SETTINGS, {"words": words, "chars": chars}, embed_init=pretrained(table))
    _, params = model.init(jax.random.key(0), (-1, 16, 7))
    np.testing.assert_array_equal(params["features"]["words"]["embedding"]["table"][1:], table[1:])
    assert not params["features"]["words"]["embedding"]["table"][0].any()  # the padding row stays zeros
