"""jaxdl.generate: a classifier's probabilities of sentences; sampling from a language model,
log-likelihoods, filling a blank, and the context a text is read after."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data.text import Vocabulary, VocabularyError
from jaxdl.generate import classify_sentences, generate, log_likelihoods, rank_fills, sample, start_of_line
from jaxdl.models import char_language_model, rnn_classifier

VOCABULARY = Vocabulary(["<pad>", "<unk>", *"\nabcdeor t."])
SETTINGS = {"embed": 8, "hidden": 16, "cell": "lstm", "layers": 2, "dropout": 0.2}
NEWLINE = ("\n",)


@pytest.fixture(scope="module")
def untrained():
    """An untrained model over VOCABULARY (its next-character distributions are far from certain),
    its params, and the same network streaming."""
    model = char_language_model(len(VOCABULARY), **SETTINGS)
    _, params = model.init(jax.random.key(0), (-1, 8))
    return model, params, char_language_model(len(VOCABULARY), stream=True, **SETTINGS)


def test_sampling_is_deterministic_for_a_key_changes_with_it_and_never_draws_padding_or_unknown(untrained):
    _, params, stream = untrained
    first = sample(stream, params, [3, 4, 5], jax.random.key(1), length=200)
    assert first.shape == (200,) and first.min() >= 2  # never <pad> (0) or <unk> (1)
    np.testing.assert_array_equal(sample(stream, params, [3, 4, 5], jax.random.key(1), length=200), first)
    assert (sample(stream, params, [3, 4, 5], jax.random.key(2), length=200) != first).any()
    assert sample(stream, params, [3], jax.random.key(1), length=0).shape == (0,)
    only = sample(stream, params, [3], jax.random.key(1), length=50, forbidden=tuple(range(len(VOCABULARY) - 1)))
    assert set(only.tolist()) == {len(VOCABULARY) - 1}


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_temperature_zero_takes_the_most_likely_token_of_the_full_model(untrained):
    model, params, stream = untrained
    prompt = VOCABULARY.encode(["\n", *"a cat"])
    greedy = sample(stream, params, prompt, jax.random.key(0), length=12, temperature=0.0).tolist()
    np.testing.assert_array_equal(sample(stream, params, prompt, jax.random.key(7), length=12, temperature=1e-6),
                                  greedy)
    ids = list(prompt)
    for token in greedy:  # the full-sequence model, padded after the step, agrees at each step
        logits = np.asarray(model.apply(params, jnp.asarray([ids + [0] * (20 - len(ids))])))[0, len(ids) - 1]
        assert token == 2 + int(np.argmax(logits[2:]))
        ids.append(token)


def test_generate_reads_the_prompt_after_the_context_and_names_unknown_characters(untrained):
    _, params, stream = untrained
    text = generate(stream, params, VOCABULARY, "to be", length=30, seed=3, context=NEWLINE)
    ids = sample(stream, params, VOCABULARY.encode(list("\nto be")), jax.random.key(3), length=30)
    assert text == "".join(VOCABULARY.decode(ids.tolist())) and len(text) == 30
    with pytest.raises(VocabularyError, match=r"the prompt 'a Zebra €' holds tokens the vocabulary does not: 'Z', '€'"):
        generate(stream, params, VOCABULARY, "a Zebra €", length=5)
    with pytest.raises(ValueError, match="built with stream=True"):
        sample(untrained[0], params, [3], jax.random.key(0), length=3)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_log_likelihood_is_the_sum_over_the_scored_tokens(untrained):
    model, params, _ = untrained
    sequences = [VOCABULARY.encode(list(f"\n{text}")) for text in ("to be", "a", "cat.")]
    scores = log_likelihoods(model, params, sequences, batch_size=2)  # two batches: the second padded
    for ids, score in zip(sequences, scores):
        log_p = jax.nn.log_softmax(model.apply(params, jnp.asarray([ids[:-1]])))[0]
        np.testing.assert_allclose(score, sum(float(log_p[t, ids[t + 1]]) for t in range(len(ids) - 1)), rtol=1e-5)
    assert scores.shape == (3,) and np.all(scores < 0)
    with pytest.raises(ValueError, match="at least 2 ids"):
        log_likelihoods(model, params, [[3]])


def test_the_blank_is_filled_by_each_candidate_and_ranked_by_the_whole_sentence(untrained):
    model, params, _ = untrained
    ranked = rank_fills(model, params, VOCABULARY, "to __ or", ["be", "do", " be ", "be"], context=NEWLINE)
    assert sorted(word for word, _ in ranked) == ["be", "do"]  # stripped, once each
    expected = log_likelihoods(model, params, [VOCABULARY.encode(list(f"\nto {w} or")) for w in ("be", "do")])
    assert dict(ranked) == pytest.approx(dict(zip(("be", "do"), expected.tolist())))
    assert ranked[0][1] >= ranked[1][1]
    for sentence in ("to be or not to be", "__ or __"):
        with pytest.raises(ValueError, match='exactly one blank "__"'):
            rank_fills(model, params, VOCABULARY, sentence, ["be"])
    with pytest.raises(VocabularyError, match="the candidate 'Zed' holds tokens the vocabulary does not: 'Z'"):
        rank_fills(model, params, VOCABULARY, "to __", ["be", "Zed"])


def test_the_context_of_a_text_is_the_start_of_a_line():
    assert start_of_line(VOCABULARY) == ("\n",)
    assert start_of_line(Vocabulary(["<pad>", "<unk>", "a", " ", "b"])) == (" ",)
    assert start_of_line(Vocabulary(["<pad>", "<unk>", "e", "t"])) == ("e",)  # the most frequent token


WORDS = Vocabulary(["<pad>", "<unk>", "a", "good", "film", "bad", "."])


@pytest.fixture(scope="module")
def classifiers():
    """An untrained 3-class rnn_classifier over WORDS and two networks' params."""
    model = rnn_classifier(len(WORDS), 3, embed=8, hidden=8, layers=1, bidirectional=False, dropout=0.0)
    return model, [model.init(jax.random.key(seed), (-1, 8))[1] for seed in (0, 1)]


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_classify_sentences_gives_each_networks_probabilities_of_each_sentence_alone(classifiers):
    model, members = classifiers
    sentences = np.array(["A good film.", "a bad , bad film", "", "Good"])  # as a dataset's column
    each = classify_sentences(model, members, WORDS, sentences, batch_size=2)  # two batches
    assert each.shape == (2, 4, 3)
    np.testing.assert_allclose(each.sum(-1), 1.0, rtol=1e-5)
    assert not np.allclose(each[0], each[1])  # two networks
    rows = [[2, 3, 4, 6], [2, 5, 1, 5, 4], [1], [3]]  # lower-cased words; "," and an empty sentence: <unk>
    for k, params in enumerate(members):
        for n, ids in enumerate(rows):
            logits = model.apply(params, jnp.asarray([ids]), lengths=jnp.asarray([len(ids)]))[0]
            np.testing.assert_allclose(each[k, n], jax.nn.softmax(logits), rtol=1e-5, atol=1e-6)
    cased = classify_sentences(model, members[:1], WORDS, ["Good"], lower=False)[0, 0]  # "Good": unknown
    np.testing.assert_allclose(cased, each[0, 2], rtol=1e-5)
    with pytest.raises(ValueError, match="no sentence to classify"):
        classify_sentences(model, members, WORDS, [])
