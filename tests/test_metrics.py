"""Tests of jaxdl.metrics: accuracy (multi-class and binary), the confusion matrix, entity spans and their
conlleval scores, binary precision/recall/F1, and the precision-recall curve of scores."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.crf import CRF, viterbi
from jaxdl.metrics import (
    PrecisionRecallCurve,
    Scores,
    accuracy,
    best_f1_threshold,
    binary_scores,
    bio_spans,
    confusion_matrix,
    precision_recall_curve,
    predict_labels,
    span_scores,
)

# argmax per row: 0, 2, 1, 1
LOGITS = jnp.array([[2.0, 1.0, 0.0], [0.1, 0.2, 0.3], [-1.0, 5.0, 4.0], [0.0, 1.0, -1.0]])
LABELS = jnp.array([0, 2, 2, 1])  # the third prediction is wrong

# logit > 0 means class 1: 1, 0, 0 (a logit of exactly 0 is class 0), 1, 0
BINARY_LOGITS = jnp.array([[2.0], [-1.0], [0.0], [0.5], [-3.0]])
BINARY_LABELS = jnp.array([1, 1, 0, 1, 0])  # the second prediction is wrong


@pytest.mark.parametrize(
    "logits, labels, mask, expected",
    [
        (LOGITS, LABELS, None, 0.75),
        (LOGITS, LABELS, jnp.array([1, 1, 0, 1]), 1.0),
        (LOGITS, LABELS, jnp.array([0, 0, 1, 0]), 0.0),
        (LOGITS, LABELS, jnp.array([0.5, 0.0, 0.5, 0.0]), 0.5),
        (BINARY_LOGITS, BINARY_LABELS, None, 0.8),
        (BINARY_LOGITS, BINARY_LABELS, jnp.array([1, 1, 1, 0, 0]), 2 / 3),
        (BINARY_LOGITS, BINARY_LABELS.astype(jnp.float32), None, 0.8),  # 0./1. float targets
        (LOGITS, LABELS, jnp.zeros(4), 0.0),  # all masked: 0, not NaN
    ],
    ids=["multi", "multi-mask", "multi-only-wrong", "multi-weights", "binary", "binary-mask", "binary-float", "empty"],
)
def test_accuracy_by_hand(logits, labels, mask, expected):
    assert float(accuracy(logits, labels, mask)) == pytest.approx(expected)
    assert float(jax.jit(accuracy)(logits, labels, mask)) == pytest.approx(expected)


def test_predict_labels():
    np.testing.assert_array_equal(predict_labels(LOGITS), [0, 2, 1, 1])
    np.testing.assert_array_equal(predict_labels(BINARY_LOGITS), [1, 0, 0, 1, 0])


def test_accuracy_over_sequences():
    logits = jnp.stack([LOGITS, LOGITS[::-1]])  # (2, 4, 3): argmax [[0, 2, 1, 1], [1, 1, 2, 0]]
    labels = jnp.array([[0, 2, 2, 1], [1, 1, 2, 2]])
    assert float(accuracy(logits, labels)) == pytest.approx(6 / 8)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert float(accuracy(logits, labels, mask)) == pytest.approx(5 / 6)


@pytest.mark.parametrize("logits, labels", [(LOGITS, LABELS[:3]), (BINARY_LOGITS, BINARY_LABELS[:, None])])
def test_accuracy_shape_mismatch_raises(logits, labels):
    with pytest.raises(ValueError, match=r"accuracy: logits of shape .* need labels of shape .*, got"):
        accuracy(logits, labels)


def test_confusion_matrix_by_hand():
    labels = jnp.array([0, 0, 1, 2, 2, 2])
    predictions = jnp.array([0, 1, 1, 2, 0, 2])
    expected = [
        [1, 1, 0],  # true 0: once right, once called 1
        [0, 1, 0],  # true 1: right
        [1, 0, 2],  # true 2: once called 0, twice right
    ]
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3), expected)
    masked = confusion_matrix(labels, predictions, 3, mask=jnp.array([1, 1, 1, 1, 0, 1]))
    np.testing.assert_array_equal(masked, [[1, 1, 0], [0, 1, 0], [0, 0, 2]])


def test_confusion_matrix_flattens_sequences_and_ignores_masked_padding():
    labels = jnp.array([[1, 0, -1], [2, 2, -1]])  # -1: padding, masked out
    predictions = jnp.array([[1, 1, 0], [2, 0, 2]])
    mask = labels >= 0
    expected = [[0, 1, 0], [0, 1, 0], [1, 0, 1]]
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3, mask), expected)


@settings(max_examples=20, deadline=None)
@given(
    # A fixed length (the mask varies how many count) compiles the scatter once.
    pairs=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.booleans()), min_size=24, max_size=24),
)
def test_confusion_matrix_counts_pairs(pairs):
    labels, predictions, mask = (np.array(column) for column in zip(*pairs))
    expected = np.zeros((4, 4), int)
    for true, predicted in zip(labels[mask], predictions[mask]):
        expected[true, predicted] += 1
    matrix = confusion_matrix(jnp.asarray(labels), jnp.asarray(predictions), 4, jnp.asarray(mask))
    np.testing.assert_array_equal(matrix, expected)


def test_confusion_matrix_agrees_with_accuracy():
    matrix = confusion_matrix(LABELS, predict_labels(LOGITS), 3)
    assert int(matrix.sum()) == 4
    assert float(jnp.trace(matrix) / matrix.sum()) == pytest.approx(float(accuracy(LOGITS, LABELS)))


def test_confusion_matrix_size_mismatch_raises():
    with pytest.raises(ValueError, match="5 labels but 4 predictions"):
        confusion_matrix(jnp.zeros(5, jnp.int32), jnp.zeros(4, jnp.int32), 3)


# Entity spans, decoded as conlleval does: (type, start, end), end exclusive.


@pytest.mark.parametrize(
    "tags, expected",
    [
        (["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"], [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 6)]),
        # IOB1: I- starts a chunk after O or at the start; B- only splits two chunks of one type
        (["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5)]),
        (["O", "I-PER"], [("PER", 1, 2)]),
        (["I-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),  # a type change ends a chunk and starts one
        (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),
        (["I-PER", "I-PER"], [("PER", 0, 2)]),
        (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),  # B- always starts a chunk
        (["I-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        # IOBES
        (
            ["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "O", "B-ORG", "E-ORG"],
            [("PER", 0, 1), ("LOC", 1, 4), ("LOC", 4, 5), ("ORG", 6, 8)],
        ),
        # IOBES, ill-formed: E- and S- end a chunk, so what follows them starts one
        (["B-PER", "E-PER", "I-PER", "E-PER"], [("PER", 0, 2), ("PER", 2, 4)]),
        (["S-PER", "I-PER", "E-PER", "E-PER"], [("PER", 0, 1), ("PER", 1, 3), ("PER", 3, 4)]),
        (["E-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        (["O", "O"], []),
        ([], []),
        (["B-FOO-BAR", "I-FOO-BAR"], [("FOO-BAR", 0, 2)]),  # the type is all after the first "-"
    ],
    ids=[
        "iob2", "iob1", "o-i", "i-i-types", "b-i-types", "i-i", "b-b", "i-b",
        "iobes", "e-i", "s-i-e-e", "e-b", "no-entities", "empty", "hyphen-in-type",
    ],
)
def test_bio_spans_by_hand(tags, expected):
    assert bio_spans(tags) == expected


@pytest.mark.parametrize("bad", ["PER", "X-PER", "B-", "", "O-PER", "b-PER", None, 1])
def test_bio_spans_bad_tag_raises(bad):
    with pytest.raises(ValueError, match=rf"bio_spans: tag {re.escape(repr(bad))} at position 1 is not 'O' or"):
        bio_spans(["O", bad])


def test_bio_spans_str_raises():
    with pytest.raises(TypeError, match="bio_spans: expected a sequence of tags, got the str 'B-PER'"):
        bio_spans("B-PER")


GOLD = [
    ["B-PER", "I-PER", "O", "B-LOC"],  # PER 0:2, LOC 3:4
    ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER"],  # ORG 0:3, PER 4:5
    ["O", "O", "B-LOC"],  # LOC 2:3
]
PREDICTED = [
    ["B-PER", "I-PER", "O", "B-ORG"],  # PER 0:2 right; ORG 3:4 wrong type
    ["B-ORG", "I-ORG", "O", "O", "B-PER"],  # ORG 0:2 wrong end; PER 4:5 right
    ["O", "O", "B-LOC"],  # LOC 2:3 right
]


def test_span_scores_by_hand():
    scores = span_scores(GOLD, PREDICTED)
    assert list(scores) == ["LOC", "ORG", "PER", "overall"]
    # LOC: 2 gold, 1 predicted, 1 right: precision 1/1, recall 1/2, F1 2 * 1 * 0.5 / 1.5 = 2/3
    assert scores["LOC"] == pytest.approx(Scores(1.0, 0.5, 2 / 3, 2, 1, 1))
    assert scores["ORG"] == Scores(0.0, 0.0, 0.0, 1, 2, 0)  # 1 gold, 2 predicted, none right
    assert scores["PER"] == Scores(1.0, 1.0, 1.0, 2, 2, 2)
    # overall: 5 gold, 5 predicted, 3 right: 3/5 each
    assert scores["overall"] == pytest.approx(Scores(0.6, 0.6, 0.6, 5, 5, 3))


def test_span_scores_schemes_agree():
    # the gold entities of sentence 0, tagged IOB1 and IOBES, are all right
    for tags in (["I-PER", "I-PER", "O", "I-LOC"], ["B-PER", "E-PER", "O", "S-LOC"]):
        assert span_scores(GOLD[:1], [tags])["overall"] == Scores(1.0, 1.0, 1.0, 2, 2, 2)


def test_span_scores_no_entities_and_no_predictions():
    assert span_scores([["O", "O"], []], [["O", "O"], []]) == {"overall": Scores(0.0, 0.0, 0.0, 0, 0, 0)}
    missed = span_scores([["B-PER", "O"]], [["O", "O"]])  # nothing predicted: precision 0, not NaN
    assert missed == {"PER": Scores(0.0, 0.0, 0.0, 1, 0, 0), "overall": Scores(0.0, 0.0, 0.0, 1, 0, 0)}
    invented = span_scores([["O", "O"]], [["O", "B-MISC"]])  # a type only predicted still has an entry
    assert invented == {"MISC": Scores(0.0, 0.0, 0.0, 0, 1, 0), "overall": Scores(0.0, 0.0, 0.0, 0, 1, 0)}


def test_span_scores_sentence_boundary_ends_spans():
    # Joined, gold would be one PER 1:3 and the predicted B-PER B-PER two; per sentence each side
    # has PER 1:2 in sentence 0 and PER 0:1 in sentence 1, all right.
    scores = span_scores([["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["B-PER", "O"]])
    assert scores["PER"] == Scores(1.0, 1.0, 1.0, 2, 2, 2)


@pytest.mark.parametrize(
    "gold, predicted, error, message",
    [
        (GOLD, PREDICTED[:2], ValueError, "span_scores: 3 gold sentences but 2 predicted"),
        (GOLD, [*PREDICTED[:2], ["O", "O"]], ValueError, "span_scores: sentence 2 has 3 gold tags but 2 predicted"),
        (GOLD, [PREDICTED[0], ["B-ORG", "ORG", "O", "O", "O"], PREDICTED[2]], ValueError,
         "span_scores: predicted sentence 1: tag 'ORG' at position 1 is not"),
        (GOLD[0], PREDICTED[0], TypeError,  # one sentence where a list of sentences belongs
         "span_scores: gold sentence 0: expected a sequence of tags, got the str 'B-PER'"),
    ],
    ids=["sentences", "tags", "bad-tag", "str"],
)
def test_span_scores_errors(gold, predicted, error, message):
    with pytest.raises(error, match=re.escape(message)):
        span_scores(gold, predicted)


TAGS = st.lists(st.sampled_from(["O"] + [f"{prefix}-{type_}" for prefix in "BIES" for type_ in ("PER", "LOC")]))


def encode(spans, length, scheme):
    """Tags of disjoint ordered spans in IOB1, IOB2 or IOBES."""
    tags, previous = ["O"] * length, None
    for type_, start, end in spans:
        inside = ["I-" + type_] * (end - start)
        if scheme == "IOB2" or (scheme == "IOB1" and previous == (type_, start)):
            inside[0] = "B-" + type_
        if scheme == "IOBES":
            inside = ["S-" + type_] if end - start == 1 else ["B-" + type_, *inside[2:], "E-" + type_]
        tags[start:end], previous = inside, (type_, end)
    return tags


@settings(max_examples=200, deadline=None)
@given(tags=TAGS)
def test_bio_spans_partition_the_entity_tags(tags):
    spans = bio_spans(tags)
    covered = []
    for type_, start, end in spans:  # in order, disjoint, in bounds, one type each
        assert (covered[-1] if covered else -1) < start < end <= len(tags)
        assert all(tag[2:] == type_ for tag in tags[start:end])
        covered += range(start, end)
    assert covered == [i for i, tag in enumerate(tags) if tag != "O"]


@settings(max_examples=200, deadline=None)
@given(tags=TAGS)
def test_bio_spans_round_trip(tags):
    spans = bio_spans(tags)
    for scheme in ("IOB1", "IOB2", "IOBES"):
        assert bio_spans(encode(spans, len(tags), scheme)) == spans, scheme


@settings(max_examples=100, deadline=None)
@given(sentences=st.lists(TAGS, max_size=4))
def test_span_scores_of_gold_against_itself(sentences):
    for type_, scores in span_scores(sentences, sentences).items():
        assert scores.gold == scores.predicted == scores.correct
        assert scores.f1 == (1.0 if scores.gold else 0.0), type_
    assert span_scores(sentences, sentences)["overall"].gold == sum(len(bio_spans(tags)) for tags in sentences)


# Binary precision/recall/F1: gold has 3 positives, predicted 3, of which 2 are right: 2/3 each.
BINARY_GOLD = [[1, 0, 1], [1, 0, 0]]
BINARY_PREDICTED = [[1, 1, 0], [1, 0, 0]]
TWO_THIRDS = Scores(2 / 3, 2 / 3, 2 / 3, 3, 3, 2)


@pytest.mark.parametrize(
    "gold, predicted",
    [
        (np.array(BINARY_GOLD), np.array(BINARY_PREDICTED)),
        (jnp.array(BINARY_GOLD), jnp.array(BINARY_PREDICTED, bool)),
        (np.array(BINARY_GOLD).ravel().tolist(), np.array(BINARY_PREDICTED).ravel().tolist()),
        ([[1, 0, 1, 1], [0, 0]], [[1, 1, 0, 1], [0, 0]]),  # ragged sentences
        ([[1, 0, 1, 1], [0, 0]], [jnp.array([1, 1, 0, 1]), np.array([False, False])]),
    ],
    ids=["numpy", "jax-bool", "flat-list", "ragged", "ragged-mixed"],
)
def test_binary_scores_by_hand(gold, predicted):
    assert binary_scores(gold, predicted) == pytest.approx(TWO_THIRDS)


def test_binary_scores_without_positives():
    assert binary_scores(np.zeros(3), np.zeros(3)) == Scores(0.0, 0.0, 0.0, 0, 0, 0)
    assert binary_scores([1, 1], [0, 0]) == Scores(0.0, 0.0, 0.0, 2, 0, 0)
    assert binary_scores([], []) == Scores(0.0, 0.0, 0.0, 0, 0, 0)


@pytest.mark.parametrize(
    "gold, predicted, message",
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), "binary_scores: gold of shape (2, 3) but predicted of shape (3, 2)"),
        ([[1, 0], [1]], [[1, 0]], "binary_scores: 2 gold sentences but 1 predicted"),
        (
            [[1, 0], [1]],
            [[1, 0], [1, 0]],
            "binary_scores: sentence 1 has gold of shape (1,) but predicted of shape (2,)",
        ),
        ([1, 0], [2, 0], "binary_scores: predicted labels must be 0/1 or bool, got values [0 2]"),
    ],
    ids=["shape", "sentences", "sentence-length", "not-binary"],
)
def test_binary_scores_errors(gold, predicted, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        binary_scores(gold, predicted)


def test_best_f1_threshold_maximises_f1_without_splitting_ties():
    scores = np.array([3.0, 2.0, 2.0, 1.0, 0.0, -1.0])
    labels = np.array([1, 1, 0, 1, 0, 0])
    # F1 = 2 hits / (called + 3 positives): cut after 3.0: 2/4; after the two 2.0s: 4/6; after 1.0: 6/7 (best);
    # after 0.0: 6/8. Between 1.0 and 0.0: 0.5
    assert best_f1_threshold(scores, labels) == pytest.approx(0.5)
    assert best_f1_threshold(np.array([1.0, 1.0]), np.array([1, 0])) == pytest.approx(0.0)  # all positive
    with pytest.raises(ValueError, match="best_f1_threshold: needs as many scores as labels"):
        best_f1_threshold(np.array([1.0]), np.array([1, 0]))


def test_precision_recall_curve_by_hand():
    scores = np.array([3.0, 2.0, 2.0, 1.0, 0.0, -1.0])
    labels = np.array([1, 1, 0, 1, 0, 0])
    curve = precision_recall_curve(scores, labels)
    assert isinstance(curve, PrecisionRecallCurve)
    # calling positive the items of score >= 3, 2, 1, 0, -1: 1, 3, 4, 5, 6 items, of which 1, 2, 3, 3, 3 are
    np.testing.assert_allclose(curve.thresholds, [2.5, 1.5, 0.5, -0.5, -2.0])
    np.testing.assert_allclose(curve.precision, [1, 2 / 3, 3 / 4, 3 / 5, 3 / 6])
    np.testing.assert_allclose(curve.recall, [1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(curve.f1, [1 / 2, 2 / 3, 6 / 7, 3 / 4, 2 / 3])
    assert best_f1_threshold(scores, labels) == curve.thresholds[2]


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=1, max_size=30),
       scale=st.sampled_from([1.0, 0.1, -2.5]))
def test_precision_recall_curve_against_brute_force(items, scale):
    scores = np.array([score for score, _ in items], np.float32) * np.float32(scale)  # few distinct: ties
    labels = np.array([label for _, label in items])
    curve = precision_recall_curve(scores, labels)
    distinct = np.unique(scores)
    assert len(curve.thresholds) == len(distinct)
    assert (np.diff(curve.thresholds) < 0).all()  # strictest first
    # each threshold calls positive the items scoring at least one distinct score, highest first
    for m, lowest_called in enumerate(distinct[::-1]):
        called = scores > curve.thresholds[m]
        np.testing.assert_array_equal(called, scores >= lowest_called)
        expected = binary_scores(labels, called)
        assert (curve.precision[m], curve.recall[m], curve.f1[m]) == pytest.approx(expected[:3])
    assert curve.recall[-1] == (1.0 if labels.any() else 0.0)  # the last calls every item
    # best_f1_threshold: the strictest threshold of the best F1, no cut between scores does better
    best = best_f1_threshold(scores, labels)
    assert best == curve.thresholds[np.argmax(curve.f1)]
    assert binary_scores(labels, scores > best).f1 == pytest.approx(max(
        binary_scores(labels, scores > t).f1 for t in [*distinct, distinct[0] - 1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("base", [0.0, 1.0, 3e7, 1e20, -1e20])
@pytest.mark.parametrize("ulps", [0, 1])  # an even or an odd last bit: the halfway rounds down or up
def test_precision_recall_curve_thresholds_separate_adjacent_floats_and_large_scores(dtype, base, ulps):
    low = dtype(base)
    for _ in range(ulps):
        low = np.nextafter(low, dtype(np.inf))
    high = np.nextafter(low, dtype(np.inf))  # the two are adjacent: their halfway rounds onto one of them
    scores = np.array([high, low, low], dtype)
    curve = precision_recall_curve(scores, [1, 0, 1])
    np.testing.assert_array_equal(scores > curve.thresholds[0], [True, False, False])
    np.testing.assert_array_equal(scores > curve.thresholds[1], [True, True, True])  # lowest - 1 == lowest at 1e20
    assert best_f1_threshold(scores, [1, 0, 1]) == curve.thresholds[1]


def test_precision_recall_curve_takes_any_shape_and_bool_labels():
    scores = np.array([[0.9, 0.1], [0.4, 0.6]])
    labels = np.array([[True, False], [False, True]])
    curve = precision_recall_curve(scores, labels)
    np.testing.assert_allclose(curve.recall, [0.5, 1, 1, 1])
    np.testing.assert_allclose(curve.precision, [1, 1, 2 / 3, 1 / 2])
    without = precision_recall_curve([0.5, 0.2], [0, 0])  # no positive item: recall and F1 0, not NaN
    np.testing.assert_array_equal(without.recall, [0, 0])
    np.testing.assert_array_equal(without.f1, [0, 0])


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([1.0, 2.0], [1], "needs as many scores as labels, at least one; got 2 and 1"),
        ([], [], "needs as many scores as labels, at least one; got 0 and 0"),
        ([1.0, float("nan")], [1, 0], "a score is NaN"),
        ([1.0, 2.0], [1, 2], "labels must be 0/1 or bool, got values [1 2]"),
    ],
    ids=["lengths", "empty", "nan", "not-binary"],
)
def test_precision_recall_curve_errors(scores, labels, message):
    with pytest.raises(ValueError, match=re.escape("precision_recall_curve: " + message)):
        precision_recall_curve(scores, labels)


def test_accuracy_of_a_crf_scores_its_viterbi_tags():
    layer = CRF(3)
    _, params = layer.init(jax.random.key(0), (-1, 4, 3))
    params = {**params, "transitions": jnp.array([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])}
    emissions = jax.random.normal(jax.random.key(1), (2, 4, 3))
    scores = layer.apply(params, emissions, lengths=jnp.array([4, 2]))
    best = viterbi(scores)[0]
    assert not jnp.array_equal(best, emissions.argmax(-1))  # the transitions, not each step alone, decide
    labels = best.at[0, 0].set((best[0, 0] + 1) % 3)  # one of the 6 valid tags wrong
    mask = scores.mask.astype(jnp.float32)
    assert float(accuracy(scores, labels, mask)) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match=r"logits of shape \(2, 4, 3\) need labels of shape \(2, 4\)"):
        accuracy(scores, labels[:, :3])
