"""experiments/activations.py: per-layer gradient norms of deep sigmoid and ReLU networks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiment_scripts import load_experiment
from jaxdl.layers import ReLU, Sigmoid
from jaxdl.losses import softmax_cross_entropy
from jaxdl.models import mlp

activations = load_experiment("activations")

DEPTH = 12


def synthetic_case(activation, seed: int = 0):
    """A 12-hidden-layer MLP at initialisation and one batch of random inputs and labels."""
    x_key, y_key, init_key = jax.random.split(jax.random.key(seed), 3)
    batch = {"x": jax.random.normal(x_key, (64, 20)), "y": jax.random.randint(y_key, (64,), 0, 5)}
    model = mlp([32] * DEPTH, 5, activation=activation)
    _, params = model.init(init_key, (-1, 20))
    return model, params, batch


def test_sigmoid_gradients_vanish_toward_the_input_and_relu_gradients_do_not():
    sigmoid_norms = activations.layer_gradient_norms(*synthetic_case(Sigmoid))
    relu_norms = activations.layer_gradient_norms(*synthetic_case(ReLU))
    names = [f"hidden{i}" for i in range(1, DEPTH + 1)] + ["output"]
    assert list(sigmoid_norms) == names and list(relu_norms) == names  # layer 1 = nearest the input

    sigmoid, relu = np.array(list(sigmoid_norms.values())), np.array(list(relu_norms.values()))
    assert np.all(np.diff(sigmoid) > 0)  # smaller at every step toward the input
    assert sigmoid[0] / sigmoid[-1] < 1e-5  # about 1e-8 here: each sigmoid layer takes about 4x
    assert np.all((relu > relu[-1] / 10) & (relu < relu[-1] * 10))  # level, within 10x of the output's


def test_gradient_norms_equal_a_direct_jax_grad():
    model, params, batch = synthetic_case(Sigmoid, seed=1)
    norms = activations.layer_gradient_norms(model, params, batch)

    def loss_of_hidden3(w):
        changed = {**params, "hidden3": {**params["hidden3"], "w": w}}
        return softmax_cross_entropy(model.apply(changed, batch["x"]), batch["y"])

    direct = jnp.sqrt(jnp.sum(jax.grad(loss_of_hidden3)(params["hidden3"]["w"]) ** 2))
    np.testing.assert_allclose(norms["hidden3"], float(direct), rtol=1e-5)


def test_quick_run_on_real_mnist_writes_its_outputs(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "run"
    metrics = activations.main(["--devices", "1", "--train-examples", "2000", "--epochs", "1", "--out", str(out),
                                "--data-dir", str(mnist_data_dir)])
    printed = capsys.readouterr().out
    assert "|d loss / d w| per layer at initialisation" in printed
    assert "sigmoid: layer 1 / layer 13 = " in printed
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == {**metrics, "peak_rss_mb": on_disk["peak_rss_mb"]}
    for name in ("sigmoid", "relu"):
        for key in ("gradient_norms", "first_to_last_norm_ratio", "test_accuracy", "train_time_s", "compile_time_s"):
            assert key in on_disk[name], (name, key)
        assert len(on_disk[name]["gradient_norms"]) == DEPTH + 1
        assert list(out.glob(f"checkpoints/{name}/step_*.ckpt"))
    # On real digits too, at initialisation: the lecture's point, whatever the tiny budget then trains.
    assert on_disk["sigmoid"]["first_to_last_norm_ratio"] < 1e-5
    assert 0.1 < on_disk["relu"]["first_to_last_norm_ratio"] < 10
    for plot in ("gradient_norms.png", "loss.png", "accuracy.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG"), plot


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--depth", "3"], "--depth must be between 10 and 20 hidden layers"),
        (["--depth", "21"], "--depth must be between 10 and 20 hidden layers"),
        (["--width", "0"], "--width: expected a positive integer"),
        (["--momentum", "1"], "--momentum must be in [0, 1)"),
        (["--train-examples", "100"], "--train-examples (100) must be at least --batch-size (128)"),
    ],
)
def test_invalid_flags_are_rejected(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        activations.main([*flags, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
