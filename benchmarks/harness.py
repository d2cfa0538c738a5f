"""What the framework comparisons share: flax's and PyTorch's training loops, the report.

Benchmarks run as scripts (``python benchmarks/NAME.py``), which puts this folder
on ``sys.path``: they ``import harness``. The timing itself (a first call, runners
taking turns) is :mod:`jaxdl.timing`.
"""

from __future__ import annotations

import functools
import json

import jax
import optax

from jaxdl.tables import format_table
from jaxdl.timing import Runner, first_call, round_robin


def flax_runner(model, params, optimizer, xs, ys, compiler_options=None) -> tuple[Runner, float]:
    """A flax.linen training step as its examples write it (``jax.jit``, optax, integer
    labels) over batches ``xs[i]``, ``ys[i]`` already on the device, and its first step's seconds."""
    opt_state = optimizer.init(params)

    @functools.partial(jax.jit, compiler_options=compiler_options)
    def train_step(params, opt_state, xb, yb):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, xb), yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def run_steps(steps):
        nonlocal params, opt_state
        for i in range(steps):
            params, opt_state, loss = train_step(params, opt_state, xs[i], ys[i])
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


def torch_runner(model, optimizer, xs, ys) -> tuple[Runner, float]:
    """PyTorch's training loop over batches ``xs[i]``, ``ys[i]`` (cross-entropy), and its first step's seconds."""
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()

    def run_steps(steps):
        for i in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xs[i]), ys[i]).backward()
            optimizer.step()

    return first_call(run_steps)


def report(setups: dict[str, tuple[Runner, float]], steps: int, repeats: int, batch: int, unit: str) -> dict:
    """Time ``setups`` round-robin, print the table, then the JSON line of {jaxdl, flax_linen, torch}; return it."""
    rates = round_robin({name: run for name, (run, _) in setups.items()}, steps, repeats, batch)
    rows = [
        (name, f"{rates[name]:,.0f}", f"{first_s:.2f}", f"{rates['jaxdl'] / rates[name]:.2f}x")
        for name, (_, first_s) in setups.items()
    ]
    print(format_table(("framework", unit, "first step s", "jaxdl speed-up"), rows, right=(1, 2, 3)))
    rate = {name: round(rates[name], 1) if name in rates else None for name in ("jaxdl", "flax_linen", "torch")}
    print(json.dumps(rate))
    return rate
