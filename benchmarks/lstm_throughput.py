"""Training throughput of one LSTM (or GRU) classifier in jaxdl, flax.linen and PyTorch, in the same run.

The network: one LSTM layer (``--cell gru``: a GRU) (input 128, hidden 256) over 100
time steps, and a dense layer to 10 classes on its last state; batch 64, softmax cross-entropy,
Adam, float32. Data are random sequences already in memory, all of full length
(no padding). Each framework takes one step (for jax: compilation included),
then trains ``--steps`` steps per timed run; timed runs go round-robin over the
frameworks, so a noisy machine's slow spells are shared; the figure is
sequences per second of wall time, the median of ``--repeats`` runs.

It also prints the compile time of jaxdl's training step at 10 and at 1,000
time steps: about equal, since the layer is one ``lax.scan`` over time.

PyTorch is optional: install its CPU build (here: ``pip install torch==2.13.0``);
without it (or with ``--skip-torch``) that row is skipped. The last line printed
is a JSON object of sequences/s.

    .venv/bin/python benchmarks/lstm_throughput.py
    .venv/bin/python benchmarks/lstm_throughput.py --cell gru
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import harness

import jaxdl as dl
from jaxdl.compiler import compiler_options
from jaxdl.models import CELLS

BATCH, TIME, FEATURES, HIDDEN, CLASSES = 64, 100, 128, 256, 10
LR = 1e-3
COMPILE_EVENTS = (  # what jax records while it traces, lowers and compiles a jitted function
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def make_data(steps: int, seed: int = 0, time_steps: int = TIME):
    """``x`` (steps, BATCH, time_steps, FEATURES) float32 and ``y`` (steps, BATCH) int32."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, BATCH, time_steps, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, (steps, BATCH)).astype(np.int32)
    return x, y


# ----------------------------------------------------------------------------- jaxdl
def jaxdl_step(seed: int, time_steps: int = TIME, cell: str = "lstm"):
    """jaxdl's jitted training step and its initial state, for sequences of ``time_steps``."""
    model = dl.serial(dl.RNN(CELLS[cell](HIDDEN), output="last"), dl.Dense(CLASSES))
    optimizer = optax.adam(LR)
    _, params = model.init(jax.random.key(seed), (-1, time_steps, FEATURES))
    state = dl.TrainState.create(params, optimizer, jax.random.key(seed + 1))
    return dl.make_train_step(model, dl.softmax_cross_entropy, optimizer, metrics={}), state


def bench_jaxdl(x, y, args) -> tuple[Callable, float]:
    step, state = jaxdl_step(args.seed, cell=args.cell)
    batches = [jax.device_put({"x": xb, "y": yb}) for xb, yb in zip(x, y)]
    began = time.perf_counter()
    state, _ = jax.block_until_ready(step(state, batches[0]))
    compile_s = time.perf_counter() - began

    def run_steps(steps):
        nonlocal state
        for i in range(steps):
            state, metrics = step(state, batches[i])
        jax.block_until_ready(metrics)

    return run_steps, compile_s


def compile_seconds(time_steps: int, seed: int, cell: str = "lstm") -> float:
    """Seconds jax spends tracing, lowering and compiling jaxdl's step for ``time_steps``."""
    step, state = jaxdl_step(seed, time_steps, cell)
    x, y = make_data(1, seed, time_steps)
    spent = []

    def listen(event, duration, **_):
        if event in COMPILE_EVENTS:
            spent.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jax.block_until_ready(step(state, {"x": x[0], "y": y[0]}))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return sum(spent)


# ------------------------------------------------------------------------ flax.linen
def bench_flax(x, y, args) -> tuple[Callable, float]:
    """flax.linen as its examples write it: ``nn.RNN(nn.LSTMCell)``, a plain ``jax.jit``."""
    import flax.linen as nn

    cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[args.cell]

    class Classifier(nn.Module):
        @nn.compact
        def __call__(self, x):
            states = nn.RNN(cell(HIDDEN))(x)  # (N, T, H)
            return nn.Dense(CLASSES)(states[:, -1])

    model = Classifier()
    params = model.init(jax.random.key(args.seed), jnp.zeros((1, TIME, FEATURES)))
    return harness.flax_runner(model, params, optax.adam(LR), jax.device_put(x), jax.device_put(y))


# --------------------------------------------------------------------------- PyTorch
def bench_torch(x, y, args) -> tuple[Callable, float] | None:
    torch = harness.import_torch(args.skip_torch)
    if torch is None:
        return None
    nn = torch.nn
    torch.manual_seed(args.seed)

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[args.cell](FEATURES, HIDDEN, batch_first=True)
            self.head = nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            _, state = self.rnn(x)  # the LSTM's (h, c), the GRU's h: each (layers, N, H)
            h = state[0] if args.cell == "lstm" else state
            return self.head(h[-1])

    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    return harness.torch_runner(model, optimizer, torch.from_numpy(x), torch.from_numpy(y).long())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=15, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per framework (the median is kept)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the initial weights")
    parser.add_argument("--skip-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm", help="the recurrent cell")
    args = parser.parse_args(argv)
    x, y = make_data(args.steps, args.seed)
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, jaxdl's XLA options: {compiler_options()}")
    print(f"{args.cell.upper()} {FEATURES} -> {HIDDEN}, {TIME} time steps, batch {BATCH}, {args.steps} steps x {args.repeats}")
    setups = {"jaxdl": bench_jaxdl(x, y, args), "flax_linen": bench_flax(x, y, args), "torch": bench_torch(x, y, args)}
    setups = {name: setup for name, setup in setups.items() if setup is not None}
    short, long = (compile_seconds(steps, args.seed, args.cell) for steps in (10, 1000))
    print(f"jaxdl's training step compiles in {short:.2f} s at 10 time steps, {long:.2f} s at 1,000")
    return harness.report(setups, args.steps, args.repeats, BATCH, "sequences/s")

if __name__ == "__main__":
    main()
