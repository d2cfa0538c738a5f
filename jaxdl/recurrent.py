"""Recurrent networks: cells (simple, LSTM, GRU) scanned over padded batches of sequences.

A :class:`Cell` is a pure step function and its initialiser; :func:`RNN` turns one
into a jaxdl :class:`jaxdl.layers.Layer` that runs it over time with ``lax.scan``
(compile time does not grow with the sequence length), optionally stacked, with
dropout between layers, and bidirectional::

    encoder = RNN(LSTMCell(64), layers=2, bidirectional=True, output="last")
    shape, params = encoder.init(key, (-1, -1, 32))        # (N, T, D) -> (N, 128)
    h = encoder.apply(params, x, lengths=lengths)           # x: (N, T, D) padded

Padding sits at the end of each sequence; the context ``lengths`` (or ``step_mask``)
says where each one ends. At padded steps the inputs are ignored
(they reach neither outputs nor gradients), the state is frozen and the outputs
are zero. The backward direction reads only the valid part of each sequence
backward: ``[a b c PAD PAD]`` is read as ``c b a``, and its outputs are put back
at positions 0..2.

Cell numerics equal flax.linen's ``SimpleCell``, ``LSTMCell`` and ``GRUCell``
given the same weights; their per-gate kernels are concatenated here in flax's
gate order (LSTM: i f g o; GRU: r z n).

Training runs the built-in cells in a fused loop with its own backward pass (as cuDNN
and oneDNN do): the loop back over time computes only the state's gradients, and the
recurrent weights' gradient is one matmul over all steps after it
(:class:`Fused`, ``RNN(fused=False)`` for JAX's own differentiation of the scan).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.nn import initializers

from jaxdl.core import Layer, LayerError, child_keys, raise_if
from jaxdl.layers import Dropout, Initializer, _check_float, _check_last_dim, _check_rank, _fmt, _positive

Carry = Any  # an array (N, H), or a tuple of them (the LSTM's (c, h))


class Fused(NamedTuple):
    """A cell's step in the form :func:`RNN`'s fused loop differentiates by hand.

    The loop computes ``h_proj = recurrent(carry) @ w_h + bias(params)`` (N, G) at each
    step; the cell does the rest, elementwise, and for the backward pass keeps what its
    own derivative needs, as whole (N, G) or (N, H) arrays (XLA's CPU loop runs an
    elementwise fusion over a whole array several times faster than over slices of it).

    Attributes:
      step: ``(carry, x_proj, h_proj, save) -> (carry, h, saved)``; ``saved`` is None
        unless ``save``.
      backward: ``(saved, d_carry, d_h, recur) -> (d_carry_prev, d_x_proj, d_h_proj)``:
        the cotangents of one step, given those of its carry and output; ``recur(d)`` is
        ``d @ w_h.T``, the path back through the recurrent matmul. ``d_x_proj`` None
        means it equals ``d_h_proj``.
      recurrent: ``carry -> h_prev`` (N, H), the part of the carry the matmul reads.
      bias: ``params -> (G,)`` added to ``h_proj``, or None.
    """

    step: Callable
    backward: Callable
    recurrent: Callable[[Carry], jax.Array]
    bias: Callable[[dict], jax.Array | None]


class Cell(NamedTuple):
    """A recurrent cell: pure functions, its state size and its type.

    Attributes:
      init: ``(key, input_dim) -> params``, a dict holding at least ``w_i``
        (D, G), ``w_h`` (H, G) and ``b`` (G,): the layer projects the inputs of all
        time steps at once with ``x @ w_i + b`` before the loop over time.
      apply: ``(params, carry, x_proj) -> (carry, h)``: one time step, given the
        projected input ``x_proj`` (N, G); ``h`` is the output (N, hidden).
      zero_carry: ``(batch, dtype) -> carry``: the state before the first step.
      hidden: the size H of the output ``h``.
      kind: the cell's type, e.g. ``"LSTM"``.
      fused: the step with its own derivative (the built-in cells have one), for
        :func:`RNN`'s fused loop; None: ``RNN`` differentiates ``apply`` with JAX.
    """

    init: Callable[[jax.Array, int], dict]
    apply: Callable[[dict, Carry, jax.Array], tuple[Carry, jax.Array]]
    zero_carry: Callable[[int, Any], Carry]
    hidden: int
    kind: str
    fused: Fused | None = None


def _fused_cell(init, fused: Fused, zero_carry, hidden: int, kind: str) -> Cell:
    """A :class:`Cell` whose ``apply`` is its fused step: one definition of its numerics."""

    def apply(params, carry, x_proj):
        h_proj = _recurrent_projection(fused.recurrent(carry), params["w_h"], fused.bias(params))
        carry, h, _ = fused.step(carry, x_proj, h_proj, False)
        return carry, h

    return Cell(init, apply, zero_carry, hidden, kind, fused)


def _recurrent_projection(h_prev: jax.Array, w_h: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``h_prev @ w_h`` (N, G), plus the cell's recurrent ``bias`` (G,) if it has one."""
    h_proj = h_prev @ w_h
    return h_proj if bias is None else h_proj + bias


def _gate_params(key, input_dim, hidden, gates, kernel_init, recurrent_init, bias_init) -> dict:
    """``w_i`` (D, gates * H), ``w_h`` (H, gates * H), ``b`` (gates * H,).

    Each gate's (D, H) and (H, H) block is initialised on its own, as flax's
    per-gate Dense layers are: an orthogonal ``recurrent_init`` makes every
    gate's recurrent map orthogonal, not only the concatenation.
    """

    def blocks(init, key, rows):
        return jnp.concatenate([init(k, (rows, hidden)) for k in jax.random.split(key, gates)], axis=1)

    input_key, recurrent_key, bias_key = jax.random.split(key, 3)
    return {
        "w_i": blocks(kernel_init, input_key, input_dim),
        "w_h": blocks(recurrent_init, recurrent_key, hidden),
        "b": bias_init(bias_key, (gates * hidden,)),
    }


def _zero_state(hidden: int):
    return lambda batch, dtype: jnp.zeros((batch, hidden), dtype)


def _identity(h):
    return h


def _no_bias(params):
    return None


def _tile(x: jax.Array, times: int) -> jax.Array:
    """(N, H) -> (N, times * H): ``x`` repeated along its last axis, as a broadcast (no concatenate)."""
    n, hidden = x.shape
    return jnp.broadcast_to(x[:, None, :], (n, times, hidden)).reshape(n, times * hidden)


def _block_mask(hidden: int, gates: int, block: int) -> jax.Array:
    """(gates * H,) bool: true on gate ``block``'s H columns."""
    return jnp.arange(gates * hidden) // hidden == block


def SimpleCell(
    hidden: int,
    *,
    activation: Callable[[jax.Array], jax.Array] = jnp.tanh,
    kernel_init: Initializer = initializers.lecun_normal(),
    recurrent_init: Initializer = initializers.orthogonal(),
    bias_init: Initializer = initializers.zeros,
) -> Cell:
    """Elman cell: ``h' = activation(x @ w_i + b + h @ w_h)``.

    Params: ``w_i`` (D, H), ``w_h`` (H, H), ``b`` (H,). Carry: ``h`` (N, H).
    """
    _positive(hidden, "SimpleCell hidden")

    def init(key, input_dim):
        return _gate_params(key, input_dim, hidden, 1, kernel_init, recurrent_init, bias_init)

    def step(h, x_proj, h_proj, save):
        pre = x_proj + h_proj
        h = activation(pre)
        return h, h, pre if save else None

    def backward(pre, d_carry, d_h, recur):
        d_pre = jax.vjp(activation, pre)[1](d_carry + d_h)[0]
        return recur(d_pre), None, d_pre

    return _fused_cell(init, Fused(step, backward, _identity, _no_bias), _zero_state(hidden), hidden, "SimpleRNN")


def LSTMCell(
    hidden: int,
    *,
    kernel_init: Initializer = initializers.lecun_normal(),
    recurrent_init: Initializer = initializers.orthogonal(),
    bias_init: Initializer = initializers.zeros,
) -> Cell:
    """Long short-term memory, as flax's ``LSTMCell``: gates i, f, g, o of
    ``x @ w_i + b + h @ w_h``; ``c' = f * c + i * g``, ``h' = o * tanh(c')``.

    Params: ``w_i`` (D, 4H), ``w_h`` (H, 4H), ``b`` (4H,), gates in the order
    i f g o. Carry: ``(c, h)``, each (N, H).
    """
    _positive(hidden, "LSTMCell hidden")
    h1, h2, h3 = hidden, 2 * hidden, 3 * hidden

    def init(key, input_dim):
        return _gate_params(key, input_dim, hidden, 4, kernel_init, recurrent_init, bias_init)

    def step(carry, x_proj, h_proj, save):
        c_prev = carry[0]
        pre = x_proj + h_proj
        sigmoid, tanh = jax.nn.sigmoid(pre), jnp.tanh(pre)  # each over all gates: see Fused
        i, f, g, o = sigmoid[:, :h1], sigmoid[:, h1:h2], tanh[:, h2:h3], sigmoid[:, h3:]
        c = f * c_prev + i * g
        tanh_c = jnp.tanh(c)
        h = o * tanh_c
        saved = None
        if save:  # d pre = [dc, dc, dc, dh] * gate_terms
            values = jnp.concatenate([g, c_prev, i, tanh_c], axis=-1)
            slopes = jnp.where(_block_mask(hidden, 4, 2), 1 - tanh * tanh, sigmoid * (1 - sigmoid))
            saved = (values * slopes, o * (1 - tanh_c * tanh_c), f)
        return (c, h), h, saved

    def backward(saved, d_carry, d_h, recur):
        gate_terms, d_c_per_d_h, f = saved
        d_c_next, d_h_next = d_carry
        d_h = d_h + d_h_next
        d_c = d_c_next + d_h * d_c_per_d_h
        d_pre = jnp.where(_block_mask(hidden, 4, 3), _tile(d_h, 4), _tile(d_c, 4)) * gate_terms
        return (d_c * f, recur(d_pre)), None, d_pre

    def zero_carry(batch, dtype):
        return (jnp.zeros((batch, hidden), dtype), jnp.zeros((batch, hidden), dtype))

    return _fused_cell(init, Fused(step, backward, lambda carry: carry[1], _no_bias), zero_carry, hidden, "LSTM")


def GRUCell(
    hidden: int,
    *,
    kernel_init: Initializer = initializers.lecun_normal(),
    recurrent_init: Initializer = initializers.orthogonal(),
    bias_init: Initializer = initializers.zeros,
) -> Cell:
    """Gated recurrent unit, as flax's ``GRUCell``::

        r, z = sigmoid(x @ w_i[r, z] + b[r, z] + h @ w_h[r, z])
        n = tanh(x @ w_i[n] + b[n] + r * (h @ w_h[n] + b_hn))
        h' = (1 - z) * n + z * h

    Params: ``w_i`` (D, 3H), ``w_h`` (H, 3H), ``b`` (3H,), gates in the order
    r z n, and ``b_hn`` (H,), the bias inside the reset gate. Carry: ``h`` (N, H).
    """
    _positive(hidden, "GRUCell hidden")
    h1, h2 = hidden, 2 * hidden

    def init(key, input_dim):
        gates_key, bias_key = jax.random.split(key)
        params = _gate_params(gates_key, input_dim, hidden, 3, kernel_init, recurrent_init, bias_init)
        return {**params, "b_hn": bias_init(bias_key, (hidden,))}

    def bias(params):  # b_hn joins h @ w_h[n]; r and z get + 0
        return jnp.concatenate([jnp.zeros((h2,), params["b_hn"].dtype), params["b_hn"]])

    def step(h_prev, x_proj, h_proj, save):
        sigmoid = jax.nn.sigmoid(x_proj + h_proj)  # over all gates: see Fused
        r, z = sigmoid[:, :h1], sigmoid[:, h1:h2]
        h_proj_n = h_proj[:, h2:]
        n = jnp.tanh(x_proj[:, h2:] + r * h_proj_n)
        h = (1.0 - z) * n + z * h_prev
        saved = None
        if save:  # d x_proj = [d pre_n, d h, d pre_n] * x_terms; d h_proj: the same with r for the last 1
            slopes = sigmoid[:, :h2] * (1 - sigmoid[:, :h2])
            rz_terms = jnp.concatenate([h_proj_n, h_prev - n], axis=-1) * slopes
            ones = jnp.ones_like(n)
            saved = (jnp.concatenate([rz_terms, ones], axis=-1), jnp.concatenate([rz_terms, r], axis=-1),
                     (1.0 - z) * (1 - n * n), z)
        return h, h, saved

    def backward(saved, d_carry, d_h, recur):
        x_terms, h_terms, d_pre_n_per_d_h, z = saved
        d_h = d_h + d_carry
        d_pre_n = d_h * d_pre_n_per_d_h
        d_gates = jnp.where(_block_mask(hidden, 3, 1), _tile(d_h, 3), _tile(d_pre_n, 3))
        d_h_proj = d_gates * h_terms
        return d_h * z + recur(d_h_proj), d_gates * x_terms, d_h_proj

    return _fused_cell(init, Fused(step, backward, _identity, bias), _zero_state(hidden), hidden, "GRU")


# ------------------------------------------------------------------------ over time
def reverse_valid(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverse the first ``lengths[n]`` steps of each sequence; padding stays in place.

    (N, T, ...) -> (N, T, ...): ``[a b c PAD PAD]`` -> ``[c b a PAD PAD]``.
    Its own inverse. ``lengths`` (N,) int, each in [0, T].
    """
    steps = jnp.arange(x.shape[1])
    lengths = lengths[:, None]
    index = jnp.where(steps < lengths, lengths - 1 - steps, steps)  # (N, T)
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def _scan(cell: Cell, params: dict, x: jax.Array, valid: jax.Array, unroll: int,
          carry: Carry, fused: bool) -> tuple[jax.Array, jax.Array, Carry]:
    """Run ``cell`` over (N, T, D) from ``carry``: outputs (N, T, H), zero at padded steps,
    the last valid output (N, H), zero for an empty sequence, and the carry after the
    last valid step.

    The inputs of all steps are projected in one matmul, time-major (T, N, G):
    the (N, T, D) inputs are transposed, not their larger projection. The loop over
    time does only the recurrent matmul and the gates; at a padded step the state is
    kept. With ``fused`` and a cell that has a :class:`Fused` step, the loop is
    :func:`_fused_loop`; otherwise JAX differentiates ``lax.scan`` of ``cell.apply``,
    each step keeping only its matmul's output for the backward pass.
    """
    n, t, d = x.shape
    # One 2-D matmul: the gradient of w_i is then one too, without a transposed copy of d x_proj
    gates = params["w_i"].shape[1]
    x_proj = (x.swapaxes(0, 1).reshape(t * n, d) @ params["w_i"]).reshape(t, n, gates) + params["b"]  # (T, N, G)
    carry = jax.tree.map(lambda c: c.astype(x_proj.dtype), carry)
    if fused and cell.fused is not None:
        bias = cell.fused.bias(params)
        outputs, last, carry = _fused_loop(cell.fused, unroll, params["w_h"], bias, x_proj, valid.T, carry)
        return outputs.swapaxes(0, 1), last, carry

    def step(state, inputs):
        x_t, valid_t = inputs
        valid_t = valid_t[:, None]
        carry, h = cell.apply(params, state[0], x_t)
        state = _keep_where(valid_t, (carry, h), state)
        return state, jnp.where(valid_t, h, 0)

    step = jax.checkpoint(step, prevent_cse=False, policy=jax.checkpoint_policies.dots_saveable)
    start = (carry, jnp.zeros((x.shape[0], cell.hidden), x_proj.dtype))
    (carry, last), outputs = lax.scan(step, start, (x_proj, valid.T), unroll=unroll)
    return outputs.swapaxes(0, 1), last, carry


def _keep_where(valid_t: jax.Array, new, old):
    """``new`` where the step is valid (N, 1), else ``old``, leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(valid_t, a, b), new, old)


def _fused_forward(fused: Fused, unroll: int, w_h, bias, x_proj, valid, carry, save: bool):
    """The fused loop's forward pass over (T, N, G); with ``save``, also each step's
    ``h_prev`` (T, N, H) and the cell's saved arrays."""

    def step(state, inputs):
        carry, last = state
        x_t, valid_t = inputs
        valid_t = valid_t[:, None]
        h_prev = fused.recurrent(carry)
        new_carry, h, saved = fused.step(carry, x_t, _recurrent_projection(h_prev, w_h, bias), save)
        state = _keep_where(valid_t, (new_carry, h), (carry, last))
        return state, (jnp.where(valid_t, h, 0), (h_prev, saved) if save else None)

    start = (carry, jnp.zeros_like(fused.recurrent(carry)))
    (carry, last), (outputs, residuals) = lax.scan(step, start, (x_proj, valid), unroll=unroll)
    return (outputs, last, carry), residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_loop(fused: Fused, unroll: int, w_h, bias, x_proj, valid, carry):
    """The loop over time of a cell with a :class:`Fused` step: (T, N, G) projected inputs
    -> outputs (T, N, H), the last valid output (N, H) and the final carry.

    Its backward pass runs only the recurrence of the state's gradients over time
    (``d_h_proj @ w_h.T`` and the cell's elementwise derivative at each step) and
    computes the recurrent weights' gradient after the loop, as one matmul over all
    T * N rows: ``h_prev^T @ d_h_proj``, as fused RNN libraries (cuDNN, oneDNN) do.
    """
    return _fused_forward(fused, unroll, w_h, bias, x_proj, valid, carry, False)[0]


def _fused_loop_forward(fused, unroll, w_h, bias, x_proj, valid, carry):
    outputs, (h_prev, saved) = _fused_forward(fused, unroll, w_h, bias, x_proj, valid, carry, True)
    return outputs, (w_h, bias, valid, h_prev, saved)


def _fused_loop_backward(fused, unroll, residuals, cotangents):
    w_h, bias, valid, h_prev, saved = residuals
    d_outputs, d_last, d_carry = cotangents
    w_h_t = w_h.T

    def step(state, inputs):
        d_carry, d_last = state
        valid_t, d_output, saved_t = inputs
        valid_t = valid_t[:, None]
        d_carry_prev, d_x, d_h_proj = fused.backward(saved_t, d_carry, d_output + d_last,
                                                     lambda d: d @ w_h_t)
        d_carry = _keep_where(valid_t, d_carry_prev, d_carry)
        d_last = jnp.where(valid_t, 0, d_last)
        d_h_proj = jnp.where(valid_t, d_h_proj, 0)
        return (d_carry, d_last), (d_h_proj,) if d_x is None else (d_h_proj, jnp.where(valid_t, d_x, 0))

    (d_carry, _), d_projections = lax.scan(
        step, (d_carry, d_last), (valid, d_outputs, saved), reverse=True, unroll=unroll)
    d_h_proj, d_x_proj = d_projections[0], d_projections[-1]  # the same array unless the cell tells them apart
    t, n, g = d_h_proj.shape
    d_w_h = (h_prev.reshape(t * n, w_h.shape[0]).T @ d_h_proj.reshape(t * n, g)).astype(w_h.dtype)
    d_bias = None if bias is None else d_h_proj.sum(axis=(0, 1)).astype(bias.dtype)
    return d_w_h, d_bias, d_x_proj, None, d_carry


_fused_loop.defvjp(_fused_loop_forward, _fused_loop_backward)


def _negative_lengths(lowest) -> LayerError:
    return LayerError("RNN", f"lengths must be >= 0, got {lowest}: a negative length is a bug in the caller "
                             "(lengths count the valid steps of each padded sequence)")


def _valid_lengths(kind: str, shape, step_mask, lengths, needed: bool) -> jax.Array:
    """The number of valid steps of each sequence (N,), from ``step_mask`` or ``lengths``."""
    n, t, _ = shape
    if step_mask is not None and lengths is not None:
        raise LayerError(kind, "got both step_mask and lengths: give one of them")
    if step_mask is not None:
        if jnp.shape(step_mask) != (n, t):
            expected = f"(N, T) = {_fmt((n, t))} for an input of shape {_fmt(shape)}"
            raise LayerError(kind, f"step_mask must be {expected}, got {_fmt(jnp.shape(step_mask))}")
        return jnp.count_nonzero(step_mask, axis=1)
    if lengths is None:
        if needed:
            raise LayerError(kind, "reads padded sequences and needs to know where each one ends: give "
                                   "lengths= (N,), the valid steps of each (Buckets batches hold them), or step_mask=")
        return jnp.full((n,), t)
    if jnp.shape(lengths) != (n,):
        expected = f"(N,) = ({n},) for an input of shape {_fmt(shape)}"
        raise LayerError(kind, f"lengths must be {expected}, got {_fmt(jnp.shape(lengths))}")
    if not jnp.issubdtype(jnp.asarray(lengths).dtype, jnp.integer):
        raise LayerError(kind, f"lengths must be integers, got dtype {jnp.asarray(lengths).dtype}")
    if n:
        raise_if(lambda lowest: lowest < 0, _negative_lengths, jnp.min(lengths))
    return jnp.minimum(lengths, t)


def _select_output(output: str, sequence, last, valid, lengths) -> jax.Array:
    """The output the layer was built for, from the top layer's (N, T, F) and (N, F)."""
    if output == "sequence":
        return sequence
    if output == "last":
        return last
    if output == "mean":  # padded steps are zero: the sum is over valid steps
        return sequence.sum(axis=1) / jnp.maximum(lengths, 1)[:, None].astype(sequence.dtype)
    largest = jnp.max(jnp.where(valid[..., None], sequence, -jnp.inf), axis=1, initial=-jnp.inf)
    return jnp.where((lengths > 0)[:, None], largest, 0)


OUTPUTS = ("sequence", "last", "mean", "max")
MERGES = {"concat": lambda a, b: jnp.concatenate([a, b], axis=-1), "sum": jnp.add}


def RNN(
    cell: Cell,
    *,
    layers: int = 1,
    bidirectional: bool = False,
    merge: str = "concat",
    dropout: float = 0.0,
    output: str = "sequence",
    unroll: int = 1,
    fused: bool = True,
    stream: bool = False,
    needs_lengths: bool = False,
    name: str | None = None,
) -> Layer:
    """Run ``cell`` over padded batches of sequences: (N, T, D) -> (N, T, F) or (N, F).

    ``apply(params, x, *, lengths=None, step_mask=None, key=None, train=False)``: the
    context ``lengths`` (N,) int (clipped to T; a negative one is an error) or
    ``step_mask`` (N, T) (bool or 0/1, true on a prefix of each row: padding at the end;
    only its row sums are used) says which steps are valid; with neither, all are (or,
    with ``needs_lengths``, it is an error: a model of padded batches must not read the
    padding by mistake). A batch's ``"mask"`` column weights the loss: it is not this.

    With ``stream=True`` the layer reads a long sequence in pieces, or one step at a time
    (to generate text): it keeps each layer's carry as its state, starts every call from
    the state it is given and returns the carry after the call's last valid step::

        shape, params, state = rnn.init(key, (1, 1, D))     # state: the zero carry of 1 sequence
        for x_t in steps:                                    # x_t (1, 1, D)
            h, state = rnn.apply(params, x_t, state=state)

    Its params are those of the same RNN without ``stream``: train one, run the other.

    Args:
      cell: the step, e.g. ``LSTMCell(64)``; each layer and direction has its own weights.
      layers: cells stacked on each other; layer k + 1 reads the outputs of layer k.
      bidirectional: also read each sequence backward (its valid part only).
      merge: how the two directions combine: ``"concat"`` (F = 2H) or ``"sum"`` (F = H).
      dropout: the rate of dropout between layers, applied when ``train=True``
        (which then needs a ``key``).
      output: ``"sequence"``: every step's state (N, T, F), zero at padded steps;
        ``"last"``: the state after the last valid step (N, F) (for the backward
        direction: after reading back to the first step); ``"mean"`` / ``"max"``:
        the states pooled over valid steps (N, F). An empty sequence gives zeros.
      unroll: time steps per iteration of the loop over time (``lax.scan``'s
        ``unroll``): the same results; more can run faster and compiles longer
        (on a 2-core CPU, 2 made an LSTM's training step up to 5% faster).
      fused: run a built-in cell's loop with its own backward pass, which computes the
        recurrent weights' gradient after the loop over time, in one matmul (faster;
        gradients equal JAX's within float rounding). It supports reverse-mode
        differentiation (``grad``, also of a gradient) but not forward-mode (``jax.jvp``,
        ``jax.jacfwd``, ``jax.hessian``): for those pass ``fused=False``, which lets JAX
        differentiate ``lax.scan`` of ``cell.apply``, as it does for a cell of your own.
      stream: keep the carry between calls as the layer's state (forward only: a
        bidirectional layer needs the whole sequence). ``init`` needs the batch size.
      needs_lengths: refuse a call without ``lengths`` or ``step_mask``.
      name: the layer's name in a composite (default: its kind in lower case).

    Params: ``{"layer1": {"forward": cell params, "backward": ...}, "layer2": ...}``;
    state (``stream``): ``{"layer1": {"forward": carry}, ...}``.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"RNN needs a Cell such as LSTMCell(64), got {cell!r:.80}")
    _positive(layers, "RNN layers")
    _positive(unroll, "RNN unroll")
    if merge not in MERGES:
        raise ValueError(f"RNN merge must be one of {tuple(MERGES)}, got {merge!r}")
    if output not in OUTPUTS:
        raise ValueError(f"RNN output must be one of {OUTPUTS}, got {output!r}")
    if stream and bidirectional:
        raise ValueError("RNN stream reads forward only: a bidirectional layer needs the whole sequence")
    between_layers = Dropout(dropout)
    kind = ("Bi" if bidirectional else "") + cell.kind
    directions = ("forward", "backward") if bidirectional else ("forward",)
    features = 2 * cell.hidden if bidirectional and merge == "concat" else cell.hidden
    names = [f"layer{layer}" for layer in range(1, layers + 1)]

    def init(key, input_shape):
        _check_rank(kind, input_shape, 3, "(N, T, D)")
        n, t, size = input_shape
        if size <= 0:
            raise LayerError(kind, f"needs a known feature axis D, got input shape {_fmt(input_shape)}")
        params = {}
        for name, layer_key in zip(names, jax.random.split(key, layers)):
            keys = jax.random.split(layer_key, len(directions))
            params[name] = {d: cell.init(k, size) for d, k in zip(directions, keys)}
            size = features
        shape = (n, t, features) if output == "sequence" else (n, features)
        if not stream:
            return shape, params
        if n <= 0:
            raise LayerError(kind, f"stream keeps one carry per sequence: init needs the batch size, e.g. "
                                   f"(1, T, D); got input shape {_fmt(input_shape)}")
        return shape, params, {name: {"forward": cell.zero_carry(n, jnp.float32)} for name in names}

    def run_layer(params, x, valid, lengths, carry):
        forward, last, carry = _scan(cell, params["forward"], x, valid, unroll, carry, fused)
        if not bidirectional:
            return forward, last, carry
        zero = cell.zero_carry(x.shape[0], x.dtype)
        backward, first, _ = _scan(cell, params["backward"], reverse_valid(x, lengths), valid, unroll, zero,
                                  fused)
        combine = MERGES[merge]
        return combine(forward, reverse_valid(backward, lengths)), combine(last, first), None

    def run(params, x, state, step_mask, lengths, key, train):
        _check_rank(kind, x.shape, 3, "(N, T, D)")
        _check_last_dim(kind, x.shape, params["layer1"]["forward"]["w_i"].shape[0])
        _check_float(kind, x)
        lengths = _valid_lengths(kind, x.shape, step_mask, lengths, needs_lengths)
        if train and dropout > 0 and layers > 1 and key is None:
            raise LayerError(
                kind, "train=True with dropout needs a random key: call apply(params, x, key=key, train=True)"
            )
        valid = jnp.arange(x.shape[1]) < lengths[:, None]  # (N, T)
        # Zero, not garbage, at padded steps: nothing there can reach a gradient (not even NaN * 0).
        x = jnp.where(valid[..., None], x, 0)
        carries = {}
        for i, (name, dropout_key) in enumerate(zip(names, [None, *child_keys(key, layers - 1)])):
            if i:
                x = between_layers.apply({}, x, key=dropout_key, train=train)
            start = state[name]["forward"] if stream else cell.zero_carry(x.shape[0], x.dtype)
            x, last, carry = run_layer(params[name], x, valid, lengths, start)
            if stream:  # the carry in the state's own dtype, also after a bfloat16 call
                carries[name] = {"forward": jax.tree.map(lambda new, old: new.astype(old.dtype), carry, start)}
        return _select_output(output, x, last, valid, lengths), carries

    if stream:
        def apply(params, x, *, state, step_mask=None, lengths=None, key=None, train=False):
            if set(state) != set(names):
                raise LayerError(kind, f"the state given holds {sorted(state)}, not this layer's {names}")
            carried = jax.tree.leaves(state)[0].shape[0]
            if x.ndim and x.shape[0] != carried:
                raise LayerError(kind, f"the state carries {carried} sequences (the batch size init was given), "
                                       f"got a batch of {x.shape[0]}: init the state for this batch size")
            return run(params, x, state, step_mask, lengths, key, train)
    else:
        def apply(params, x, *, step_mask=None, lengths=None, key=None, train=False):
            return run(params, x, None, step_mask, lengths, key, train)[0]

    return Layer(init, apply, name or kind.lower(), kind, stateful=stream, reads=("lengths", "step_mask"))


def AttentionPool(hidden: int, *, kernel_init: Initializer = initializers.lecun_normal(),
                  name: str = "attentionpool") -> Layer:
    """A sequence (N, T, F) pooled into (N, F) by learned attention over its valid steps.

    Each step's state ``h_t`` scores ``v . tanh(h_t W + b)`` (a small MLP of ``hidden``
    units); the weights are the softmax of the scores over the valid steps (padding gets
    none) and the output is the weighted sum of the states: a sentence vector that leans
    on the words that matter. An empty sequence gives zeros. Reads ``lengths`` (N,) or
    ``step_mask`` (N, T), as :func:`RNN` does (without either, every step is valid).
    Params: ``w`` (F, hidden), ``b`` (hidden,), ``v`` (hidden,).
    """
    _positive(hidden, "AttentionPool hidden")

    def init(key, input_shape):
        _check_rank("AttentionPool", input_shape, 3, "(N, T, F)")
        if input_shape[-1] <= 0:
            raise LayerError("AttentionPool", f"needs a known last axis, got input shape {_fmt(input_shape)}")
        w_key, v_key = jax.random.split(key)
        features = input_shape[-1]
        return (input_shape[0], features), {"w": kernel_init(w_key, (features, hidden)), "b": jnp.zeros((hidden,)),
                                            "v": kernel_init(v_key, (hidden, 1))[:, 0]}

    def apply(params, x, *, key=None, train=False, lengths=None, step_mask=None):
        _check_rank("AttentionPool", x.shape, 3, "(N, T, F)")
        _check_last_dim("AttentionPool", x.shape, params["w"].shape[0])
        _check_float("AttentionPool", x)
        lengths = _valid_lengths("AttentionPool", x.shape, step_mask, lengths, False)
        valid = jnp.arange(x.shape[1]) < lengths[:, None]  # (N, T)
        x = jnp.where(valid[..., None], x, 0)
        scores = jnp.tanh(x @ params["w"] + params["b"]) @ params["v"]  # (N, T)
        # A large finite floor, not -inf: an empty sequence gets uniform weights (over zeros), not NaN.
        weights = jax.nn.softmax(jnp.where(valid, scores, jnp.finfo(scores.dtype).min / 2), axis=1)
        return jnp.einsum("nt,ntf->nf", weights, x)

    return Layer(init, apply, name, "AttentionPool", reads=("lengths", "step_mask"))
