"""experiments/activations.py: per-layer gradient norms of deep sigmoid and ReLU networks."""

import json

import pytest

from experiment_scripts import load_experiment

activations = load_experiment("activations")

DEPTH = 12


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
