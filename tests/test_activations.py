"""experiments/activations.py: per-layer gradient norms of deep sigmoid and ReLU networks,
and the table that shows them side by side (jaxdl.gradients.gradient_norm_table)."""

import json

import jax
import numpy as np
import pytest

import jaxdl as dl
from experiment_scripts import load_experiment
from jaxdl.gradients import gradient_norm_table, layer_gradient_norms

activations = load_experiment("activations")

DEPTH = 12


def test_gradient_norm_table_has_a_row_per_layer_a_column_per_network_and_the_ratios():
    norms = {"sigmoid": {"hidden1": 5.3e-8, "hidden2": 2.1e-7, "output": 1.18},
             "relu": {"hidden1": 2.0e-2, "hidden2": 1.1e-2, "output": 6.3e-3}}
    lines = gradient_norm_table(norms).splitlines()
    assert lines[0].split() == ["layer", "name", "sigmoid", "relu"]
    assert set(lines[1]) == {"-"}
    assert [line.split() for line in lines[2:5]] == [["1", "hidden1", "5.30e-08", "2.00e-02"],
                                                     ["2", "hidden2", "2.10e-07", "1.10e-02"],
                                                     ["3", "output", "1.18e+00", "6.30e-03"]]
    assert lines[5:] == ["sigmoid: layer 1 / layer 3 = 4.49e-08", "relu: layer 1 / layer 3 = 3.17e+00"]


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_gradient_norm_table_of_real_networks_from_the_same_weights():
    """The script's and the notebook's path on a small batch: the sigmoid's ratio far below ReLU's."""
    rng = np.random.default_rng(0)
    batch = {"x": rng.random((32, 20), dtype=np.float32), "y": rng.integers(0, 3, 32).astype(np.int32)}
    norms = {}
    for name, activation in {"sigmoid": dl.Sigmoid, "relu": dl.ReLU}.items():
        model = dl.mlp([16] * 10, 3, activation=activation)
        _, params = model.init(jax.random.key(0), (-1, 20))
        norms[name] = layer_gradient_norms(model, dl.softmax_cross_entropy, params, batch)
    lines = gradient_norm_table(norms).splitlines()
    assert len(lines) == 2 + 11 + 2 and lines[2].split()[:2] == ["1", "hidden1"] and lines[12].split()[1] == "output"
    ratio = {line.split(":")[0]: float(line.split("=")[1]) for line in lines[-2:]}
    assert ratio["sigmoid"] < 1e-3 * ratio["relu"]


def test_gradient_norm_table_refuses_networks_of_other_layers():
    with pytest.raises(ValueError, match="at least one network"):
        gradient_norm_table({})
    with pytest.raises(ValueError, match="the same layers for every network"):
        gradient_norm_table({"a": {"hidden1": 1.0, "output": 1.0}, "b": {"hidden1": 1.0}})


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
