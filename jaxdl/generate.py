"""What a trained text model says about texts: a classifier's class probabilities of
sentences; what a language model writes, how likely it finds a text, and the word that
fits a blank best.

A classifier maps word ids (N, T) and their ``lengths`` to class logits (N, C), as
:func:`jaxdl.models.rnn_classifier` does. A language model maps token ids (N, T) to the
logits of the next token at each step (N, T, V), as :func:`jaxdl.models.char_language_model`
does. Sampling feeds its own output back one token at a time, so it runs the same network
built with ``stream=True`` (its recurrent state carried from call to call; the params are
the same). Token ids come from a :class:`jaxdl.data.text.Vocabulary`; the language-model
functions read a text as if it followed the ``context`` tokens (:func:`start_of_line`:
"at the start of a line").
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import devices
from jaxdl.compiler import jit
from jaxdl.core import Layer, initial_state
from jaxdl.data import eval_batches
from jaxdl.data.text import PAD_ID, UNK_ID, Vocabulary, VocabularyError, encode_sentences, pad_batch, tokenize_chars
from jaxdl.train import predict

Tokenize = Callable[[str], list]
BLANK = re.compile(r"_{2,}")  # a blank to fill: two underscores or more
LINE_STARTS = ("\n", " ")  # what a text is read after, the first a vocabulary holds: the start of a line


def classify_sentences(model: Layer, members: Sequence, vocabulary: Vocabulary, sentences: Sequence[str], *,
                       lower: bool = True, batch_size: int = 128) -> np.ndarray:
    """The class probabilities (K, N, C) that each of K networks of ``model`` (their params in
    ``members``) gives each of N ``sentences``: average over axis 0 for an ensemble's.

    The sentences are encoded as a classifier's training data was (:func:`encode_sentences`:
    words and punctuation, lower-cased if ``lower``), an empty one read as one ``<unk>``, padded
    into one batch with their ``lengths``, and scored ``batch_size`` at a time.
    """
    if len(sentences) == 0:
        raise ValueError("no sentence to classify")
    ids, lengths = pad_batch([ids or [UNK_ID] for ids in encode_sentences(vocabulary, sentences, lower=lower)])
    inputs = {"x": ids, "lengths": lengths}
    return np.stack([predict(model, params, inputs, batch_size, transform=jax.nn.softmax) for params in members])


def start_of_line(vocabulary: Vocabulary) -> tuple[str]:
    """The context to read a prompt or a sentence after, so that it begins a line: a newline,
    else a space, else the vocabulary's first (most frequent) token."""
    known = [token for token in LINE_STARTS if token in vocabulary]
    return (known[0] if known else vocabulary.tokens[2],)


def _sample(stream: Layer, length: int, forbidden: tuple, params, prompt, key, temperature):
    logits, state = stream.apply(params, prompt[None], state=initial_state(stream, (1, 1)))
    banned = jnp.isin(jnp.arange(logits.shape[-1]), jnp.asarray(forbidden, jnp.int32))

    def one(carry, step_key):
        state, logits = carry
        logits = jnp.where(banned, -jnp.inf, logits)
        drawn = jax.random.categorical(step_key, logits / jnp.maximum(temperature, 1e-30))
        token = jnp.where(temperature > 0, drawn, jnp.argmax(logits)).astype(prompt.dtype)
        logits, state = stream.apply(params, token[None, None], state=state)
        return (state, logits[0, 0]), token

    return jax.lax.scan(one, (state, logits[0, -1]), jax.random.split(key, length))[1]


_sample_jit = jit(_sample, static_argnums=(0, 1, 2))  # compiled once per model, length and banned ids


def sample(stream: Layer, params, prompt: Sequence[int], key: jax.Array, *, length: int, temperature: float = 1.0,
           forbidden: Sequence[int] = (PAD_ID, UNK_ID)) -> np.ndarray:
    """``length`` token ids (length,) that continue ``prompt`` (P,) ids, P >= 1.

    ``stream`` is the language model built with ``stream=True``; ``params`` its (or the
    full-sequence model's) params. The prompt is read in one call, then each next token is
    drawn from ``softmax(logits / temperature)`` with ``key`` and fed back: a temperature
    below 1 sharpens the distribution (more conservative), above 1 flattens it, and 0 takes
    the most likely token. The ``forbidden`` ids (padding, unknown) are never drawn.
    """
    if not stream.stateful:
        raise ValueError("sample needs the language model built with stream=True (the same params)")
    if not (length >= 0 and np.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"length must be >= 0 and temperature a finite number >= 0, got {length}, {temperature}")
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 1 or len(prompt) == 0:
        raise ValueError(f"the prompt must be a non-empty sequence of ids, got shape {prompt.shape}")
    if length == 0:
        return np.zeros((0,), np.int32)
    return np.asarray(_sample_jit(stream, length, tuple(forbidden), params, prompt, key, jnp.float32(temperature)))


def _encode(vocabulary: Vocabulary, tokens: list, what: str) -> list[int]:
    try:
        return vocabulary.encode(tokens, strict=True)
    except VocabularyError as error:
        raise VocabularyError(f"{what} {error}") from None


def generate(stream: Layer, params, vocabulary: Vocabulary, prompt: str, *, length: int, seed: int = 0,
             temperature: float = 1.0, context: Sequence[str] = (), tokenize: Tokenize = tokenize_chars) -> str:
    """``length`` tokens of text that follow ``prompt`` (read after the ``context`` tokens),
    drawn by :func:`sample` with the key of ``seed``, joined (characters, by default)."""
    ids = _encode(vocabulary, [*context, *tokenize(prompt)], f"the prompt {prompt!r}")
    drawn = sample(stream, params, ids, jax.random.key(seed), length=length, temperature=temperature)
    return "".join(vocabulary.decode(drawn.tolist()))


def _log_likelihoods(model: Layer, params, batch):
    log_p = jax.nn.log_softmax(model.apply(params, batch["x"]))
    picked = jnp.take_along_axis(log_p, batch["y"][..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(batch["mask"] > 0, picked, 0.0), axis=1)


_log_likelihoods_jit = jit(_log_likelihoods, static_argnums=0)


def log_likelihoods(model: Layer, params, sequences: Sequence[Sequence[int]], *, batch_size: int = 128,
                    multiple: int = 16) -> np.ndarray:
    """log P (nats) of each id sequence (N,): the sum over its ids after the first of the
    log-probability the model gives each one, from the ids before it.

    Sequences are padded into batches of one shape (their longest, rounded up to
    ``multiple``); the padding is masked out, and a forward model never reads it before a
    real step.
    """
    if not sequences or min(len(ids) for ids in sequences) < 2:
        raise ValueError("log_likelihoods needs sequences of at least 2 ids: a first one to read, then the scored ones")
    steps = multiple * -(-max(len(ids) - 1 for ids in sequences) // multiple)
    x, _ = pad_batch([list(ids[:-1]) for ids in sequences], steps)
    y, lengths = pad_batch([list(ids[1:]) for ids in sequences], steps)
    data = {"x": x, "y": y, "mask": (np.arange(steps) < lengths[:, None]).astype(np.float32)}
    totals = [_log_likelihoods_jit(model, params, batch) for batch in eval_batches(data, batch_size)]
    return np.concatenate(devices.fetch(totals))[: len(sequences)]


def rank_fills(model: Layer, params, vocabulary: Vocabulary, sentence: str, candidates: Sequence[str], *,
               context: Sequence[str] = (), tokenize: Tokenize = tokenize_chars) -> list[tuple[str, float]]:
    """Each candidate word with log P(``sentence`` with its blank ``__`` filled by it), most
    likely first: the lecture's "predict the blank word". The whole sentence is scored, so
    the words after the blank count too."""
    if len(BLANK.findall(sentence)) != 1:
        raise ValueError(f'a sentence to fill needs exactly one blank "__", got {sentence!r}')
    candidates = list(dict.fromkeys(c.strip() for c in candidates if c.strip()))
    if not candidates:
        raise ValueError("no candidate words to fill the blank with")
    _encode(vocabulary, tokenize(BLANK.sub("", sentence)), f"the sentence {sentence!r}")
    for word in candidates:
        _encode(vocabulary, tokenize(word), f"the candidate {word!r}")
    filled = [BLANK.sub(lambda _, word=word: word, sentence) for word in candidates]
    scores = log_likelihoods(model, params, [_encode(vocabulary, [*context, *tokenize(text)], "")
                                             for text in filled])
    order = np.argsort(-scores, kind="stable")
    return [(candidates[i], float(scores[i])) for i in order]
