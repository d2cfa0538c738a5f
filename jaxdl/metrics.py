"""Metrics: accuracy and the confusion matrix; entity-span and binary scores for tagging.

Scalar metrics share the losses' signature, ``(logits, labels, mask=None)``,
so the training loop treats them alike.

``bio_spans``, ``span_scores``, ``binary_scores``, ``precision_recall_curve`` and
``best_f1_threshold`` score sequence tagging (e.g. CoNLL-2003 named entities) and binary
decisions on the host in plain Python/numpy, on string tags, 0/1 labels or a classifier's
scores; they are not jittable. ``span_scores`` follows the CoNLL
shared task's ``conlleval`` script: entities are decoded from IOB1, IOB2 or
IOBES tags by its ``startOfChunk``/``endOfChunk`` rules (with the usual S-/E-
extension), each sentence on its own, and a predicted entity counts only if
its type, start and end all match a gold one.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.crf import ChainScores, viterbi
from jaxdl.losses import weighted_mean


def predict_labels(logits: jax.Array | ChainScores) -> jax.Array:
    """Class ids from logits: argmax over classes, or ``logit > 0`` for a single unit (..., 1);
    from a CRF's :class:`jaxdl.crf.ChainScores`, the best tag sequences (Viterbi)."""
    if isinstance(logits, ChainScores):
        return viterbi(logits)[0]
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1)


def accuracy(logits: jax.Array | ChainScores, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Fraction of correct predictions; logits (..., classes) or (..., 1) for binary, or a CRF's
    ChainScores (B, T, K) scored by their Viterbi tags."""
    predictions = predict_labels(logits)
    if predictions.shape != labels.shape:
        shape = (logits.emissions if isinstance(logits, ChainScores) else logits).shape
        raise ValueError(
            f"accuracy: logits of shape {tuple(shape)} need labels of shape "
            f"{tuple(predictions.shape)}, got {tuple(labels.shape)}"
        )
    return weighted_mean((predictions == labels.astype(predictions.dtype)).astype(jnp.float32), mask)


def confusion_matrix(
    labels: jax.Array, predictions: jax.Array, num_classes: int, mask: jax.Array | None = None
) -> jax.Array:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    labels, predictions = jnp.ravel(labels), jnp.ravel(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"confusion_matrix: {labels.size} labels but {predictions.size} predictions")
    weights = jnp.ones_like(labels) if mask is None else jnp.ravel(mask).astype(labels.dtype)
    flat = labels * num_classes + predictions
    return jnp.zeros(num_classes * num_classes, jnp.int32).at[flat].add(weights).reshape(num_classes, num_classes)


class Scores(NamedTuple):
    """Precision, recall and F1 of one kind of item, with the counts they come from.

    Fractions in [0, 1] (conlleval prints percentages); each is 0.0 when its denominator is 0.
    """

    precision: float
    recall: float
    f1: float
    gold: int  # items in the gold standard
    predicted: int  # items predicted
    correct: int  # predicted items that are in the gold standard


def _scores(gold: int, predicted: int, correct: int) -> Scores:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1, gold, predicted, correct)


def _chunk_ends(prev_prefix: str, prev_type: str, prefix: str, type_: str) -> bool:
    """conlleval's endOfChunk: does a chunk end between the previous tag and this one?"""
    return (
        prev_prefix in ("E", "S")
        or (prev_prefix in ("B", "I") and prefix in ("B", "S", "O"))
        or (prev_prefix != "O" and prev_type != type_)
    )


def _chunk_starts(prev_prefix: str, prev_type: str, prefix: str, type_: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this tag?"""
    return (
        prefix in ("B", "S")
        or (prefix in ("I", "E") and prev_prefix in ("O", "E", "S"))
        or (prefix != "O" and prev_type != type_)
    )


def _spans(tags: Sequence[str], where: str) -> list[tuple[str, int, int]]:
    """``bio_spans``, with ``where`` (the caller, and which sentence) leading its error messages."""
    if isinstance(tags, str):
        raise TypeError(f"{where}: expected a sequence of tags, got the str {tags!r}")
    split = []  # (prefix, type); like conlleval, the type is all after the first "-"
    for position, tag in enumerate(tags):
        prefix, _, type_ = tag.partition("-") if isinstance(tag, str) else ("", "", "")
        if tag != "O" and (prefix not in ("B", "I", "E", "S") or not type_):
            raise ValueError(f"{where}: tag {tag!r} at position {position} is not 'O' or '<B|I|E|S>-<TYPE>'")
        split.append(("O", "") if tag == "O" else (prefix, type_))
    spans, start = [], 0
    previous = ("O", "")  # as after conlleval's sentence boundary
    for i, current in enumerate([*split, ("O", "")]):  # the final "O" is the boundary that ends the sentence
        if _chunk_ends(*previous, *current):
            spans.append((previous[1], start, i))
        if _chunk_starts(*previous, *current):
            start = i
        previous = current
    return spans


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entity spans of one sentence's tags as (type, start, end) with end exclusive, in order.

    Tags are "O" or "<B|I|E|S>-<TYPE>" (IOB1, IOB2 or IOBES); ill-formed sequences decode as conlleval does.
    """
    return _spans(tags, "bio_spans")


def span_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Scores]:
    """CoNLL exact-span-match scores over sentences: one entry per entity type (sorted) plus "overall".

    gold, predicted: one sequence of tags per sentence, of equal lengths. A type has an entry if it
    occurs in gold or predicted spans; "overall" sums the counts of all types (micro average).
    """
    if len(gold) != len(predicted):
        raise ValueError(f"span_scores: {len(gold)} gold sentences but {len(predicted)} predicted")
    gold_counts, predicted_counts, correct_counts = Counter(), Counter(), Counter()
    for i, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        # decoded first, so that a str where a sentence belongs is a TypeError, not a length mismatch
        gold_spans = set(_spans(gold_tags, f"span_scores: gold sentence {i}"))
        predicted_spans = set(_spans(predicted_tags, f"span_scores: predicted sentence {i}"))
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(
                f"span_scores: sentence {i} has {len(gold_tags)} gold tags but {len(predicted_tags)} predicted"
            )
        gold_counts.update(type_ for type_, _, _ in gold_spans)
        predicted_counts.update(type_ for type_, _, _ in predicted_spans)
        correct_counts.update(type_ for type_, _, _ in gold_spans & predicted_spans)
    scores = {
        type_: _scores(gold_counts[type_], predicted_counts[type_], correct_counts[type_])
        for type_ in sorted({*gold_counts, *predicted_counts})
    }
    scores["overall"] = _scores(gold_counts.total(), predicted_counts.total(), correct_counts.total())
    return scores


def _is_nested(labels) -> bool:
    return isinstance(labels, (list, tuple)) and len(labels) > 0 and np.ndim(labels[0]) > 0


def _flat_labels(gold, predicted) -> tuple[np.ndarray, np.ndarray]:
    """Both labelings as 1-D arrays, once their shapes (sentence by sentence, if nested) match."""
    if not (_is_nested(gold) or _is_nested(predicted)):
        gold, predicted = np.asarray(gold), np.asarray(predicted)
        if gold.shape != predicted.shape:
            raise ValueError(f"binary_scores: gold of shape {gold.shape} but predicted of shape {predicted.shape}")
        return gold.ravel(), predicted.ravel()
    if len(gold) != len(predicted):
        raise ValueError(f"binary_scores: {len(gold)} gold sentences but {len(predicted)} predicted")
    for i, (gold_labels, predicted_labels) in enumerate(zip(gold, predicted)):
        if np.shape(gold_labels) != np.shape(predicted_labels):
            raise ValueError(
                f"binary_scores: sentence {i} has gold of shape {np.shape(gold_labels)} "
                f"but predicted of shape {np.shape(predicted_labels)}"
            )
    return np.concatenate([np.ravel(g) for g in gold]), np.concatenate([np.ravel(p) for p in predicted])


def binary_scores(gold, predicted) -> Scores:
    """Precision/recall/F1 of the positive class for 0/1 (or bool) labels: arrays of any equal shape,
    or equal-length sequences of equal-length sequences (one per sentence)."""
    gold, predicted = _flat_labels(gold, predicted)
    for name, labels in (("gold", gold), ("predicted", predicted)):
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"binary_scores: {name} labels must be 0/1 or bool, got values {np.unique(labels)}")
    gold, predicted = gold.astype(bool), predicted.astype(bool)
    return _scores(int(gold.sum()), int(predicted.sum()), int((gold & predicted).sum()))


class PrecisionRecallCurve(NamedTuple):
    """Precision, recall and F1 of a scored binary decision at every threshold that changes it
    (:func:`precision_recall_curve`), one entry per threshold, strictest first."""

    thresholds: np.ndarray  # (M,) an item is called positive when its score is above the threshold
    precision: np.ndarray  # (M,) of the items called positive, the fraction that are
    recall: np.ndarray  # (M,) of the positive items, the fraction called positive (0 without any)
    f1: np.ndarray  # (M,) the harmonic mean of precision and recall (0 where both are)


def precision_recall_curve(scores, labels) -> PrecisionRecallCurve:
    """Precision, recall and F1 of calling positive every item whose score is above a
    threshold, at each threshold that changes the decision, against 0/1 (or bool) ``labels``.

    ``scores`` and ``labels`` hold one value per item (arrays of any equal shape). With the
    M distinct scores sorted from the highest, ``thresholds[m]`` (float64) lies halfway between
    the m-th and the next (below the lowest one: that score minus 1; just under the m-th where
    the two are adjacent floats, or 1 is too small to tell), so ``scores >
    thresholds[m]`` calls positive exactly the items scoring at least the m-th distinct
    score: the first threshold calls the items of the highest score, the last calls every
    item (recall 1). Equal scores are never split: a logistic unit on a few binary
    features, say, has only a few operating points. Precision, recall and F1 are those of
    :func:`binary_scores` for that decision.
    """
    return _curve(scores, labels, "precision_recall_curve")


def _curve(scores, labels, caller: str) -> PrecisionRecallCurve:
    """:func:`precision_recall_curve`, its input errors reported under ``caller``'s name."""
    scores, labels = np.ravel(np.asarray(scores, np.float64)), np.ravel(np.asarray(labels))
    if scores.shape != labels.shape or scores.size == 0:
        raise ValueError(f"{caller}: needs as many scores as labels, at least one; got {scores.size} and {labels.size}")
    if np.isnan(scores).any():
        raise ValueError(f"{caller}: a score is NaN")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{caller}: labels must be 0/1 or bool, got values {np.unique(labels)}")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], np.cumsum(labels[order].astype(np.int64))
    cut_after = np.append(ranked[1:] < ranked[:-1], True)  # the last of each run of equal scores
    called, correct, positives = np.arange(1, len(ranked) + 1)[cut_after], hits[cut_after], int(hits[-1])
    lowest, below = ranked[cut_after], np.nextafter(ranked[cut_after], -np.inf)  # below: the next float down
    # halfway to the next distinct score, but under the score called (adjacent floats round the halfway onto it)
    thresholds = np.minimum(np.append((lowest[:-1] + lowest[1:]) / 2, lowest[-1] - 1), below)
    precision = correct / called
    recall = correct / positives if positives else np.zeros(len(called))
    return PrecisionRecallCurve(thresholds, precision, recall, 2 * correct / (called + positives))


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold on ``scores`` (N,) that gives the best F1 when every item scoring above it
    is called positive, against 0/1 ``labels`` (N,): a cut between two distinct scores
    (equal scores are never split), e.g. to set a classifier's decision threshold on its
    training data when the positive class is rare. The first of the best thresholds of
    :func:`precision_recall_curve` (the strictest)."""
    curve = _curve(scores, labels, "best_f1_threshold")
    return float(curve.thresholds[np.argmax(curve.f1)])
