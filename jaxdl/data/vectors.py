"""Pretrained word vectors (GloVe, word2vec, fastText) as the starting table of an Embedding.

Read a text file of vectors, keeping only the words a vocabulary needs; align them to the
vocabulary's ids; hand the table to :func:`jaxdl.layers.Embedding` as its initializer::

    table, coverage = pretrained_table("glove.6B.100d.txt.gz", vocab, key=jax.random.key(0))
    print(coverage)                    # pretrained vectors for 18,734 of 20,000 tokens (93.7%): ...
    embed = Embedding(len(vocab), table.shape[1], init_fn=pretrained(table), padding_id=PAD_ID)

Words that training never saw still have vectors in the file: :func:`extended_vocabulary`
adds the file's most frequent words to a vocabulary first, so they keep them.

Files are text, one vector a line: ``word v1 ... vD``, fields separated by whitespace; the
last D fields are the vector and the rest the word (a few words of GloVe 840B hold
spaces). word2vec's and fastText's text files start with a header line ``count dim``;
GloVe's have none. Plain or gzipped, told apart by the file's first bytes. word2vec's
binary ``.bin`` files are not read: convert them to text.
"""

from __future__ import annotations

import gzip
import os
import zlib
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.text import PAD_ID, UNK_ID, Vocabulary
from jaxdl.layers import Initializer

SOURCES = ("GloVe from https://nlp.stanford.edu/projects/glove/ (glove.6B.zip holds 50- to 300-d files), "
           "word2vec from https://code.google.com/archive/p/word2vec/ (saved as text), "
           "fastText .vec files from https://fasttext.cc/docs/en/crawl-vectors.html")
"""Where word-vector files come from (the message of a missing file)."""

_GZIP_MAGIC = b"\x1f\x8b"


class VectorsError(ValueError):
    """A word-vector file is empty, truncated, corrupt, or of another dimension than asked for."""


class WordVectors(NamedTuple):
    """Words and their vectors: ``vectors[i]`` is the vector of ``words[i]``."""

    words: tuple[str, ...]
    """N distinct words, in the file's order."""
    vectors: np.ndarray
    """float32 (N, D)."""

    @property
    def dim(self) -> int:
        """D, the size of each vector."""
        return self.vectors.shape[1]


def read_word_vectors(path: str | os.PathLike, *, words: Iterable[str] | None = None,
                      dim: int | None = None, limit: int | None = None) -> WordVectors:
    """The vectors of a GloVe, word2vec (text) or fastText ``.vec`` file, plain or gzipped.

    ``words`` keeps only the vectors of those words and of their lower-cased forms (the other
    lines are counted and their values counted, never converted or held). A word listed twice
    keeps its first vector.
    ``dim`` is the dimension expected. ``limit`` reads the first ``limit`` vectors only (these
    files list the most frequent words first) and stops there. Raises FileNotFoundError
    (saying where such files come from) and :class:`VectorsError` for an empty, truncated or
    corrupt file or another ``dim``.
    """
    path = Path(path)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of vectors, got {limit!r}")
    if isinstance(words, str):
        raise TypeError(f"words must be a collection of words, got the str {words[:40]!r}")
    wanted = None if words is None else {form.encode() for word in words for form in (word, word.lower())}
    kept: dict[bytes, str] = {}  # the words kept, in order, as read and decoded
    values = array("f")  # their vectors, one after another, as float32
    header = width = None  # (count, dim) of a word2vec or fastText header; values per line
    count = first = 0  # vector lines read; the line number of the first one
    try:
        with _open(path) as lines:
            for number, line in enumerate(lines, 1):
                fields = line.split()
                if number == 1 and len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                    header = int(fields[0]), int(fields[1])
                    continue
                if not fields:
                    continue
                if count == limit:
                    break
                if width is None:
                    width, first = len(fields) - 1, number
                    _check_width(path, number, width, header, dim)
                elif len(fields) - 1 > width and not any(map(_is_number, fields[1:-width])):
                    fields = [b" ".join(fields[:-width]), *fields[-width:]]  # a word with spaces (GloVe 840B's ". . .")
                if len(fields) - 1 != width:
                    raise VectorsError(
                        f"line {number} of {path} has {len(fields) - 1} values, line {first} has {width}: "
                        "the file is truncated or corrupt; download it again")
                count += 1
                if fields[0] in kept or (wanted is not None and fields[0] not in wanted):
                    continue
                try:
                    values.extend(map(float, fields[1:]))
                except ValueError as error:
                    raise VectorsError(f"line {number} of {path} holds a value that is not a number ({error}): "
                                       "the file is corrupt or not a text file of word vectors") from None
                kept[fields[0]] = _decode(path, number, fields[0])
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise VectorsError(f"{path} is a damaged gzip file ({error}): download it again") from None
    if header is not None and count != header[0] and count != limit:
        raise VectorsError(f"{path} holds {count:,} vectors, its header says {header[0]:,}: " + (
            "it is truncated (an interrupted download?); download it again" if count < header[0]
            else "the header is wrong; fix its first line"))
    if count == 0:
        raise VectorsError(f"{path} holds no vectors (it is empty{' but for its header' if header else ''})")
    return WordVectors(tuple(kept.values()),
                       np.frombuffer(values, dtype=np.float32).reshape(len(kept), width))


def extended_vocabulary(vocabulary: Vocabulary, path: str | os.PathLike, count: int, *, dim: int | None = None,
                        form: Callable[[str], str] | None = None) -> Vocabulary:
    """``vocabulary`` extended with the first ``count`` words of the vectors file at ``path``
    (its most frequent), after its own tokens, each keeping its id (:meth:`Vocabulary.extended`),
    so that words training never saw keep their pretrained vectors. ``form`` is the form words
    are looked up by (e.g. ``str.lower``): only the file's words already in that form are added,
    the others could never be looked up. ``dim``: as :func:`read_word_vectors`."""
    words = read_word_vectors(path, dim=dim, limit=count).words
    return vocabulary.extended([word for word in words if form is None or form(word) == word])


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _open(path: Path) -> BinaryIO:
    """``path`` opened for reading bytes, through gzip when it starts with gzip's magic bytes."""
    try:
        with path.open("rb") as file:
            magic = file.read(2)
    except FileNotFoundError:
        raise FileNotFoundError(f"no word vectors at {path}: download {SOURCES}") from None
    return gzip.open(path) if magic == _GZIP_MAGIC else path.open("rb")


def _check_width(path: Path, number: int, width: int, header: tuple[int, int] | None, dim: int | None) -> None:
    """Refuse a first vector line of ``width`` values that has none, or disagrees with the header or ``dim``."""
    if width == 0:
        raise VectorsError(f"line {number} of {path} holds a word and no values: it is not a text file of word vectors")
    if header is not None and header[1] != width:
        raise VectorsError(f"the header of {path} says {header[1]} values per vector but line {number} has {width}: "
                           "the file is corrupt; fix its first line or download it again")
    if dim is not None and dim != width:
        raise VectorsError(f"expected {dim}-dimensional vectors, {path} has {width}: "
                           f"pass the file of the right size or --embed {width}")


def _decode(path: Path, number: int, word: bytes) -> str:
    try:
        return word.decode()
    except UnicodeDecodeError as error:
        raise VectorsError(f"the word on line {number} of {path} is not UTF-8 ({error}): a binary word2vec file? "
                           "Only the text formats are read") from None


class Coverage(NamedTuple):
    """How a vocabulary's tokens (``<pad>`` and ``<unk>`` aside) found their pretrained vectors."""

    exact: int
    """Tokens found as they are."""
    lowercased: int
    """Tokens found through their lower-cased form."""
    missing: int
    """Tokens found in neither form (their rows are random)."""
    total: int
    """All tokens counted: ``exact + lowercased + missing``."""
    missing_examples: tuple[str, ...] = ()
    """The first few missing tokens, in id order (the most frequent first in a built vocabulary)."""

    @property
    def fraction(self) -> float:
        """The share of tokens with a pretrained vector, from 0 to 1."""
        return (self.exact + self.lowercased) / self.total if self.total else 0.0

    def __str__(self) -> str:
        examples = f", e.g. {', '.join(map(repr, self.missing_examples))}" if self.missing_examples else ""
        return (f"pretrained vectors for {self.exact + self.lowercased:,} of {self.total:,} tokens "
                f"({self.fraction:.1%}): {self.exact:,} exact, {self.lowercased:,} lower-cased; "
                f"{self.missing:,} missing, random{examples}")


def aligned_table(vectors: WordVectors, vocabulary: Vocabulary, *, key: jax.Array,
                  padding_id: int | None = PAD_ID) -> tuple[np.ndarray, Coverage]:
    """An embedding table for ``vocabulary``: ``(table float32 (V, D), coverage)``.

    Row ``i`` is the vector of token ``i``, else of its lower-cased form (GloVe's words are
    lower-cased). The other tokens, ``<unk>`` among them, get random normal rows drawn from
    ``key``, with the standard deviation of all of ``vectors``' values; row ``padding_id``
    (None: no row) is zeros.
    """
    if not vectors.words:
        raise VectorsError("no pretrained vectors to align: words= kept none of the file's words")
    if padding_id is not None and not 0 <= padding_id < len(vocabulary):
        raise ValueError(f"padding_id must be an id in [0, {len(vocabulary)}) or None, got {padding_id!r}")
    row_of = {word: row for row, word in enumerate(vectors.words)}
    table = np.array(jax.random.normal(key, (len(vocabulary), vectors.dim), jnp.float32)) * vectors.vectors.std()
    ids, rows, exact, missing = [], [], 0, []
    for token_id, token in enumerate(vocabulary.tokens):
        if token_id in (PAD_ID, UNK_ID):
            continue
        row = row_of.get(token, row_of.get(token.lower()))
        if row is None:
            missing.append(token)
            continue
        exact += token in row_of
        ids.append(token_id)
        rows.append(row)
    table[ids] = vectors.vectors[rows]
    if padding_id is not None:
        table[padding_id] = 0
    found = len(ids)
    return table, Coverage(exact, found - exact, len(missing), found + len(missing), tuple(missing[:5]))


def pretrained_table(path: str | os.PathLike, vocabulary: Vocabulary, *, key: jax.Array, dim: int | None = None,
                     padding_id: int | None = PAD_ID) -> tuple[np.ndarray, Coverage]:
    """The vectors file at ``path`` read for ``vocabulary``'s tokens (:func:`read_word_vectors`)
    and aligned to its ids (:func:`aligned_table`): ``(table float32 (V, D), coverage)``."""
    vectors = read_word_vectors(path, words=vocabulary.tokens, dim=dim)
    return aligned_table(vectors, vocabulary, key=key, padding_id=padding_id)


def pretrained(table) -> Initializer:
    """An ``init_fn`` for :func:`jaxdl.layers.Embedding` that gives ``table`` (V, D), e.g. from
    :func:`aligned_table`; ValueError when the Embedding asks for another shape."""
    table = jnp.asarray(table, dtype=jnp.float32)

    def init(key, shape, dtype=jnp.float32):
        if tuple(shape) != table.shape:
            raise ValueError(f"the Embedding is {tuple(shape)} but the pretrained table is {table.shape}: "
                             "build the Embedding with the vocabulary the table was aligned to")
        return table.astype(dtype)

    return init
