"""Training: a train state, one pure jitted step, evaluation, and the ``fit`` loop.

A batch is a dict ``{"x": inputs, "y": targets}`` with an optional ``"mask"``
(0/1 or weights broadcastable to the per-example loss) and ``"index"`` (an
example's position, from :class:`jaxdl.data.text.Buckets`); any other column
(``"lengths"``, say) is context that the model reads by name
(:mod:`jaxdl.core`): one no layer reads is an error. A loss or metric is a
function ``(outputs, targets, mask=None) -> scalar`` (see :mod:`jaxdl.losses`).
A model that keeps state (BatchNorm) carries it in the train state: each step
returns it updated, and evaluation reads it.

The step is pure: ``step(state, batch) -> (state, metrics)``. Its randomness
(dropout) comes from ``fold_in(state.key, state.step)``, and the data order of
epoch ``e`` from ``fold_in(key, e)``, so a run restored from a checkpoint at any
step continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from tqdm import tqdm  # not tqdm.auto: without ipywidgets it warns in every notebook

from jaxdl import devices
from jaxdl.checkpoint import (
    Checkpoint,
    json_ready,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from jaxdl.compiler import jit
from jaxdl.core import Layer, device_errors, stateful_paths
from jaxdl.data import ArrayBatches, BatchSource, batch_source, dataset_size, epoch_order, eval_batches
from jaxdl.losses import weighted_mean
from jaxdl.metrics import accuracy

LossFn = Callable[..., jax.Array]
Batch = Mapping[str, jax.Array]
DEFAULT_METRICS: Mapping[str, LossFn] = {"accuracy": accuracy}


class TrainState(NamedTuple):
    """Everything that changes while training: a pytree, saved whole in checkpoints."""

    step: jax.Array
    """int32 scalar: the number of updates done."""
    params: Any
    """The model's parameters (a pytree of dicts of arrays)."""
    opt_state: Any
    """The optimizer's state (an ``optax.OptState`` pytree)."""
    key: jax.Array
    """Typed PRNG key; per-step keys are folded from it."""
    model_state: Any = None
    """The model's state (BatchNorm's running statistics); None for a model without state."""

    @classmethod
    def create(cls, params, optimizer: optax.GradientTransformation, key: jax.Array,
               model_state: Any = None) -> "TrainState":
        """The state before the first step; ``model_state`` is the state ``model.init`` returned,
        for a model that keeps one."""
        return cls(jnp.zeros((), jnp.int32), params, optimizer.init(params), key, model_state)


CONTEXT_FREE = ("x", "y", "mask", "index")  # batch columns that are not the model's context


def _model(model: Layer, who: str) -> Layer:
    if not isinstance(model, Layer):
        raise TypeError(f"{who} takes the model (a jaxdl Layer, such as dl.serial(...)), got {model!r:.80}: "
                        f"{who}(model, ...), not {who}(model.apply, ...)")
    return model


def _without_state(model: Layer, who: str) -> Layer:
    """``model``, refused when it keeps state: per-example gradients run each example alone."""
    if _model(model, who).stateful:
        raise ValueError(
            f"{who} runs each example alone, and model '{model.name}' keeps state "
            f"({', '.join(stateful_paths(model))}): state that mixes the examples of a batch (BatchNorm's "
            "statistics) means nothing for one. Normalise each example alone instead (LayerNorm)."
        )
    return model


def forward(model: Layer, params, model_state, batch: Batch, *, key: jax.Array | None = None,
            train: bool = False) -> tuple[Any, Any]:
    """``model`` on ``batch["x"]`` with the batch's context columns (all but x, y, mask and
    index): ``(outputs, model_state)``, the state updated by a training call of a model
    that keeps one (a model without state returns ``model_state`` as it came)."""
    context = {name: column for name, column in batch.items() if name not in CONTEXT_FREE}
    if not model.stateful:
        return model.apply(params, batch["x"], key=key, train=train, **context), model_state
    if not jax.tree.leaves(model_state):
        raise ValueError(
            f"model '{model.name}' keeps state ({', '.join(stateful_paths(model))}) but none was given: "
            "TrainState.create(params, optimizer, key, model_state=state) with the state from model.init, "
            "and model_state= for evaluate and predict"
        )
    return model.apply(params, batch["x"], state=model_state, key=key, train=train, **context)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float, checkpoint: str | None):
        self.step, self.loss, self.checkpoint = step, loss, checkpoint
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written"
        super().__init__(
            f"the training loss became {loss} at step {step}; training stopped and {kept}. "
            "Try a smaller learning rate (--lr) or gradient clipping."
        )


def _stream_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Independent roots for per-step randomness and for the data order."""
    step_root, shuffle_root = jax.random.split(key)
    return step_root, shuffle_root


def _evaluate_batch(model, loss_fn, metrics, params, model_state, batch, key, train):
    outputs, model_state = forward(model, params, model_state, batch, key=key, train=train)
    mask = batch.get("mask")
    loss = loss_fn(outputs, batch["y"], mask)
    values = {"loss": loss, **{name: fn(outputs, batch["y"], mask) for name, fn in metrics.items()}}
    return loss, (values, model_state)


def make_train_step(
    model: Layer,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    metrics: Mapping[str, LossFn] = DEFAULT_METRICS,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """Build the jitted ``step(state, batch) -> (state, metrics)`` for a model, a loss and an optimizer.

    Metrics are computed on the training outputs (``train=True``) of the batch; a model
    that keeps state returns it updated in the new train state.
    """
    model = _model(model, "make_train_step")

    def step(state: TrainState, batch: Batch):
        key = jax.random.fold_in(_stream_keys(state.key)[0], state.step)
        grad_fn = jax.value_and_grad(_evaluate_batch, argnums=3, has_aux=True)
        (_, (values, model_state)), grads = grad_fn(
            model, loss_fn, metrics, state.params, state.model_state, batch, key, True)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state._replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), values

    return jit(step)


def per_example_grads(
    model: Layer, loss_fn: LossFn, params, batch: Batch, *, key: jax.Array | None = None, train: bool = False
) -> tuple[Any, jax.Array, jax.Array]:
    """The gradient of every example's own loss, by ``vmap`` over the batch.

    Each example is run as a batch of one (its ``"mask"`` row and context too); with ``key``,
    each gets its own dropout key. Returns ``(grads, losses, outputs)``: the params' pytree
    with a leading (B,) axis on every leaf, the losses (B,), and the outputs (B, ...).
    A model that keeps state (BatchNorm) is refused: one example has no batch statistics.
    """
    model = _without_state(model, "per_example_grads")

    def one(example, example_key):
        single = jax.tree.map(lambda column: column[None], example)

        def loss(params):
            outputs, _ = forward(model, params, None, single, key=example_key, train=train)
            return loss_fn(outputs, single["y"], single.get("mask")), outputs[0]

        (value, outputs), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return grads, value, outputs

    size = jax.tree.leaves(batch)[0].shape[0]
    keys = None if key is None else jax.random.split(key, size)
    return jax.vmap(one, in_axes=(0, None if key is None else 0))(batch, keys)


def per_example_norms(grads) -> jax.Array:
    """The global L2 norm of each example's gradient: (B,) from per-example ``grads``."""
    leaves = jax.tree.leaves(grads)
    return jnp.sqrt(sum(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1) for g in leaves))


def make_per_example_train_step(
    model: Layer,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    metrics: Mapping[str, LossFn] = DEFAULT_METRICS,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """The jitted step of :func:`make_train_step`, but ``optimizer`` receives per-example
    gradients (B, ...) (:func:`per_example_grads`) and must aggregate them, as DP-SGD does::

        optimizer = optax.chain(
            optax.contrib.differentially_private_aggregate(clip, noise_multiplier, key), optax.sgd(lr))

    (each example's gradient clipped to norm ``clip``, summed, noised with standard
    deviation ``clip * noise_multiplier``, divided by B). Padded rows (a row mask of 0)
    give zero gradients. The metrics add ``"grad_norm"``: the mean per-example norm
    before clipping.
    """
    model = _without_state(model, "make_per_example_train_step")

    def step(state: TrainState, batch: Batch):
        key = jax.random.fold_in(_stream_keys(state.key)[0], state.step)
        grads, losses, outputs = per_example_grads(model, loss_fn, state.params, batch, key=key, train=True)
        mask = batch.get("mask")
        real = jnp.ones(losses.shape) if mask is None else (mask.reshape(len(losses), -1) != 0).any(axis=1)
        grads = jax.tree.map(lambda g: jnp.where(real.reshape(-1, *[1] * (g.ndim - 1)), g, 0), grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        values = {
            "loss": weighted_mean(losses, real),
            "grad_norm": weighted_mean(per_example_norms(grads), real),
            **{name: fn(outputs, batch["y"], mask) for name, fn in metrics.items()},
        }
        return state._replace(step=state.step + 1, params=params, opt_state=opt_state), values

    return jit(step)


def make_multi_step(train_step: Callable, batch_sharding: jax.sharding.Sharding | None = None) -> Callable:
    """Many training steps in one jitted call: ``run(state, data, order) -> (state, metrics)``.

    ``data`` is the whole dataset on the device, ``order`` (steps, batch) the example
    ids of each step's batch; metrics come back stacked, (steps,). One call per
    many steps removes the per-step dispatch that dominates small models and GPUs.
    ``batch_sharding`` splits each gathered batch over devices (:mod:`jaxdl.devices`).
    """

    def run(state: TrainState, data: Batch, order: jax.Array):
        def one_step(state, ids):
            batch = jax.tree.map(lambda column: column[ids], data)
            if batch_sharding is not None:
                batch = lax.with_sharding_constraint(batch, batch_sharding)
            return train_step(state, batch)

        return lax.scan(one_step, state, order)

    return jit(run)


def make_eval_step(
    model: Layer, loss_fn: LossFn, metrics: Mapping[str, LossFn] = DEFAULT_METRICS
) -> Callable[..., dict]:
    """Build the jitted ``eval_step(params, batch, model_state=None) -> metrics`` (``train=False``,
    no key; a model that keeps state reads ``model_state``, e.g. BatchNorm's running statistics).

    The result also holds ``"weight"``: the sum of the batch's mask, or its size.
    """
    model = _model(model, "make_eval_step")

    def eval_step(params, batch: Batch, model_state=None):
        _, (values, _) = _evaluate_batch(model, loss_fn, metrics, params, model_state, batch, None, False)
        mask = batch.get("mask")
        weight = jnp.asarray(batch["y"].shape[0] if mask is None else mask.sum(), jnp.float32)
        return {**values, "weight": weight}

    return jit(eval_step)


def evaluate(
    eval_step: Callable, params, data: Batch | BatchSource, batch_size: int, *, model_state=None,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
    """Metrics over a whole dataset (dict of arrays or :class:`jaxdl.data.BatchSource`),
    each averaged over examples (or mask weights); ``model_state`` for a model that keeps
    state; with a ``mesh``, each batch is split over its ``"data"`` axis."""
    totals: dict[str, float] = {}
    place = _batch_placer(mesh, batch_size)
    batches = batch_source(data).eval_batches(batch_size)
    state = () if model_state is None else (model_state,)  # an eval_step of one's own may take no state
    with device_errors():
        scores = devices.fetch([eval_step(params, place(batch), *state) for batch in batches])
    for values in scores:
        weight = float(values.pop("weight"))
        for name, value in values.items():
            totals[name] = totals.get(name, 0.0) + float(value) * weight
        totals["weight"] = totals.get("weight", 0.0) + weight
    weight = totals.pop("weight", 0.0)
    return {name: total / max(weight, 1e-12) for name, total in totals.items()}


def _outputs(model: Layer, params, model_state, batch: Batch):
    return forward(model, params, model_state, batch)[0]


_predict_batch = jit(_outputs, static_argnums=0)  # compiled once per model and batch shape


def predict(model: Layer, params, inputs, batch_size: int, *, model_state=None) -> np.ndarray:
    """The model's outputs (``train=False``) for every input, in batches of one shape.

    ``inputs`` is an array of inputs, or a dict of columns: ``"x"`` and the context the
    model reads (``"lengths"``, say). ``model_state`` for a model that keeps state.
    """
    model = _model(model, "predict")
    columns = dict(inputs) if isinstance(inputs, Mapping) else {"x": inputs}
    with device_errors():
        outputs = devices.fetch([_predict_batch(model, params, model_state, batch)
                                 for batch in eval_batches(columns, batch_size)])
    return np.concatenate(outputs)[: dataset_size(columns)]


def _batch_placer(mesh: jax.sharding.Mesh | None, batch_size: int) -> Callable[[Batch], Batch]:
    """``place(batch)``: the batch split over the mesh's ``"data"`` axis (as it is, without a mesh)."""
    if mesh is None:
        return lambda batch: batch
    devices.check_batch_size(batch_size, mesh)
    sharding = devices.batch_sharding(mesh)
    return lambda batch: devices.put(batch, sharding)


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


# Settings that may differ between a run and its resumption.
RESUMABLE_SETTINGS = (
    "epochs", "resume", "out", "progress", "data_dir", "manual_dir", "steps_per_call",
    "devices", "model_shards", "coordinator", "num_processes", "process_id",  # where it runs, not what
)


def _check_resumable(saved: dict, config: dict, path) -> None:
    """A ValueError if ``config`` differs from the ``saved`` one in a setting that changes the
    run. Settings the saved run did not have (its jaxdl predates them) are not compared."""
    config = json_ready(config, "config")  # as it was saved: tuples become lists
    changed = {
        k: (saved.get(k), config.get(k))
        for k in saved
        if k not in RESUMABLE_SETTINGS and saved.get(k) != config.get(k)
    }
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changed.items()))
        raise ValueError(
            f"cannot resume from {path}: the run was started with other settings ({detail}). "
            "Use the same settings, or a new output directory."
        )


def _fmt_metrics(record: Mapping[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in record.items() if k.startswith(("train_", "val_")))


def fit(
    state: TrainState,
    train_step: Callable,
    train_data: Batch | BatchSource,
    *,
    epochs: int,
    batch_size: int,
    eval_step: Callable | None = None,
    eval_data: Batch | None = None,
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
    callbacks: Iterable[Callable[[TrainState, dict], None]] = (),
    mesh: jax.sharding.Mesh | None = None,
) -> FitResult:
    """Train for ``epochs`` epochs of shuffled full batches; evaluate after each epoch.

    Args:
      state: the initial :class:`TrainState` (also the structure a resumed run loads into).
      train_step: from :func:`make_train_step`.
      train_data: dict of arrays with a shared first axis, e.g. ``{"x", "y"}``, or a
        :class:`jaxdl.data.BatchSource` such as :class:`jaxdl.data.text.Buckets`.
      eval_step, eval_data: from :func:`make_eval_step`, and the data it scores (``val_*``).
      checkpoint_dir: where checkpoints go, every ``checkpoint_every`` epochs,
        at the end, and when interrupted (Ctrl-C).
      resume: continue from the latest checkpoint in ``checkpoint_dir``, if any.
      config: the run's settings, saved with checkpoints; resuming with other
        settings (but those in ``RESUMABLE_SETTINGS``) is refused.
      log_every: steps between reads of the loss from the device (the progress
        bar, and the NaN check, which names the exact step).
      steps_per_call: training steps per jitted call. 1 calls ``train_step``
        once per batch; more runs them in a ``lax.scan`` over batches gathered
        on the device (:func:`make_multi_step`), with the same result.
      progress: show a progress bar (default: when stderr is a terminal).
      verbose: without a bar, print one line per epoch; False prints nothing (the
        history holds the same figures).
      callbacks: called as ``fn(state, record)`` after each epoch's evaluation; metrics
        they add to ``record`` (``val_f1``, say) join the history, the epoch's line and
        its checkpoint (a run interrupted inside a callback keeps the record without them).
      mesh: train data-parallel on a device mesh (:func:`jaxdl.devices.make_mesh`): each
        batch is split over its ``"data"`` axis, the state replicated (or its largest arrays
        split over ``"model"``). ``batch_size`` must be a multiple of the ``"data"`` size.
        With several processes, checkpoints are written by process 0 and read by all.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite; no checkpoint of the
        bad state is written.
    """
    sizes = {
        "epochs": epochs, "batch_size": batch_size, "checkpoint_every": checkpoint_every,
        "log_every": log_every, "steps_per_call": steps_per_call,
    }
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    source = batch_source(train_data)
    eval_source = None if eval_data is None else batch_source(eval_data)  # on the device once, not per evaluation
    steps_per_epoch = source.steps_per_epoch(batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the training set ({source.size} examples)")
    if steps_per_call > 1 and not isinstance(source, ArrayBatches):
        raise ValueError(f"steps_per_call > 1 needs the training data as a dict of arrays, got {type(source).__name__}")
    place = _batch_placer(mesh, batch_size)
    config = dict(config or {})
    history: list[dict] = []
    train_time = elapsed_before = 0.0
    found = latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if found and not resume:
        raise ValueError(
            f"{checkpoint_dir} already holds checkpoints ({found.name}): resume from them "
            "(resume=True, or --resume) or choose another directory"
        )
    if found:
        checkpoint: Checkpoint = load_checkpoint(found, target=state)
        _check_resumable(checkpoint.config, config, found)
        state, history = checkpoint.state, list(checkpoint.meta.get("history", []))
        train_time = float(checkpoint.meta.get("train_time_s", 0.0))
        elapsed_before = float(checkpoint.meta.get("elapsed_s", 0.0))
    last_checkpoint = str(found) if found else None

    _, shuffle_root = _stream_keys(state.key)
    step = start = int(devices.fetch(state.step))
    if mesh is not None:
        shardings = devices.state_sharding(state, mesh)
        state = devices.put(state, shardings)
        # Pinned outputs: left to itself, XLA may hand back a state laid out otherwise (a small
        # kernel split over "model"), which the next call would have to compile for again.
        train_step = jit(train_step, out_shardings=(shardings, devices.replicated(mesh)))
    total = epochs * steps_per_epoch
    compile_time = 0.0
    sums: dict[str, float] = {}
    pending: list[tuple[int, dict]] = []  # (first step, metrics of 1 step or stacked (steps,))
    bar = tqdm(total=total, initial=min(start, total), unit="step", dynamic_ncols=True,
               disable=None if progress is None else not progress)

    def drain() -> None:
        """Read pending step metrics from the device; stop at the first non-finite loss."""
        done = 0
        for first, values in devices.fetch(pending):
            values = {name: np.atleast_1d(value) for name, value in values.items()}
            bad = np.flatnonzero(~np.isfinite(values["loss"]))
            if bad.size:
                raise NonFiniteLossError(first + int(bad[0]), float(values["loss"][bad[0]]), last_checkpoint)
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + float(value.sum())
            done += len(values["loss"])
            bar.set_postfix(loss=f"{float(values['loss'][-1]):.4g}", refresh=False)
        bar.update(done)
        pending.clear()

    def save() -> None:
        nonlocal last_checkpoint
        if checkpoint_dir:
            meta = {"history": history, "train_time_s": train_time, "elapsed_s": elapsed()}
            path = save_checkpoint(checkpoint_dir, state, step, config=config, meta=meta, keep=keep_checkpoints)
            last_checkpoint = str(path)

    def replicate(tree):
        return tree if mesh is None else devices.put(tree, devices.replicated(mesh))

    multi_step = data = None
    if steps_per_call > 1:
        multi_step = make_multi_step(train_step, None if mesh is None else devices.batch_sharding(mesh))
        if mesh is not None:  # the scan's carry out is not pinned by the step's own: pin the call's too
            multi_step = jit(multi_step, out_shardings=(shardings, devices.replicated(mesh)))
        data = replicate(source.data)  # every device gathers its rows of each batch from its own copy

    def epoch_calls(epoch: int, offset: int):
        """The rest of an epoch as (steps, fn(state) -> (state, metrics)) calls.

        Chunks end on multiples of steps_per_call, so a resumed run chunks alike.
        """
        if multi_step is None:
            for batch in source.train_batches(batch_size, shuffle_root, epoch=epoch, start=offset):
                yield 1, lambda state, batch=place(batch): train_step(state, batch)
            return
        order = epoch_order(jax.random.fold_in(shuffle_root, epoch), source.size, batch_size)
        begin = offset
        while begin < steps_per_epoch:
            end = min((begin // steps_per_call + 1) * steps_per_call, steps_per_epoch)
            yield end - begin, lambda state, ids=replicate(order[begin:end]): multi_step(state, data, ids)
            begin = end

    began_training = time.perf_counter()

    def elapsed() -> float:
        """Wall time since training began (steps, evaluations, checkpoints), over resumed runs."""
        return elapsed_before + time.perf_counter() - began_training

    stop = early_stopping is not None and early_stopping.should_stop(history)  # a resumed run had stopped
    with device_errors():  # a failed check in the compiled step: its LayerError, not XLA's traceback
        try:
            while step < total and not stop:
                epoch, offset = divmod(step, steps_per_epoch)
                began = time.perf_counter()
                sums.clear()
                for count, call in epoch_calls(epoch, offset):
                    if step == start:
                        t0 = time.perf_counter()
                        state, values = jax.block_until_ready(call(state))
                        compile_time = time.perf_counter() - t0
                    else:
                        state, values = call(state)
                    pending.append((step + 1, values))
                    step += count
                    if step - pending[0][0] + 1 >= log_every:
                        drain()
                drain()
                seconds = time.perf_counter() - began
                train_time += seconds
                record = {"epoch": epoch + 1, "step": step, "time_s": round(seconds, 4)}
                record.update({f"train_{k}": v / (steps_per_epoch - offset) for k, v in sums.items()})
                if eval_step is not None and eval_source is not None:
                    scores = evaluate(eval_step, state.params, eval_source, batch_size, model_state=state.model_state,
                                      mesh=mesh)
                    record.update({f"val_{k}": v for k, v in scores.items()})
                record["elapsed_s"] = round(elapsed(), 4)
                history.append(record)
                for callback in callbacks:  # before the epoch's line, so the metrics they add show in it
                    callback(state, record)
                summary = f"epoch {epoch + 1}/{epochs} {_fmt_metrics(record)}"
                bar.set_postfix_str(summary)
                if bar.disable and verbose:  # no bar (e.g. output to a file): one line per epoch instead
                    print(f"{summary} ({record['elapsed_s']:.1f} s)", flush=True)
                stop = early_stopping is not None and early_stopping.should_stop(history)
                if (epoch + 1) % checkpoint_every == 0 or step >= total or stop:
                    save()
                if stop:
                    break
        except KeyboardInterrupt:
            drain()  # a state whose loss went non-finite is never saved
            save()
            raise
        finally:
            bar.close()
    return FitResult(state, history, compile_time, train_time)
