"""Devices and hosts: a mesh, where a training state and its batches live on it, and JAX's
multi-process runtime.

Data parallelism the ``jax.sharding`` way (no ``pmap``): a mesh with axes
``("data", "model")``; every batch is split along its first axis over ``"data"``;
parameters and optimizer state are replicated, or, with a ``"model"`` axis of size
M > 1, their largest arrays (embeddings, dense and convolution kernels) are split
over it. The jitted train step is unchanged: XLA sees the shardings of its inputs
and inserts the all-reduce of the gradients itself.

With several processes (:func:`initialize`), the mesh spans the devices of all of
them. Every process runs the same program on the same global batches: each holds
the whole (in-memory) dataset, draws every global batch, and hands its own devices
only their rows of it (:func:`put`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA, MODEL = "data", "model"
SHARD_MIN_SIZE = 2**14  # parameters with fewer elements stay replicated on a "model" axis


class MeshError(ValueError):
    """A mesh that the devices, the batch size or the processes cannot make."""


def _launched_as_several(environ=os.environ) -> bool:
    """Whether a launcher started this process as one of several: ``JAX_COORDINATOR_ADDRESS``,
    a SLURM job step (``srun``) of more than one task, or Open MPI with more than one rank."""

    def count(name: str) -> int:
        text = environ.get(name, "").strip()
        return int(text) if text.isdigit() else 1

    slurm_step = "SLURM_STEP_ID" in environ and count("SLURM_NTASKS") > 1
    return bool(environ.get("JAX_COORDINATOR_ADDRESS")) or slurm_step or count("OMPI_COMM_WORLD_SIZE") > 1


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> None:
    """Start JAX's multi-process runtime when this run is one of several processes: when any
    argument is given (JAX finds the others in the environment: SLURM, Open MPI, Cloud TPU,
    ``JAX_COORDINATOR_ADDRESS``), or when a launcher started it as one of several
    (:func:`_launched_as_several`). Call it before anything else touches JAX's devices.
    """
    given = coordinator is not None or num_processes is not None or process_id is not None
    if (given or _launched_as_several()) and not jax.distributed.is_initialized():
        jax.distributed.initialize(coordinator, num_processes, process_id)


COUNT_FLAG = "--xla_force_host_platform_device_count"


def simulate_cpu_devices(count: int = 8, environ=os.environ) -> None:
    """Ask XLA's CPU backend for ``count`` devices, by appending ``--xla_force_host_platform_device_count``
    to ``XLA_FLAGS`` in ``environ``, unless a count is set there already (the caller's stands) or
    ``JAX_PLATFORMS`` names no CPU. XLA reads the flag when JAX starts its backends (its first
    computation, or ``jax.devices()``), so call it before; importing jax or jaxdl is fine.

    The simulated devices share the machine's cores: they show that sharding works, not a speed-up.
    """
    platforms = environ.get("JAX_PLATFORMS", "")
    if COUNT_FLAG in environ.get("XLA_FLAGS", ""):
        return
    if platforms and "cpu" not in platforms.lower().split(","):
        return
    environ["XLA_FLAGS"] = f"{environ.get('XLA_FLAGS', '')} {COUNT_FLAG}={count}".strip()


def make_mesh(devices: int | None = None, model: int = 1) -> Mesh:
    """A mesh of the first ``devices`` devices (default: all, of every process), shaped
    (devices // model, model) with axes ``("data", "model")``."""
    available = jax.device_count()
    devices = available if devices is None else devices
    if not 0 < devices <= available:
        raise MeshError(f"asked for {devices} devices, but JAX sees {available}: {jax.devices()}. "
                        "On CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N simulates N devices.")
    if devices % model:
        raise MeshError(f"{devices} devices cannot form a mesh with a model axis of {model}: "
                        "the device count must be a multiple of it")
    if jax.process_count() > 1 and devices != available:
        raise MeshError(f"with {jax.process_count()} processes the mesh uses every device ({available}); "
                        f"got {devices}")
    return jax.make_mesh((devices // model, model), (DATA, MODEL), axis_types=(AxisType.Auto,) * 2,
                         devices=jax.devices()[:devices])


def data_size(mesh: Mesh) -> int:
    """How many ways a batch is split: the size of the mesh's ``"data"`` axis."""
    return mesh.shape[DATA]


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """A MeshError unless ``batch_size`` splits evenly over the mesh's ``"data"`` axis."""
    if batch_size % data_size(mesh):
        raise MeshError(f"batch size {batch_size} does not split over {data_size(mesh)} devices: "
                        f"use a multiple of {data_size(mesh)} (--batch-size) or fewer devices (--devices)")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Arrays split along their first (example) axis over ``"data"``."""
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    """A whole copy of the array on every device."""
    return NamedSharding(mesh, P())


def param_sharding(shape: tuple[int, ...], mesh: Mesh, min_size: int = SHARD_MIN_SIZE) -> NamedSharding:
    """Where a parameter (or optimizer-state) array of ``shape`` lives: split over ``"model"``
    along its longest axis that the axis size divides, when it is a matrix or more of at
    least ``min_size`` elements; else replicated."""
    ways = mesh.shape[MODEL]
    if ways == 1 or len(shape) < 2 or np.prod(shape) < min_size:
        return replicated(mesh)
    fits = [axis for axis in np.argsort(shape)[::-1] if shape[axis] % ways == 0]
    if not fits:
        return replicated(mesh)
    spec = [None] * len(shape)
    spec[fits[0]] = MODEL
    return NamedSharding(mesh, P(*spec))


def state_sharding(tree: Any, mesh: Mesh, min_size: int = SHARD_MIN_SIZE) -> Any:
    """:func:`param_sharding` of every array of a pytree (a train state: params and the
    optimizer's moments, which share their shapes, are split alike)."""
    return jax.tree.map(lambda leaf: param_sharding(np.shape(leaf), mesh, min_size), tree)


def put(tree: Any, sharding: Any) -> Any:
    """Every array of ``tree`` as a global array placed by ``sharding`` (one, or a pytree of them).

    With one process this is ``jax.device_put``. With several, each process holds the
    whole array on the host and puts only the pieces its own devices hold.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    shardings = jax.tree.map(lambda _: sharding, tree) if isinstance(sharding, NamedSharding) else sharding

    def place(leaf, where):
        if isinstance(leaf, jax.Array) and leaf.sharding == where:
            return leaf
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(place(jax.random.key_data(leaf), where), impl=jax.random.key_impl(leaf))
        host = host_array(leaf)
        return jax.make_array_from_callback(host.shape, where, lambda index: host[index])

    return jax.tree.map(place, tree, shardings)


def host_array(array) -> np.ndarray:
    """The whole value of a (possibly multi-process) array as numpy; every process gets it.

    Typed PRNG keys are not arrays of numbers: pass their ``jax.random.key_data``.
    """
    if not isinstance(array, jax.Array) or array.is_fully_addressable:
        return np.asarray(array)
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def fetch(tree: Any) -> Any:
    """``jax.device_get`` that also reads arrays spread over several processes (:func:`host_array`)."""
    return jax.device_get(tree) if jax.process_count() == 1 else jax.tree.map(host_array, tree)


def is_main_process() -> bool:
    """Whether this process writes the run's files (checkpoints, plots, metrics): process 0."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Wait until every process reaches this point (no-op with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
