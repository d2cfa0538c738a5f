"""What the framework comparisons share: flax's and PyTorch's training steps and loops, the report.

Benchmarks run as scripts (``python benchmarks/NAME.py``), which puts this folder
on ``sys.path``: they ``import harness``. The timing itself (a first call, runners
taking turns) is :mod:`jaxdl.timing`.
"""

from __future__ import annotations

import functools
import json
from typing import Callable

import jax
import optax

from jaxdl.tables import format_table
from jaxdl.timing import Runner, first_call, round_robin


def flax_train_step(model, optimizer, compiler_options=None, **apply_kwargs) -> Callable:
    """A flax.linen training step as its examples write it (``jax.jit``, optax, integer labels):
    ``train_step(params, state, opt_state, key, xb, yb) -> (params, state, opt_state, key, loss)``.

    ``state`` holds the model's variable collections other than ``"params"`` (BatchNorm's
    ``"batch_stats"``; ``{}`` for none): they are ``mutable``, the training call updates them.
    ``key``, unless None, feeds the ``"dropout"`` rng: each step splits its own key off it.
    ``apply_kwargs`` go to every ``model.apply`` (``train=True``, say)."""

    @functools.partial(jax.jit, compiler_options=compiler_options)
    def train_step(params, state, opt_state, key, xb, yb):
        rngs = {}
        if key is not None:
            key, rngs["dropout"] = jax.random.split(key)

        def loss_fn(p):
            variables = {"params": p, **state}
            logits, new_state = model.apply(variables, xb, rngs=rngs, mutable=list(state), **apply_kwargs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), new_state

        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, key, loss

    return train_step


def flax_runner(model, variables, optimizer, xs, ys, compiler_options=None, *, key=None,
                **apply_kwargs) -> tuple[Runner, float]:
    """:func:`flax_train_step` over batches ``xs[i]``, ``ys[i]`` already on the device, from
    ``variables`` as ``model.init`` returns them (the ``"params"`` trained, any other collection
    updated by each step), and its first step's seconds. ``key``: the ``"dropout"`` rng's root."""
    train_step = flax_train_step(model, optimizer, compiler_options, **apply_kwargs)
    params = variables["params"]
    state = {name: collection for name, collection in variables.items() if name != "params"}
    opt_state = optimizer.init(params)

    def run_steps(steps):
        nonlocal params, state, opt_state, key
        for i in range(steps):
            params, state, opt_state, key, loss = train_step(params, state, opt_state, key, xs[i], ys[i])
        jax.block_until_ready(loss)

    return first_call(run_steps)


def import_torch(skip: bool = False):
    """The ``torch`` module, or None (with a note saying why its row is skipped)."""
    if skip:
        print("PyTorch skipped (--skip-torch)")
        return None
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: its row is skipped (pip install torch==2.13.0 for the CPU build here)")
        return None
    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads")
    return torch


def torch_train_step(model, optimizer) -> Callable:
    """PyTorch's training step (cross-entropy of integer labels): ``step(xb, yb) -> loss``
    (the loss tensor of the batch, before the update)."""
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        return loss

    return step


def torch_runner(model, optimizer, xs, ys) -> tuple[Runner, float]:
    """:func:`torch_train_step` over batches ``xs[i]``, ``ys[i]``, and its first step's seconds."""
    step = torch_train_step(model, optimizer)

    def run_steps(steps):
        for i in range(steps):
            step(xs[i], ys[i])

    return first_call(run_steps)


def report(setups: dict[str, tuple[Runner, float]], steps: int, repeats: int, batch: int, unit: str, *,
           json_line: bool = True) -> dict:
    """Time ``setups`` round-robin, print the table, then (``json_line``) the JSON line of {jaxdl, flax_linen,
    torch}; return it."""
    rates = round_robin({name: run for name, (run, _) in setups.items()}, steps, repeats, batch)
    rows = [
        (name, f"{rates[name]:,.0f}", f"{first_s:.2f}", f"{rates['jaxdl'] / rates[name]:.2f}x")
        for name, (_, first_s) in setups.items()
    ]
    print(format_table(("framework", unit, "first step s", "jaxdl speed-up"), rows, right=(1, 2, 3)))
    rate = {name: round(rates[name], 1) if name in rates else None for name in ("jaxdl", "flax_linen", "torch")}
    if json_line:
        print(json.dumps(rate))
    return rate
