"""The layer contract: a layer is a pair of pure functions; combinators compose layers.

Most layers keep no state::

    output_shape, params = layer.init(key, input_shape)
    y = layer.apply(params, x, key=None, train=False)

A layer that keeps state (BatchNorm's running statistics, a streaming RNN's last
carry) has ``stateful=True``; its initial state comes from ``init`` and every call
returns the state to use next::

    output_shape, params, state = layer.init(key, input_shape)
    y, state = layer.apply(params, x, state=state, train=True)   # the statistics move
    y, _ = layer.apply(params, x, state=state)                    # evaluation reads them

A model keeps state when any of its layers does; a model without state keeps the
plain call. State is a pytree of dicts named like the params (``{"batchnorm1":
{"mean", "var"}}``), never differentiated, carried by :class:`jaxdl.train.TrainState`.

Context is what a batch holds besides its inputs: the ``lengths`` of padded
sequences, a per-step ``mask``, any column a layer declares in ``reads``. It is
given by name (``model.apply(params, x, lengths=lengths)``) and reaches every layer
that reads it, at any depth; a name that no layer reads is an error.

Shapes include the batch axis first, ``-1`` where it is not known yet; ``init``
infers every shape without data, so :func:`summary` costs nothing. Parameters are
plain dicts of arrays with readable names; a composite layer keeps each child's
params and state under the child's name. Every layer runs under a
``jax.named_scope`` of its path (``cnn/conv1``), so compiled programs and profiles
name it. A wrong input raises :class:`LayerError` naming the layer's path, what it
expected and what it got. Shapes and dtypes are checked while tracing, so those checks
cost nothing in ``jit``; values (an id outside the vocabulary) are checked by
:func:`raise_if`, also inside ``jit``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
from collections import Counter
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdl.tables import format_table

Shape = tuple  # (batch, ...) with -1 for an unknown size, or a tuple of shapes
Params = Any  # a pytree of dicts of arrays
State = Any  # a pytree of dicts of arrays, for a layer that keeps state


class LayerError(ValueError):
    """A layer got an input it cannot take (wrong shape, dtype, context or state).

    ``path`` is the chain of names from the outermost layer to the one that failed.
    """

    def __init__(self, kind: str, problem: str, path: tuple[str, ...] = ()):
        self.kind, self.problem, self.path = kind, problem, path
        where = "/".join(path) if path else kind.lower()
        super().__init__(f"layer '{where}' ({kind}): {problem}")

    def within(self, name: str) -> "LayerError":
        """The same error, seen from the layer that calls this one ``name``."""
        return LayerError(self.kind, self.problem, (name, *self.path))


class Layer(NamedTuple):
    """A layer: two pure functions, its name and kind, its children, what it keeps and reads.

    Build one with the functions of its kind::

        init_fn(key, input_shape) -> (output_shape, params)                  # stateless
        apply_fn(params, x, *, key=None, train=False, **reads) -> y
        init_fn(key, input_shape) -> (output_shape, params, state)           # stateful
        apply_fn(params, x, *, state, key=None, train=False, **reads) -> (y, state)

    and call it through :meth:`init` and :meth:`apply`, which check what they are
    given and run the layer under its name. A layer with children is easiest made
    with :func:`composite`.
    """

    init_fn: Callable[..., tuple]
    """``(key, input_shape) -> (output_shape, params)``, plus ``state`` when stateful."""
    apply_fn: Callable[..., Any]
    """``(params, x, *, key=None, train=False, **reads) -> y``; when stateful it also takes
    ``state=`` and returns ``(y, state)``."""
    name: str
    """What a composite calls this layer in its params (numbered where names repeat)."""
    kind: str
    """The layer's type, e.g. ``"Dense"``, shown by :func:`summary`."""
    children: tuple[tuple[str, "Layer"], ...] = ()
    """``(name, Layer)`` pairs of a composite, in order."""
    stateful: bool = False
    """Whether the layer keeps state (its own or a child's)."""
    reads: tuple[str, ...] = ()
    """The context names the layer (or a child) reads, e.g. ``("lengths", "step_mask")``."""

    def init(self, key: jax.Array, input_shape: Shape) -> tuple:
        """``(output_shape, params)``, or ``(output_shape, params, state)`` for a stateful layer."""
        try:
            return self.init_fn(key, input_shape)
        except LayerError as error:
            raise error.within(self.name) from None

    def apply(self, params: Params, x, *, state: State = None, key: jax.Array | None = None,
              train: bool = False, **context):
        """The layer on ``x``: ``y``, or ``(y, state)`` for a stateful layer (which needs ``state=``).

        ``key`` feeds the randomness of training (dropout); ``train`` chooses training or
        evaluation behaviour; ``context`` gives named columns such as ``lengths=``.
        """
        try:
            _check_call(self, state, context)
            with _scope(self.name):
                if self.stateful:
                    return self.apply_fn(params, x, state=state, key=key, train=train, **context)
                return self.apply_fn(params, x, key=key, train=train, **context)
        except LayerError as error:
            raise error.within(self.name) from None
        except KeyError as missing:
            raise _missing_entry(self, missing).within(self.name) from None

    def __repr__(self) -> str:
        extras = [f"{len(self.children)} children"] if self.children else []
        extras += ["stateful"] if self.stateful else []
        extras += [f"reads {', '.join(self.reads)}"] if self.reads else []
        return f"Layer({self.name!r}, {self.kind}{''.join(f'; {e}' for e in extras)})"


def _check_call(layer: Layer, state, context: dict) -> None:
    unknown = sorted(set(context) - set(layer.reads))
    if unknown:
        reads = ", ".join(layer.reads) if layer.reads else "nothing"
        raise LayerError(layer.kind, f"got context {', '.join(map(repr, unknown))}, which none of its layers "
                                     f"reads (it reads {reads}); check the name")
    if layer.stateful and state is None:
        raise LayerError(layer.kind, f"keeps state ({', '.join(stateful_paths(layer))}): call "
                                     "apply(params, x, state=state) -> (y, state), with the state from init")
    if not layer.stateful and state is not None:
        raise LayerError(layer.kind, "keeps no state: call apply(params, x) -> y, without state=")


_PATH: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("jaxdl_path", default=())


@contextlib.contextmanager
def _scope(name: str):
    """Run a layer under ``jax.named_scope(name)``, and remember its path for :func:`raise_if`."""
    token = _PATH.set((*_PATH.get(), name))
    try:
        with jax.named_scope(name):
            yield
    finally:
        _PATH.reset(token)


def _missing_entry(layer: Layer, missing: KeyError) -> LayerError:
    return LayerError(layer.kind, f"the params or state given have no entry {missing}: use those its init "
                                  "returned (a checkpoint of another model, or of an older version of it?)")


def stateful_paths(layer: Layer, prefix: str = "") -> list[str]:
    """The paths of the layers that keep state themselves (``cnn/batchnorm1``), outermost first."""
    path = f"{prefix}{layer.name}"
    if not layer.stateful:
        return []
    inner = [p for name, child in layer.children for p in stateful_paths(child._replace(name=name), f"{path}/")]
    return inner or [path]


# ------------------------------------------------------------------- building composites
class _Recording(NamedTuple):
    rows: list  # (depth, name, kind, output shape, params, state sizes); None while a child is running
    depth: list  # [current depth]


_RECORDING: contextvars.ContextVar[_Recording | None] = contextvars.ContextVar("jaxdl_summary", default=None)


def _size(tree) -> tuple[int, int]:
    leaves = jax.tree_util.tree_leaves(tree)
    return sum(math.prod(x.shape) for x in leaves), sum(math.prod(x.shape) * x.dtype.itemsize for x in leaves)


def init_child(name: str, layer: Layer, key: jax.Array, input_shape: Shape, params: dict, state: dict
               ) -> tuple[Shape, dict, dict]:
    """Initialise the child ``layer`` of a composite, which calls it ``name``.

    Returns ``(output_shape, params, state)``: the composite's ``params`` and ``state``
    with the child's added under ``name`` (when it has any).
    """
    recording = _RECORDING.get()
    if recording is not None:
        row = len(recording.rows)
        recording.rows.append(None)
        recording.depth[0] += 1
    try:
        shape, child_params, *child_state = layer.init_fn(key, input_shape)
    except LayerError as error:
        raise error.within(name) from None
    finally:
        if recording is not None:
            recording.depth[0] -= 1
    if recording is not None:
        recording.rows[row] = (recording.depth[0] + 1, name, layer.kind, shape, _size(child_params), _size(child_state))
    if jax.tree_util.tree_leaves(child_params):
        params = {**params, name: child_params}
    if layer.stateful:
        state = {**state, name: child_state[0]}
    return shape, params, state


def apply_child(name: str, layer: Layer, params: dict, state: dict, x, *, key: jax.Array | None = None,
                train: bool = False, context: dict | None = None) -> tuple[Any, dict]:
    """Run the child ``layer`` of a composite (which calls it ``name``) on ``x``, under the name.

    ``params`` and ``state`` are the composite's; the child gets its own entries and the
    ``context`` it reads. Returns ``(y, state)``: the composite's state with the child's updated.
    """
    reads = {n: value for n, value in (context or {}).items() if n in layer.reads}
    try:
        with _scope(name):
            if not layer.stateful:
                return layer.apply_fn(params.get(name, {}), x, key=key, train=train, **reads), state
            if name not in state:
                raise LayerError(layer.kind, f"keeps state, but the state given has no entry {name!r}: "
                                             "use the state that init returned")
            y, child_state = layer.apply_fn(params.get(name, {}), x, state=state[name], key=key, train=train, **reads)
    except LayerError as error:
        raise error.within(name) from None
    except KeyError as missing:
        raise _missing_entry(layer, missing).within(name) from None
    return y, {**state, name: child_state}


def composite(init: Callable, apply: Callable, name: str, kind: str, children: Sequence[tuple[str, Layer]],
              *, reads: Sequence[str] | None = None) -> Layer:
    """A layer made of ``children`` (``(name, Layer)`` pairs), written once for every child::

        init(key, input_shape) -> (output_shape, params, state)
        apply(params, x, *, state, key=None, train=False, **context) -> (y, state)

    They thread state through :func:`init_child` and :func:`apply_child` (an empty dict
    where no child keeps any). The layer keeps state when a child does (else it has the
    plain stateless call) and reads the context its children read, unless ``reads`` says.
    """
    children = tuple(children)
    stateful = any(layer.stateful for _, layer in children)
    if reads is None:
        reads = sorted({n for _, layer in children for n in layer.reads})
    if stateful:
        return Layer(init, apply, name, kind, children, True, tuple(reads))

    def init_fn(key, input_shape):
        shape, params, _ = init(key, input_shape)
        return shape, params

    def apply_fn(params, x, *, key=None, train=False, **context):
        return apply(params, x, state={}, key=key, train=train, **context)[0]

    return Layer(init_fn, apply_fn, name, kind, children, False, tuple(reads))


def child_keys(key: jax.Array | None, n: int) -> list:
    """``n`` keys split from ``key``, one per child; ``None`` each when ``key`` is None."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def raise_if(bad: Callable[..., Any], error: Callable[..., Exception], *values) -> None:
    """Raise ``error(*values)`` where ``bad(*values)`` holds, also inside ``jit``.

    ``values`` are small arrays computed from a layer's inputs (the smallest and largest
    id, say). Concrete values are checked at once; traced ones when the compiled program
    runs, by a host callback that is only taken when the check fails (under ``vmap`` it
    is always taken, and checks again). A :class:`LayerError` raised there names the
    layer's path; :func:`device_errors` turns the runtime error that carries it back into it.
    """
    if not any(isinstance(v, jax.core.Tracer) for v in values):
        host = [np.asarray(v) for v in values]
        if np.any(bad(*host)):
            raise error(*host)
        return
    path = _PATH.get()  # the layer's path while it is traced: the error is raised outside it

    def on_host(*host):
        if np.any(bad(*host)):
            found = error(*host)
            raise LayerError(found.kind, found.problem, (*path, *found.path)) if isinstance(found, LayerError) else found

    lax.cond(jnp.any(bad(*values)), lambda: jax.debug.callback(on_host, *values), lambda: None)


_RAISED_ON_DEVICE = re.compile(r"LayerError: layer '([^']*)' \(([^)]*)\): (.*)$", re.M)


@contextlib.contextmanager
def device_errors():
    """Turn the runtime error of a compiled program whose check (:func:`raise_if`) failed back
    into the :class:`LayerError` the check raised, without XLA's traceback."""
    try:
        yield
    except jax.errors.JaxRuntimeError as error:
        found = _RAISED_ON_DEVICE.findall(str(error))
        if not found:
            raise
        path, kind, problem = found[-1]
        raise LayerError(kind, problem, tuple(path.split("/"))) from None


# ---------------------------------------------------------------------- combinators
def _unique_names(layers: Sequence[Layer]) -> list[str]:
    """Layer names, numbered from 1 where several layers share one: dense1, dense2."""
    totals = Counter(layer.name for layer in layers)
    seen: Counter = Counter()
    names = []
    for layer in layers:
        seen[layer.name] += 1
        names.append(f"{layer.name}{seen[layer.name]}" if totals[layer.name] > 1 else layer.name)
    return names


def serial(*layers: Layer, name: str = "serial") -> Layer:
    """Compose layers in sequence: the output of each is the input of the next.

    Params (and state): a dict from each layer's name (numbered where names repeat)
    to its params; layers without any are left out. Context reaches every layer that reads it.
    """
    if not layers:
        raise ValueError("serial needs at least one layer")
    children = tuple(zip(_unique_names(layers), layers))

    def init(key, input_shape):
        shape, params, state = input_shape, {}, {}
        for (child, layer), k in zip(children, jax.random.split(key, len(children))):
            shape, params, state = init_child(child, layer, k, shape, params, state)
        return shape, params, state

    def apply(params, x, *, state, key=None, train=False, **context):
        for (child, layer), k in zip(children, child_keys(key, len(children))):
            x, state = apply_child(child, layer, params, state, x, key=k, train=train, context=context)
        return x, state

    return composite(init, apply, name, "serial", children)


def parallel(*layers: Layer, name: str = "parallel") -> Layer:
    """Apply layer i to input i of a tuple; returns the tuple of outputs.

    Pair it with :func:`jaxdl.layers.FanOut` and :func:`jaxdl.layers.FanInSum` /
    :func:`jaxdl.layers.FanInConcat`.
    """
    if not layers:
        raise ValueError("parallel needs at least one layer")
    children = tuple(zip(_unique_names(layers), layers))

    def check(inputs, what):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != len(children):
            raise LayerError("parallel", f"expected a tuple of {len(children)} {what}, got {inputs!r:.80}")

    def init(key, input_shape):
        check(input_shape, "shapes")
        shapes, params, state = [], {}, {}
        for (child, layer), k, shape in zip(children, jax.random.split(key, len(children)), input_shape):
            shape, params, state = init_child(child, layer, k, shape, params, state)
            shapes.append(shape)
        return tuple(shapes), params, state

    def apply(params, inputs, *, state, key=None, train=False, **context):
        check(inputs, "inputs")
        outputs = []
        for (child, layer), k, x in zip(children, child_keys(key, len(children)), inputs):
            y, state = apply_child(child, layer, params, state, x, key=k, train=train, context=context)
            outputs.append(y)
        return tuple(outputs), state

    return composite(init, apply, name, "parallel", children)


# ------------------------------------------------------------------------- summary
def abstract_init(layer: Layer, input_shape: Shape) -> tuple:
    """``layer.init`` without computing anything: params (and state) come back as ShapeDtypeStructs."""
    result = {}

    def init(key):
        result["shape"], *trees = layer.init(key, input_shape)
        return trees

    trees = jax.eval_shape(init, jax.random.key(0))
    return (result["shape"], *trees)


def initial_state(layer: Layer, input_shape: Shape) -> State:
    """The state ``layer.init`` starts with (None for a layer without state), computed
    without computing its params (compiled once per layer and shape)."""
    return _initial_state(layer, tuple(input_shape)) if layer.stateful else None


@functools.partial(jax.jit, static_argnums=(0, 1))
def _initial_state(layer: Layer, input_shape: Shape) -> State:
    return layer.init(jax.random.key(0), input_shape)[2]  # XLA drops the params: only the state is returned


def count_params(params: Params) -> int:
    """The number of scalars in a params (or state) pytree of arrays or ShapeDtypeStructs."""
    return _size(params)[0]


def summary(model: Layer, input_shape: Shape, *, print_fn: Callable[[str], None] = print) -> int:
    """Print every layer, children of any composite included, with its output shape and
    parameter count (and state size, for a model that keeps state), then the totals.

    Nothing is computed: shapes come from ``init`` under ``jax.eval_shape``.
    Returns the total number of parameters.
    """
    recording = _Recording([], [0])
    token = _RECORDING.set(recording)
    try:
        shape, params, *state = abstract_init(model, tuple(input_shape))
    finally:
        _RECORDING.reset(token)
    rows = [(0, model.name, model.kind, shape, _size(params), _size(state)), *recording.rows]
    header = ("layer", "kind", "output shape", "params") + (("state",) if model.stateful else ())
    table = format_table(
        header,
        [("  " * depth + name, kind, out, f"{p[0]:,}", *((f"{s[0]:,}",) if model.stateful else ()))
         for depth, name, kind, out, p, s in rows],
        right=(3, 4),
    )
    (total, size), (held, held_size) = rows[0][4:]
    kept = f"; state: {held:,} ({held_size / 1024:,.1f} KiB)" if model.stateful else ""
    print_fn(f"{table}\ntotal params: {total:,} ({size / 1024:,.1f} KiB){kept}")
    return total
