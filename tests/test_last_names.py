"""Tests of the tagger (jaxdl.models.tagger) and experiments/last_names.py."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from experiment_scripts import EXPERIMENTS, load_experiment

from jaxdl.data.tagging import encode_tokens, word_form
from jaxdl.entities import feature_last_names, predicted_tags, sentence_features, tag_texts
from jaxdl.data.text import Vocabulary, bucket_examples, pad_batch
from jaxdl.core import LayerError
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import span_scores
from jaxdl.models import tagger
from jaxdl.loop import fit
from jaxdl.train import TrainState, make_train_step

last_names = load_experiment("last_names")

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


def test_predicted_tags_come_in_input_order_across_buckets(toy):
    model, params, rows, test, *_ = toy  # untrained: the tags are arbitrary, but differ from sentence to sentence
    data = bucket_examples(rows(test), (8, 16))
    assert len(data.arrays[0]["x"]) and len(data.arrays[1]["x"])  # both buckets used
    one_by_one = tags_of(model, params, rows(test))
    assert len({tuple(tags) for tags in one_by_one}) > 50
    assert predicted_tags(model, [params], data, TAGS) == one_by_one
    assert predicted_tags(model, [params, params], data, TAGS) == one_by_one  # an ensemble of equals agrees


def test_padding_does_not_change_the_tags_logits(toy):
    model, params, rows, test, *_ = toy
    (row,) = rows(test[:1])
    short, lengths = pad_batch([row])
    long, _ = pad_batch([row], len(row) + 9)
    np.testing.assert_allclose(model.apply(params, long, lengths=lengths)[:, : len(row)],
                               model.apply(params, short, lengths=lengths), atol=1e-5)


def test_tagger_is_a_plain_composition_that_reads_lengths():
    model = tagger(10, 10, 3, layers=1, hidden=4)
    assert model.kind == "serial" and model.reads == ("lengths", "step_mask")
    assert [name for name, _ in model.children] == [
        "fanout", "features", "faninconcat", "dropout1", "rnn", "dropout2", "output"]
    with pytest.raises(LayerError, match="'tagger/rnn'.*3-D input"):  # word ids alone: no characters
        model.init(jax.random.key(0), (-1, 5))
    with pytest.raises(ValueError, match="cell must be one of"):
        tagger(10, 10, 3, cell="transformer")


def test_tag_without_a_trained_model_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="Train first: python experiments/last_names.py --out"):
        last_names.main(["tag", "Mr. Doe", "--out", str(tmp_path)])


@pytest.mark.slow
def test_help_documents_both_commands():
    train_help = subprocess.run([sys.executable, str(EXPERIMENTS / "last_names.py"), "--help"],
                                capture_output=True, text=True, check=True).stdout
    assert "--word-dropout" in train_help and "--manual-dir" in train_help
    assert 'Then "last_names.py tag TEXT" marks' in " ".join(train_help.split())
    tag_help = subprocess.run([sys.executable, str(EXPERIMENTS / "last_names.py"), "tag", "--help"],
                              capture_output=True, text=True, check=True).stdout
    assert "text to tag" in tag_help


def test_quick_real_run_then_tag(tmp_path, conll2003_data_dir, capsys):
    out = tmp_path / "run"
    metrics = last_names.main(["--devices", "1", "--train-examples", "2000", "--epochs", "5", "--lr", "1e-2", "--hidden", "32",
                               "--embed", "32", "--char-features", "16", "--layers", "1", "--dropout", "0.1",
                               "--buckets", "64", "--out", str(out), "--data-dir", str(conll2003_data_dir)])
    printed = capsys.readouterr().out
    assert "hand-made features + logistic unit" in printed and "learned features (BiLSTM tagger)" in printed
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("test_last_name_f1", "test_per_f1", "test_f1", "dev_f1", "baseline_test_last_name_f1", "train_time_s"):
        assert key in on_disk and on_disk[key] == metrics[key], key
    assert metrics["baseline_test_last_name_f1"] > 0.5  # the hand-made features find most last names
    assert metrics["dev_f1"] > 0.3  # a small network after 5 short epochs is far from done, but learning

    results = last_names.main(["tag", "Yesterday Mr. John Doe met Jane Smith in Paris.", "--out", str(out)])
    printed = capsys.readouterr().out
    assert printed.startswith("network:  ") and "features: last names" in printed
    (result,) = results
    assert result["tokens"] == ["Yesterday", "Mr.", "John", "Doe", "met", "Jane", "Smith", "in", "Paris", "."]
    assert len(result["tags"]) == len(result["tokens"])
    assert "Doe" in result["baseline_last_names"] and "Smith" in result["baseline_last_names"]


# ------------------------------------------------------------ jaxdl.entities on raw text
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
