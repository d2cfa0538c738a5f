"""Checkpoints: round trips, rotation, corrupt and truncated files, targets that do not
fit, and saves killed with SIGKILL halfway through."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

import jaxdl as dl
from jaxdl.checkpoint import (
    MAGIC,
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from jaxdl.train import TrainState

REPO = Path(__file__).resolve().parents[1]
HEADER = len(MAGIC) + 32  # magic, then the payload's sha256
MODEL = dl.serial(dl.Dense(4), dl.Sigmoid(), dl.Dense(1))
XOR = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
CONFIG = {"lr": 0.01, "hidden": [4], "name": "xor", "options": {"clip": None, "nesterov": True}}
META = {"history": [{"epoch": 1, "train_loss": 0.6931471805599453}], "train_time_s": 1.25}


def make_state(seed, model=MODEL, optimizer=None, key=None):
    """A TrainState with a typed key and an adam state two updates old (no leaf is trivial)."""
    _, params = model.init(jax.random.key(seed), (-1, 2))
    optimizer = optimizer or optax.adam(1e-2)
    state = TrainState.create(params, optimizer, jax.random.key(100 + seed) if key is None else key)
    params, opt_state = state.params, state.opt_state
    for scale in (0.5, -0.25):
        grads = jax.tree.map(lambda p: scale * (p + 1.0), params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return TrainState(jnp.asarray(2, jnp.int32), params, opt_state, state.key)


def is_key(leaf):
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def assert_same_leaves(got, want):
    """Same structure; every leaf a device array of the same dtype and bits; keys typed and equal."""
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert isinstance(a, jax.Array)
        assert a.dtype == b.dtype and a.shape == b.shape
        if is_key(b):
            assert jax.random.key_impl(a) == jax.random.key_impl(b)
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def blank(leaf):
    """A leaf of the same type and shape, all zeros (a target whose values must not come back)."""
    if is_key(leaf):
        data = jnp.zeros_like(jax.random.key_data(leaf))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    return jnp.zeros_like(leaf)


def load_error(path, *, named=None, **kwargs) -> str:
    """The CheckpointError of loading ``path``; it must name the file, which is replaced by <file>
    (tmp_path names hold test names, words like "truncated" among them)."""
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, **kwargs)
    message, named = str(caught.value), str(named or path)
    assert named in message
    return message.replace(named, "<file>")


@pytest.fixture(scope="module")
def state():
    return make_state(0)


@pytest.fixture
def saved(tmp_path, state):
    """A good checkpoint file on disk."""
    return save_checkpoint(tmp_path, state, 2, config=CONFIG, meta=META)


# ---------------------------------------------------------------------- round trip
def test_load_into_a_target_restores_every_leaf_bitwise(saved, state):
    target = make_state(1)  # same structure, other values
    assert not np.array_equal(target.params["dense1"]["w"], state.params["dense1"]["w"])
    loaded = load_checkpoint(saved, target=target)
    assert loaded.path == saved
    assert loaded.config == CONFIG and loaded.meta == META
    assert isinstance(loaded.state, TrainState)
    assert_same_leaves(loaded.state, state)
    # the key is a working typed key that draws what the saved one drew
    assert jnp.array_equal(jax.random.normal(loaded.state.key, (3,)), jax.random.normal(state.key, (3,)))


def test_load_without_target_gives_numpy_dicts_usable_by_the_model(saved, state):
    loaded = load_checkpoint(saved)
    assert set(loaded.state) == {"step", "params", "opt_state", "key", "model_state"}
    leaves = jax.tree.leaves(loaded.state)
    assert leaves and all(isinstance(leaf, np.ndarray) for leaf in leaves)
    assert loaded.state["step"].dtype == np.int32 and loaded.state["step"] == 2
    np.testing.assert_array_equal(loaded.state["key"], jax.random.key_data(state.key))
    params = loaded.state["params"]
    assert jax.tree.structure(params) == jax.tree.structure(state.params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(MODEL.apply(params, XOR), MODEL.apply(state.params, XOR))


@pytest.mark.parametrize(
    "leaf",
    [
        jnp.arange(5, dtype=jnp.bfloat16) / 3,
        jnp.arange(5, dtype=jnp.float16) / 3,
        jnp.arange(-3, 3, dtype=jnp.int8),
        jnp.arange(4, dtype=jnp.uint32) * 1_000_000_007,
        jnp.array([True, False, True]),
        jnp.float32(2.5),  # a scalar
        jnp.zeros((0, 3)),  # empty
        jax.random.key(5),
        jax.random.key(5, impl="rbg"),
        jax.random.split(jax.random.key(6), 3),  # an array of keys
    ],
    ids=lambda leaf: str(leaf.dtype) + str(leaf.shape),
)
def test_dtypes_shapes_and_key_implementations_survive(tmp_path, leaf):
    tree = {"leaf": leaf, "other": {"w": jnp.ones(2)}}
    path = save_checkpoint(tmp_path, tree, 0)
    assert_same_leaves(load_checkpoint(path, target=jax.tree.map(blank, tree)).state, tree)
    raw = load_checkpoint(path).state["leaf"]
    want = jax.random.key_data(leaf) if is_key(leaf) else leaf
    assert raw.dtype == want.dtype
    np.testing.assert_array_equal(raw, np.asarray(want))


def test_config_and_meta_must_be_json(tmp_path, state):
    for settings in ({"config": {"out": Path("runs")}}, {"config": {"w": np.zeros(2)}}, {"meta": {"f": object()}}):
        with pytest.raises(TypeError, match="must hold JSON values"):
            save_checkpoint(tmp_path, state, 1, **settings)
    assert list(tmp_path.iterdir()) == []  # not even a temporary file


# ---------------------------------------------------------- choosing and rotating
def test_a_directory_loads_its_latest_checkpoint(tmp_path):
    for step in (3, 12, 7):  # saved out of order
        save_checkpoint(tmp_path, {"step": jnp.asarray(step)}, step, config={"at": step}, keep=10)
    for name in ("notes.txt", "step_5.ckpt.bak", "step_000000099.ckpt~", ".step_000000050.ckpt.tmp-1"):
        (tmp_path / name).write_text("not a checkpoint")
    assert list_checkpoints(tmp_path) == [checkpoint_path(tmp_path, s) for s in (3, 7, 12)]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 12)
    loaded = load_checkpoint(tmp_path)
    assert loaded.path == checkpoint_path(tmp_path, 12) and loaded.config == {"at": 12}
    assert int(loaded.state["step"]) == 12


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_only_the_newest_keep_checkpoints_are_kept(tmp_path, keep):
    for step in range(1, 6):
        path = save_checkpoint(tmp_path, {"w": jnp.full(2, step)}, step, keep=keep)
        assert path.exists()
    assert list_checkpoints(tmp_path) == [checkpoint_path(tmp_path, s) for s in range(6 - keep, 6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_path(tmp_path, s).name for s in range(6 - keep, 6)]


# ------------------------------------------------------------- damaged checkpoints
CUTS = {  # where a file is cut short, as a function of its length
    "empty": lambda n: 0,
    "inside the magic": lambda n: 5,
    "after the magic": lambda n: len(MAGIC),
    "inside the checksum": lambda n: len(MAGIC) + 10,
    "no payload": lambda n: HEADER,
    "one payload byte": lambda n: HEADER + 1,
    "half": lambda n: n // 2,
    "all but the last byte": lambda n: n - 1,
}


@pytest.mark.parametrize("cut", CUTS.values(), ids=list(CUTS))
def test_a_truncated_checkpoint_is_reported_with_its_path(saved, cut):
    blob = saved.read_bytes()
    saved.write_bytes(blob[: cut(len(blob))])
    assert "is truncated" in load_error(saved) or "is corrupt or truncated" in load_error(saved)
    assert "truncated" in load_error(saved.parent, named=saved)  # through the directory as well


@pytest.mark.parametrize("where", [len(MAGIC), HEADER - 1, HEADER, "middle", -1])
def test_a_flipped_byte_is_reported_as_corrupt(saved, where):
    blob = bytearray(saved.read_bytes())
    at = len(blob) // 2 if where == "middle" else where
    blob[at] ^= 0x01
    saved.write_bytes(bytes(blob))
    assert "is corrupt or truncated" in load_error(saved, target=make_state(1))


def test_deleting_a_corrupt_latest_checkpoint_falls_back_to_the_one_before(tmp_path, state):
    save_checkpoint(tmp_path, state, 1, config={"at": 1})
    latest = save_checkpoint(tmp_path, state, 2, config={"at": 2})
    latest.write_bytes(latest.read_bytes()[:-10])
    assert "Delete it to resume from the checkpoint before it" in load_error(tmp_path, named=latest)
    latest.unlink()
    assert load_checkpoint(tmp_path).config == {"at": 1}


@pytest.mark.parametrize(
    "content",
    [b"", b"PK\x03\x04 a zip file, say an .npz", b'{"step": 3}', MAGIC[:-1] + b"X" + bytes(64)],
    ids=["empty-named-otherwise", "zip", "json", "other-magic"],
)
def test_a_file_that_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "params.bin"
    path.write_bytes(content)
    assert ("is truncated" if not content else "is not a jaxdl checkpoint") in load_error(path)


def test_a_checksummed_payload_of_another_format(tmp_path):
    payload = serialization.msgpack_serialize({"format": 2, "state": {}, "config": {}, "meta": {}})
    path = tmp_path / "step_000000001.ckpt"
    path.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    assert "has format 2; this jaxdl reads format 1" in load_error(path)


@pytest.mark.parametrize(
    "payload",
    [b"\xc1 not msgpack", serialization.msgpack_serialize([1, 2, 3]), serialization.msgpack_serialize({"meta": {}}),
     serialization.msgpack_serialize({"format": 1}) + b"trailing"],
    ids=["not-msgpack", "a-list", "no-state", "extra-data"],
)
def test_a_checksummed_body_that_is_not_a_checkpoint_is_a_checkpoint_error(tmp_path, payload):
    path = tmp_path / "step_000000001.ckpt"
    path.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    assert "has a valid checksum but is not a jaxdl checkpoint inside" in load_error(path)


def test_missing_checkpoints(tmp_path):
    assert load_error(tmp_path / "step_000000001.ckpt") == "no checkpoint at <file>"
    assert load_error(tmp_path) == "no checkpoint (step_*.ckpt) in <file>"
    assert load_error(tmp_path / "no-such-directory") == "no checkpoint at <file>"
    assert latest_checkpoint(tmp_path / "no-such-directory") is None and list_checkpoints(tmp_path) == []


# -------------------------------------------------------------- targets that differ
def deeper_model():
    """MODEL plus one more layer: its params hold MODEL's, with the same names and shapes."""
    return dl.serial(dl.Dense(4), dl.Sigmoid(), dl.Dense(1), dl.Sigmoid(), dl.Dense(1))


MISFITS = {
    "wider layer": lambda s: make_state(1, model=dl.serial(dl.Dense(8), dl.Sigmoid(), dl.Dense(1))),
    "extra layer in the target": lambda s: make_state(1, model=deeper_model()),
    "other optimizer": lambda s: make_state(1, optimizer=optax.sgd(0.1, momentum=0.9)),
    "other key implementation": lambda s: make_state(1, key=jax.random.key(0, impl="rbg")),
    "leaf where the checkpoint has a dict": lambda s: s._replace(params={**s.params, "dense1": jnp.zeros(3)}),
    "dict where the checkpoint has a leaf": lambda s: s._replace(step={"count": jnp.zeros((), jnp.int32)}),
    "a plain dict": lambda s: {"params": s.params},
}


@pytest.mark.parametrize("make_target", MISFITS.values(), ids=list(MISFITS))
def test_loading_into_a_target_that_does_not_fit(saved, state, make_target):
    assert "<file> does not fit this model" in load_error(saved, target=make_target(state))


def test_a_checkpoint_with_more_params_than_the_target_does_not_fit(tmp_path):
    path = save_checkpoint(tmp_path, make_state(0, model=deeper_model()), 2)
    message = load_error(path, target=make_state(1))  # not: silently drop dense3
    assert "does not fit" in message and "not in the target: " in message and "['params']['dense3']" in message


def test_a_wider_layer_is_named_with_both_shapes(saved):
    target = make_state(1, model=dl.serial(dl.Dense(8), dl.Sigmoid(), dl.Dense(1)))
    assert ".params['dense1']['w']: checkpoint (2, 4), expected (2, 8)" in load_error(saved, target=target)


# ------------------------------------------------------------------- model state
BN_MODEL = dl.serial(dl.Dense(4), dl.BatchNorm(), dl.Sigmoid(), dl.Dense(1))


def bn_state(seed: int) -> dl.TrainState:
    _, params, model_state = BN_MODEL.init(jax.random.key(seed), (-1, 2))
    moved = {"batchnorm": {"mean": model_state["batchnorm"]["mean"] + seed + 0.5,
                           "var": model_state["batchnorm"]["var"] * (seed + 2)}}
    return dl.TrainState.create(params, optax.adam(0.1), jax.random.key(seed), model_state=moved)


def test_the_model_state_is_saved_and_restored_bitwise(tmp_path):
    state = bn_state(0)
    path = save_checkpoint(tmp_path, state, 1)
    restored = load_checkpoint(path, target=bn_state(1)).state
    assert_same_leaves(restored.model_state, state.model_state)
    assert set(load_checkpoint(path).state["model_state"]["batchnorm"]) == {"mean", "var"}


def test_a_checkpoint_written_before_the_model_state_existed_loads_into_a_stateless_train_state(tmp_path, state):
    older = {name: value for name, value in state._asdict().items() if name != "model_state"}  # the four old fields
    restored = load_checkpoint(save_checkpoint(tmp_path, older, 2), target=make_state(1)).state
    assert restored.model_state is None
    assert_same_leaves(restored.params, state.params)


def test_a_stateful_model_does_not_fit_a_checkpoint_without_its_state(saved):
    stateless = load_checkpoint(saved).state
    target = bn_state(0)._replace(params=stateless["params"], opt_state=make_state(1).opt_state)
    assert "missing from the checkpoint: ['model_state']['batchnorm']['mean']" in load_error(saved, target=target)


# -------------------------------------------------------- a save killed halfway
KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import jaxdl.checkpoint as ckpt

    directory, where = sys.argv[1], sys.argv[2]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class DyingFile:
        "Writes half of what it is given, then the process is killed."
        def __init__(self, file): self.file = file
        def __enter__(self): return self
        def __exit__(self, *exc): self.file.close()
        def write(self, data):
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            die()

    if where == "mid-write":
        ckpt.open = lambda *args, **kwargs: DyingFile(open(*args, **kwargs))  # shadows the builtin there
    else:  # the whole file is written and flushed, but never renamed
        os.replace = lambda *args, **kwargs: die()
    big = {"w": np.arange(12_000_000, dtype=np.float32)}  # 48 MB
    ckpt.save_checkpoint(directory, big, 2, config={"run": "big"})
    sys.exit("the save was not killed")
    """
)


@pytest.mark.parametrize("where, size", [("mid-write", (20e6, 30e6)), ("before-rename", (48e6, 49e6))])
@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_a_save_killed_halfway_leaves_the_previous_checkpoint_latest(tmp_path, where, size):
    good = save_checkpoint(tmp_path, {"w": jnp.ones(3)}, 1, config={"run": "good"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    child = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(tmp_path), where],
                           env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr

    assert list_checkpoints(tmp_path) == [good]
    loaded = load_checkpoint(tmp_path, target={"w": jnp.zeros(3)})
    assert loaded.path == good and loaded.config == {"run": "good"}
    np.testing.assert_array_equal(loaded.state["w"], np.ones(3))
    (stale,) = tmp_path.glob(".step_000000002.ckpt.tmp-*")  # the killed save's file, never renamed
    assert size[0] < stale.stat().st_size < size[1]
    if where == "mid-write":
        assert "is corrupt or truncated" in load_error(stale)

    newer = save_checkpoint(tmp_path, {"w": jnp.full(3, 3.0)}, 3)
    assert not stale.exists(), "the next save should clean up the killed save's file"
    assert sorted(tmp_path.iterdir()) == [good, newer]
    assert load_checkpoint(tmp_path).path == newer
