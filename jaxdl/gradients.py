"""Looks inside training: how large the loss's gradient is, per layer and per example.

The lecture's vanishing gradients show in :func:`layer_gradient_norms` (a sigmoid network's
first layers get almost none), several networks side by side in :func:`gradient_norm_table`;
:func:`per_example_gradient_norms` finds the examples that pull hardest on the weights (what
DP-SGD clips).
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import devices
from jaxdl.compiler import jit
from jaxdl.core import Layer
from jaxdl.data import dataset_size, eval_batches
from jaxdl.tables import format_table
from jaxdl.train import Batch, forward, per_example_grads, per_example_norms

LossFn = Callable[..., jax.Array]


def layer_gradient_norms(model: Layer, loss_fn: LossFn, params, batch: Batch, *, of: str = "w") -> dict[str, float]:
    """The L2 norm of the loss's gradient (over ``batch``, ``train=False``) with respect to the
    weights (the array named ``of``) of each of the model's layers that has them, in the
    model's order, from the input to the output: ``{"hidden1": ..., ..., "output": ...}``."""
    grads = jax.grad(lambda p: loss_fn(forward(model, p, None, batch)[0], batch["y"], batch.get("mask")))(params)
    return {name: float(jnp.linalg.norm(grads[name][of])) for name, _ in model.children if of in grads.get(name, {})}


def gradient_norm_table(norms: Mapping[str, Mapping[str, float]]) -> str:
    """Several networks' per-layer gradient norms, ``{network: {layer: norm}}`` (each as
    :func:`layer_gradient_norms` gives it, the same layers in the same order), as a table: one
    row per layer (1 = nearest the input), one column per network; then a line per network
    with its first layer's norm over its last one's, ``"sigmoid: layer 1 / layer 13 = 4.51e-08"``."""
    if not norms:
        raise ValueError("gradient_norm_table needs the norms of at least one network")
    layers = [list(by_layer) for by_layer in norms.values()]
    if not layers[0] or any(names != layers[0] for names in layers):
        raise ValueError(f"gradient_norm_table needs the same layers for every network, got "
                         f"{dict(zip(norms, layers))}")
    names = layers[0]
    rows = [(i, name, *(f"{norms[net][name]:.2e}" for net in norms)) for i, name in enumerate(names, 1)]
    table = format_table(("layer", "name", *norms), rows, right=(0, *range(2, 2 + len(norms))))
    ratios = [f"{net}: layer 1 / layer {len(names)} = {by_layer[names[0]] / by_layer[names[-1]]:.2e}"
              for net, by_layer in norms.items()]
    return "\n".join([table, *ratios])


def _norms_and_outputs(model: Layer, loss_fn: LossFn, params, batch: Batch):
    grads, _, outputs = per_example_grads(model, loss_fn, params, batch)
    return per_example_norms(grads), outputs


_norms_and_outputs_jit = jit(_norms_and_outputs, static_argnums=(0, 1))


def per_example_gradient_norms(model: Layer, loss_fn: LossFn, params, data: Batch, *,
                               batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The L2 norm of each example's own loss gradient over all the weights (``train=False``),
    (N,), and the model's outputs for it (N, ...), for every example of ``data`` (a dict of
    arrays with ``"x"`` and ``"y"``), ``batch_size`` examples at a time."""
    parts = devices.fetch([_norms_and_outputs_jit(model, loss_fn, params, batch)
                           for batch in eval_batches(data, batch_size)])
    n = dataset_size(data)  # the last batch's padding dropped
    norms, outputs = (np.concatenate(column)[:n] for column in zip(*parts))
    return norms, outputs
