"""benchmarks/cnn_throughput.py's batchnorm network computes the same function in jaxdl, flax.linen
and PyTorch: given jaxdl's initial weights, the same training-mode outputs (dropout off: the
builders' ``dropout`` argument) and, through the benchmark's own training steps (jaxdl's
``make_train_step``, ``harness.flax_train_step``, ``harness.torch_train_step``), the same loss
before and after one Adam step, and the same running means of BatchNorm."""

import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxdl as dl

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "cnn_throughput.py"
BATCH = 16
ATOL = 1e-4


@pytest.fixture(scope="module")
def bench():
    """The script as a module: its folder goes on sys.path first, as running the script puts it
    there (the benchmarks import their neighbour ``harness``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        import cnn_throughput
    return cnn_throughput


@pytest.fixture(scope="module")
def batch(bench):
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, *bench.SHAPE), dtype=np.float32)
    y = rng.integers(0, bench.CLASSES, BATCH).astype(np.int32)
    return x, y


@pytest.fixture(scope="module")
def jaxdl_model(bench):
    """jaxdl's batchnorm network without dropout, params of the shapes its ``init`` gives (random:
    lecun-normal weights, BatchNorm's scale and bias away from 1 and 0, so that a swap would show;
    ``init`` itself, with its random initialisers, takes 10 s here) and its initial state."""
    model = bench.batchnorm_jaxdl(dropout=0.0)
    _, params, state = jax.eval_shape(lambda: model.init(jax.random.key(0), (-1, *bench.SHAPE)))
    rng = np.random.default_rng(1)

    def param(path, leaf):
        name = path[-1].key
        if name == "scale":
            value = rng.uniform(0.5, 1.5, leaf.shape)
        elif name in ("bias", "b"):
            value = rng.normal(0.0, 0.1, leaf.shape)
        else:  # w: (..., fan_in, features)
            value = rng.normal(0.0, 1.0 / math.sqrt(math.prod(leaf.shape[:-1])), leaf.shape)
        return value.astype(np.float32)

    initial = {"mean": np.zeros, "var": np.ones}  # BatchNorm's initial state
    params = jax.tree_util.tree_map_with_path(param, params)
    state = jax.tree_util.tree_map_with_path(lambda path, leaf: initial[path[-1].key](leaf.shape, np.float32), state)
    return model, params, state


@pytest.fixture(scope="module")
def jaxdl_logits(batch, jaxdl_model):
    model, params, state = jaxdl_model
    forward = jax.jit(lambda params, state, x: model.apply(params, x, state=state, key=jax.random.key(1), train=True))
    return np.asarray(forward(params, state, batch[0])[0])


def convolutions(bench) -> int:
    return sum(len(widths) for widths in bench.blocks())


def flax_copy(bench, x, params):
    """The flax model without dropout, its initial ``batch_stats`` and jaxdl's ``params`` in flax's names."""
    model = bench.batchnorm_flax(dropout=0.0)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(5), x[:1], train=False))  # shapes only: fast
    count = convolutions(bench)
    copied = {
        **{f"Conv_{i}": {"kernel": params[f"conv{i + 1}"]["w"]} for i in range(count)},
        **{f"BatchNorm_{i}": dict(params[f"batchnorm{i + 1}"]) for i in range(count + 1)},
        "Dense_0": {"kernel": params["hidden"]["w"]},
        "Dense_1": {"kernel": params["output"]["w"], "bias": params["output"]["b"]},
    }
    # the same layers, widths and biases as jaxdl's
    assert jax.tree.map(np.shape, copied) == jax.tree.map(np.shape, variables["params"])
    stats = {f"BatchNorm_{i}": {"mean": np.zeros(shape["mean"].shape, np.float32),
                                "var": np.ones(shape["var"].shape, np.float32)}
             for i, shape in enumerate(variables["batch_stats"][f"BatchNorm_{i}"] for i in range(count + 1))}
    assert jax.tree.map(np.shape, stats) == jax.tree.map(np.shape, variables["batch_stats"])
    return model, stats, copied


def torch_copy(bench, params):
    """The PyTorch model without dropout, in training mode, holding jaxdl's ``params``; its BatchNorms."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = bench.batchnorm_torch(dropout=0.0)
    model.train()
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    norms = [m for m in model if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    hidden, output = [m for m in model if isinstance(m, nn.Linear)]
    assert len(convs) == convolutions(bench) and len(norms) == len(convs) + 1
    assert all(conv.bias is None for conv in convs) and hidden.bias is None

    def put(parameter, value):
        value = np.asarray(value)
        assert parameter.shape == value.shape, (parameter.shape, value.shape)
        parameter.copy_(torch.from_numpy(np.array(value)))

    with torch.no_grad():
        for i, conv in enumerate(convs):
            put(conv.weight, np.asarray(params[f"conv{i + 1}"]["w"]).transpose(3, 2, 0, 1))  # HWIO -> OIHW
        for i, norm in enumerate(norms):
            put(norm.weight, params[f"batchnorm{i + 1}"]["scale"])
            put(norm.bias, params[f"batchnorm{i + 1}"]["bias"])
        channels = convs[-1].out_channels  # jaxdl flattens (H, W, C), PyTorch (C, H, W)
        side = math.isqrt(hidden.in_features // channels)
        w = np.asarray(params["hidden"]["w"]).reshape(side, side, channels, -1).transpose(2, 0, 1, 3)
        put(hidden.weight, w.reshape(hidden.in_features, -1).T)
        put(output.weight, np.asarray(params["output"]["w"]).T)
        put(output.bias, params["output"]["b"])
    return model, norms


def torch_batch(x, y):
    import torch

    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y).long()  # NHWC -> NCHW


def test_flax_forward_matches_jaxdl(bench, batch, jaxdl_model, jaxdl_logits):
    x, _ = batch
    model, stats, params = flax_copy(bench, x, jaxdl_model[1])
    forward = jax.jit(lambda variables, x: model.apply(variables, x, train=True, mutable=["batch_stats"])[0])
    logits = forward({"params": params, "batch_stats": stats}, x)
    np.testing.assert_allclose(logits, jaxdl_logits, atol=ATOL, rtol=0)


def test_torch_forward_matches_jaxdl(bench, batch, jaxdl_model, jaxdl_logits):
    torch = pytest.importorskip("torch", reason="PyTorch is optional (benchmarks only)")

    model, _ = torch_copy(bench, jaxdl_model[1])
    with torch.no_grad():
        logits = model(torch_batch(*batch)[0]).numpy()
    np.testing.assert_allclose(logits, jaxdl_logits, atol=ATOL, rtol=0)


@pytest.mark.slow  # compiles jaxdl's and flax's training steps
def test_one_adam_step_gives_the_same_loss(bench, batch, jaxdl_model):
    """Two steps on the batch from the same weights: the losses before and after one Adam step, and the
    running means after both, agree in the three frameworks (PyTorch's if it is installed)."""
    x, y = batch
    model, params, model_state = jaxdl_model
    network = bench.NETWORKS["batchnorm"]
    found = {}  # framework -> (losses, running means)

    optimizer = network.optax()
    step = dl.make_train_step(model, dl.softmax_cross_entropy, optimizer)
    state = dl.TrainState.create(params, optimizer, jax.random.key(1), model_state=model_state)
    losses = []
    for _ in range(2):
        state, metrics = step(state, {"x": x, "y": y})
        losses.append(float(metrics["loss"]))
    found["jaxdl"] = losses, [np.asarray(state.model_state[f"batchnorm{i + 1}"]["mean"])
                              for i in range(len(state.model_state))]

    flax_model, stats, flax_params = flax_copy(bench, x, params)
    flax_step = bench.harness.flax_train_step(flax_model, optimizer, train=True)
    flax_state, opt_state, key = {"batch_stats": stats}, optimizer.init(flax_params), jax.random.key(2)
    losses = []
    for _ in range(2):
        flax_params, flax_state, opt_state, key, loss = flax_step(flax_params, flax_state, opt_state, key, x, y)
        losses.append(float(loss))
    stats = flax_state["batch_stats"]
    found["flax"] = losses, [np.asarray(stats[f"BatchNorm_{i}"]["mean"]) for i in range(len(stats))]

    try:
        torch_model, norms = torch_copy(bench, params)
    except pytest.skip.Exception:
        pass
    else:
        torch_step = bench.harness.torch_train_step(torch_model, network.torch_optimizer(torch_model.parameters()))
        images, labels = torch_batch(x, y)
        found["torch"] = [float(torch_step(images, labels).detach()) for _ in range(2)], [
            norm.running_mean.numpy() for norm in norms]  # means only: PyTorch's running variance is unbiased

    losses = {name: losses for name, (losses, _) in found.items()}
    for name, (theirs, means) in found.items():
        assert np.allclose(theirs, found["flax"][0], atol=ATOL, rtol=0), f"{name}'s losses differ: {losses}"
        for i, (mean, flax_mean) in enumerate(zip(means, found["flax"][1], strict=True)):
            np.testing.assert_allclose(mean, flax_mean, atol=1e-4, rtol=1e-4, err_msg=f"{name}: BatchNorm {i}")


def test_networks_and_command_line(bench):
    assert set(bench.NETWORKS) == {"lecture", "batchnorm"}
    with pytest.raises(SystemExit):
        bench.main(["--network", "resnet"])


@pytest.mark.slow
def test_cnn_benchmark_tiny_run():
    done = subprocess.run([sys.executable, str(SCRIPT), "--network", "batchnorm", "--steps", "1", "--repeats", "1"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[1].startswith("network: batchnorm: conv"), lines[:3]
    rates = json.loads(lines[-1])
    assert set(rates) == {"jaxdl", "flax_linen", "torch"}
    assert rates["jaxdl"] > 0 and rates["flax_linen"] > 0
