"""Training: a train state, one pure jitted step, evaluation and prediction (the loop: :mod:`jaxdl.loop`).

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

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxdl import devices
from jaxdl.compiler import jit
from jaxdl.core import Layer, device_errors, stateful_paths
from jaxdl.crf import ChainScores
from jaxdl.data import BatchSource, batch_source, dataset_size, eval_batches
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


class WeightAverageState(NamedTuple):
    """The state of :func:`average_weights`: the wrapped optimizer's, and the running average."""

    inner: Any
    count: jax.Array
    averaged_params: Any


def average_weights(optimizer: optax.GradientTransformation, decay: float = 0.999) -> optax.GradientTransformation:
    """``optimizer``, keeping besides an exponential moving average of the parameters it
    produces: after update ``t`` (1, 2, ...), ``average = d * average + (1 - d) * params``
    with ``d = min(decay, t / (t + 9))``, so that the first updates are not drowned by the
    initial weights. The updates are ``optimizer``'s, unchanged: training follows the same
    path. The average lives in the optimizer's state, so checkpoints save it and a resumed
    run continues it; :func:`eval_params` reads it, and :func:`jaxdl.loop.fit` scores it.
    """
    if not 0.0 < decay < 1.0:
        raise ValueError(f"average_weights decay must be in (0, 1), e.g. 0.999, got {decay!r}")

    def init(params):
        return WeightAverageState(optimizer.init(params), jnp.zeros((), jnp.int32), params)

    def update(grads, state, params=None, **extra):
        if params is None:
            raise ValueError("average_weights needs the params: optimizer.update(grads, state, params)")
        updates, inner = optimizer.update(grads, state.inner, params, **extra)
        count = state.count + 1
        d = jnp.minimum(decay, count / (count + 9.0))
        averaged = optax.incremental_update(optax.apply_updates(params, updates), state.averaged_params, 1 - d)
        return updates, WeightAverageState(inner, count, averaged)

    return optax.GradientTransformation(init, update)


def freeze(optimizer: optax.GradientTransformation, *paths: str) -> optax.GradientTransformation:
    """``optimizer`` leaving the params under each of ``paths`` as they are (pretrained word
    vectors kept fixed, say): a path names nested params from the top, ``"features/words/embedding"``.

    Those params get zero updates and no optimizer state; the others train as before. A path
    that names no params is an error (when the optimizer is initialised), not a silent no-op.
    With :func:`average_weights`, wrap it around this (``average_weights(freeze(...))``), so
    that the average holds every param.
    """
    prefixes = [tuple(path.strip("/").split("/")) for path in paths]

    def under(names: tuple[str, ...], prefix: tuple[str, ...]) -> bool:
        return names[:len(prefix)] == prefix

    def labels(params):
        names = [_path_names(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        unmatched = [path for path, prefix in zip(paths, prefixes) if not any(under(n, prefix) for n in names)]
        if unmatched:
            shown = sorted({"/".join(n[:-1]) for n in names})
            raise ValueError(f"freeze: no params under {unmatched[0]!r}; the layers with params are {shown}")
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "frozen" if any(under(_path_names(path), p) for p in prefixes) else "trained", params)

    return optax.multi_transform({"trained": optimizer, "frozen": optax.set_to_zero()}, labels)


def _path_names(path) -> tuple[str, ...]:
    """A pytree path as names: ``("features", "words", "embedding", "table")``."""
    return tuple(str(getattr(part, "key", part)) for part in path)


def eval_params(state: TrainState):
    """The parameters to evaluate a train state with: the running average of
    :func:`average_weights` when its optimizer keeps one, else ``state.params``. Also takes
    a checkpoint's state read without a target (nested dicts)."""
    tree = state if isinstance(state, dict) else state._asdict()
    return optax.tree_utils.tree_get(tree["opt_state"], "averaged_params", tree["params"])


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


def stream_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Independent roots for per-step randomness and for the data order, from a train state's key."""
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
        key = jax.random.fold_in(stream_keys(state.key)[0], state.step)
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
        key = jax.random.fold_in(stream_keys(state.key)[0], state.step)
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


def train_seeds(model: Layer, loss_fn: LossFn, optimizer: optax.GradientTransformation, batch: Batch,
                keys: jax.Array, *, steps: int, metrics: Mapping[str, LossFn] = DEFAULT_METRICS) -> tuple[dict, jax.Array]:
    """One network of ``model`` per key of ``keys`` (K,), each trained for ``steps`` steps on the
    whole ``batch``, all at once (``vmap`` over the keys, ``lax.scan`` over the steps, one
    compiled call): how often does gradient descent find a solution from a random start?

    Each key is split into the network's init key and its train state's key, as the
    experiment scripts split their seed. Returns each network's final metrics on ``batch``
    (``train=False``), each (K,), and its loss at every step, (K, steps).
    """
    train_step = make_train_step(model, loss_fn, optimizer, metrics)
    eval_step = make_eval_step(model, loss_fn, metrics)
    input_shape = (-1, *jnp.shape(batch["x"])[1:])

    def run(key):
        init_key, state_key = jax.random.split(key)
        _, params, *model_state = model.init(init_key, input_shape)
        state = TrainState.create(params, optimizer, state_key, *model_state)
        state, history = lax.scan(lambda state, _: train_step(state, batch), state, None, length=steps)
        final = eval_step(state.params, batch, state.model_state)
        return {name: value for name, value in final.items() if name != "weight"}, history["loss"]

    return jax.jit(jax.vmap(run))(keys)


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
    place = place_batches(mesh, batch_size)
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


def _outputs(model: Layer, transform: Callable | None, params, model_state, batch: Batch):
    outputs = forward(model, params, model_state, batch)[0]
    if transform is None and isinstance(outputs, ChainScores):
        raise TypeError(f"model '{model.name}' ends in a CRF, whose outputs are ChainScores, not one array: "
                        "predict(..., transform=lambda scores: jaxdl.crf.viterbi(scores)[0]) gives its best tags, "
                        "transform=jaxdl.crf.marginals each tag's probability")
    return outputs if transform is None else transform(outputs)


_predict_batch = jit(_outputs, static_argnums=(0, 1))  # compiled once per model, transform and batch shape


def predict(model: Layer, params, data, batch_size: int, *, model_state=None, per_step: bool = False,
            transform: Callable | None = None) -> np.ndarray | list[np.ndarray]:
    """The model's outputs (``train=False``) for every example of ``data``, in input order.

    ``data`` is an array of inputs or a dict of columns (``"x"`` and the context the model
    reads, ``"lengths"`` say): the outputs come back as one array (N, ...). Or it is a
    :class:`jaxdl.data.BatchSource` whose batches say each row's ``"index"`` in the input
    (:class:`jaxdl.data.text.Buckets`): a list of N arrays, one per example, each cut to its
    ``"lengths"`` along its first axis when ``per_step`` (a tagger's per-token outputs).
    ``model_state`` for a model that keeps state; ``transform`` (``jax.nn.softmax``, say) is
    applied to the outputs in the compiled call.
    """
    model = _model(model, "predict")
    if not isinstance(data, BatchSource):
        columns = dict(data) if isinstance(data, Mapping) else {"x": data}
        with device_errors():
            outputs = devices.fetch([_predict_batch(model, transform, params, model_state, batch)
                                     for batch in eval_batches(columns, batch_size)])
        return np.concatenate(outputs)[: dataset_size(columns)]
    found: list = [None] * data.size
    with device_errors():
        for batch in data.eval_batches(batch_size):
            if "index" not in batch:
                raise ValueError(f"predict needs batches that say where each row comes from (an \"index\" column, "
                                 f"as Buckets give); {type(data).__name__} gives {sorted(batch)}")
            outputs = np.asarray(devices.fetch(_predict_batch(model, transform, params, model_state, batch)))
            lengths = batch.get("lengths", np.full(len(outputs), outputs.shape[1] if per_step else 0))
            for row, index, length in zip(outputs, np.asarray(batch["index"]), np.asarray(lengths)):
                if index >= 0:  # a filler row of the last batch is -1
                    found[index] = row[:length] if per_step else row
    return found


def ensemble_predict(model: Layer, members, data, batch_size: int, *, model_states=None, per_step: bool = False,
                     transform: Callable = jax.nn.softmax):
    """The mean over an ensemble's networks of ``transform(outputs)`` (their probabilities, by
    default) for every example of ``data``, in input order, as :func:`predict` gives them.

    ``members`` holds each network's params (networks of ``model`` trained from other seeds),
    ``model_states`` their states, for a model that keeps state.
    """
    states = [None] * len(members) if model_states is None else model_states
    each = [predict(model, params, data, batch_size, model_state=state, per_step=per_step, transform=transform)
            for params, state in zip(members, states)]
    if isinstance(each[0], np.ndarray):
        return np.mean(each, axis=0)
    return [np.mean(example, axis=0) for example in zip(*each)]


def place_batches(mesh: jax.sharding.Mesh | None, batch_size: int) -> Callable[[Batch], Batch]:
    """``place(batch)``: the batch split over the mesh's ``"data"`` axis (as it is, without a mesh)."""
    if mesh is None:
        return lambda batch: batch
    devices.check_batch_size(batch_size, mesh)
    sharding = devices.batch_sharding(mesh)
    return lambda batch: devices.put(batch, sharding)
