"""Tests of jaxdl.data.tagging: last names from NER tags, the hand-made features, token rows."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdl.data.tagging import (
    FEATURES,
    encode_tokens,
    last_name_labels,
    marked_text,
    token_features,
    tokenize_news,
    word_form,
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
