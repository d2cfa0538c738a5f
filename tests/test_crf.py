"""Tests of jaxdl.crf: every function against brute-force enumeration of tag sequences (with and
without BIO constraints), gradients, padding, jit/vmap, the layer in a model, errors."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from jaxdl.core import LayerError, serial
from jaxdl.crf import (CRF, ChainScores, Constraints, bio_constraints, log_likelihood, log_partition, marginals,
                       negative_log_likelihood, sequence_score, viterbi)
from jaxdl.layers import Dense

KEY = jax.random.key(0)
TAG_SETS = {3: ["O", "B-A", "I-A"], 4: ["O", "B-A", "I-A", "B-B"]}


# ------------------------------------------------------------------------ helpers
def random_scores(seed: int, mask, num_tags: int, constrained: bool, dtype=np.float32) -> ChainScores:
    """Random normal scores of a batch whose valid steps are ``mask`` (B, T); -inf where BIO forbids."""
    rng = np.random.default_rng(seed)
    batch, steps = np.shape(mask)
    emissions, transitions, start, end = (rng.standard_normal(shape).astype(dtype) for shape in
                                          [(batch, steps, num_tags), (num_tags, num_tags), (num_tags,), (num_tags,)])
    if constrained:
        allowed = bio_constraints(TAG_SETS[num_tags])
        transitions, start, end = (np.where(a, s, -np.inf).astype(dtype) for a, s in
                                   zip(allowed, (transitions, start, end)))
    return ChainScores(*map(jnp.asarray, (emissions, transitions, start, end)), jnp.asarray(mask, bool))


def all_paths(scores: ChainScores, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every allowed tag sequence of sequence ``row`` over its valid steps, and their scores in float64.

    Returns (valid step indices (n,), paths (P, n), scores (P,)).
    """
    e, trans, start, end = (np.asarray(x, np.float64) for x in scores[:4])
    steps = np.flatnonzero(np.asarray(scores.mask[row]))
    paths = np.array(list(itertools.product(range(trans.shape[0]), repeat=len(steps))), int)  # (1, 0) when empty
    if not len(steps):
        return steps, paths, np.zeros(1)
    total = start[paths[:, 0]] + end[paths[:, -1]] + e[row, steps, :][np.arange(len(steps)), paths].sum(1)
    total += trans[paths[:, :-1], paths[:, 1:]].sum(1)
    keep = np.isfinite(total)
    return steps, paths[keep], total[keep]


def spread(steps, path, length: int, fill) -> np.ndarray:
    """A (T,) row of tags: ``path`` at ``steps``, ``fill`` elsewhere."""
    row = np.full(length, fill, np.int32)
    row[steps] = path
    return row


def prefix_mask(lengths, steps: int) -> np.ndarray:
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def random_masks(seed: int, batch: int, steps: int) -> dict:
    """A prefix mask with lengths 0, T and random, and an arbitrary one (steps skipped in the middle)."""
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([[0, steps], rng.integers(0, steps + 1, batch - 2)])
    arbitrary = rng.random((batch, steps)) < 0.6
    arbitrary[0] = False
    return {"prefix": prefix_mask(lengths, steps), "arbitrary": arbitrary}


@jax.jit
def everything(scores: ChainScores, tags) -> dict:
    """Every function's result on ``scores`` and gold ``tags``, compiled once per shape."""
    loss, grad = jax.value_and_grad(lambda e: negative_log_likelihood(scores._replace(emissions=e), tags))(
        scores.emissions)
    best_tags, best = viterbi(scores)
    return {"logz": log_partition(scores), "ll": log_likelihood(scores, tags), "tags": best_tags, "best": best,
            "score": sequence_score(scores, best_tags), "marginals": marginals(scores), "loss": loss, "grad": grad}


def assert_close(actual, expected, tol=1e-5, where=""):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol, err_msg=where)


# ------------------------------------------------------------------ brute force
@pytest.mark.parametrize("constrained", [False, True], ids=["free", "bio"])
@pytest.mark.parametrize("num_tags, steps", [(3, 1), (3, 5), (4, 4)])
def test_every_function_matches_enumerating_all_tag_sequences(num_tags, steps, constrained):
    rng = np.random.default_rng(num_tags * 10 + steps)
    for seed in range(2):
        for masking, mask in random_masks(seed, 5, steps).items():
            scores = random_scores(seed, mask, num_tags, constrained)
            gold, expected = [], {"logz": [], "ll": [], "best": [], "best_tags": [], "marginals": []}
            for row in range(len(mask)):
                valid, paths, path_scores = all_paths(scores, row)
                logz = np.logaddexp.reduce(path_scores)
                chosen = rng.integers(len(paths))
                gold.append(spread(valid, paths[chosen], steps, rng.integers(-3, num_tags + 3)))
                expected["logz"].append(logz)
                expected["ll"].append(path_scores[chosen] - logz)
                best = np.argmax(path_scores)
                expected["best"].append(path_scores[best])
                expected["best_tags"].append(spread(valid, paths[best], steps, 0))
                probabilities = np.exp(path_scores - logz)
                table = np.zeros((steps, num_tags))
                for i, step in enumerate(valid):
                    np.add.at(table[step], paths[:, i], probabilities)
                expected["marginals"].append(table)
            got = everything(scores, jnp.asarray(np.array(gold)))
            where = f"{masking} mask, seed {seed}"
            assert_close(got["logz"], expected["logz"], 1e-4, where)
            assert_close(got["ll"], expected["ll"], 1e-4, where)
            np.testing.assert_array_equal(got["tags"], np.array(expected["best_tags"]), err_msg=where)
            assert got["tags"].dtype == jnp.int32
            assert_close(got["best"], expected["best"], 1e-4, where)
            assert_close(got["best"], got["score"], 1e-5, where)
            assert_close(got["marginals"], np.array(expected["marginals"]), 1e-5, where)
            tokens = max(mask.sum(), 1)
            assert_close(got["loss"], -np.sum(expected["ll"]) / tokens, 1e-4, where)
            gold_one_hot = np.eye(num_tags)[np.where(mask, np.array(gold), 0)] * mask[..., None]
            assert_close(got["grad"], (np.array(expected["marginals"]) - gold_one_hot) / tokens, 1e-5, where)


def test_bio_constraints_allow_inside_only_after_the_same_type():
    allowed = bio_constraints(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    np.testing.assert_array_equal(allowed.transitions, [
        [1, 1, 0, 1, 0],  # O -> I-X is forbidden
        [1, 1, 1, 1, 0],  # B-PER -> I-PER only
        [1, 1, 1, 1, 0],
        [1, 1, 0, 1, 1],
        [1, 1, 0, 1, 1],
    ])
    np.testing.assert_array_equal(allowed.start, [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(allowed.end, [1, 1, 1, 1, 1])


def test_constrained_decoding_never_breaks_iob2():
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    allowed = bio_constraints(tags)
    layer = CRF(5, allowed=allowed)
    _, params = layer.init(KEY, (-1, 12, 5))
    emissions = 3 * jax.random.normal(KEY, (64, 12, 5))  # unconstrained, many would start with I-
    decoded = np.asarray(jax.jit(lambda e: viterbi(layer.apply(params, e))[0])(emissions))
    assert (decoded[:, 0] != 2).all() and (decoded[:, 0] != 4).all()
    assert allowed.transitions[decoded[:, :-1], decoded[:, 1:]].all()
    free = np.asarray(emissions.argmax(-1))  # what zero params decode to without constraints
    assert np.isin(free[:, 0], [2, 4]).any() and not allowed.transitions[free[:, :-1], free[:, 1:]].all()


# -------------------------------------------------------------------- gradients
def test_gradients_match_finite_differences_in_float64():
    mask = prefix_mask([4, 0, 2], 4)
    tags = jnp.asarray([[1, 2, 0, 3], [0, 0, 0, 0], [3, 0, 1, 1]])
    layer = CRF(4, allowed=bio_constraints(TAG_SETS[4]))
    with jax.enable_x64(True):
        emissions = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4, 4)))
        params = jax.tree.map(lambda p: jnp.asarray(np.random.default_rng(1).standard_normal(p.shape)),
                              layer.init(KEY, (3, 4, 4))[1])
        lengths = jnp.asarray(mask.sum(1))
        loss = lambda params, emissions: negative_log_likelihood(
            layer.apply(params, emissions, lengths=lengths), tags)
        assert jax.eval_shape(loss, params, emissions).dtype == jnp.float64
        check_grads(jax.jit(loss), (params, emissions), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_minus_infinity_gives_no_nan_and_no_gradient_to_disallowed_moves():
    # Without a B-B, I-B can never be reached: its forward score is -inf at every step, from all -inf terms.
    allowed = bio_constraints(["O", "B-A", "I-A", "I-B"])
    layer = CRF(4, allowed=allowed)
    _, params = layer.init(KEY, (-1, 4, 4))
    emissions = jax.random.normal(KEY, (5, 4, 4))
    lengths = jnp.array([4, 3, 0, 1, 2])
    tags = jnp.array([[1, 2, 2, 0], [0, 1, 2, 0], [0] * 4, [1, 3, 3, 3], [1, 2, 0, 0]])
    loss = lambda params, emissions: negative_log_likelihood(layer.apply(params, emissions, lengths=lengths), tags)
    (value, (params_grad, emissions_grad)), scores = jax.jit(lambda params, emissions: (
        jax.value_and_grad(loss, argnums=(0, 1))(params, emissions), layer.apply(params, emissions, lengths=lengths)
    ))(params, emissions)
    for tree in (value, params_grad, emissions_grad, everything(scores, tags)):
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(tree))
    assert not np.isfinite(scores.transitions).all() and not np.isfinite(scores.start).all()
    np.testing.assert_array_equal(np.asarray(params_grad["transitions"])[~allowed.transitions], 0)
    assert (params_grad["transitions"][:, 3] == 0).all() and (emissions_grad[..., 3] == 0).all()  # never reached
    assert params_grad["start"][2] == 0 and np.abs(params_grad["transitions"]).sum() > 0


# ---------------------------------------------------------------------- masking
def test_padding_changes_nothing_even_huge_or_nan():
    mask = prefix_mask([4, 2, 0, 3, 1], 4)
    scores = random_scores(3, mask, 4, constrained=True)
    tags = jnp.asarray(np.random.default_rng(0).integers(0, 2, (5, 4)))  # O and B-A: always allowed
    noise = np.random.default_rng(1).standard_normal(scores.emissions.shape) * 1e30
    noise[2, 0, 0] = np.nan
    noisy = scores._replace(emissions=jnp.where(mask[..., None], scores.emissions, jnp.asarray(noise, jnp.float32)))
    clean, dirty = everything(scores, tags), everything(noisy, tags + 7 * ~mask)  # tags at padding ignored too
    for name in clean:
        assert_close(dirty[name], clean[name], where=name)
    assert np.isfinite(dirty["grad"]).all() and (np.asarray(dirty["grad"])[~mask] == 0).all()


per_sequence = jax.jit(lambda scores, tags: (negative_log_likelihood(scores, tags), log_likelihood(scores, tags)))


def test_batch_loss_equals_sequences_one_at_a_time():
    lengths = [5, 1, 0, 3, 2]
    scores = random_scores(4, prefix_mask(lengths, 5), 3, constrained=False)
    tags = jnp.asarray(np.random.default_rng(2).integers(0, 3, (5, 5)))
    batch = everything(scores, tags)
    summed = 0
    for row, length in enumerate(lengths):
        alone = scores._replace(emissions=scores.emissions[row:row + 1, :length], mask=jnp.ones((1, length), bool))
        loss, ll = per_sequence(alone, tags[row:row + 1, :length])
        assert_close(ll, batch["ll"][row:row + 1], where=f"sequence {row}")
        assert_close(loss * length, -ll.sum(), where=f"sequence {row}")
        summed += loss * length
    assert_close(batch["loss"], summed / sum(lengths))


def test_loss_mask_combines_with_the_scores_mask_and_an_empty_batch_gives_zero():
    scores = random_scores(5, prefix_mask([4, 4, 2, 1, 3], 4), 4, constrained=False)
    tags = jnp.asarray(np.random.default_rng(3).integers(0, 4, (5, 4)))
    extra = np.ones((5, 4))
    extra[1, 2:] = extra[4, 0] = 0
    loss = jax.jit(negative_log_likelihood)
    assert_close(loss(scores, tags, extra), everything(scores._replace(mask=scores.mask & (extra == 1)), tags)["loss"])
    assert loss(scores, tags, extra) != everything(scores, tags)["loss"]
    assert loss(scores, tags, np.zeros((5, 4))) == 0
    got = everything(scores._replace(mask=jnp.zeros((5, 4), bool)), tags)
    for name in ("loss", "grad", "logz", "ll", "tags", "best", "marginals"):
        assert (got[name] == 0).all(), name


# ---------------------------------------------------------------- jit and vmap
def test_vmap_over_an_outer_axis_and_jit_agree_with_a_loop():
    masks = np.stack([prefix_mask([4, 1, 0, 2, 3], 4), prefix_mask([0, 2, 4, 4, 1], 4)])
    stacked = [random_scores(seed, mask, 4, constrained=True) for seed, mask in enumerate(masks)]
    shared = stacked[0]._replace(emissions=jnp.stack([s.emissions for s in stacked]), mask=jnp.asarray(masks))
    axes = ChainScores(0, None, None, None, 0)
    tags = jnp.zeros((2, 5, 4), jnp.int32)
    nll, (decoded, best) = jax.jit(lambda scores, tags: (jax.vmap(negative_log_likelihood, in_axes=(axes, 0))(
        scores, tags), jax.vmap(viterbi, in_axes=(axes,))(scores)))(shared, tags)
    for i, mask in enumerate(masks):
        one = everything(stacked[0]._replace(emissions=shared.emissions[i], mask=jnp.asarray(mask)), tags[i])
        assert_close(nll[i], one["loss"])
        np.testing.assert_array_equal(decoded[i], one["tags"])
        assert_close(best[i], one["best"])


# --------------------------------------------------------------------- the layer
def test_layer_in_a_model_reads_lengths_and_masks_disallowed_moves():
    allowed = bio_constraints(TAG_SETS[3])
    model = serial(Dense(3), CRF(3, allowed=allowed))
    shape, params = model.init(KEY, (-1, 5, 8))
    assert shape == (-1, 5, 3) and model.reads == ("lengths", "step_mask")
    assert set(params) == {"dense", "crf"}
    for name, size in (("transitions", (3, 3)), ("start", (3,)), ("end", (3,))):
        assert params["crf"][name].shape == size and (params["crf"][name] == 0).all()
    x, lengths = jax.random.normal(KEY, (2, 5, 8)), jnp.array([5, 2])
    scores, without_lengths, logits, half = jax.jit(lambda params, x, lengths: (
        model.apply(params, x, lengths=lengths), model.apply(params, x), Dense(3).apply(params["dense"], x),
        CRF(3).apply(params["crf"], x[..., :3].astype(jnp.bfloat16))))(params, x, lengths)
    np.testing.assert_array_equal(scores.mask, prefix_mask([5, 2], 5))
    np.testing.assert_array_equal(np.isfinite(scores.transitions), allowed.transitions)
    np.testing.assert_array_equal(np.isfinite(scores.start), allowed.start)
    assert_close(scores.emissions, logits)
    assert scores.emissions.dtype == jnp.float32 and half.emissions.dtype == jnp.float32
    assert without_lengths.mask.all()  # every step is valid
    step_mask = jnp.array([[1, 0, 1, 1, 0], [1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(model.apply(params, x, step_mask=step_mask).mask, step_mask == 1)
    with pytest.raises(LayerError, match="got both step_mask and lengths"):
        model.apply(params, x, lengths=lengths, step_mask=step_mask)


def test_training_learns_a_rule_that_per_token_scores_cannot():
    # The input says only "tag here" (1) or not (0); which tag, 1 or 2, alternates along each run of 1s.
    # A per-token softmax cannot tell which; the CRF's transitions learn 1 -> 2 -> 1.
    rng = np.random.default_rng(0)
    flags = (rng.random((32, 8)) < 0.8).astype(np.int32)
    tags = np.zeros_like(flags)
    for row, col in zip(*np.nonzero(flags)):
        tags[row, col] = 1 if col == 0 or tags[row, col - 1] != 1 else 2
    model = serial(Dense(3), CRF(3))
    _, params = model.init(KEY, (-1, 8, 1))
    x = jnp.asarray(flags[..., None], jnp.float32)
    loss = jax.value_and_grad(lambda p: negative_log_likelihood(model.apply(p, x), jnp.asarray(tags)))

    @jax.jit
    def train(params):
        descend = lambda _, p: jax.tree.map(lambda p, g: p - 0.5 * g, p, loss(p)[1])
        params = lax.fori_loop(0, 150, descend, params)
        return loss(params)[0], viterbi(model.apply(params, x))[0]

    value, decoded = train(params)
    assert value < 0.1 and (decoded == tags).all()  # a per-token softmax stays near 0.5


# ----------------------------------------------------------------------- errors
def test_errors_say_what_was_expected_and_what_was_got():
    with pytest.raises(LayerError, match=r"'serial/crf' \(CRF\): expected emissions of shape \(B, T, 5\) for its "
                                         r"5 tags, got \(-1, 7, 4\)"):
        serial(Dense(4), CRF(5)).init(KEY, (-1, 7, 3))
    _, params = CRF(5).init(KEY, (2, 3, 5))
    with pytest.raises(LayerError, match=r"expected input of shape \(\.\.\., 5\), got \(2, 3, 4\)"):
        CRF(5).apply(params, jnp.zeros((2, 3, 4)))
    with pytest.raises(LayerError, match=r"lengths must be \(N,\) = \(2,\)"):
        CRF(5).apply(params, jnp.zeros((2, 3, 5)), lengths=jnp.array([1, 2, 3]))
    scores = CRF(5).apply(params, jnp.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="tags must be integer tag ids, got dtype float32"):
        negative_log_likelihood(scores, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"need tags of shape \(B, T\) = \(2, 3\), got \(2, 3, 5\)"):
        negative_log_likelihood(scores, jnp.zeros((2, 3, 5), jnp.int32))
    with pytest.raises(ValueError, match=r"mask must have shape \(B, T\) = \(2, 3\), got \(3,\)"):
        negative_log_likelihood(scores, jnp.zeros((2, 3), jnp.int32), jnp.ones(3))
    for bad in ("E-PER", "B-", "PER", "o"):
        with pytest.raises(ValueError, match=f"tag '{bad}' at position 1 is not 'O', 'B-<TYPE>' or 'I-<TYPE>'"):
            bio_constraints(["O", bad])
    with pytest.raises(ValueError, match=r"allowed.start must have shape \(5,\) for 5 tags, got \(3,\)"):
        CRF(5, allowed=Constraints(np.ones((5, 5)), np.ones(3), np.ones(5)))
    with pytest.raises(ValueError, match="CRF num_tags must be a positive int, got 0"):
        CRF(0)
