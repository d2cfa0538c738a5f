"""Tests of jaxdl.data.text: tokenisers, the vocabulary and its file, padding, buckets, masks, LM windows,
a language model's texts and frequent words."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from itertools import pairwise

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data import DataError
from jaxdl.data.text import (
    PAD,
    PAD_ID,
    UNK,
    UNK_ID,
    Vocabulary,
    VocabularyError,
    bucket_examples,
    bucket_lengths,
    covering_lengths,
    encode_sentences,
    frequent_words,
    lm_eval_windows,
    lm_windows,
    load_texts,
    pad_batch,
    sequence_mask,
    tokenize_chars,
    tokenize_words,
)

PROPERTY = settings(max_examples=30, deadline=None)
CORPUS = [["the", "cat", "sat"], ["the", "dog", "sat", "down"], ["the", "cat", "ran"]]
ragged = st.lists(st.lists(st.integers(2, 50), max_size=30), min_size=1, max_size=40)


def ragged_ids(count: int, seed: int = 0, longest: int = 40) -> list[list[int]]:
    """``count`` id sequences of random lengths in [0, longest]; example i's first id is i + 2."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, longest + 1, count)
    return [([i + 2] + rng.integers(2, 100, size - 1).tolist()) if size else [] for i, size in enumerate(sizes)]


# ------------------------------------------------------------------ tokenisers
@pytest.mark.parametrize(
    "text, tokens",
    [
        (
            "it 's a charming and often affecting journey . ",
            ["it", "'s", "a", "charming", "and", "often", "affecting", "journey", "."],
        ),
        ("does n't work , ok ?", ["does", "n't", "work", ",", "ok", "?"]),
        ("Don't stop, U.S. people!!!", ["Don't", "stop", ",", "U.S", ".", "people", "!!!"]),
        ("a well-made film... 3.14 'quoted'", ["a", "well-made", "film", "...", "3.14", "'", "quoted", "'"]),
        ("  \t\n", []),
    ],
)
def test_tokenize_words_separates_punctuation_and_keeps_words_whole(text, tokens):
    assert tokenize_words(text) == tokens


def test_tokenize_words_keeps_case_unless_asked():
    assert tokenize_words("EU rejects German call") == ["EU", "rejects", "German", "call"]
    assert tokenize_words("EU rejects German call", lower=True) == ["eu", "rejects", "german", "call"]


@PROPERTY
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
def test_tokenize_words_drops_only_whitespace_and_is_stable_on_its_output(text):
    tokens = tokenize_words(text)
    assert "".join(tokens) == "".join(text.split())
    assert all(token and not any(c.isspace() for c in token) for token in tokens)
    assert tokenize_words(" ".join(tokens)) == tokens  # already tokenised text (SST-2) stays as it is


def test_tokenize_chars_keeps_every_character():
    assert tokenize_chars("To be,\nor") == ["T", "o", " ", "b", "e", ",", "\n", "o", "r"]


# ------------------------------------------------------------------ vocabulary
def test_reserved_ids_come_first():
    vocab = Vocabulary.build(CORPUS)
    assert (PAD_ID, UNK_ID) == (0, 1)
    assert vocab.tokens[:2] == (PAD, UNK) == ("<pad>", "<unk>")
    assert vocab.token_of(PAD_ID) == PAD and vocab.id_of(UNK) == UNK_ID


def test_ids_follow_descending_count_then_the_token():
    vocab = Vocabulary.build(CORPUS)
    # the: 3, sat: 2, cat: 2, then once each, alphabetically
    assert vocab.tokens == (PAD, UNK, "the", "cat", "sat", "dog", "down", "ran")
    assert [vocab.id_of(t) for t in ("the", "cat", "sat", "ran")] == [2, 3, 4, 7]


def test_the_same_corpus_in_any_order_gives_the_same_ids():
    shuffled = [sentence[::-1] for sentence in reversed(CORPUS)]
    assert Vocabulary.build(shuffled) == Vocabulary.build(CORPUS)
    assert Vocabulary.build(iter(CORPUS)) == Vocabulary.build(CORPUS)  # a generator is read once


def test_min_count_and_max_size_keep_the_most_frequent():
    assert Vocabulary.build(CORPUS, min_count=2).tokens == (PAD, UNK, "the", "cat", "sat")
    assert Vocabulary.build(CORPUS, min_count=3).tokens == (PAD, UNK, "the")
    capped = Vocabulary.build(CORPUS, max_size=4)
    assert len(capped) == 4 and capped.tokens == (PAD, UNK, "the", "cat")
    assert len(Vocabulary.build(CORPUS, max_size=100)) == 8


def test_unknown_tokens_encode_to_unk_and_pad_never_comes_out_of_encode():
    vocab = Vocabulary.build(CORPUS, min_count=2)
    assert vocab.encode(["the", "dog", "sat", "<unk>", "<pad>"]) == [2, UNK_ID, 4, UNK_ID, UNK_ID]
    assert "the" in vocab and "dog" not in vocab and PAD not in vocab
    assert vocab.id_of("zebra") == UNK_ID


def test_a_corpus_own_unk_is_the_reserved_one():
    vocab = Vocabulary.build([["a", "<unk>", "<unk>", "<pad>"], ["a", "<unk>"]])
    assert vocab.tokens == (PAD, UNK, "a")


@PROPERTY
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "dé", "ü", ".", "'s"]), max_size=8), min_size=1, max_size=8))
def test_encode_decode_round_trip(corpus):
    if not any(corpus):
        return
    vocab = Vocabulary.build(corpus)
    for sentence in corpus:
        ids = vocab.encode(sentence)
        assert all(2 <= i < len(vocab) for i in ids)
        assert vocab.decode(ids) == sentence
    unknown = vocab.encode(["never seen"] + corpus[0])
    assert vocab.decode(unknown) == [UNK] + corpus[0]


def test_character_vocabulary_for_a_language_model():
    text = "First Citizen:\nBefore we proceed"
    vocab = Vocabulary.build([tokenize_chars(text)])
    assert "".join(vocab.decode(vocab.encode(tokenize_chars(text)))) == text
    assert vocab.tokens[2] == "e" and len(vocab) == len(set(text)) + 2


def test_decode_refuses_ids_outside_the_vocabulary():
    vocab = Vocabulary.build(CORPUS)
    assert vocab.decode(np.array([2, 0])) == ["the", PAD]
    with pytest.raises(ValueError, match="id 8 is not in this vocabulary of 8 tokens"):
        vocab.decode([2, 8])
    with pytest.raises(ValueError, match="id -1"):
        vocab.token_of(-1)


@pytest.mark.parametrize(
    "corpus, options, message",
    [
        ([], {}, "empty corpus"),
        ([[], []], {}, "empty corpus"),
        ([["<pad>", "<unk>"]], {}, "empty corpus"),
        (CORPUS, {"min_count": 4}, "no token occurs min_count=4 times; the most frequent, 'the', occurs 3 times"),
        (CORPUS, {"min_count": 0}, "min_count must be a positive int"),
        (CORPUS, {"max_size": 2}, "must be at least 3"),
        (CORPUS, {"max_size": 0}, "max_size must be a positive int"),
    ],
)
def test_build_refuses_bad_input(corpus, options, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary.build(corpus, **options)


def test_strings_where_token_lists_belong_are_refused():
    with pytest.raises(TypeError, match="tokenise it first"):
        Vocabulary.build(["the cat sat", "the dog"])
    with pytest.raises(TypeError, match="tokenise it first"):
        Vocabulary.build("the cat sat")
    with pytest.raises(TypeError, match="tokenise it first"):
        Vocabulary.build(CORPUS).encode("the cat")


@pytest.mark.parametrize(
    "tokens, error, message",
    [
        (["a", "b"], ValueError, "starts with '<pad>', '<unk>'"),
        ([PAD, UNK, "a", "a"], ValueError, r"distinct, got \['a'\]"),
        ([PAD, UNK, 3], TypeError, "must be strings"),
        ("<pad><unk>", TypeError, "must be a list of strings"),
    ],
)
def test_the_constructor_checks_its_tokens(tokens, error, message):
    with pytest.raises(error, match=message):
        Vocabulary(tokens)


# ------------------------------------------------------------------ vocabulary files
def test_save_and_load_round_trip_as_json(tmp_path):
    vocab = Vocabulary.build([tokenize_words("Ünïcode «quotes» and \"json\" \\ escapes, ünïcode")])
    path = vocab.save(tmp_path / "run" / "vocab.json")  # the folder is created
    assert path == tmp_path / "run" / "vocab.json"
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.tokens == vocab.tokens
    assert loaded.encode(["ünïcode", "x"]) == vocab.encode(["ünïcode", "x"])
    contents = json.loads(path.read_text(encoding="utf-8"))
    assert contents == {"format": "jaxdl.vocabulary", "version": 1, "tokens": list(vocab.tokens)}
    assert os.listdir(path.parent) == ["vocab.json"]  # no temporary file left


def test_save_replaces_an_old_file_only_once_the_new_one_is_complete(tmp_path, monkeypatch):
    path = Vocabulary.build(CORPUS).save(tmp_path / "vocab.json")
    bigger = Vocabulary.build(CORPUS + [["a", "b"]])

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        bigger.save(path)
    monkeypatch.undo()
    assert Vocabulary.load(path) == Vocabulary.build(CORPUS)  # the old file is intact
    assert os.listdir(tmp_path) == ["vocab.json"]  # and the partial one is gone
    bigger.save(path)
    assert Vocabulary.load(path) == bigger


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_load_a_missing_file(tmp_path):
    with pytest.raises(VocabularyError, match=re.escape(f"no vocabulary at {tmp_path / 'nope.json'}")):
        Vocabulary.load(tmp_path / "nope.json")


@pytest.mark.parametrize("keep", [0, 1, 10, 0.5, -2])
def test_load_a_truncated_file(tmp_path, keep):
    full = Vocabulary.build(CORPUS).save(tmp_path / "vocab.json").read_text(encoding="utf-8")
    cut = full[: int(keep * len(full)) if isinstance(keep, float) else keep]
    path = write(tmp_path / "cut.json", cut)
    message = f"{path} ({len(cut.encode())} bytes) is truncated or not JSON"
    with pytest.raises(VocabularyError, match=re.escape(message)):
        Vocabulary.load(path)


def test_load_a_binary_file(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_bytes(b"\x80\x04\x95 a pickle")
    with pytest.raises(VocabularyError, match="is truncated or not JSON"):
        Vocabulary.load(path)


@pytest.mark.parametrize(
    "contents",
    [
        ["<pad>", "<unk>", "the"],
        {"tokens": ["<pad>", "<unk>", "the"]},
        {"format": "jaxdl.checkpoint", "version": 1},
        "just a string",
        None,
    ],
)
def test_load_json_that_is_not_a_vocabulary(tmp_path, contents):
    path = write(tmp_path / "other.json", json.dumps(contents))
    with pytest.raises(VocabularyError, match=re.escape(f"{path} is JSON but not a jaxdl vocabulary")):
        Vocabulary.load(path)


@pytest.mark.parametrize("version", [2, 0, None, "1"])
def test_load_an_unknown_version(tmp_path, version):
    contents = {"format": "jaxdl.vocabulary", "version": version, "tokens": [PAD, UNK]}
    path = write(tmp_path / "v.json", json.dumps(contents))
    message = f"{path} is a vocabulary of version {version!r}; this jaxdl reads version 1"
    with pytest.raises(VocabularyError, match=re.escape(message)):
        Vocabulary.load(path)


@pytest.mark.parametrize("tokens", [None, [UNK, PAD, "a"], [PAD, UNK, "a", "a"], [PAD, UNK, 7]])
def test_load_a_corrupt_vocabulary(tmp_path, tokens):
    path = write(tmp_path / "bad.json", json.dumps({"format": "jaxdl.vocabulary", "version": 1, "tokens": tokens}))
    with pytest.raises(VocabularyError, match=re.escape(f"{path} is a corrupt jaxdl vocabulary")):
        Vocabulary.load(path)


def test_vocabulary_errors_are_value_errors():
    assert issubclass(VocabularyError, ValueError)


# ------------------------------------------------------------------ padding and masks
def test_pad_batch_pads_at_the_end_to_the_longest():
    ids, lengths = pad_batch([[5, 6, 7], [8], []])
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, PAD_ID, PAD_ID], [PAD_ID] * 3])
    np.testing.assert_array_equal(lengths, [3, 1, 0])
    assert ids.dtype == np.int32 and lengths.dtype == np.int32


def test_pad_batch_truncates_keeping_the_start_by_default_or_the_end():
    ids, lengths = pad_batch([[1, 2, 3, 4, 5], [6, 7]], 3, pad_id=-1)
    np.testing.assert_array_equal(ids, [[1, 2, 3], [6, 7, -1]])
    np.testing.assert_array_equal(lengths, [3, 2])
    ids, lengths = pad_batch([[1, 2, 3, 4, 5], [6, 7]], 3, keep="end")
    np.testing.assert_array_equal(ids, [[3, 4, 5], [6, 7, PAD_ID]])


@PROPERTY
@given(ragged, st.none() | st.integers(1, 35), st.sampled_from(["start", "end"]))
def test_pad_batch_keeps_each_sequence_as_a_prefix_of_its_row(sequences, length, keep):
    ids, lengths = pad_batch(sequences, length, keep=keep)
    steps = max(map(len, sequences)) if length is None else length
    assert ids.shape == (len(sequences), steps)
    for row, sequence, kept in zip(ids, sequences, lengths):
        assert kept == min(len(sequence), steps)
        expected = sequence[:kept] if keep == "start" else sequence[len(sequence) - kept :]
        assert row[:kept].tolist() == expected
        assert (row[kept:] == PAD_ID).all()


@pytest.mark.parametrize(
    "options, message", [({"length": 0}, "length must be a positive int"), ({"keep": "middle"}, "keep must be")]
)
def test_pad_batch_refuses_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        pad_batch([[1, 2]], **options)


def test_sequence_mask_on_the_host_and_inside_jit():
    expected = [[True, True, False, False], [False] * 4, [True] * 4]
    mask = sequence_mask([2, 0, 4], 4)
    assert isinstance(mask, np.ndarray) and mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)
    traced = jax.jit(lambda lengths: sequence_mask(lengths, 4))(jnp.array([2, 0, 4]))
    assert isinstance(traced, jax.Array)
    np.testing.assert_array_equal(traced, expected)
    ids, lengths = pad_batch([[3, 4], [], [5, 6, 7, 8]])
    np.testing.assert_array_equal(sequence_mask(lengths, 4), ids != PAD_ID)


# ------------------------------------------------------------------ bucket boundaries
def test_bucket_lengths_are_rounded_quantiles():
    lengths = list(range(1, 101))  # quartiles, rounded to the next length: 26, 51, 76, 100
    assert bucket_lengths(lengths, 4, multiple=1) == (26, 51, 76, 100)
    assert bucket_lengths(lengths, 4) == (32, 56, 80, 104)
    assert bucket_lengths(lengths, 1) == (104,)
    assert bucket_lengths([0, 0, 3], 3) == (8,)  # merged quantiles; never an empty shape


@PROPERTY
@given(st.lists(st.integers(0, 300), min_size=1, max_size=200), st.integers(1, 8), st.sampled_from([1, 8, 16]))
def test_bucket_lengths_cover_every_length_with_few_increasing_multiples(lengths, num_buckets, multiple):
    boundaries = bucket_lengths(lengths, num_buckets, multiple=multiple)
    assert 1 <= len(boundaries) <= num_buckets
    assert all(a < b for a, b in pairwise(boundaries))
    assert all(b % multiple == 0 and b > 0 for b in boundaries)
    assert max(lengths) <= boundaries[-1] < max(max(lengths), 1) + multiple


@pytest.mark.parametrize(
    "lengths, num_buckets, message",
    [
        ([], 2, "non-empty"),
        ([3, -1], 2, "non-negative"),
        ([1.5], 2, "ints"),
        ([3], 0, "num_buckets must be a positive int"),
    ],
)
def test_bucket_lengths_refuses_bad_input(lengths, num_buckets, message):
    with pytest.raises(ValueError, match=message):
        bucket_lengths(lengths, num_buckets)


# ------------------------------------------------------------------ bucketed batches
def sentiment(count=103, seed=0):
    sequences = ragged_ids(count, seed)
    labels = np.array([i % 2 for i in range(count)], dtype=np.int32)
    boundaries = bucket_lengths([len(s) for s in sequences], 4)
    return sequences, labels, bucket_examples(sequences, boundaries, columns={"y": labels})


def examples_seen(batches) -> list[int]:
    return sorted(i for batch in batches for i, weight in zip(batch["index"], batch["mask"]) if weight)


def check_rows_match_their_examples(batch, sequences, labels):
    steps = batch["x"].shape[1]
    rows = zip(batch["x"], batch["lengths"], batch["index"], batch["y"], batch["mask"])
    for row, length, index, label, weight in rows:
        if weight:
            assert row.tolist() == pad_batch([sequences[index]], steps)[0][0].tolist()
            assert length == len(sequences[index]) and label == labels[index]
        else:
            assert index == -1


@pytest.mark.parametrize("batch_size", [1, 7, 32, 500])
def test_eval_batches_hold_every_example_once_and_mask_the_filler_rows(batch_size):
    sequences, labels, data = sentiment()
    batches = list(data.eval_batches(batch_size))
    assert examples_seen(batches) == list(range(len(sequences)))
    assert sum(batch["mask"].sum() for batch in batches) == len(sequences)
    assert len(batches) == data.steps_per_epoch(batch_size)
    for batch in batches:
        assert set(batch) == {"x", "lengths", "index", "y", "mask"}
        assert batch["mask"].shape == (batch_size,) and batch["mask"].dtype == np.float32
        check_rows_match_their_examples(batch, sequences, labels)
        assert (batch["lengths"] <= batch["x"].shape[1]).all()


@pytest.mark.parametrize("batch_size", [8, 32])
def test_there_is_one_batch_shape_per_bucket(batch_size):
    sequences, _, data = sentiment(200)
    for batches in (data.eval_batches(batch_size), data.train_batches(batch_size, 0)):
        shapes = Counter(batch["x"].shape for batch in batches)
        occupied = {b for b, bucket in zip(data.boundaries, data.arrays) if len(bucket["x"])}
        assert set(shapes) == {(batch_size, b) for b in occupied}
        assert len(shapes) <= 4
    assert data.size == len(sequences)


def test_each_example_sits_in_the_smallest_bucket_that_holds_it():
    sequences, _, data = sentiment()
    lower = 0
    for boundary, bucket in zip(data.boundaries, data.arrays):
        sizes = [len(sequences[i]) for i in bucket["index"]]
        assert all(lower < size <= boundary or size == lower == 0 for size in sizes)
        lower = boundary


def test_train_batches_shuffle_by_key_and_epoch_and_cover_every_example_once():
    sequences, labels, data = sentiment()
    first = list(data.train_batches(16, 3))
    again = list(data.train_batches(16, 3))
    other_seed = list(data.train_batches(16, 4))
    next_epoch = list(data.train_batches(16, 3, epoch=1))

    def order(batches):
        return [batch["index"].tolist() for batch in batches]

    assert order(first) == order(again)
    assert all((a["x"] == b["x"]).all() and (a["mask"] == b["mask"]).all() for a, b in zip(first, again))
    assert order(first) != order(other_seed) and order(first) != order(next_epoch)
    for batches in (first, other_seed, next_epoch):
        assert examples_seen(batches) == list(range(len(sequences)))
        assert len(batches) == data.steps_per_epoch(16)
        for batch in batches:
            check_rows_match_their_examples(batch, sequences, labels)
    eval_order = [i for batch in data.eval_batches(16) for i in batch["index"].tolist()]
    assert [i for batch in first for i in batch["index"].tolist()] != eval_order


def test_train_batches_mix_the_buckets():
    _, _, data = sentiment(400)
    steps = [batch["x"].shape[1] for batch in data.train_batches(8, 0)]
    assert len(set(steps)) == len(data.boundaries) > 1
    assert steps != sorted(steps) and steps != sorted(steps, reverse=True)
    eval_steps = [batch["x"].shape[1] for batch in data.eval_batches(8)]
    assert eval_steps == sorted(eval_steps)  # evaluation goes bucket after bucket


def test_train_batches_take_jax_keys_and_resume_inside_an_epoch():
    _, _, data = sentiment()
    for key in (jax.random.key(7), jax.random.PRNGKey(7)):
        whole = [batch["index"].tolist() for batch in data.train_batches(16, key)]
        resumed = [batch["index"].tolist() for batch in data.train_batches(16, key, start=3)]
        assert resumed == whole[3:]
    typed = [b["index"].tolist() for b in data.train_batches(16, jax.random.key(7))]
    folded = [b["index"].tolist() for b in data.train_batches(16, jax.random.fold_in(jax.random.key(7), 1))]
    assert typed != folded


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda data: next(data.eval_batches(0)), ValueError, "batch_size must be a positive int"),
        (lambda data: next(data.train_batches(-1, 0)), ValueError, "batch_size must be a positive int"),
        (lambda data: data.steps_per_epoch(0), ValueError, "batch_size must be a positive int"),
        (lambda data: next(data.train_batches(4, -1)), ValueError, "seed must be a non-negative int"),
        (lambda data: next(data.train_batches(4, 0, epoch=-1)), ValueError, "epoch must be a non-negative int"),
        (lambda data: next(data.train_batches(4, "seed")), TypeError, "key must be a jax PRNG key"),
    ],
)
def test_batches_refuse_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(sentiment(20)[2])


def test_token_columns_are_padded_like_x_and_make_the_mask_per_token():
    tokens = [[3, 4, 5], [6], [7, 8, 9, 10, 11], [12, 13]]
    tags = [[1, 2, 1], [3], [1, 1, 2, 2, 1], [4, 4]]
    data = bucket_examples(tokens, (4, 8), token_columns={"y": tags}, columns={"doc": np.arange(4)})
    batches = list(data.eval_batches(3))
    assert [batch["x"].shape for batch in batches] == [(3, 4), (3, 8)]
    first, second = batches
    np.testing.assert_array_equal(first["y"], [[1, 2, 1, 0], [3, 0, 0, 0], [4, 4, 0, 0]])
    np.testing.assert_array_equal(first["mask"], [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(second["mask"][0], [1, 1, 1, 1, 1, 0, 0, 0])
    assert (second["mask"][1:] == 0).all() and second["index"].tolist() == [2, -1, -1]
    np.testing.assert_array_equal(second["doc"][:1], [2])
    assert sum(batch["mask"].sum() for batch in data.train_batches(2, 0)) == sum(map(len, tokens))


def test_sequences_longer_than_the_last_boundary_are_cut_with_their_token_columns():
    data = bucket_examples([[1, 2, 3, 4, 5, 6]], (4,), token_columns={"y": [[1, 2, 3, 4, 5, 6]]}, keep="end")
    (batch,) = data.eval_batches(1)
    assert batch["x"].tolist() == [[3, 4, 5, 6]] and batch["y"].tolist() == [[3, 4, 5, 6]]
    assert batch["lengths"].tolist() == [4]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"sequences": []}, "at least one sequence"),
        ({"boundaries": ()}, "increasing positive ints"),
        ({"boundaries": (8, 8)}, "increasing positive ints"),
        ({"boundaries": (0, 8)}, "each boundary must be a positive int"),
        ({"columns": {"y": [0, 1]}}, r"column 'y' must have one entry per sequence \(3\), got shape \(2,\)"),
        ({"columns": {"mask": [0, 1, 1]}}, r"from \('x', 'lengths', 'index', 'mask'\), got \['mask'\]"),
        ({"columns": {"y": [0, 1, 1]}, "token_columns": {"y": [[1], [1, 2], []]}}, r"got \['y'\]"),
        ({"token_columns": {"tags": [[1], [1, 2]]}}, "token column 'tags' must have one sequence per sequence"),
        ({"token_columns": {"tags": [[1], [1], []]}}, "token column 'tags': example 1 has 1 entries for 2 tokens"),
    ],
)
def test_bucket_examples_refuses_bad_input(options, message):
    arguments = {"sequences": [[5], [6, 7], []], "boundaries": (8,), **options}
    with pytest.raises(ValueError, match=message):
        bucket_examples(arguments.pop("sequences"), arguments.pop("boundaries"), **arguments)


# ------------------------------------------------------------------ language-model windows
def test_lm_windows_targets_are_the_inputs_shifted_by_one():
    windows = lm_windows(np.arange(10), 3)
    np.testing.assert_array_equal(windows["x"], [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    np.testing.assert_array_equal(windows["y"], [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert windows["x"].dtype == windows["y"].dtype == np.int32


@PROPERTY
@given(st.integers(2, 300), st.integers(1, 20), st.none() | st.integers(1, 25))
def test_lm_windows_cut_every_window_that_fits(size, length, stride):
    ids = np.random.default_rng(size).integers(0, 65, size)
    if size < length + 1:
        with pytest.raises(ValueError, match="too few for one window"):
            lm_windows(ids, length, stride)
        return
    windows = lm_windows(ids, length, stride)
    step = length if stride is None else stride
    assert windows["x"].shape == windows["y"].shape == ((size - length - 1) // step + 1, length)
    for i, (x, y) in enumerate(zip(windows["x"], windows["y"])):
        np.testing.assert_array_equal(x, ids[i * step : i * step + length])
        np.testing.assert_array_equal(y, ids[i * step + 1 : i * step + length + 1])


def test_lm_windows_of_a_character_text():
    text = "to be or not to be"
    vocab = Vocabulary.build([tokenize_chars(text)])
    windows = lm_windows(vocab.encode(tokenize_chars(text)), 5, stride=4)
    assert ["".join(vocab.decode(row)) for row in windows["x"]] == ["to be", "e or ", " not ", " to b"]
    assert ["".join(vocab.decode(row)) for row in windows["y"]] == ["o be ", " or n", "not t", "to be"]


@pytest.mark.parametrize(
    "ids, length, stride, message",
    [
        (np.arange(10), 0, None, "length must be a positive int"),
        (np.arange(10), 3, 0, "stride must be a positive int"),
        (np.zeros((2, 5), int), 3, None, "one sequence of integer ids"),
        (np.linspace(0, 1, 10), 3, None, "one sequence of integer ids"),
    ],
)
def test_lm_windows_refuses_bad_input(ids, length, stride, message):
    with pytest.raises(ValueError, match=message):
        lm_windows(ids, length, stride)


def test_pad_batch_pads_tokens_that_are_id_vectors():
    ids, lengths = pad_batch([[[1, 2], [3, 4]], [], [[5, 6]]], 3)
    assert ids.shape == (3, 3, 2) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids[0], [[1, 2], [3, 4], [0, 0]])
    np.testing.assert_array_equal(ids[1], np.zeros((3, 2)))
    np.testing.assert_array_equal(lengths, [2, 0, 1])
    ends, _ = pad_batch([np.arange(8).reshape(4, 2)], 2, keep="end")
    np.testing.assert_array_equal(ends[0], [[4, 5], [6, 7]])
    with pytest.raises(ValueError, match=r"the shape of the first one, \(2,\); sequence 1 has tokens of shape \(3,\)"):
        pad_batch([[[1, 2]], [[1, 2, 3]]])


@pytest.mark.parametrize("n, length", [(10, 3), (10, 9), (2, 4), (11, 5)])
def test_lm_eval_windows_predict_every_token_after_the_first_once(n, length):
    ids = np.arange(100, 100 + n)
    windows = lm_eval_windows(ids, length)
    assert windows["x"].shape == windows["y"].shape == windows["mask"].shape == (-(-(n - 1) // length), length)
    real = windows["mask"] > 0
    np.testing.assert_array_equal(windows["y"][real], ids[1:])  # each once, in order
    np.testing.assert_array_equal(windows["x"][real], ids[:-1])  # each read just before it
    assert windows["mask"][:-1].all()  # only the last window has a padded tail
    with pytest.raises(ValueError, match="at least 2 ids"):
        lm_eval_windows(ids[:1], length)


def test_strict_encoding_names_the_tokens_the_vocabulary_lacks():
    vocabulary = Vocabulary.build([list("abc")])
    assert vocabulary.encode(list("cab"), strict=True) == vocabulary.encode(list("cab"))
    with pytest.raises(VocabularyError, match=r"holds tokens the vocabulary does not: 'x', 'z' \(it holds 'abc'\)"):
        vocabulary.encode(list("zaxz"), strict=True)
    assert vocabulary.encode(list("zax")) == [UNK_ID, vocabulary.id_of("a"), UNK_ID]


def test_covering_lengths_keep_the_shorter_boundaries_and_hold_the_longest():
    assert covering_lengths((8, 16, 32, 48), 124) == (8, 16, 32, 48, 128)
    assert covering_lengths((8, 16, 32, 48), 20) == (8, 16, 24)
    assert covering_lengths((), 5) == (8,)
    assert covering_lengths((8, 16), 16, multiple=4) == (8, 16)


# ------------------------------------------------------------- sentences and a language model's texts
def test_encode_sentences_lower_cases_and_tokenises_as_the_vocabulary_was_built():
    vocabulary = Vocabulary.build([tokenize_words("it 's a charming , charming film .", lower=True)])
    assert encode_sentences(vocabulary, ["A charming FILM!", "", "It 's"]) == [
        vocabulary.encode(["a", "charming", "film"]) + [UNK_ID],  # "!" is unknown
        [],
        [vocabulary.id_of("it"), vocabulary.id_of("'s")],
    ]
    assert encode_sentences(vocabulary, ["A film"], lower=False) == [[UNK_ID, vocabulary.id_of("film")]]


def test_frequent_words_are_plain_words_most_frequent_first():
    text = "O'er the hill, the hill; 'tis the 2nd hill o' the day. Thou'rt THE one_two hill, the end"
    words = frequent_words(text, 3)
    assert words.tokens == (PAD, UNK, "the", "hill", "O'er")  # 5, 4, then ties by the word itself; case kept
    every = frequent_words(text, 100).tokens[2:]
    assert set(every) == {"the", "hill", "O'er", "day", "Thou'rt", "THE", "end"}  # not 'tis, o', 2nd, one_two
    with pytest.raises(ValueError, match="count must be a positive int"):
        frequent_words(text, 0)


def test_load_texts_of_a_file_validate_on_its_last_twentieth(tmp_path):
    path = tmp_path / "book.txt"
    text = "".join(chr(ord("a") + i % 26) for i in range(1000)) + "é"
    path.write_text(text, encoding="utf-8")
    train, validation, source = load_texts(path, min_chars=10)
    assert (train, validation, source) == (text[:951], text[951:], str(path))  # 1001 // 20 = 50 characters
    assert load_texts(path, min_chars=100)[1] == text[-100:]  # at least min_chars validate
    assert load_texts(path, min_chars=10, train_chars=30)[:2] == (text[:30], text[951:])  # only training is cut
    with pytest.raises(DataError, match=r"holds 1,001 characters: too few .* \(it needs 1002\)"):
        load_texts(path, min_chars=501)
    with pytest.raises(DataError, match="cannot read the text file"):
        load_texts(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="cannot read the text file .*latin1.txt"):
        load_texts(tmp_path / "latin1.txt")


def test_load_texts_of_tiny_shakespeare_are_its_train_and_validation_splits(tiny_shakespeare_data_dir):
    train, validation, source = load_texts(data_dir=tiny_shakespeare_data_dir)
    assert source == "tiny_shakespeare"
    assert (len(train), len(validation)) == (1_003_854, 55_770)  # TFDS's first 90%, then 5%
    assert train.startswith("First Citizen:") and load_texts(data_dir=tiny_shakespeare_data_dir, train_chars=50)[0] == train[:50]


def test_extended_keeps_every_id_and_appends_the_new_tokens_in_their_order():
    vocabulary = Vocabulary.build([["b", "a", "b"]])
    extended = vocabulary.extended(["c", "a", PAD, UNK, "d", "c"])
    assert extended.tokens == (*vocabulary.tokens, "c", "d")
    assert extended.encode(["b", "a", "d", "e"]) == [*vocabulary.encode(["b", "a"]), 5, UNK_ID]
    assert vocabulary.extended([]) == vocabulary
    with pytest.raises(TypeError, match="list of tokens"):
        vocabulary.extended("cd")
