"""Training throughput of the MNIST CNN on meshes of 1, 2, 4 and 8 devices, data-parallel.

The network: ``jaxdl.models.cnn(10)`` with its defaults (conv32 -> ReLU -> maxpool
-> conv64 -> ReLU -> maxpool -> dense128 -> ReLU -> dropout 0.5 -> dense10, what
experiments/mnist_cnn.py trains, without its random shifts), softmax
cross-entropy, Adam, on 28x28x1 images, a global batch of 128. Data-parallel the
``jaxdl.devices`` way: each batch is split over the mesh's "data" axis, the
training state replicated; the jitted step is the same on every mesh. Two more
rows, each on 1 device: bfloat16 compute (``jaxdl.precision.mixed_precision``)
against float32, and ``--steps-per-call`` steps per jitted call
(``make_multi_step``: a ``lax.scan`` over batches gathered on the device) against
one step per call.

Data are random images already on the device(s) (the input pipeline is not
measured). Each configuration (``jaxdl.timing.train_step_runner``) makes one first
call (compilation included; its seconds are reported), then trains ``--steps``
steps per timed run; timed runs go round-robin over the configurations
(``jaxdl.timing.round_robin``), so a noisy machine's slow spells are shared;
the figure is images per second of wall time, the median of ``--repeats`` runs,
and its ratio to the 1-device float32 row. The last line
printed is a JSON object.

On CPU the devices are simulated: before JAX starts, this script appends
``--xla_force_host_platform_device_count=8`` to ``XLA_FLAGS`` (unless a count is
already set there, or ``JAX_PLATFORMS`` names no CPU; ``jaxdl.devices.simulate_cpu_devices``).
The simulated devices share the machine's cores: on a 2-core CPU, 8 "devices" run on the same 2 cores, so the
table is a check that sharding works and a measure of what it costs (partitioned
convolutions, the all-reduce of the gradients, more dispatch), not a speed-up
claim. (A gain from 1 to 2 simulated devices there shows only what the cores
leave idle when one device runs the step, not what a second device would add.)
The CPU rows of the other two comparisons say little about a GPU either: XLA:CPU
runs convolutions inside a loop slowly (jax-ml/jax#12868, docs/results.md), so
there the many-steps row uses 10 steps per call (50 on GPU/TPU) and shows that
slowness, and bfloat16 may well be slower than float32. The flag only concerns
XLA's CPU backend; on a GPU or TPU machine the same script runs on the real
devices, and on a one-GPU machine the 1-device rows are the figures that matter.

Defaults: 20 steps per timed run on CPU, 500 on GPU/TPU; 3 repeats. On a 2-core
CPU shared with other work (load 6-12) the whole run took 2.4-3.3 minutes (2.2
minutes of CPU time), most of it in the 10-steps-per-call row.

    .venv/bin/python benchmarks/scaling.py
    .venv/bin/python benchmarks/scaling.py --devices 1,8 --steps 100 --repeats 5 --steps-per-call 0
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np
import optax

import jaxdl as dl
from jaxdl import devices, timing
from jaxdl.compiler import compiler_options
from jaxdl.tables import format_table

CLASSES, SHAPE = 10, (28, 28, 1)
LR = 2e-3  # experiments/mnist_cnn.py's peak learning rate (its cosine schedule is left out)
BASELINE = "float32 x1"
# Defaults: the whole run in about 3 minutes on a 2-core CPU (timing.default_steps: 20 steps per timed run
# there, 500 on GPU/TPU), where many steps per call run 20x slower than one (jax-ml/jax#12868,
# docs/results.md), hence fewer of them there.
CPU_STEPS_PER_CALL, ACCELERATOR_STEPS_PER_CALL = 10, 50


def device_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected device counts like 1,2,4,8; got {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"device counts must be positive; got {text!r}")
    return counts


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=device_counts, default=[1, 2, 4, 8],
                        help="mesh sizes of the data-parallel float32 rows (1, the baseline, is always run)")
    parser.add_argument("--batch", type=int, default=128, help="global batch size (a multiple of every mesh size)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per timed run, a multiple of --steps-per-call "
                        f"(default: {timing.CPU_STEPS} on CPU, {timing.ACCELERATOR_STEPS} on GPU/TPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (the median is kept)")
    parser.add_argument("--steps-per-call", type=int, default=None,
                        help="steps per jitted call of the many-steps-per-call row, 0 for no such row "
                        f"(default: {CPU_STEPS_PER_CALL} on CPU, where they run slowly, {ACCELERATOR_STEPS_PER_CALL} "
                        "on GPU/TPU)")
    parser.add_argument("--skip-bfloat16", action="store_true", help="leave out the bfloat16 row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cpu = jax.default_backend() == "cpu"
    if args.steps_per_call is None:
        args.steps_per_call = CPU_STEPS_PER_CALL if cpu else ACCELERATOR_STEPS_PER_CALL
    if args.steps is None:
        args.steps = timing.default_steps(jax.default_backend())
    for name in ("batch", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    if args.steps_per_call < 0 or (args.steps_per_call > 1 and args.steps % args.steps_per_call):
        parser.error(f"--steps ({args.steps}) must be a multiple of --steps-per-call ({args.steps_per_call})")
    if 1 not in args.devices:
        args.devices = [1, *args.devices]
    return args


def main(argv=None) -> dict:
    devices.simulate_cpu_devices()  # before JAX starts (parse_args asks for its backend)
    args = parse_args(argv)
    first = jax.devices()[0]
    print(f"device: {first.device_kind} ({first.platform}), {jax.device_count()} devices, "
          f"{os.cpu_count()} CPU cores, jax {jax.__version__}, jaxdl's XLA options: {compiler_options()}")
    if first.platform == "cpu":
        print(f"on CPU the devices are simulated ({devices.COUNT_FLAG}): they share the {os.cpu_count()} cores, "
              "so this shows sharding's overhead, not a speed-up")
    print(f"global batch {args.batch}, {args.steps} steps x {args.repeats} timed runs per configuration")

    rng = np.random.default_rng(args.seed)
    examples = min(args.steps, timing.POOL) * args.batch
    x = rng.random((examples, *SHAPE), dtype=np.float32)
    y = rng.integers(0, CLASSES, examples).astype(np.int32)

    model = dl.cnn(CLASSES)
    _, params = model.init(jax.random.key(args.seed), (-1, *SHAPE))  # once: every configuration starts alike
    setups: dict[str, tuple[timing.Runner, float]] = {}
    rows: dict[str, tuple[str, int]] = {}  # name -> (configuration, devices)

    def add(name, configuration, count, **kwargs):
        rows[name] = (configuration, count)
        setups[name] = timing.train_step_runner(model, params, optax.adam(LR), x, y, mesh=devices.make_mesh(count),
                                                batch_size=args.batch, steps=args.steps,
                                                key=jax.random.key(args.seed + 1), **kwargs)
        print(f"  {name}: first call {setups[name][1]:.2f} s", flush=True)

    for count in args.devices:
        if count > jax.device_count():
            print(f"skipped: {count} devices (JAX sees {jax.device_count()})")
        elif args.batch % count:
            print(f"skipped: {count} devices (batch {args.batch} does not split {count} ways)")
        else:
            add(f"float32 x{count}", "float32, 1 step/call", count)
    if not args.skip_bfloat16:
        add("bfloat16 x1", "bfloat16, 1 step/call", 1, dtype="bfloat16")
    if args.steps_per_call > 1:
        add(f"float32 {args.steps_per_call} steps/call x1", f"float32, {args.steps_per_call} steps/call", 1,
            steps_per_call=args.steps_per_call)

    rates = timing.round_robin({name: run for name, (run, _) in setups.items()}, args.steps, args.repeats, args.batch)
    table = [
        (configuration, count, f"{rates[name]:,.0f}", f"{rates[name] / rates[BASELINE]:.2f}x", f"{setups[name][1]:.2f}")
        for name, (configuration, count) in rows.items()
    ]
    print(format_table(("configuration", "devices", "images/s", f"vs {BASELINE}", "first call s"), table,
                       right=(1, 2, 3, 4)))
    result = {
        "platform": first.platform, "device_kind": first.device_kind, "cpu_cores": os.cpu_count(),
        "batch": args.batch, "steps": args.steps, "repeats": args.repeats,
        "images_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "first_call_s": {name: round(first_s, 3) for name, (_, first_s) in setups.items()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
