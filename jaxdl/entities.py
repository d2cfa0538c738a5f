"""Entities in raw text: a trained tagger's tags for every token, and the last names the
hand-made features find.

The tagger is :func:`jaxdl.models.tagger` (or an ensemble of it: networks of the same
settings trained from other seeds); its inputs are token rows made with the run's word and
character vocabularies (:func:`jaxdl.data.tagging.encode_tokens`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxdl.core import Layer
from jaxdl.data.tagging import encode_tokens, token_features, tokenize_news
from jaxdl.data.text import Buckets, Vocabulary, bucket_examples, covering_lengths
from jaxdl.models import logistic_unit
from jaxdl.train import ensemble_predict, predict


def predicted_tags(model: Layer, members: Sequence, data: Buckets, tags: Sequence[str], *,
                   batch_size: int = 256) -> list[list[str]]:
    """The most probable tag of each token of each sentence of ``data`` (token rows in
    length buckets), by the networks' probabilities averaged; sentences in input order."""
    probabilities = ensemble_predict(model, members, data, batch_size, per_step=True)
    return [[tags[i] for i in p.argmax(-1)] for p in probabilities]


def tag_texts(model: Layer, members: Sequence, texts: Sequence[str], words: Vocabulary, chars: Vocabulary,
              tags: Sequence[str], *, max_chars: int, boundaries: Sequence[int] = (8, 16, 32, 48)
              ) -> list[tuple[list[str], list[str]]]:
    """Each text split into tokens as CoNLL-2003 splits them (:func:`jaxdl.data.tagging.tokenize_news`)
    and the tag of each token, by the tagger's networks (``members``) averaged.

    ``max_chars`` is the characters each token row holds, as in training; sentences are
    padded to the ``boundaries`` (and one bucket for the longest).
    """
    sentences = [tokenize_news(text) for text in texts]
    empty = [i for i, tokens in enumerate(sentences) if not tokens]
    if empty:
        raise ValueError(f"text {empty[0]} ({texts[empty[0]]!r}) holds no token to tag")
    rows = [encode_tokens(tokens, words, chars, max_chars) for tokens in sentences]
    data = bucket_examples(rows, covering_lengths(boundaries, max(map(len, sentences))))
    return list(zip(sentences, predicted_tags(model, members, data, tags)))


def sentence_features(sentences: Sequence[Sequence[str]]) -> np.ndarray:
    """The hand-made features of every token of ``sentences``, one after the other: (tokens, F)."""
    return np.concatenate([token_features(tokens) for tokens in sentences])


def feature_last_names(params, threshold: float, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
    """1 for each token that the logistic unit on the hand-made features (``params``, of
    :func:`jaxdl.models.logistic_unit`) calls a last name: its logit passes ``threshold``."""
    logits = predict(logistic_unit(), params, sentence_features(sentences), 4096)[:, 0]
    ends = np.cumsum([len(tokens) for tokens in sentences])[:-1]
    return [list((part > threshold).astype(int)) for part in np.split(logits, ends)]
