"""Text: tokenisers, a vocabulary saved as JSON, padding, length buckets, masks, LM windows,
and a language model's training and validation texts.

Everything here runs on the host with numpy: it prepares the arrays a jitted step
consumes. Two ids are reserved in every vocabulary: ``PAD_ID = 0`` (``"<pad>"``,
filling rows up to a common length) and ``UNK_ID = 1`` (``"<unk>"``, any token
outside the vocabulary). Encoding never yields ``PAD_ID``, so ``x != PAD_ID`` marks
the real tokens of a padded batch. Padding always goes at the end of a row.

Shapes: padding every batch to its own longest row compiles a step per length;
padding all rows to the longest one wastes work on short sentences.
:func:`bucket_examples` pads each example once, to the smallest of a few lengths
(:func:`bucket_lengths`) that holds it, so its batches take one shape per bucket::

    sentences = [tokenize_words(line, lower=True) for line in lines]
    vocab = Vocabulary.build(sentences, min_count=2)
    vocab.save(run_dir / "vocab.json")                 # Vocabulary.load(...) later
    ids = [vocab.encode(tokens) for tokens in sentences]
    data = bucket_examples(ids, bucket_lengths([len(s) for s in ids], 4), columns={"y": labels})
    for batch in data.train_batches(32, key): ...       # shuffled by key
    for batch in data.eval_batches(256): ...            # every example once, in order
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import numpy as np

from jaxdl.checkpoint import atomic_write
from jaxdl.data.text_datasets import load_text_corpus
from jaxdl.data.tfds import DataError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
VOCABULARY_FORMAT = "jaxdl.vocabulary"
VOCABULARY_VERSION = 1

_WORDS = re.compile(
    r"\w+(?:[-'’.]\w+)*"  # a word, with inner hyphens, apostrophes, periods: well-made, don't, 3.14
    r"|(?i:['’](?:s|re|ve|ll|d|m|t))\b"  # a clitic of already tokenised text: 's 're 've 'll 'd 'm
    r"|([^\w\s])\1*"  # punctuation: a run of one character (..., !!, --) is one token
)


def tokenize_words(text: str, *, lower: bool = False) -> list[str]:
    """Words and punctuation marks of ``text``, lower-cased if ``lower``.

    A word is a run of letters, digits or ``_``, with inner hyphens, apostrophes
    or periods kept (``well-made``, ``don't``, ``3.14``); a clitic after a space
    stays one token (``it 's`` gives ``it``, ``'s``, as in SST-2); any other
    non-space character is a token, a run of the same one included (``...``).
    Whitespace only separates: joining the tokens gives the text without it.
    """
    if lower:
        text = text.lower()
    return [match.group(0) for match in _WORDS.finditer(text)]


def tokenize_chars(text: str) -> list[str]:
    """The characters of ``text``, whitespace included (for character-level models)."""
    return list(text)


# A plain word: letters with inner apostrophes (o'er, thou'rt); not an elision's fragment ('t, o', 'tis).
_PLAIN_WORD = re.compile(r"(?<![\w'’])[^\W\d_]+(?:['’][^\W\d_]+)*(?![\w'’])")


def frequent_words(text: str, count: int) -> Vocabulary:
    """The ``count`` most frequent plain words of ``text`` (letters, with inner apostrophes; case
    kept; no digits, no fragments of an elision such as the 't of 'tis) as a vocabulary: the
    candidates a character language model can try in a blank (:func:`jaxdl.generate.rank_fills`)."""
    return Vocabulary.build([_PLAIN_WORD.findall(text)], max_size=_check_positive(count, "count") + 2)


def _check_positive(value, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _check_tokens(tokens, what: str) -> None:
    """Refuse a str where a list of tokens belongs (iterating it would give characters)."""
    if isinstance(tokens, str):
        raise TypeError(
            f"{what} must be a list of tokens, got the str {tokens[:40]!r}: "
            "tokenise it first (tokenize_words, tokenize_chars)"
        )


class VocabularyError(ValueError):
    """A vocabulary file is missing, truncated, or not a jaxdl vocabulary this version reads."""


class Vocabulary:
    """Tokens and their ids: ``tokens[i]`` has id ``i``; ids 0 and 1 are ``<pad>`` and ``<unk>``.

    Immutable; equal when the tokens are. Build one from a corpus with
    :meth:`build`, keep it beside the model with :meth:`save` and :meth:`load`.
    """

    __slots__ = ("_ids", "_tokens")

    def __init__(self, tokens: Sequence[str]):
        """``tokens`` in id order: ``<pad>``, ``<unk>``, then distinct strings."""
        if not isinstance(tokens, (list, tuple)):
            raise TypeError(f"tokens must be a list of strings, got {type(tokens).__name__}")
        tokens = tuple(tokens)
        if tokens[:2] != (PAD, UNK):
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r} (ids 0 and 1), got {list(tokens[:2])}")
        not_str = [token for token in tokens if not isinstance(token, str)]
        if not_str:
            raise TypeError(f"tokens must be strings, got {not_str[0]!r} ({type(not_str[0]).__name__})")
        if len(set(tokens)) != len(tokens):
            twice = sorted(token for token, count in Counter(tokens).items() if count > 1)
            raise ValueError(f"tokens must be distinct, got {twice[:5]} more than once")
        self._tokens = tokens
        self._ids = {token: i for i, token in enumerate(tokens) if i != PAD_ID}

    @classmethod
    def build(cls, corpus: Iterable[Sequence[str]], *, min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """The tokens of ``corpus`` (an iterable of token lists) that occur ``min_count`` times or more.

        Ids follow descending count, ties by the token itself, so a corpus always
        gives the same ids. ``max_size`` caps ``len(vocabulary)``, the two reserved
        tokens included (it is the embedding table's size): the most frequent stay.
        A corpus's own ``<unk>`` (as in Penn Treebank) is the reserved one.
        """
        _check_positive(min_count, "min_count")
        if max_size is not None and (_check_positive(max_size, "max_size") <= 2):
            raise ValueError(f"max_size counts the 2 reserved tokens and must be at least 3, got {max_size}")
        _check_tokens(corpus, "corpus (an iterable of token lists)")
        counts: Counter[str] = Counter()
        for tokens in corpus:
            _check_tokens(tokens, "each item of the corpus")
            counts.update(tokens)
        for reserved in (PAD, UNK):
            counts.pop(reserved, None)
        if not counts:
            raise ValueError("cannot build a vocabulary from an empty corpus (it holds no tokens)")
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept = [token for token, count in ranked if count >= min_count]
        if not kept:
            top, top_count = ranked[0]
            raise ValueError(
                f"no token occurs min_count={min_count} times; the most frequent, {top!r}, occurs {top_count} times"
            )
        return cls([PAD, UNK, *kept[: None if max_size is None else max_size - 2]])

    def extended(self, tokens: Iterable[str]) -> Vocabulary:
        """This vocabulary with the new ones of ``tokens`` after its own, in their order: every
        token keeps its id (e.g. words of a pretrained-vectors file that training never saw)."""
        _check_tokens(tokens, "tokens (a list of strings)")
        new = dict.fromkeys(token for token in tokens if token not in self._ids and token != PAD)
        return Vocabulary([*self._tokens, *new])

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in id order."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: str) -> bool:
        """Whether ``token`` encodes to its own id (``<pad>`` is not text and encodes to ``UNK_ID``)."""
        return token in self._ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        shown = ", ".join(repr(token) for token in self._tokens[:8])
        return f"Vocabulary({len(self)} tokens: {shown}{', ...' if len(self) > 8 else ''})"

    def id_of(self, token: str) -> int:
        """The id of ``token``; ``UNK_ID`` when it is unknown."""
        return self._ids.get(token, UNK_ID)

    def token_of(self, token_id: int) -> str:
        """The token with id ``token_id``; ValueError outside [0, len)."""
        index = int(token_id)
        if not 0 <= index < len(self._tokens):
            raise ValueError(f"id {token_id} is not in this vocabulary of {len(self)} tokens")
        return self._tokens[index]

    def encode(self, tokens: Iterable[str], *, strict: bool = False) -> list[int]:
        """Ids of ``tokens``; unknown ones (and a literal ``<pad>``) become ``UNK_ID``, or with
        ``strict`` a :class:`VocabularyError` names them and the tokens it knows."""
        _check_tokens(tokens, "encode's argument")
        tokens, ids = list(tokens), self._ids
        unknown = sorted({token for token in tokens if token not in ids})
        if strict and unknown:
            raise VocabularyError(f"holds tokens the vocabulary does not: {', '.join(map(repr, unknown[:20]))} "
                                  f"(it holds {''.join(self._tokens[2:])[:200]!r})")
        return [ids.get(token, UNK_ID) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids`` (padding included: cut a padded row at its length first)."""
        return [self.token_of(token_id) for token_id in ids]

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON (one token a line), atomically: a temporary file, then renamed over ``path``."""
        contents = {"format": VOCABULARY_FORMAT, "version": VOCABULARY_VERSION, "tokens": list(self._tokens)}
        return atomic_write(path, (json.dumps(contents, ensure_ascii=False, indent=0) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`; :class:`VocabularyError` names the path and the problem."""
        path = Path(path)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise VocabularyError(f"no vocabulary at {path}") from None
        try:
            contents = json.loads(blob)
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            raise VocabularyError(f"{path} ({len(blob)} bytes) is truncated or not JSON: {error}") from None
        if not isinstance(contents, dict) or contents.get("format") != VOCABULARY_FORMAT:
            raise VocabularyError(
                f"{path} is JSON but not a jaxdl vocabulary (it lacks \"format\": \"{VOCABULARY_FORMAT}\")"
            )
        if contents.get("version") != VOCABULARY_VERSION:
            raise VocabularyError(
                f"{path} is a vocabulary of version {contents.get('version')!r}; "
                f"this jaxdl reads version {VOCABULARY_VERSION}"
            )
        try:
            return cls(contents.get("tokens"))
        except (TypeError, ValueError) as error:
            raise VocabularyError(f"{path} is a corrupt jaxdl vocabulary: {error}") from None


def pad_batch(
    sequences: Sequence[Sequence[int]],
    length: int | None = None,
    *,
    pad_id: int = PAD_ID,
    keep: Literal["start", "end"] = "start",
) -> tuple[np.ndarray, np.ndarray]:
    """Ragged id sequences as one array: ``(ids int32 (N, T), lengths int32 (N,))``.

    ``T`` is ``length``, or the longest sequence. A longer sequence is cut to ``T``
    tokens: its first ones with ``keep="start"`` (classification: the opening of a
    sentence), its last ones with ``keep="end"``. Padding (``pad_id``) goes at the
    end of each row; ``lengths`` counts the tokens kept.

    A token may also be a fixed-size vector of ids (a word id and its characters'
    ids, say): sequences of ``(L, *K)`` give ids of ``(N, T, *K)``.
    """
    if keep not in ("start", "end"):
        raise ValueError(f"keep must be 'start' or 'end', got {keep!r}")
    for sequence in sequences:
        _check_tokens(sequence, "each sequence")
    sizes = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    steps = int(sizes.max(initial=0)) if length is None else _check_positive(length, "length")
    token_shape = np.shape(next((sequence[0] for sequence in sequences if len(sequence)), 0))
    ids = np.full((len(sizes), steps, *token_shape), pad_id, dtype=np.int32)
    lengths = np.minimum(sizes, steps).astype(np.int32)
    for row, (sequence, kept) in enumerate(zip(sequences, lengths)):
        if kept == 0:
            continue
        begin = 0 if keep == "start" else len(sequence) - kept
        tokens = np.asarray(sequence[begin : begin + kept])
        if tokens.shape[1:] != token_shape:
            raise ValueError(
                f"every token must have the shape of the first one, {token_shape}; sequence {row} has "
                f"tokens of shape {tokens.shape[1:]}"
            )
        ids[row, :kept] = tokens
    return ids, lengths


def sequence_mask(lengths, steps: int):
    """(..., steps) bool: True at the first ``lengths[...]`` steps of each row.

    numpy in, numpy out on the host; a jax array in (also inside ``jit``), a jax array out.
    """
    xp = jax.numpy if isinstance(lengths, jax.Array) else np
    return xp.arange(steps) < xp.asarray(lengths)[..., None]


def bucket_lengths(lengths: Sequence[int], num_buckets: int, *, multiple: int = 8) -> tuple[int, ...]:
    """Up to ``num_buckets`` padded lengths that cover ``lengths``: bucket boundaries.

    The boundaries are quantiles of ``lengths`` (each bucket holds about as many
    examples) rounded up to a multiple of ``multiple``, increasing, the last one at
    least the longest length. Rounding can merge quantiles: fewer buckets result.
    """
    _check_positive(num_buckets, "num_buckets")
    _check_positive(multiple, "multiple")
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0 or not np.issubdtype(lengths.dtype, np.integer) or lengths.min() < 0:
        raise ValueError(f"lengths must be a non-empty list of non-negative ints, got {lengths!r:.80}")
    quantiles = np.quantile(lengths, np.arange(1, num_buckets + 1) / num_buckets, method="higher")
    rounded = np.maximum(-(-quantiles // multiple) * multiple, multiple)
    return tuple(sorted({int(boundary) for boundary in rounded}))


_BATCH_NAMES = ("x", "lengths", "index", "mask")


def covering_lengths(boundaries: Sequence[int], longest: int, *, multiple: int = 8) -> tuple[int, ...]:
    """Bucket lengths for sequences up to ``longest``: the ``boundaries`` shorter than it, then
    ``longest`` rounded up to a ``multiple`` (the last bucket holds the longest sequences)."""
    _check_positive(longest, "longest")
    return (*(b for b in boundaries if b < longest), multiple * -(-longest // multiple))


class Buckets(NamedTuple):
    """Examples grouped by length and padded once (from :func:`bucket_examples`).

    Bucket ``b`` holds the examples longer than ``boundaries[b - 1]`` and at most
    ``boundaries[b]`` tokens long, as arrays padded to ``T = boundaries[b]``:
    ``"x"`` int32 (N_b, T), ``"lengths"`` int32 (N_b,), ``"index"`` int32 (N_b,)
    (the example's position in the input), and the extra columns.

    Its batches are dicts of these columns with ``B`` rows and a float32
    ``"mask"``, one shape per bucket: a bucket's last batch is filled up with
    copies of the batch's first row, whose mask is 0 and whose ``"index"`` is -1. The mask
    is (B,) per row, or (B, T) per token when there are token columns (then it is
    also 0 at padded steps). Losses and metrics that honour the mask (all of
    jaxdl's do) count each example, or token, once.
    """

    boundaries: tuple[int, ...]
    arrays: tuple[dict[str, np.ndarray], ...]
    token_mask: bool

    @property
    def size(self) -> int:
        """The number of examples."""
        return sum(len(bucket["x"]) for bucket in self.arrays)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches in one epoch of :meth:`train_batches` or :meth:`eval_batches`."""
        _check_positive(batch_size, "batch_size")
        return sum(-(-len(bucket["x"]) // batch_size) for bucket in self.arrays)

    def train_batches(self, batch_size: int, key, *, epoch: int = 0, start: int = 0) -> Iterator[dict]:
        """One epoch in an order that depends only on ``key`` and ``epoch``: every example once.

        Rows are shuffled within buckets and batches across them. ``key`` is a jax
        PRNG key (typed or raw) or a non-negative int seed; ``start`` skips the first
        batches (to resume inside an epoch).
        """
        _check_positive(batch_size, "batch_size")
        rng = _host_rng(key, epoch)
        chunks = [
            (b, rows)
            for b, bucket in enumerate(self.arrays)
            for rows in _chunks(rng.permutation(len(bucket["x"])), batch_size)
        ]
        for i in rng.permutation(len(chunks))[start:]:
            yield self._batch(*chunks[i], batch_size)

    def eval_batches(self, batch_size: int) -> Iterator[dict]:
        """Every example once, bucket after bucket, in input order within a bucket."""
        _check_positive(batch_size, "batch_size")
        for b, bucket in enumerate(self.arrays):
            for rows in _chunks(np.arange(len(bucket["x"])), batch_size):
                yield self._batch(b, rows, batch_size)

    def _batch(self, bucket: int, rows: np.ndarray, batch_size: int) -> dict:
        arrays = self.arrays[bucket]
        real = np.arange(batch_size) < len(rows)
        taken = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
        batch = {name: array[taken] for name, array in arrays.items()}
        batch["index"] = np.where(real, batch["index"], -1).astype(np.int32)
        if self.token_mask:
            batch["mask"] = (sequence_mask(batch["lengths"], arrays["x"].shape[1]) & real[:, None]).astype(np.float32)
        else:
            batch["mask"] = real.astype(np.float32)
        return batch


def _chunks(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [rows[begin : begin + batch_size] for begin in range(0, len(rows), batch_size)]


def _host_rng(key, epoch: int) -> np.random.Generator:
    """A numpy generator seeded by a jax key (typed or raw) or an int seed, and the epoch."""
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"a seed must be a non-negative int, got {key}")
        words = [int(key)]
    elif isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        words = np.asarray(jax.random.key_data(key)).ravel().tolist()
    elif isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32:
        words = np.asarray(key).ravel().tolist()
    else:
        raise TypeError(f"key must be a jax PRNG key or a non-negative int seed, got {key!r:.80}")
    return np.random.default_rng([*words, int(epoch)])


def bucket_examples(
    sequences: Sequence[Sequence[int]],
    boundaries: Sequence[int],
    *,
    columns: Mapping[str, np.ndarray] | None = None,
    token_columns: Mapping[str, Sequence[Sequence[int]]] | None = None,
    pad_id: int = PAD_ID,
    keep: Literal["start", "end"] = "start",
) -> Buckets:
    """Group id sequences by length into buckets padded to ``boundaries`` (see :class:`Buckets`).

    Args:
      sequences: N token-id sequences (or sequences of id vectors, as :func:`pad_batch`
        takes); they become ``"x"`` and ``"lengths"``.
      boundaries: increasing padded lengths (:func:`bucket_lengths`). A sequence
        longer than the last is cut to it (``keep`` as in :func:`pad_batch`).
      columns: one value per example (class labels ``"y"`` (N,), ...): arrays
        whose first axis has N entries.
      token_columns: one integer per token (tags ``"y"`` of a tagger, ...): N
        sequences as long as ``sequences``', padded and cut alike, with 0. They
        make the batches' mask per token.
    """
    columns, token_columns = dict(columns or {}), dict(token_columns or {})
    count = len(sequences)
    if count == 0:
        raise ValueError("bucket_examples needs at least one sequence, got none")
    boundaries = tuple(_check_positive(b, "each boundary") for b in boundaries)
    if not boundaries or any(a >= b for a, b in pairwise(boundaries)):
        raise ValueError(f"boundaries must be increasing positive ints, got {boundaries}")
    clashes = sorted((set(columns) & set(token_columns)) | ((set(columns) | set(token_columns)) & set(_BATCH_NAMES)))
    if clashes:
        raise ValueError(f"column names must differ from each other and from {_BATCH_NAMES}, got {clashes}")
    columns = {name: np.asarray(values) for name, values in columns.items()}
    for name, values in columns.items():
        if values.ndim == 0 or len(values) != count:
            raise ValueError(f"column {name!r} must have one entry per sequence ({count}), got shape {values.shape}")
    sizes = np.array([len(sequence) for sequence in sequences])
    for name, values in token_columns.items():
        if len(values) != count:
            raise ValueError(f"token column {name!r} must have one sequence per sequence ({count}), got {len(values)}")
        wrong = next((i for i, (value, size) in enumerate(zip(values, sizes)) if len(value) != size), None)
        if wrong is not None:
            raise ValueError(
                f"token column {name!r}: example {wrong} has {len(values[wrong])} entries for {sizes[wrong]} tokens"
            )
    which = np.minimum(np.searchsorted(boundaries, sizes), len(boundaries) - 1)
    arrays = []
    for b, steps in enumerate(boundaries):
        members = np.flatnonzero(which == b)
        x, lengths = pad_batch([sequences[i] for i in members], steps, pad_id=pad_id, keep=keep)
        bucket = {"x": x, "lengths": lengths, "index": members.astype(np.int32)}
        bucket.update({name: values[members] for name, values in columns.items()})
        for name, values in token_columns.items():
            bucket[name] = pad_batch([values[i] for i in members], steps, pad_id=0, keep=keep)[0]
        arrays.append(bucket)
    return Buckets(boundaries, tuple(arrays), bool(token_columns))


def lm_eval_windows(ids: Sequence[int], length: int) -> dict[str, np.ndarray]:
    """Every token of ``ids`` after the first, predicted once: windows of ``length`` steps,
    ``{"x", "y"}`` int32 (N, length) and a float32 ``"mask"`` that is 0 on the last
    window's padded tail (to score a whole validation text with a language model)."""
    _check_positive(length, "length")
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(f"ids must be one sequence of at least 2 ids, got shape {ids.shape}")
    x, y = ids[:-1], ids[1:]
    rows = -(-len(x) // length)
    pad = rows * length - len(x)
    mask = np.pad(np.ones(len(x), np.float32), (0, pad)).reshape(rows, length)
    x, y = (np.pad(a, (0, pad)).astype(np.int32).reshape(rows, length) for a in (x, y))
    return {"x": x, "y": y, "mask": mask}


def lm_windows(ids: Sequence[int], length: int, stride: int | None = None) -> dict[str, np.ndarray]:
    """Language-model examples from one long id sequence: ``{"x", "y"}`` int32 (N, length).

    Window ``i`` starts at ``i * stride`` (default ``length``: windows do not
    overlap); ``y`` is ``x`` shifted by one, the next token at each step. The tail
    too short for another window is dropped.
    """
    _check_positive(length, "length")
    stride = length if stride is None else _check_positive(stride, "stride")
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be one sequence of integer ids, got shape {ids.shape} and dtype {ids.dtype}")
    if len(ids) < length + 1:
        raise ValueError(f"{len(ids)} ids are too few for one window of length {length} (it needs {length + 1})")
    windows = np.lib.stride_tricks.sliding_window_view(ids, length + 1)[::stride]
    return {"x": windows[:, :-1].astype(np.int32), "y": windows[:, 1:].astype(np.int32)}


def encode_sentences(vocabulary: Vocabulary, sentences: Iterable[str], *, lower: bool = True) -> list[list[int]]:
    """The ids of each sentence's words and punctuation (:func:`tokenize_words`, lower-cased if
    ``lower``): one list per sentence, unknown words as ``UNK_ID``, an empty sentence as []."""
    return [vocabulary.encode(tokenize_words(sentence, lower=lower)) for sentence in sentences]


VALIDATION_SHARE = 20
"""A text file's last 1/20 (5%) validates a language model trained on the rest (:func:`load_texts`)."""


def load_texts(path: str | os.PathLike | None = None, *, min_chars: int = 1, train_chars: int | None = None,
               data_dir=None, manual_dir=None) -> tuple[str, str, str]:
    """A language model's (training text, validation text, where they come from).

    Without ``path``: tiny_shakespeare's train and validation splits (through TFDS, from
    ``data_dir`` / ``manual_dir`` as :func:`jaxdl.data.load_text_corpus` says). With ``path``:
    that UTF-8 text file, whose last 5% validates, and at least ``min_chars`` characters of it
    (a window and its next character, say). The training text is cut to its first
    ``train_chars`` characters (all by default).

    Raises DataError when the file cannot be read, or holds fewer than ``2 * min_chars`` characters.
    """
    _check_positive(min_chars, "min_chars")
    if path is None:
        train, validation = (load_text_corpus("tiny_shakespeare", split, data_dir=data_dir, manual_dir=manual_dir)
                             for split in ("train", "validation"))
        source = "tiny_shakespeare"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"cannot read the text file {path}: {error}") from None
        cut = len(text) - max(len(text) // VALIDATION_SHARE, min_chars)
        if cut < min_chars:
            raise DataError(f"the text file {path} holds {len(text):,} characters: too few to train and validate "
                            f"on {min_chars} characters each (it needs {2 * min_chars})")
        train, validation, source = text[:cut], text[cut:], str(path)
    return (train[:train_chars] if train_chars else train), validation, source
