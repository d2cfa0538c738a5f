"""A linear-chain conditional random field: tag sequences scored as a whole, for sequence tagging.

The :func:`CRF` layer turns per-token emission scores (B, T, K), e.g. a Dense layer's
logits, into :class:`ChainScores`: the emissions with learned transition, start and end
scores. A tag sequence ``y`` of a sentence scores
``start[y_1] + sum_t emissions[t, y_t] + sum_t transitions[y_(t-1), y_t] + end[y_T]``;
the pure functions below normalise that over every tag sequence (the forward algorithm),
decode the best one (Viterbi) and give each tag's posterior (forward-backward)::

    model = serial(tagger_body, Dense(num_tags), CRF(num_tags, allowed=bio_constraints(tags)))
    scores = model.apply(params, x, lengths=lengths)
    loss = negative_log_likelihood(scores, gold_tags)
    predicted, _ = viterbi(scores)

Every function is jittable and vmappable, batch first, and runs over time in ``lax.scan``.
Steps outside ``scores.mask`` are skipped: they change no score, and neither their
emissions nor their tags reach a value or a gradient. A sequence without a valid step
has score, log-partition and log-likelihood 0. Disallowed moves score -inf; no value or
gradient is NaN as long as each sequence has at least one allowed tag sequence (a gold
sequence that is not allowed has log-likelihood -inf).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdl.core import Layer, LayerError
from jaxdl.layers import _check_float, _check_last_dim, _check_rank, _positive
from jaxdl.recurrent import _valid_lengths


class Constraints(NamedTuple):
    """Which tags may follow which (True = allowed), for ``CRF(allowed=...)``."""

    transitions: np.ndarray  # (K, K) bool: may tag j (column) follow tag i (row)?
    start: np.ndarray  # (K,) bool: may a sequence start with tag k?
    end: np.ndarray  # (K,) bool: may a sequence end with tag k?


class ChainScores(NamedTuple):
    """What a CRF layer outputs: everything needed to score, normalise and decode tag sequences."""

    emissions: jax.Array  # (B, T, K) score of tag k at step t
    transitions: jax.Array  # (K, K) score of moving from tag i (row) to tag j (column); -inf where not allowed
    start: jax.Array  # (K,) score of starting with tag k; -inf where not allowed
    end: jax.Array  # (K,) score of ending with tag k; -inf where not allowed
    mask: jax.Array  # (B, T) bool, the valid steps (from the layer's `lengths` or `step_mask`; all True without)


def bio_constraints(tags: Sequence[str]) -> Constraints:
    """The moves IOB2 (BIO) tags allow: ``I-X`` only after ``B-X`` or ``I-X``, and never first.

    ``tags`` name the K tag ids in order, each ``"O"``, ``"B-<TYPE>"`` or ``"I-<TYPE>"``.
    Only for IOB2 data: in IOB1 an entity may begin with ``I-X``, which these forbid.
    """
    prefixes, types = [], []
    for position, tag in enumerate(tags):
        prefix, _, type_ = tag.partition("-") if isinstance(tag, str) else ("", "", "")
        if tag != "O" and (prefix not in ("B", "I") or not type_):
            raise ValueError(f"bio_constraints: tag {tag!r} at position {position} is not 'O', 'B-<TYPE>' or "
                             "'I-<TYPE>' (IOB2)")
        prefixes.append(prefix)
        types.append(type_)
    prefixes, types = np.array(prefixes), np.array(types)
    inside = prefixes == "I"
    continues = (prefixes[:, None] != "O") & (types[:, None] == types[None, :])  # B-X or I-X (row) -> ?-X
    return Constraints(~inside[None, :] | continues, ~inside, np.ones(len(prefixes), bool))


def _checked_constraints(allowed: Constraints, num_tags: int) -> Constraints:
    allowed = Constraints(*(np.asarray(a, bool) for a in allowed))
    expected = Constraints((num_tags, num_tags), (num_tags,), (num_tags,))
    for field, array, shape in zip(Constraints._fields, allowed, expected):
        if array.shape != shape:
            raise ValueError(f"CRF allowed.{field} must have shape {shape} for {num_tags} tags, got {array.shape}")
    return allowed


def CRF(num_tags: int, *, allowed: Constraints | None = None, name: str = "crf") -> Layer:
    """Emissions (B, T, K) -> :class:`ChainScores` of a linear-chain CRF over K = ``num_tags`` tags.

    ``allowed`` (e.g. :func:`bio_constraints`) sets the disallowed moves to -inf in the
    output, not in the params, so their params get no gradient. Reads the context
    ``lengths`` (B,), the valid steps of each padded sequence, or ``step_mask`` (B, T), the
    steps to read (all steps without either).
    Params: ``transitions`` (K, K), ``start`` (K,), ``end`` (K,), initialised to zeros: the
    untrained CRF then scores tags as independent per-token softmaxes (within ``allowed``),
    and the emissions' distinct gradients break the symmetry, so no noise is needed.
    Computes in float32 (or the emissions' wider dtype).
    """
    _positive(num_tags, "CRF num_tags")
    if allowed is not None:
        allowed = _checked_constraints(allowed, num_tags)

    def init(key, input_shape):
        if len(input_shape) != 3 or input_shape[-1] != num_tags:
            raise LayerError("CRF", f"expected emissions of shape (B, T, {num_tags}) for its {num_tags} tags, "
                                    f"got {tuple(input_shape)}")
        shapes = {"transitions": (num_tags, num_tags), "start": (num_tags,), "end": (num_tags,)}
        return tuple(input_shape), {field: jnp.zeros(shape, jnp.float32) for field, shape in shapes.items()}

    def apply(params, emissions, *, key=None, train=False, lengths=None, step_mask=None):
        _check_rank("CRF", emissions.shape, 3, "of emissions (B, T, K)")
        _check_last_dim("CRF", emissions.shape, params["transitions"].shape[0])
        _check_float("CRF", emissions)
        lengths = _valid_lengths("CRF", emissions.shape, step_mask, lengths, False)
        dtype = jnp.promote_types(emissions.dtype, jnp.float32)
        scores = {field: params[field].astype(dtype) for field in ("transitions", "start", "end")}
        if allowed is not None:
            scores = {field: jnp.where(getattr(allowed, field), value, -jnp.inf) for field, value in scores.items()}
        mask = jnp.arange(emissions.shape[1]) < lengths[:, None] if step_mask is None else jnp.asarray(step_mask) != 0
        return ChainScores(emissions.astype(dtype), mask=mask, **scores)

    return Layer(init, apply, name, "CRF", reads=("lengths", "step_mask"))


def _logsumexp(x: jax.Array, axis: int) -> jax.Array:
    """log(sum(exp(x))) over ``axis``: -inf where every entry is -inf, and then a 0 gradient, not NaN."""
    top = lax.stop_gradient(jnp.max(x, axis, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0)
    total = jnp.exp(x - top).sum(axis)
    return jnp.where(total > 0, jnp.log(jnp.where(total > 0, total, 1)), -jnp.inf) + top.squeeze(axis)


def _check_tags(where: str, scores: ChainScores, tags) -> None:
    if jnp.shape(tags) != scores.mask.shape:
        raise ValueError(f"{where}: emissions of shape {tuple(scores.emissions.shape)} need tags of shape (B, T) = "
                         f"{tuple(scores.mask.shape)}, got {tuple(jnp.shape(tags))}")
    if not jnp.issubdtype(jnp.asarray(tags).dtype, jnp.integer):
        raise ValueError(f"{where}: tags must be integer tag ids, got dtype {jnp.asarray(tags).dtype}")


def sequence_score(scores: ChainScores, tags: jax.Array) -> jax.Array:
    """The unnormalised score (B,) of ``tags`` (B, T) int, over the valid steps only.

    A move is scored between consecutive valid steps; tags at masked steps are ignored.
    """
    _check_tags("sequence_score", scores, tags)
    mask, steps = scores.mask, jnp.arange(scores.mask.shape[1])
    tags = jnp.where(mask, tags, 0)
    seen = lax.cummax(jnp.where(mask, steps, -1), axis=1)  # the last valid step up to t
    previous = jnp.concatenate([jnp.full_like(seen[:, :1], -1), seen], axis=1)[:, :-1]  # the last one before t
    previous_tags = jnp.take_along_axis(tags, jnp.maximum(previous, 0), axis=1)
    first, last = mask & (previous < 0), mask & (seen == seen.max(axis=1, initial=-1, keepdims=True))
    emitted = jnp.take_along_axis(scores.emissions, tags[..., None], axis=2)[..., 0]
    score = jnp.where(mask, emitted, 0) + jnp.where(first, scores.start[tags], 0) + jnp.where(last, scores.end[tags], 0)
    return jnp.where(mask & ~first, score + scores.transitions[previous_tags, tags], score).sum(axis=1)


def _chain(scores: ChainScores, reduce: Callable) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Scan over time the best (``reduce`` = max) or total (log-sum-exp) score of the tag sequences
    ending in each tag. ``reduce(x (B, K, K)) -> (over the previous tag (B, K), per-step output)``.

    Returns the final scores (B, K), end scores included; whether a sequence had a valid step
    (B,); the per-step outputs stacked over time.
    """
    def step(carry, inputs):
        alpha, started = carry
        emission, valid = inputs
        moved, output = reduce(alpha[:, :, None] + scores.transitions)
        new = jnp.where(started[:, None], moved, scores.start) + emission
        # A masked step keeps alpha: its emission, only ever added to what is dropped, reaches no value or gradient.
        return (jnp.where(valid[:, None], new, alpha), started | valid), output

    batch, _, num_tags = scores.emissions.shape
    start = (jnp.zeros((batch, num_tags), scores.emissions.dtype), jnp.zeros((batch,), bool))
    (alpha, started), outputs = lax.scan(step, start, (scores.emissions.swapaxes(0, 1), scores.mask.T))
    return alpha + scores.end, started, outputs


def log_partition(scores: ChainScores) -> jax.Array:
    """log of the summed exp-scores of every tag sequence (B,), by the forward algorithm; 0 when empty."""
    final, started, _ = _chain(scores, lambda x: (_logsumexp(x, 1), None))
    return jnp.where(started, _logsumexp(final, 1), 0)


def log_likelihood(scores: ChainScores, tags: jax.Array) -> jax.Array:
    """log p(tags) (B,) of ``tags`` (B, T) int: ``sequence_score - log_partition``; 0 when empty."""
    return sequence_score(scores, tags) - log_partition(scores)


def negative_log_likelihood(scores: ChainScores, tags: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """The loss: the batch's summed negative log-likelihood per valid token (a scalar; 0 without any).

    Per token, so its scale is comparable to per-token cross-entropy. ``mask`` (B, T), 0/1 or
    bool, drops the steps where it is 0 besides those outside ``scores.mask``.
    """
    if mask is not None:
        if jnp.shape(mask) != scores.mask.shape:
            raise ValueError(f"negative_log_likelihood: mask must have shape (B, T) = {tuple(scores.mask.shape)}, "
                             f"got {tuple(jnp.shape(mask))}")
        scores = scores._replace(mask=scores.mask & (jnp.asarray(mask) != 0))
    _check_tags("negative_log_likelihood", scores, tags)
    return -log_likelihood(scores, tags).sum() / jnp.maximum(scores.mask.sum(), 1)


def viterbi(scores: ChainScores) -> tuple[jax.Array, jax.Array]:
    """The best tag sequence (B, T) int32 (0 at masked steps) and its score (B,) (0 when empty).

    Max-sum over time with back-pointers, then a reverse scan to read the best path back.
    """
    final, started, pointers = _chain(scores, lambda x: (x.max(1), x.argmax(1).astype(jnp.int32)))

    def back(tag, inputs):
        pointer, valid = inputs  # the best previous tag of each tag (B, K); (B,)
        previous = jnp.take_along_axis(pointer, tag[:, None], axis=1)[:, 0]
        return jnp.where(valid, previous, tag), jnp.where(valid, tag, 0)

    last = final.argmax(1).astype(jnp.int32)
    _, tags = lax.scan(back, last, (pointers, scores.mask.T), reverse=True)
    return tags.T, jnp.where(started, final.max(1), 0)


def marginals(scores: ChainScores) -> jax.Array:
    """p(tag k at step t) (B, T, K) under the CRF, by forward-backward (the gradient of the
    log-partition with respect to the emissions); 0 at masked steps."""
    summed = lambda emissions: log_partition(scores._replace(emissions=emissions)).sum()
    return jax.grad(summed)(scores.emissions)
