"""Tests of jaxdl.data.vectors: reading GloVe, word2vec and fastText text files, aligning their
vectors to a vocabulary, and an Embedding started from the aligned table."""

from __future__ import annotations

import gzip
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data.text import PAD, UNK, Vocabulary
from jaxdl.data.vectors import (
    Coverage,
    VectorsError,
    WordVectors,
    aligned_table,
    extended_vocabulary,
    pretrained,
    pretrained_table,
    read_word_vectors,
)
from jaxdl.layers import Embedding

GLOVE = "the 0.5 -1.25 2\n. 0.125 0 -3e-2\n's 1 2 3\nfrance 4 5 6\n"
WORDS = ("the", ".", "'s", "france")
VECTORS = np.array([[0.5, -1.25, 2], [0.125, 0, -0.03], [1, 2, 3], [4, 5, 6]], np.float32)


def write(tmp_path, name: str, text: str, *, zipped: bool = False):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if zipped else text.encode())
    return path


@pytest.mark.parametrize("name, text", [
    ("glove.txt", GLOVE),
    ("word2vec.txt", "4 3\n" + GLOVE),
    ("wiki.en.vec", "4 3\n" + GLOVE.replace("\n", " \n")),  # fastText ends each line with a space
])
@pytest.mark.parametrize("zipped", [False, True])
def test_reads_each_text_format_plain_or_gzipped(tmp_path, name, text, zipped):
    vectors = read_word_vectors(write(tmp_path, name, text, zipped=zipped))
    assert vectors.words == WORDS
    assert vectors.vectors.dtype == np.float32 and vectors.dim == 3
    np.testing.assert_array_equal(vectors.vectors, VECTORS)


def test_tells_gzip_by_its_bytes_not_its_name(tmp_path):
    for path in (write(tmp_path, "vectors.txt", GLOVE, zipped=True), write(tmp_path, "vectors.txt.gz", GLOVE)):
        np.testing.assert_array_equal(read_word_vectors(path).vectors, VECTORS)


def test_words_keeps_those_words_and_their_lower_cased_forms(tmp_path):
    path = write(tmp_path, "vectors.txt", GLOVE + "France 7 8 9\nparis 1 1 1\n")
    vectors = read_word_vectors(path, words={"France", "'s", "absent"})
    assert vectors.words == ("'s", "france", "France")
    np.testing.assert_array_equal(vectors.vectors, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert read_word_vectors(path, words=["absent"]).vectors.shape == (0, 3)
    with pytest.raises(TypeError, match="collection of words"):
        read_word_vectors(path, words="the")


@pytest.mark.parametrize("words", [None, {"the"}])
def test_a_word_listed_twice_keeps_its_first_vector(tmp_path, words):
    vectors = read_word_vectors(write(tmp_path, "v.txt", GLOVE + "the 9 9 9\n"), words=words)
    assert vectors.words.count("the") == 1
    np.testing.assert_array_equal(vectors.vectors[vectors.words.index("the")], VECTORS[0])


def test_skips_blank_lines(tmp_path):
    assert read_word_vectors(write(tmp_path, "v.txt", "\n" + GLOVE.replace("\n", "\n\n"))).words == WORDS


@pytest.mark.parametrize("text, message", [
    (GLOVE + "paris 1 2", r"line 5 of .*v\.txt has 2 values, line 1 has 3: the file is truncated or corrupt"),
    (GLOVE + "paris 1 2 3 city 4 5 6", r"line 5 of .*v\.txt has 7 values, line 1 has 3"),  # two lines run together
    ("4 3\nthe 1 2 3 4\n", r"header of .*v\.txt says 3 values per vector but line 2 has 4"),
    ("5 3\n" + GLOVE, r"holds 4 vectors, its header says 5: it is truncated .*download it again"),
    ("3 3\n" + GLOVE, r"holds 4 vectors, its header says 3: the header is wrong"),
    (GLOVE.replace("-1.25", "-1.2x"), r"line 1 of .*v\.txt holds a value that is not a number .*'-1\.2x'"),
    ("", r"v\.txt holds no vectors \(it is empty\)"),
    ("0 3\n", r"holds no vectors \(it is empty but for its header\)"),
    ("the\n", r"line 1 of .*holds a word and no values"),
    (b"\xff\xfe 1 2\n", r"word on line 1 of .*v\.txt is not UTF-8 .*binary word2vec"),
])
def test_refuses_a_corrupt_file_saying_where(tmp_path, text, message):
    path = tmp_path / "v.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(VectorsError, match=message):
        read_word_vectors(path)


def test_checks_the_lines_words_leaves_out(tmp_path):
    with pytest.raises(VectorsError, match="line 5 of .* has 2 values, line 1 has 3"):
        read_word_vectors(write(tmp_path, "v.txt", GLOVE + "paris 1 2"), words={"the"})
    with pytest.raises(VectorsError, match="holds 4 vectors, its header says 5"):
        read_word_vectors(write(tmp_path, "v.txt", "5 3\n" + GLOVE), words={"the"})


def test_refuses_a_truncated_gzip_file(tmp_path):
    path = tmp_path / "v.txt.gz"
    path.write_bytes(gzip.compress(GLOVE.encode() * 50)[:-20])
    with pytest.raises(VectorsError, match=r"v\.txt\.gz is a damaged gzip file .*download it again"):
        read_word_vectors(path)


def test_refuses_another_dimension_than_asked_for(tmp_path):
    path = write(tmp_path, "v.txt", GLOVE)
    assert read_word_vectors(path, dim=3).dim == 3
    with pytest.raises(VectorsError, match=r"expected 50-dimensional vectors, .*v\.txt has 3: "
                                           r"pass the file of the right size or --embed 3"):
        read_word_vectors(path, dim=50)


def test_a_missing_file_says_where_vectors_come_from(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"no word vectors at .*absent\.txt: download .*nlp\.stanford\.edu/projects/glove"):
        read_word_vectors(tmp_path / "absent.txt")


SMALL = WordVectors(("Paris", "paris", "apple"), np.array([[1, 2], [3, 4], [5, 6]], np.float32))
VOCABULARY = Vocabulary([PAD, UNK, "Paris", "Apple", "pear", "paris"])


def test_aligned_table_prefers_the_exact_word_to_its_lower_cased_form():
    table, coverage = aligned_table(SMALL, VOCABULARY, key=jax.random.key(0))
    assert table.shape == (6, 2) and table.dtype == np.float32
    np.testing.assert_array_equal(table[[2, 3, 5]], [[1, 2], [5, 6], [3, 4]])
    np.testing.assert_array_equal(table[0], [0, 0])
    assert np.all(table[[1, 4]] != 0) and not np.isin(table[[1, 4]], SMALL.vectors).any()  # <unk>, pear: random
    assert coverage == Coverage(exact=2, lowercased=1, missing=1, total=4, missing_examples=("pear",))
    assert coverage.fraction == 0.75
    assert str(coverage) == ("pretrained vectors for 3 of 4 tokens (75.0%): 2 exact, 1 lower-cased; "
                             "1 missing, random, e.g. 'pear'")


def test_aligned_table_is_a_function_of_its_key():
    same = [aligned_table(SMALL, VOCABULARY, key=jax.random.key(1))[0] for _ in range(2)]
    other, _ = aligned_table(SMALL, VOCABULARY, key=jax.random.key(2))
    np.testing.assert_array_equal(same[0], same[1])
    assert np.all(other[[1, 4]] != same[0][[1, 4]])
    np.testing.assert_array_equal(other[[0, 2, 3, 5]], same[0][[0, 2, 3, 5]])


def test_aligned_table_without_padding_id_draws_the_pad_row_too():
    table, coverage = aligned_table(SMALL, VOCABULARY, key=jax.random.key(0), padding_id=None)
    assert np.all(table[0] != 0) and coverage.total == 4
    with pytest.raises(ValueError, match=r"padding_id must be an id in \[0, 6\)"):
        aligned_table(SMALL, VOCABULARY, key=jax.random.key(0), padding_id=6)


def test_missing_rows_have_the_pretrained_standard_deviation():
    rng = np.random.default_rng(0)
    words = tuple(f"w{i}" for i in range(500))
    vectors = WordVectors(words, rng.normal(0.0, 0.4, (500, 64)).astype(np.float32))
    vocabulary = Vocabulary([PAD, UNK, *words[:100], *(f"new{i}" for i in range(400))])
    table, coverage = aligned_table(vectors, vocabulary, key=jax.random.key(3))
    assert (coverage.exact, coverage.missing) == (100, 400)
    assert coverage.missing_examples == ("new0", "new1", "new2", "new3", "new4")
    random_rows = table[102:]
    assert random_rows.std() == pytest.approx(0.4, rel=0.05)
    assert abs(random_rows.mean()) < 0.02


def test_aligned_table_needs_some_vectors():
    with pytest.raises(VectorsError, match="words= kept none"):
        aligned_table(WordVectors((), np.zeros((0, 2), np.float32)), VOCABULARY, key=jax.random.key(0))


def test_an_embedding_starts_from_the_pretrained_table():
    table, _ = aligned_table(SMALL, VOCABULARY, key=jax.random.key(0))
    embed = Embedding(len(VOCABULARY), 2, init_fn=pretrained(table), padding_id=0)
    shape, params = embed.init(jax.random.key(5), (1, 3))
    assert shape == (1, 3, 2) and params["table"].dtype == jnp.float32
    np.testing.assert_array_equal(params["table"], table)
    np.testing.assert_array_equal(embed.apply(params, jnp.array([[2, 5, 0]])), [[[1, 2], [3, 4], [0, 0]]])
    with pytest.raises(ValueError, match=r"the Embedding is \(7, 2\) but the pretrained table is \(6, 2\): "
                                         "build the Embedding with the vocabulary the table was aligned to"):
        Embedding(len(VOCABULARY) + 1, 2, init_fn=pretrained(table)).init(jax.random.key(5), (1, 3))


def cosine(a, b) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.slow
def test_reads_real_glove_vectors(originals):
    path = originals("glove") / "glove" / "glove.6B.50d.txt.gz"
    start = time.perf_counter()
    some = read_word_vectors(path, words={"the", "paris", "France", "banana"}, dim=50)
    some_seconds = time.perf_counter() - start
    assert some.words == ("the", "france", "paris", "banana") and some.vectors.shape == (4, 50)
    paris, france, banana = (some.vectors[some.words.index(word)] for word in ("paris", "france", "banana"))
    assert cosine(paris, france) > cosine(paris, banana) + 0.3
    table, coverage = aligned_table(some, Vocabulary([PAD, UNK, "the", "Paris", "France", "xyzzyq"]),
                                    key=jax.random.key(0))
    assert coverage == Coverage(1, 2, 1, 4, ("xyzzyq",))
    np.testing.assert_array_equal(table[3], paris)

    start = time.perf_counter()
    everything = read_word_vectors(path)
    all_seconds = time.perf_counter() - start
    assert everything.vectors.shape == (400_000, 50) and everything.words[:3] == ("the", ",", ".")
    np.testing.assert_array_equal(everything.vectors[[everything.words.index(w) for w in some.words]], some.vectors)
    print(f"\nread {path.name}: 4 words of 400,000 in {some_seconds:.1f} s, all of them in {all_seconds:.1f} s")


def test_a_word_may_hold_spaces(tmp_path):
    vectors = read_word_vectors(write(tmp_path, "v.txt", GLOVE + ". . . 1 2 3\nat name@domain.com 4 5 6\n"))
    assert vectors.words[-2:] == (". . .", "at name@domain.com")
    np.testing.assert_array_equal(vectors.vectors[-2:], [[1, 2, 3], [4, 5, 6]])


def test_limit_reads_the_first_vectors_and_stops_there(tmp_path):
    path = write(tmp_path, "v.txt", "4 3\n" + GLOVE + "paris 1 2\n")  # a corrupt fifth line, and the header says 4
    vectors = read_word_vectors(path, limit=2)
    assert vectors.words == WORDS[:2]
    np.testing.assert_array_equal(vectors.vectors, VECTORS[:2])
    assert read_word_vectors(path, words={"france", "the"}, limit=3).words == ("the",)
    with pytest.raises(VectorsError, match="line 6 of .* has 2 values"):
        read_word_vectors(path, limit=5)
    for limit in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="limit must be a positive number of vectors"):
            read_word_vectors(path, limit=limit)


def test_extended_vocabulary_adds_the_files_first_words_in_the_lookup_form(tmp_path):
    path = write(tmp_path, "vectors.txt", "the 1 2\nparis 3 4\nParis 5 6\n1996 7 8\nfrance 9 10\nlyon 1 1\n")
    training = Vocabulary.build([["the", "france"]])
    extended = extended_vocabulary(training, path, 5, form=str.lower)
    assert extended.tokens == (*training.tokens, "paris", "1996")  # training's ids kept; "Paris" and "lyon" left out
    digits_as_0 = extended_vocabulary(training, path, 5, form=lambda word: word.replace("1", "0"))
    assert digits_as_0.tokens == (*training.tokens, "paris", "Paris")
    assert extended_vocabulary(training, path, 6).tokens[-1] == "lyon"
    with pytest.raises(VectorsError, match="expected 3-dimensional"):
        extended_vocabulary(training, path, 5, dim=3)


def test_pretrained_table_reads_the_vocabularys_words_and_aligns_them(tmp_path):
    path = write(tmp_path, "vectors.txt", GLOVE + "France 7 8 9\n", zipped=True)
    vocabulary = Vocabulary.build([["France", "the", "absent"]])
    table, coverage = pretrained_table(path, vocabulary, key=jax.random.key(4), dim=3)
    expected, expected_coverage = aligned_table(read_word_vectors(path, words=vocabulary.tokens), vocabulary,
                                                key=jax.random.key(4))
    np.testing.assert_array_equal(table, expected)
    assert coverage == expected_coverage and (coverage.exact, coverage.missing) == (2, 1)
    np.testing.assert_array_equal(table[vocabulary.id_of("France")], [7, 8, 9])
    with pytest.raises(VectorsError, match="expected 4-dimensional"):
        pretrained_table(path, vocabulary, key=jax.random.key(4), dim=4)
