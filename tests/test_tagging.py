"""Tests of jaxdl.data.tagging: CoNLL-2003's sentences, last names from NER tags, the hand-made
features, vocabularies, token rows and their length buckets."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdl.data.tagging import (
    FEATURES,
    char_vocabulary,
    encode_tokens,
    last_name_labels,
    load_conll2003,
    marked_text,
    split_summary,
    tagger_data,
    token_features,
    token_rows,
    tokenize_news,
    word_form,
    word_vocabulary,
)
from jaxdl.data.text import PAD_ID, UNK_ID, Vocabulary


@pytest.mark.parametrize(
    "tags, expected",
    [
        # "Peter Blackburn said": the last word of the person
        (["B-PER", "I-PER", "O"], [0, 1, 0]),
        # "Clinton said": a one-word mention is a last name
        (["B-PER", "O"], [1, 0]),
        # "Mr. John Doe met Jane Smith in Paris": titles are outside the span
        (["O", "B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC"], [0, 0, 1, 0, 0, 1, 0, 0]),
        # two people side by side (IOB2: the second starts with B-)
        (["B-PER", "I-PER", "B-PER", "I-PER"], [0, 1, 0, 1]),
        # IOB1: a span may start with I-; a type change ends it
        (["I-PER", "I-PER", "I-ORG", "O"], [0, 1, 0, 0]),
        # only other entities
        (["B-ORG", "I-ORG", "O", "B-LOC"], [0, 0, 0, 0]),
        ([], []),
    ],
)
def test_last_name_labels_mark_the_last_token_of_each_person(tags, expected):
    assert last_name_labels(tags) == expected


def test_token_features_of_a_hand_made_sentence():
    tokens = ["Yesterday", "Mr.", "John", "Doe", "met", "IBM", "'s", "president", "."]
    got = token_features(tokens)
    assert got.shape == (9, len(FEATURES)) and got.dtype == np.float32
    columns = {name: list(got[:, i].astype(int)) for i, name in enumerate(FEATURES)}
    assert columns == {
        "previous word is a title":   [0, 0, 1, 0, 0, 0, 0, 0, 1],
        "capitalised":                [1, 1, 1, 1, 0, 1, 0, 0, 0],
        "previous word capitalised":  [0, 1, 1, 1, 1, 0, 1, 0, 0],
        "next word capitalised":      [1, 1, 1, 0, 1, 0, 0, 0, 0],
        "all capitals":               [0, 0, 0, 0, 0, 1, 0, 0, 0],
        "first word of the sentence": [1, 0, 0, 0, 0, 0, 0, 0, 0],
        "is a title":                 [0, 1, 0, 0, 0, 0, 0, 1, 0],
    }


def test_token_features_of_an_empty_sentence_and_a_str():
    assert token_features([]).shape == (0, len(FEATURES))
    with pytest.raises(TypeError, match="tokenise it first"):
        token_features("Mr Doe")


def test_word_form_lowers_and_zeroes_digits():
    assert word_form("Blackburn") == "blackburn"
    assert word_form("1996-08-22") == "0000-00-00"
    assert word_form("F16s") == "f00s"


def test_encode_tokens_handles_unknown_words_and_characters():
    words = Vocabulary(["<pad>", "<unk>", "mr", "doe"])
    chars = Vocabulary(["<pad>", "<unk>", "D", "o", "e", "M", "r"])
    rows = encode_tokens(["Mr", "Doe", "Zoë", "Doeeeee"], words, chars, max_chars=4)
    assert rows.dtype == np.int32
    np.testing.assert_array_equal(rows, [
        [2, 5, 6, PAD_ID, PAD_ID],   # "Mr" -> word "mr", characters M r
        [3, 2, 3, 4, PAD_ID],        # "Doe" -> word "doe", characters D o e
        [UNK_ID, UNK_ID, 3, UNK_ID, PAD_ID],  # an unknown word, Z and ë unknown characters
        [UNK_ID, 2, 3, 4, 4],        # cut to its first 4 characters
    ])


def test_encode_tokens_refuses_empty_tokens_and_a_str():
    vocabulary = Vocabulary(["<pad>", "<unk>", "a"])
    with pytest.raises(ValueError, match="token 1 is empty"):
        encode_tokens(["a", ""], vocabulary, vocabulary, 3)
    with pytest.raises(TypeError, match="tokenise it first"):
        encode_tokens("a b", vocabulary, vocabulary, 3)


def test_marked_text_brackets_entities_and_stars_last_names():
    tokens = ["Yesterday", "Mr.", "John", "Doe", "met", "Smith", "in", "Paris", "."]
    tags = ["O", "O", "B-PER", "I-PER", "O", "B-PER", "O", "B-LOC", "O"]
    assert marked_text(tokens, tags) == "Yesterday Mr. [John *Doe*]PER met [*Smith*]PER in [Paris]LOC ."
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        marked_text(["a", "b"], ["O"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yesterday Mr. John Doe met Jane Smith in Paris.",
         ["Yesterday", "Mr.", "John", "Doe", "met", "Jane", "Smith", "in", "Paris", "."]),
        ("J. R. Ewing flew to the U.S. on Monday.", ["J.", "R.", "Ewing", "flew", "to", "the", "U.S.", "on", "Monday", "."]),
        ("He met the president.", ["He", "met", "the", "president", "."]),
        ("He met the Queen.", ["He", "met", "the", "Queen", "."]),  # ("the Queen. She" would keep it: no lookahead is that clever)
        ("Martin Luther King Jr. spoke to Acme Inc.", ["Martin", "Luther", "King", "Jr.", "spoke", "to", "Acme", "Inc."]),
        ("Smith’s view", ["Smith", "'s", "view"]),
        ("Dr. Okonkwo-Baptiste's view", ["Dr.", "Okonkwo-Baptiste", "'s", "view"]),
        ("", []),
    ],
)
def test_tokenize_news_splits_as_conll(text, expected):
    assert tokenize_news(text) == expected


# ---------------------------------------------------------------- CoNLL-2003 for a tagger
def test_load_conll2003_gives_tokens_tags_and_gold_last_names(conll2003_data_dir):
    dev = load_conll2003("dev", data_dir=conll2003_data_dir)
    assert len(dev["tokens"]) == len(dev["ner"]) == len(dev["last_names"]) == 3250
    assert all(len(t) == len(n) == len(l) for t, n, l in zip(dev["tokens"], dev["ner"], dev["last_names"]))
    assert all(isinstance(token, str) for token in dev["tokens"][0])
    assert dev["last_names"] == [last_name_labels(tags) for tags in dev["ner"]]
    assert sum(map(sum, dev["last_names"])) == 1842  # the last words of the dev set's people
    assert split_summary("dev", dev) == "dev: 3,250 sentences, 51,362 tokens, 1,842 last names"
    first = load_conll2003("dev[:10]", data_dir=conll2003_data_dir)
    assert first["tokens"] == dev["tokens"][:10]


def test_split_summary_counts_sentences_tokens_and_last_names():
    split = {"tokens": [["Mr.", "Doe", "said"], ["Smith", "left"]], "last_names": [[0, 1, 0], [1, 0]]}
    assert split_summary("train", split) == "train: 2 sentences, 5 tokens, 2 last names"


def test_word_vocabulary_holds_word_forms_seen_often_enough_and_char_vocabulary_every_character():
    sentences = [["The", "2", "Doe"], ["the", "7", "Smith"]]
    words = word_vocabulary(sentences, min_count=2)
    assert "the" in words and "0" in words  # "The" and "the"; "2" and "7"
    assert "doe" not in words and words.id_of("doe") == UNK_ID  # seen once: <unk>, its characters stay
    assert "doe" in word_vocabulary(sentences)
    chars = char_vocabulary(sentences)
    assert {"T", "t", "D", "S", "2", "7"} <= set(chars.tokens) and "d" not in chars


def test_token_rows_encode_each_sentence():
    sentences = [["the", "Doe"], ["Smith"]]
    words, chars = word_vocabulary(sentences), char_vocabulary(sentences)
    rows = token_rows(sentences, words, chars, 3)
    assert [row.shape for row in rows] == [(2, 4), (1, 4)]
    for row, tokens in zip(rows, sentences):
        np.testing.assert_array_equal(row, encode_tokens(tokens, words, chars, 3))


def test_tagger_data_buckets_token_rows_with_the_ids_of_their_tags():
    tags = ["O", "B-PER", "I-PER", "B-LOC"]
    sentences = [["Mr.", "John", "Doe"], ["Paris"], ["a", "b", "c", "d", "e", "f", "Smith", "."]]
    ner = [["O", "B-PER", "I-PER"], ["B-LOC"], ["O"] * 6 + ["B-PER", "O"]]
    words, chars = word_vocabulary(sentences), char_vocabulary(sentences)
    data = tagger_data(token_rows(sentences, words, chars, 4), ner, tags, (4, 8))
    short, long = data.arrays
    assert short["x"].shape == (2, 4, 5) and long["x"].shape == (1, 8, 5)
    assert short["index"].tolist() == [0, 1] and long["index"].tolist() == [2]
    assert short["y"].tolist() == [[0, 1, 2, 0], [3, 0, 0, 0]]  # padded with 0
    assert long["y"][0].tolist() == [0, 0, 0, 0, 0, 0, 1, 0]
    assert short["lengths"].tolist() == [3, 1]
    with pytest.raises(ValueError, match=r"tags \['B-ORG'\] are not among"):
        tagger_data(token_rows(sentences[:1], words, chars, 4), [["O", "B-ORG", "O"]], tags, (4,))
