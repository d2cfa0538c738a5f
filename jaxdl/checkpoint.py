"""Checkpoints: a train state with its config and history, written atomically as msgpack.

A checkpoint file is ``MAGIC | sha256(payload) | payload``, where the payload is
msgpack (via ``flax.serialization``) of::

    {"format": 1, "state": <state as nested dicts of arrays>, "config": {...}, "meta": {...}}

A train state's fields, the model's own state among them, are saved by name.

Loading never runs code (no pickle). A truncated or corrupt file fails the
checksum and raises :class:`CheckpointError`. A file is first written under a
temporary name, flushed to disk and then renamed, so a save killed halfway never
replaces the latest good checkpoint. PRNG keys are stored as their raw key data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxdl import devices

MAGIC = b"JAXDL-CHECKPOINT\n"
FORMAT = 1
_NAME = re.compile(r"^step_(\d+)\.ckpt$")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt, or does not fit the state it is loaded into."""


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns.

    ``state`` has the target's structure when a target was given, else nested
    dicts of numpy arrays (params are plain dicts, so they are usable as is).
    """

    state: Any
    config: dict
    meta: dict
    path: Path


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"step_{step:09d}.ckpt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The checkpoints in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``directory``, or None."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def _is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_host(tree):
    """Arrays (also those spread over processes) to numpy; typed PRNG keys to their raw uint32 data."""
    return jax.tree.map(lambda x: devices.host_array(jax.random.key_data(x) if _is_key(x) else x), tree)


def json_ready(config: dict | None, what: str) -> dict:
    """``config`` as it reads back from JSON (tuples become lists); TypeError if it is not JSON."""
    try:
        return json.loads(json.dumps(config or {}))
    except TypeError as error:
        raise TypeError(f"checkpoint {what} must hold JSON values (str, numbers, lists, dicts): {error}") from None


def save_checkpoint(
    directory: str | os.PathLike,
    state: Any,
    step: int,
    *,
    config: dict | None = None,
    meta: dict | None = None,
    keep: int = 3,
) -> Path:
    """Write ``state`` (any pytree) as ``directory/step_<step>.ckpt``, atomically.

    ``config`` (the run's settings) and ``meta`` (history, timings) must be
    JSON-like. Only the newest ``keep`` checkpoints are kept. Returns the path.

    With several processes every one calls it (arrays spread over them are gathered),
    process 0 writes, and all return once the file is there.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    contents = {"format": FORMAT, "config": json_ready(config, "config"), "meta": json_ready(meta, "meta")}
    host_state = _to_host(state)  # on every process: gathering arrays spread over processes is collective
    path = checkpoint_path(directory, step)
    if devices.is_main_process():
        payload = serialization.msgpack_serialize({**contents, "state": serialization.to_state_dict(host_state)})
        atomic_write(path, MAGIC + hashlib.sha256(payload).digest() + payload)
        for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
            old.unlink(missing_ok=True)
        for stale in directory.glob(".step_*.ckpt.tmp-*"):  # left by saves that were killed
            stale.unlink(missing_ok=True)
    devices.sync(f"checkpoint step {step}")
    return path


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old file or the new one,
    never a part: a temporary ``.<name>.tmp-<pid>`` beside it, fsynced, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only there if the write failed
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_payload(path: Path) -> dict:
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    header = len(MAGIC) + 32
    if not blob.startswith(MAGIC):
        if MAGIC.startswith(blob):  # cut short inside the magic, or empty
            raise CheckpointError(
                f"{path} is truncated ({len(blob)} bytes, shorter than a checkpoint's header). "
                "Delete it to resume from the checkpoint before it."
            )
        raise CheckpointError(f"{path} is not a jaxdl checkpoint (its first bytes are not {MAGIC!r})")
    digest, payload = blob[len(MAGIC) : header], blob[header:]
    if len(digest) < 32 or hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({len(blob)} bytes; its checksum does not match). "
            "Delete it to resume from the checkpoint before it."
        )
    try:
        contents = serialization.msgpack_restore(payload)
    except Exception as error:  # msgpack's FormatError, ExtraData, ValueError...: not msgpack at all
        raise CheckpointError(f"{path} has a valid checksum but is not a jaxdl checkpoint inside ({error})") from None
    if not isinstance(contents, dict) or not {"format", "state"} <= contents.keys():
        raise CheckpointError(f"{path} has a valid checksum but is not a jaxdl checkpoint inside "
                              "(no format and state)")
    if contents["format"] != FORMAT:
        raise CheckpointError(f"{path} has format {contents['format']!r}; this jaxdl reads format {FORMAT}")
    return contents


def _leaf_paths(tree) -> set[str]:
    return {jax.tree_util.keystr(where) for where, _ in jax.tree_util.tree_leaves_with_path(tree)}


def _with_empty_fields(target: dict, saved):
    """``saved`` with the fields of ``target`` it lacks that hold nothing (an empty model state,
    say): a checkpoint written before a structure gained such a field still loads."""
    if not isinstance(target, dict) or not isinstance(saved, dict):
        return saved
    missing = {k: v for k, v in target.items() if k not in saved and not jax.tree_util.tree_leaves(v)}
    return {**missing, **{k: _with_empty_fields(target.get(k), v) for k, v in saved.items()}}


def _restore_into(target, state_dict, path: Path):
    host_target = _to_host(target)
    state_dict = _with_empty_fields(serialization.to_state_dict(host_target), state_dict)
    expected, found = _leaf_paths(serialization.to_state_dict(host_target)), _leaf_paths(state_dict)
    if expected != found:  # from_state_dict would silently drop what the target lacks
        differences = (("missing from the checkpoint", expected - found), ("not in the target", found - expected))
        detail = "; ".join(f"{what}: {', '.join(sorted(paths)[:5])}" for what, paths in differences if paths)
        raise CheckpointError(f"{path} does not fit this model/optimizer: {detail}")
    try:
        restored = serialization.from_state_dict(host_target, state_dict)
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} does not fit this model/optimizer: {error}") from None
    mismatched = [
        f"{jax.tree_util.keystr(where)}: checkpoint {np.shape(got)}, expected {np.shape(want)}"
        for (where, want), got in zip(
            jax.tree_util.tree_leaves_with_path(host_target), jax.tree_util.tree_leaves(restored)
        )
        if np.shape(want) != np.shape(got)
    ]
    if mismatched:
        raise CheckpointError(f"{path} does not fit this model: " + "; ".join(mismatched[:5]))

    def to_device(want, got):
        if _is_key(want):
            return jax.random.wrap_key_data(jnp.asarray(got), impl=jax.random.key_impl(want))
        return jnp.asarray(got, dtype=jnp.asarray(want).dtype)

    return jax.tree.map(to_device, target, restored)


def load_checkpoint(path: str | os.PathLike, target: Any = None) -> Checkpoint:
    """Read a checkpoint file (or the latest one in a directory).

    With ``target`` (a state of the same structure, e.g. a freshly initialised
    one) the state comes back with the target's structure, dtypes and PRNG key
    types, on the device. Without it, as nested dicts of numpy arrays.
    """
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"no checkpoint (step_*.ckpt) in {path}")
        path = latest
    contents = _read_payload(path)
    state = contents["state"] if target is None else _restore_into(target, contents["state"], path)
    return Checkpoint(state, contents.get("config") or {}, contents.get("meta") or {}, path)
