"""The training loop: ``fit``, composed of small parts a notebook can reuse.

``fit`` reads, in order: resume from a run's checkpoints (:func:`resume_run`), place the
state on a device mesh (:class:`Placement`), each epoch's batches or chunks of them
(:func:`epoch_calls`), read the step metrics back with the non-finite check
(:class:`Meter`), evaluate, and checkpoint (:class:`Checkpoints`). A run interrupted at
any point (Ctrl-C, or a kill between checkpoints) and resumed ends with the params and
the history of a run that never stopped: the data order and the step keys depend only
on the state's key and step, and an epoch cut short keeps its metrics so far in its
checkpoint.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import jax
import numpy as np
from tqdm import tqdm  # not tqdm.auto: without ipywidgets it warns in every notebook

from jaxdl import devices
from jaxdl.checkpoint import json_ready, latest_checkpoint, load_checkpoint, save_checkpoint
from jaxdl.compiler import jit
from jaxdl.core import device_errors
from jaxdl.data import ArrayBatches, BatchSource, batch_source, epoch_order
from jaxdl.train import Batch, TrainState, eval_params, evaluate, make_multi_step, place_batches, stream_keys


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float, checkpoint: str | None):
        self.step, self.loss, self.checkpoint = step, loss, checkpoint
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written"
        super().__init__(
            f"the training loss became {loss} at step {step}; training stopped and {kept}. "
            "Try a smaller learning rate (--lr) or gradient clipping."
        )


class ResumeError(ValueError):
    """A run cannot start or resume as asked: its folder holds another run, or the run was
    started with other settings."""


class Interrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); ``checkpoint`` is where the run stands, if it was saved."""

    def __init__(self, checkpoint: str | None):
        self.checkpoint = checkpoint
        super().__init__(f"interrupted; the run is saved in {checkpoint}" if checkpoint else "interrupted")


class EarlyStopping(NamedTuple):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    It reads only the history, so a resumed run decides as the original would.
    """

    monitor: str = "val_loss"
    patience: int = 5
    mode: str = "min"
    min_delta: float = 0.0

    def should_stop(self, history: list[dict]) -> bool:
        values = [record[self.monitor] for record in history if self.monitor in record]
        if len(values) <= self.patience:
            return False
        sign = 1.0 if self.mode == "min" else -1.0
        best_before = min(sign * v for v in values[: -self.patience])
        return all(sign * v >= best_before - self.min_delta for v in values[-self.patience :])


class FitResult(NamedTuple):
    state: TrainState
    history: list[dict]  # one record per epoch: epoch, step, time_s, elapsed_s, train_*, val_*
    compile_time_s: float  # the first step of this process, compilation included
    train_time_s: float  # wall time of the training steps (not evaluation), summed over resumed runs


# ------------------------------------------------------------------------------ parts
class Resumed(NamedTuple):
    """Where a run stands: its state and what its latest checkpoint's ``meta`` says."""

    state: TrainState
    history: list[dict]
    train_time_s: float
    elapsed_s: float
    epoch: dict | None  # an epoch cut short: {"epoch", "steps", "sums", "time_s"}
    checkpoint: str | None


def resume_run(state: TrainState, checkpoint_dir: str | None, *, resume: bool, config: dict) -> Resumed:
    """The run from the latest checkpoint in ``checkpoint_dir`` (with ``resume``), else ``state``.

    Checkpoints there without ``resume`` are an error (a new run never trains over an old
    one), and so is a checkpoint whose settings (``config``) differ from the run's; they are
    compared before its arrays are loaded. Settings the saved run lacks, or that ``config``
    lacks, are not compared (runs saved by an older jaxdl resume).
    """
    found = latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if found is None:
        return Resumed(state, [], 0.0, 0.0, None, None)
    if not resume:
        raise ResumeError(f"{checkpoint_dir} already holds checkpoints ({found.name}): resume from them "
                         "(resume=True, or --resume) or choose another directory")
    _check_same_settings(load_checkpoint(found).config, config, found)
    saved = load_checkpoint(found, target=state)
    meta = saved.meta
    return Resumed(saved.state, list(meta.get("history", [])), float(meta.get("train_time_s", 0.0)),
                   float(meta.get("elapsed_s", 0.0)), meta.get("epoch"), str(found))


def _check_same_settings(saved: dict, config: dict, path) -> None:
    config = json_ready(config, "config")  # as it was saved: tuples become lists
    changed = {k: (saved[k], config[k]) for k in saved.keys() & config.keys() if saved[k] != config[k]}
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changed.items()))
        raise ResumeError(f"cannot resume from {path}: the run was started with other settings ({detail}). "
                         "Use the same settings, or a new output directory.")


class Placement:
    """Where the train state and its batches live: as they are, or on a device ``mesh`` (the
    state replicated or its largest arrays split over ``"model"``, each batch split over
    ``"data"``), with the step's output pinned to the state's layout so it compiles once."""

    def __init__(self, mesh: jax.sharding.Mesh | None, state: TrainState):
        self.mesh = mesh
        self.shardings = None if mesh is None else devices.state_sharding(state, mesh)

    def state(self, state: TrainState) -> TrainState:
        return state if self.mesh is None else devices.put(state, self.shardings)

    def replicated(self, tree):
        return tree if self.mesh is None else devices.put(tree, devices.replicated(self.mesh))

    def pinned(self, step: Callable) -> Callable:
        """``step`` with its outputs laid out as its inputs (left to itself, XLA may hand back a
        small kernel split otherwise, which the next call would have to compile for again)."""
        if self.mesh is None:
            return step
        return jit(step, out_shardings=(self.shardings, devices.replicated(self.mesh)))


def epoch_calls(train_step: Callable, source: BatchSource, batch_size: int, shuffle_root: jax.Array,
                placement: Placement, *, steps_per_call: int = 1) -> Callable[[int, int], Iterator]:
    """``calls(epoch, offset)``: the rest of an epoch from batch ``offset`` on, as
    ``(steps, call)`` pairs, ``call(state) -> (state, metrics)``.

    One step per call, or ``steps_per_call`` steps in one ``lax.scan`` over batches gathered
    on the device (:func:`jaxdl.train.make_multi_step`, the data replicated on a mesh);
    chunks end on multiples of ``steps_per_call``, so a resumed run chunks alike.
    """
    step = placement.pinned(train_step)
    place = place_batches(placement.mesh, batch_size)
    if steps_per_call == 1:
        def calls(epoch: int, offset: int):
            for batch in source.train_batches(batch_size, shuffle_root, epoch=epoch, start=offset):
                yield 1, lambda state, batch=place(batch): step(state, batch)
        return calls
    if not isinstance(source, ArrayBatches):
        raise ValueError(f"steps_per_call > 1 needs the training data as a dict of arrays, got {type(source).__name__}")
    mesh = placement.mesh
    # The scan's carry out is not pinned by the step's own: the whole call is pinned too.
    many = placement.pinned(make_multi_step(step, None if mesh is None else devices.batch_sharding(mesh)))
    data, steps_per_epoch = placement.replicated(source.data), source.steps_per_epoch(batch_size)

    def chunks(epoch: int, offset: int):
        order = epoch_order(jax.random.fold_in(shuffle_root, epoch), source.size, batch_size)
        begin = offset
        while begin < steps_per_epoch:
            end = min((begin // steps_per_call + 1) * steps_per_call, steps_per_epoch)
            yield end - begin, lambda state, ids=placement.replicated(order[begin:end]): many(state, data, ids)
            begin = end

    return chunks


class Meter:
    """The step metrics of an epoch, read back from the device every ``log_every`` steps:
    their sums (for the epoch's means), the non-finite loss check that names the exact
    step, and the progress bar."""

    def __init__(self, log_every: int, bar: tqdm):
        self.log_every, self.bar = log_every, bar
        self.pending: list[tuple[int, dict]] = []  # (first step, metrics of 1 step or stacked (steps,))
        self.sums: dict[str, float] = {}
        self.steps = 0

    def start(self, cut_short: dict | None = None) -> None:
        """A new epoch; or one cut short and resumed: its sums so far, from the checkpoint."""
        self.sums = dict(cut_short["sums"]) if cut_short else {}
        self.steps = cut_short["steps"] if cut_short else 0

    def add(self, first_step: int, steps: int, values: dict, last_good: str | None) -> None:
        """The metrics of ``steps`` steps from ``first_step`` on, read back once ``log_every`` wait."""
        self.pending.append((first_step, values))
        if first_step + steps - self.pending[0][0] >= self.log_every:
            self.read(last_good)

    def read(self, last_good: str | None) -> None:
        """Read the pending metrics; NonFiniteLossError at the first non-finite loss."""
        done = 0
        for first, values in devices.fetch(self.pending):
            values = {name: np.atleast_1d(value) for name, value in values.items()}
            bad = np.flatnonzero(~np.isfinite(values["loss"]))
            if bad.size:
                raise NonFiniteLossError(first + int(bad[0]), float(values["loss"][bad[0]]), last_good)
            for name, value in values.items():
                self.sums[name] = self.sums.get(name, 0.0) + float(value.sum())
            done += len(values["loss"])
            self.bar.set_postfix(loss=f"{float(values['loss'][-1]):.4g}", refresh=False)
        self.steps += done
        self.bar.update(done)
        self.pending.clear()

    def means(self) -> dict[str, float]:
        return {f"train_{name}": total / self.steps for name, total in self.sums.items()}


class Checkpoints:
    """Where a run's checkpoints go (nowhere without a ``directory``), with its ``config``;
    only the newest ``keep`` stay. ``last`` names the latest one written or resumed from."""

    def __init__(self, directory: str | None, config: dict, keep: int = 3, last: str | None = None):
        self.directory, self.config, self.keep, self.last = directory, config, keep, last

    def save(self, state: TrainState, meta: dict) -> None:
        if self.directory:
            path = save_checkpoint(self.directory, state, int(devices.fetch(state.step)), config=self.config,
                                   meta=meta, keep=self.keep)
            self.last = str(path)


def _fmt_metrics(record: Mapping[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in record.items() if k.startswith(("train_", "val_")))


def _positive_ints(**sizes) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def scores_by_step(history: Sequence[Mapping]) -> list[dict]:
    """Every evaluation of a :func:`fit` history in order, those inside epochs
    (``eval_every``) and at their ends: ``{"step", "elapsed_s", "val_*"...}`` each."""
    points = []
    for record in history:
        points += record.get("evaluations", [])
        scored = {k: v for k, v in record.items() if k.startswith("val_")}
        if scored:
            points.append({"step": record["step"], "elapsed_s": record["elapsed_s"], **scored})
    return points


# ------------------------------------------------------------------------------- fit
def fit(
    state: TrainState,
    train_step: Callable,
    train_data: Batch | BatchSource,
    *,
    epochs: int,
    batch_size: int,
    eval_step: Callable | None = None,
    eval_data: Batch | BatchSource | None = None,
    eval_every: int | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 1,
    keep_checkpoints: int = 3,
    resume: bool = False,
    config: dict | None = None,
    early_stopping: EarlyStopping | None = None,
    log_every: int = 20,
    steps_per_call: int = 1,
    progress: bool | None = None,
    verbose: bool = True,
    callbacks: Iterable[Callable[[TrainState, dict], Any]] = (),
    mesh: jax.sharding.Mesh | None = None,
) -> FitResult:
    """Train for ``epochs`` epochs of shuffled full batches; evaluate after each epoch.

    Args:
      state: the initial :class:`TrainState` (also the structure a resumed run loads into).
      train_step: from :func:`jaxdl.train.make_train_step`.
      train_data: dict of arrays with a shared first axis, e.g. ``{"x", "y"}``, or a
        :class:`jaxdl.data.BatchSource` such as :class:`jaxdl.data.text.Buckets`.
      eval_step, eval_data: from :func:`jaxdl.train.make_eval_step`, and the data it scores (``val_*``),
        with :func:`jaxdl.train.eval_params` (the running average of the weights, if kept).
      eval_every: also score ``eval_data`` every this many steps inside an epoch; each epoch's
        record lists those scores under ``"evaluations"`` (:func:`scores_by_step` reads them
        with the epochs' own). The time they take counts in ``elapsed_s``, not in training time.
      checkpoint_dir: where checkpoints go, every ``checkpoint_every`` epochs,
        at the end, and when interrupted (Ctrl-C).
      resume: continue from the latest checkpoint in ``checkpoint_dir``, if any.
      config: the settings that identify the run, saved with its checkpoints; resuming
        with other values of them is refused (:func:`resume_run`).
      log_every: steps between reads of the loss from the device (the progress
        bar, and the NaN check, which names the exact step).
      steps_per_call: training steps per jitted call. 1 calls ``train_step``
        once per batch; more runs them in a ``lax.scan`` over batches gathered
        on the device (:func:`epoch_calls`), with the same result.
      progress: show a progress bar (default: when stderr is a terminal).
      verbose: without a bar, print one line per epoch; False prints nothing (the
        history holds the same figures).
      callbacks: called as ``fn(state, record)`` after each epoch's evaluation; metrics
        they add to ``record`` (``val_f1``, say) join the history, the epoch's line and
        its checkpoint. A run interrupted in an epoch's evaluation or callbacks evaluates
        and calls them again when it resumes.
      mesh: train data-parallel on a device mesh (:func:`jaxdl.devices.make_mesh`): each
        batch is split over its ``"data"`` axis, the state replicated (or its largest arrays
        split over ``"model"``). ``batch_size`` must be a multiple of the ``"data"`` size.
        With several processes, checkpoints are written by process 0 and read by all.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite; no checkpoint of the
        bad state is written.
      ResumeError: ``checkpoint_dir`` holds another run, or this one with other settings.
      Interrupted: Ctrl-C (a ``KeyboardInterrupt``), after saving where the run stands.
    """
    _positive_ints(epochs=epochs, batch_size=batch_size, checkpoint_every=checkpoint_every, log_every=log_every,
                   steps_per_call=steps_per_call, **({} if eval_every is None else {"eval_every": eval_every}))
    if eval_every is not None and (eval_step is None or eval_data is None):
        raise ValueError("eval_every needs eval_step and eval_data: what to score, and on what")
    source = batch_source(train_data)
    eval_source = None if eval_data is None else batch_source(eval_data)  # on the device once, not per evaluation
    steps_per_epoch = source.steps_per_epoch(batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the training set ({source.size} examples)")
    config = dict(config or {})
    run = resume_run(state, checkpoint_dir, resume=resume, config=config)
    placement = Placement(mesh, run.state)
    state, history, train_time = placement.state(run.state), run.history, run.train_time_s
    calls = epoch_calls(train_step, source, batch_size, stream_keys(state.key)[1], placement,
                        steps_per_call=steps_per_call)
    checkpoints = Checkpoints(checkpoint_dir, config, keep_checkpoints, run.checkpoint)
    step = start = int(devices.fetch(state.step))
    bar = tqdm(total=epochs * steps_per_epoch, initial=min(start, epochs * steps_per_epoch), unit="step",
               dynamic_ncols=True, disable=None if progress is None else not progress)
    meter, began, compile_time = Meter(log_every, bar), time.perf_counter(), 0.0

    def meta(cut_short: dict | None = None) -> dict:
        elapsed = run.elapsed_s + time.perf_counter() - began  # steps, evaluations, checkpoints: over resumed runs
        return {"history": history, "train_time_s": train_time, "elapsed_s": elapsed, "epoch": cut_short}

    def scores(state: TrainState) -> dict:
        if eval_step is None or eval_source is None:
            return {}
        values = evaluate(eval_step, eval_params(state), eval_source, batch_size, model_state=state.model_state,
                          mesh=mesh)
        return {f"val_{k}": v for k, v in values.items()}

    stop = early_stopping is not None and early_stopping.should_stop(history)  # a resumed run had stopped
    epoch, epoch_time, training_since, evaluations = len(history), 0.0, None, []
    with device_errors():  # a failed check in the compiled step: its LayerError, not XLA's traceback
        try:
            while epoch < epochs and not stop:
                cut_short = run.epoch if run.epoch and run.epoch["epoch"] == epoch else None
                meter.start(cut_short)
                evaluations = list((cut_short or {}).get("evaluations", []))
                epoch_time, training_since = (cut_short or {}).get("time_s", 0.0), time.perf_counter()
                for count, call in calls(epoch, step - epoch * steps_per_epoch):
                    if step == start:  # the first call of this process: it compiles
                        state, values = jax.block_until_ready(call(state))
                        compile_time = time.perf_counter() - training_since
                    else:
                        state, values = call(state)
                    meter.add(step + 1, count, values, checkpoints.last)
                    step += count
                    if eval_every and step % eval_every < count and step < (epoch + 1) * steps_per_epoch:
                        jax.block_until_ready(state)  # its steps count as training, the scoring does not
                        seconds, training_since = time.perf_counter() - training_since, None
                        train_time, epoch_time = train_time + seconds, epoch_time + seconds
                        evaluations.append({"step": step, **scores(state), "elapsed_s": round(meta()["elapsed_s"], 4)})
                        training_since = time.perf_counter()
                meter.read(checkpoints.last)
                seconds, training_since = time.perf_counter() - training_since, None
                train_time, epoch_time = train_time + seconds, epoch_time + seconds
                record = {"epoch": epoch + 1, "step": step, "time_s": round(epoch_time, 4), **meter.means(),
                          **scores(state)}
                if eval_every:
                    record["evaluations"] = evaluations
                record["elapsed_s"] = round(meta()["elapsed_s"], 4)
                for callback in callbacks:  # before the epoch's line, so the metrics they add show in it
                    callback(state, record)
                history.append(record)
                line = f"epoch {epoch + 1}/{epochs} {_fmt_metrics(record)}"
                bar.set_postfix_str(line)
                if bar.disable and verbose:  # no bar (e.g. output to a file): one line per epoch instead
                    print(f"{line} ({record['elapsed_s']:.1f} s)", flush=True)
                epoch += 1
                stop = early_stopping is not None and early_stopping.should_stop(history)
                if epoch % checkpoint_every == 0 or epoch == epochs or stop:
                    checkpoints.save(state, meta())
        except KeyboardInterrupt:
            meter.read(checkpoints.last)  # a state whose loss went non-finite is never saved
            if training_since is not None:  # cut inside the epoch's steps
                seconds = time.perf_counter() - training_since
                train_time, epoch_time = train_time + seconds, epoch_time + seconds
            cut = None
            if step > epoch * steps_per_epoch and len(history) == epoch:  # this epoch has steps but no record yet
                cut = {"epoch": epoch, "steps": meter.steps, "sums": meter.sums, "time_s": epoch_time,
                       "evaluations": evaluations}
            checkpoints.save(state, meta(cut))
            raise Interrupted(checkpoints.last) from None
        finally:
            bar.close()
    return FitResult(state, history, compile_time, train_time)
