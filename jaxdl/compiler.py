"""``jit`` with the XLA options jaxdl chooses for the backend.

On CPU, jaxlib 0.10 hands convolutions, dots and reductions to YNNPACK fusions,
which ran every convolution on a single thread on our 2-core machine (measured:
one core busy, half the speed). jaxdl keeps only the dots there: XLA runs
convolutions and reductions through its Eigen runtime on every core, and the
benchmark CNN's training step is about 2x faster (docs/results.md). Dots stay in
YNNPACK, which runs the small matmuls repeated at every step of a recurrent layer
faster than Eigen: an LSTM's training step about 1.3x faster
(benchmarks/lstm_throughput.py), the CNN's no slower. Reductions stay there too:
with them outside YNNPACK, jaxlib 0.10.2's XLA computes wrong gradients for two
(convolution -> BatchNorm -> ReLU -> max pooling) blocks (off by over 50%;
tests/test_compiler.py holds the case), and a BatchNorm CNN trains faster with them
inside. Other backends get XLA's defaults.

A ``--xla_cpu_experimental_ynn_fusion_type`` given in ``XLA_FLAGS`` wins over
jaxdl's choice, and a jaxlib that no longer knows the option gets its defaults.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
CPU_OPTIONS: dict[str, Any] = {YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


def compiler_options(backend: str | None = None) -> dict[str, Any]:
    """The XLA compiler options jaxdl's jitted functions use on ``backend`` (default: JAX's)."""
    if (backend or jax.default_backend()) != "cpu" or YNN_OPTION in os.environ.get("XLA_FLAGS", ""):
        return {}
    return dict(CPU_OPTIONS) if _accepted(tuple(CPU_OPTIONS.items())) else {}


@functools.cache
def _accepted(options: tuple) -> bool:
    """Whether this jaxlib compiles with ``options`` (an option it does not know is an error)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(1.0).compile()
    except Exception:  # jaxlib raises JaxRuntimeError("No such compile option ...")
        return False
    return True


def jit(fun: Callable, **jit_kwargs) -> Callable:
    """``jax.jit(fun, **jit_kwargs)``, compiled with :func:`compiler_options` when called at top level.

    The options are chosen at the first call, not here: a ``jit`` at import time does not
    start JAX's backend (a multi-process run must start its runtime first). JAX takes
    compiler options only on an outermost jit, so inside another transformation (a user's
    ``jit``, ``grad``, ``scan``) ``fun`` is traced as a plain ``jax.jit`` and the outer
    computation's options apply.
    """
    plain = jax.jit(fun, **jit_kwargs)

    @functools.cache
    def top_level():
        options = compiler_options()
        return jax.jit(fun, compiler_options=options, **jit_kwargs) if options else plain

    @functools.wraps(fun)
    def call(*args, **kwargs):
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs)))
        return (plain if traced else top_level())(*args, **kwargs)

    return call
