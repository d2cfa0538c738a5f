"""Run folders: what a training run leaves in its folder, and how a saved run is used.

A run folder (an experiment's ``--out``) holds::

    checkpoints/                 the network's checkpoints (step_*.ckpt), or for an ensemble
    checkpoints/member1 ... K    one folder per network (seeds seed, seed + 1, ...)
    <name>.json                  vocabularies (the ids the networks were trained on)
    metrics.json                 the run's figures, with its peak memory

Each checkpoint's config holds the settings that identify the run (:func:`identity`): a run
resumes only with the same ones, and :func:`load_run` rebuilds its model from them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

from jaxdl import devices
from jaxdl.checkpoint import atomic_write, latest_checkpoint, load_checkpoint
from jaxdl.core import Layer
from jaxdl.data.text import Vocabulary
from jaxdl.loop import ResumeError
from jaxdl.train import eval_params

NOT_IDENTIFYING = (
    "epochs", "resume", "out", "progress", "data_dir", "manual_dir", "steps_per_call",
    "devices", "model_shards", "coordinator", "num_processes", "process_id", "end_sample", "eval_every",
)
"""Settings that do not identify a run: how far it trains, where it runs, where its files
are, how it reports. A run may resume with other values of them, not of any other."""


class RunError(ValueError):
    """A run folder does not hold what is asked of it (no trained run, a missing vocabulary)."""


def identity(settings: Mapping) -> dict:
    """The settings that identify a run, as JSON values (paths as str): all but
    :data:`NOT_IDENTIFYING`. Saved with every checkpoint of the run."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in settings.items() if k not in NOT_IDENTIFYING}


class Member(NamedTuple):
    """One network of a run: its seed and its checkpoint folder."""

    seed: int
    folder: Path


def members(out: str | os.PathLike, seed: int, count: int = 1, *, name: str = "checkpoints") -> list[Member]:
    """The networks a run trains: one keeps ``out/checkpoints`` (or ``out/<name>``) itself; an
    ensemble of ``count`` networks, seeds ``seed``, ``seed + 1``, ..., has ``member1`` ...
    ``member<count>`` in it."""
    folder = Path(out) / name
    if count == 1:
        return [Member(seed, folder)]
    return [Member(seed + i, folder / f"member{i + 1}") for i in range(count)]


def saved_members(out: str | os.PathLike, *, name: str = "checkpoints") -> list[Path]:
    """The checkpoint folders of a trained run: its ``member*`` folders in order, else the folder itself."""
    folder = Path(out) / name
    numbered = {member: member.name.removeprefix("member") for member in folder.glob("member*")}
    found = sorted((member for member, n in numbered.items() if n.isdigit()), key=lambda member: int(numbered[member]))
    return found or [folder]


def refuse_an_old_run(out: str | os.PathLike, resume: bool) -> None:
    """A ResumeError when ``out`` holds a run's checkpoints and the run is not to be resumed:
    a new run never trains over an old one."""
    if not resume and any((Path(out) / "checkpoints").rglob("step_*.ckpt")):
        raise ResumeError(f"{out} already holds a run's checkpoints: add --resume to continue it, or choose another --out")


def run_vocabulary(out: str | os.PathLike, filename: str, build: Callable[[], Vocabulary], *,
                   resume: bool) -> Vocabulary:
    """The vocabulary ``out/filename`` of a resumed run; else ``build()``, saved there (the
    network's ids must not change when its run resumes)."""
    path = Path(out) / filename
    if resume and path.exists():
        return Vocabulary.load(path)
    vocabulary = build()
    if devices.is_main_process():  # every process builds the same one
        vocabulary.save(path)
    return vocabulary


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB; None where the system does not
    report it (Windows has no ``resource`` module)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def write_metrics(out: str | os.PathLike, metrics: dict) -> Path:
    """Write ``metrics`` plus ``peak_rss_mb`` to ``out/metrics.json`` (atomically; by process 0
    of a multi-process run); return the path."""
    path = Path(out) / "metrics.json"
    if devices.is_main_process():
        peak = peak_rss_mb()
        atomic_write(path, (json.dumps({**metrics, "peak_rss_mb": None if peak is None else round(peak, 1)},
                                       indent=2) + "\n").encode())
    return path


class Run(NamedTuple):
    """A saved run, ready to use: its model, each network's params (their running average
    where the optimizer kept one: :func:`jaxdl.train.average_weights`) and state, its
    vocabularies by name, and the settings it was trained with."""

    folder: Path
    model: Layer
    members: list
    model_states: list
    vocabularies: dict[str, Vocabulary]
    settings: dict


def load_run(out: str | os.PathLike, build: Callable[[dict, dict[str, Vocabulary]], Layer], *,
             vocabularies: Sequence[str] = (), name: str = "checkpoints") -> Run:
    """The run saved in ``out``: the latest checkpoint of each of its networks (in ``out/<name>``),
    the vocabularies ``out/<vocabulary>.json``, and its model, ``build(settings, vocabularies)``.

    Raises RunError when ``out`` holds no trained run (or not all of it); a checkpoint that
    does not fit the model it describes is a CheckpointError.
    """
    folders = saved_members(out, name=name)
    if latest_checkpoint(folders[0]) is None:
        raise RunError(f"no trained run in {out} (no checkpoint in {folders[0]}): train one first, with this --out")
    try:
        vocabulary_files = {name: Vocabulary.load(Path(out) / f"{name}.json") for name in vocabularies}
    except ValueError as error:
        raise RunError(f"the run in {out} is not whole: {error}") from None
    saved = [load_checkpoint(folder) for folder in folders]
    settings = saved[0].config
    model = build(settings, vocabulary_files)
    return Run(Path(out), model, [eval_params(checkpoint.state) for checkpoint in saved],
               [checkpoint.state.get("model_state") for checkpoint in saved], vocabulary_files, settings)
