"""Training throughput of recurrent classifiers in jaxdl, flax.linen and PyTorch, in the same run.

The networks (``--networks``, default all three): ``lstm``, one LSTM layer (input 128,
hidden 256) over 100 time steps; ``gru``, the same with a GRU; ``bilstm2``, two stacked
bidirectional LSTM layers of the same size; each with a dense layer to 10 classes on its
last state; batch 64, softmax cross-entropy, Adam, float32. Data are random sequences
already in memory, all of full length (no padding). Each framework takes one step (for jax:
compilation included), then trains ``--steps`` steps per timed run; timed runs go
round-robin over the frameworks, so a noisy machine's slow spells are shared; the figure
is sequences per second of wall time, the median of ``--repeats`` runs.

For each network it also prints the compile time of jaxdl's training step at 10 and at
1,000 time steps: about equal, since each layer is one loop over time. ``--breakdown``
first times the parts of one LSTM layer's forward and backward pass in jaxdl (fused loop
and JAX's autodiff of ``lax.scan``) and in PyTorch.

PyTorch is optional: install its CPU build (here: ``pip install torch==2.13.0``);
without it (or with ``--skip-torch``) its rows are skipped. The last line printed
is a JSON object of sequences/s per network.

    .venv/bin/python benchmarks/lstm_throughput.py
    .venv/bin/python benchmarks/lstm_throughput.py --networks gru --breakdown
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import harness

import jaxdl as dl
from jaxdl.compiler import compiler_options
from jaxdl.tables import format_table
from jaxdl.timing import round_robin
from jaxdl.models import CELLS

BATCH, TIME, FEATURES, HIDDEN, CLASSES = 64, 100, 128, 256, 10
LR = 1e-3
NETWORKS = {  # name: (cell, stacked layers, bidirectional)
    "lstm": ("lstm", 1, False),
    "gru": ("gru", 1, False),
    "bilstm2": ("lstm", 2, True),
}
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
def jaxdl_step(seed: int, time_steps: int = TIME, network: str = "lstm"):
    """jaxdl's jitted training step and its initial state, for sequences of ``time_steps``."""
    cell, layers, bidirectional = NETWORKS[network]
    model = dl.serial(dl.RNN(CELLS[cell](HIDDEN), layers=layers, bidirectional=bidirectional, output="last"),
                      dl.Dense(CLASSES))
    optimizer = optax.adam(LR)
    _, params = model.init(jax.random.key(seed), (-1, time_steps, FEATURES))
    state = dl.TrainState.create(params, optimizer, jax.random.key(seed + 1))
    return dl.make_train_step(model, dl.softmax_cross_entropy, optimizer, metrics={}), state


def bench_jaxdl(x, y, network: str, args) -> tuple[Callable, float]:
    step, state = jaxdl_step(args.seed, network=network)
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


def compile_seconds(time_steps: int, seed: int, network: str = "lstm") -> float:
    """Seconds jax spends tracing, lowering and compiling jaxdl's step for ``time_steps``."""
    step, state = jaxdl_step(seed, time_steps, network)
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
def bench_flax(x, y, network: str, args) -> tuple[Callable, float]:
    """flax.linen as its examples write it: ``nn.RNN(nn.LSTMCell)`` (``nn.Bidirectional`` of two),
    a plain ``jax.jit``."""
    import flax.linen as nn

    kind, layers, bidirectional = NETWORKS[network]
    cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind]

    class Classifier(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(layers):
                x = (nn.Bidirectional(nn.RNN(cell(HIDDEN)), nn.RNN(cell(HIDDEN))) if bidirectional
                     else nn.RNN(cell(HIDDEN)))(x)  # (N, T, H) or (N, T, 2H)
            # the last state: forward's after the last step, backward's after the first
            last = jnp.concatenate([x[:, -1, :HIDDEN], x[:, 0, HIDDEN:]], axis=-1) if bidirectional else x[:, -1]
            return nn.Dense(CLASSES)(last)

    model = Classifier()
    params = model.init(jax.random.key(args.seed), jnp.zeros((1, TIME, FEATURES)))
    return harness.flax_runner(model, params, optax.adam(LR), jax.device_put(x), jax.device_put(y))


# --------------------------------------------------------------------------- PyTorch
def bench_torch(x, y, network: str, args) -> tuple[Callable, float] | None:
    torch = harness.import_torch(args.skip_torch)
    if torch is None:
        return None
    nn = torch.nn
    torch.manual_seed(args.seed)
    kind, layers, bidirectional = NETWORKS[network]

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](FEATURES, HIDDEN, num_layers=layers, batch_first=True,
                                                              bidirectional=bidirectional)
            self.head = nn.Linear(2 * HIDDEN if bidirectional else HIDDEN, CLASSES)

        def forward(self, x):
            _, state = self.rnn(x)  # the LSTM's (h, c), the GRU's h: each (layers * directions, N, H)
            h = state[0] if kind == "lstm" else state
            return self.head(torch.cat([h[-2], h[-1]], dim=-1) if bidirectional else h[-1])

    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    return harness.torch_runner(model, optimizer, torch.from_numpy(x), torch.from_numpy(y).long())


def breakdown(args) -> None:
    """Print milliseconds per call of the parts of one LSTM layer's pass, (N, T, D) = (64, 100, 128) -> 256."""
    x = jnp.asarray(make_data(1, args.seed)[0][0])
    layers = {fused: dl.RNN(dl.LSTMCell(HIDDEN), output="last", fused=fused) for fused in (True, False)}
    _, params = layers[True].init(jax.random.key(args.seed), x.shape)
    cell = params["layer1"]["forward"]
    h_prev = jnp.ones((TIME, BATCH, HIDDEN))
    d_h_proj = jnp.ones((TIME, BATCH, 4 * HIDDEN))

    def loss(layer):
        return lambda params: jnp.sum(layer.apply(params, x) ** 2)

    def recurrent_matmuls(w_h):  # h_prev @ w_h at each step, as the forward loop does
        return jax.lax.scan(lambda h, _: ((h @ w_h)[:, :HIDDEN], None), h_prev[0], None, TIME)[0]

    def transposed_matmuls(w_h):  # d_h_proj @ w_h.T at each step, each step's input the last one's output
        return jax.lax.scan(lambda d, _: (jnp.tile(d @ w_h.T, 4), None), d_h_proj[0], None, TIME)[0]

    def weight_gradient(inputs, d):  # inputs (T, N, F), d (T, N, G) -> (F, G)
        return inputs.reshape(TIME * BATCH, -1).T @ d.reshape(TIME * BATCH, -1)

    matmul = "jaxdl, matmul alone:"
    calls = {
        f"{matmul} input projection x @ w_i + b": (dl.jit(lambda c: x.reshape(-1, FEATURES) @ c["w_i"] + c["b"]), cell),
        f"{matmul} {TIME} steps of h_prev @ w_h": (dl.jit(recurrent_matmuls), cell["w_h"]),
        f"{matmul} {TIME} steps of d_h_proj @ w_h.T (and a tile)": (dl.jit(transposed_matmuls), cell["w_h"]),
        f"{matmul} w_h's gradient": (dl.jit(weight_gradient), h_prev, d_h_proj),
        f"{matmul} w_i's gradient": (dl.jit(weight_gradient), x.swapaxes(0, 1), d_h_proj),
        "jaxdl: forward": (dl.jit(loss(layers[True])), params),
        "jaxdl: forward + backward, fused loop": (dl.jit(jax.grad(loss(layers[True]))), params),
        "jaxdl: forward + backward, autodiff of lax.scan": (dl.jit(jax.grad(loss(layers[False]))), params),
    }
    runners = {name: _runner(lambda f=f, a=a: f(*a), jax.block_until_ready) for name, (f, *a) in calls.items()}
    torch = harness.import_torch(args.skip_torch)
    if torch is not None:
        torch.manual_seed(args.seed)
        lstm, x_torch = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True), torch.from_numpy(np.array(x))

        def torch_forward():
            with torch.no_grad():
                return lstm(x_torch)[1][0].pow(2).sum()

        def torch_forward_backward():
            lstm.zero_grad()
            lstm(x_torch)[1][0].pow(2).sum().backward()

        runners["torch.nn.LSTM: forward"] = _runner(torch_forward, lambda out: out)
        runners["torch.nn.LSTM: forward + backward"] = _runner(torch_forward_backward, lambda out: out)
    for run in runners.values():
        run(1)  # compile, warm up
    rates = round_robin(runners, 5, args.repeats, 1)
    print(format_table(("LSTM layer, part", "ms per call"), [(name, f"{1e3 / rate:.1f}") for name, rate in
                                                          rates.items()], right=(1,)))


def _runner(call: Callable, wait: Callable) -> Callable:
    def run_steps(steps):
        for _ in range(steps):
            out = call()
        wait(out)

    return run_steps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=15, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per framework (the median is kept)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the initial weights")
    parser.add_argument("--skip-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--networks", nargs="+", choices=tuple(NETWORKS), default=list(NETWORKS),
                        help="the networks to time, each in its own table")
    parser.add_argument("--breakdown", action="store_true",
                        help="first time the parts of one LSTM layer's forward and backward pass")
    args = parser.parse_args(argv)
    x, y = make_data(args.steps, args.seed)
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, jaxdl's XLA options: {compiler_options()}")
    if args.breakdown:
        breakdown(args)
    rates = {}
    for network in args.networks:
        kind, layers, bidirectional = NETWORKS[network]
        print(f"\n{network}: {layers} {'bidirectional ' if bidirectional else ''}{kind.upper()} layer(s) "
              f"{FEATURES} -> {HIDDEN}, {TIME} time steps, batch {BATCH}, {args.steps} steps x {args.repeats}")
        setups = {"jaxdl": bench_jaxdl(x, y, network, args), "flax_linen": bench_flax(x, y, network, args),
                  "torch": bench_torch(x, y, network, args)}
        setups = {name: setup for name, setup in setups.items() if setup is not None}
        short, long = (compile_seconds(steps, args.seed, network) for steps in (10, 1000))
        print(f"jaxdl's training step compiles in {short:.2f} s at 10 time steps, {long:.2f} s at 1,000")
        rates[network] = harness.report(setups, args.steps, args.repeats, BATCH, "sequences/s", json_line=False)
    print(json.dumps(rates))
    return rates

if __name__ == "__main__":
    main()
