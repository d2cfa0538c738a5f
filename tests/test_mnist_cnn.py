"""experiments/mnist_cnn.py and the CNN it trains."""

import json

import jax
import numpy as np
import optax
import pytest

import jaxdl as dl
from experiment_scripts import load_experiment
from jaxdl.checkpoint import load_checkpoint
from jaxdl.loop import scores_by_step
from jaxdl.models import cnn

mnist_cnn = load_experiment("mnist_cnn")


def lines_dataset(n: int, seed: int = 0):
    """12x12 images holding one vertical (class 0) or horizontal (class 1) line at a random place."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 12, 12, 1), np.float32)
    y = rng.integers(0, 2, n).astype(np.int32)
    for image, label, at, start in zip(x, y, rng.integers(1, 11, n), rng.integers(0, 6, n)):
        if label == 0:
            image[start : start + 6, at] = 1.0
        else:
            image[at, start : start + 6] = 1.0
    return {"x": x, "y": y}


@pytest.mark.slow  # training
def test_cnn_learns_the_lectures_lines_far_above_chance():
    """Without any download: the CNN tells vertical from horizontal lines after a short run."""
    model = cnn(2, features=(8, 16), hidden=16, dropout=0.0)
    optimizer = optax.adam(3e-3)
    _, params = model.init(jax.random.key(0), (-1, 12, 12, 1))
    state = dl.TrainState.create(params, optimizer, jax.random.key(1))
    train, test = lines_dataset(512), lines_dataset(256, seed=1)
    result = dl.fit(state, dl.make_train_step(model, dl.softmax_cross_entropy, optimizer), train,
                    epochs=4, batch_size=32, progress=False)
    scores = dl.evaluate(dl.make_eval_step(model, dl.softmax_cross_entropy), result.state.params, test, 64)
    assert scores["accuracy"] > 0.95


def test_quick_run_on_real_mnist_learns_well_above_chance(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "run"
    metrics = mnist_cnn.main(["--epochs", "2", "--train-examples", "3000", "--out", str(out), "--eval-every", "10",
                              "--data-dir", str(mnist_data_dir)])
    printed = capsys.readouterr().out
    assert "devices: 8 x cpu as data 8 x model 1" in printed  # by default, every device (conftest.py's 8)
    assert metrics["test_accuracy"] > 0.85  # chance is 0.10
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "train_time_s", "compile_time_s", "images_per_s", "time_to_99_s", "peak_rss_mb"):
        assert key in on_disk, key
    assert on_disk["time_to_99_s"] is None  # 3,000 images and two epochs do not reach 99%
    history = load_checkpoint(out / "checkpoints").meta["history"]
    assert [p["step"] for p in scores_by_step(history)] == [10, 20, 23, 30, 40, 46]  # 23 steps an epoch
    assert "probability distribution over the classes" in printed
    for plot in ("loss.png", "accuracy.png", "filters.png", "feature_maps.png", "confusion_matrix.png",
                 "confidently_wrong.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG"), plot


@pytest.mark.slow  # a script run
def test_missing_data_ends_with_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDL_MANUAL_DIR", str(tmp_path / "empty"))
    with pytest.raises(SystemExit) as exit_info:
        mnist_cnn.main(["--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "prep")])
    message = str(exit_info.value.code)
    assert message.startswith("error: cannot prepare mnist offline")
    assert "train-images-idx3-ubyte.gz" in message


@pytest.mark.parametrize(
    "flags, message",
    [(["--dropout", "1.0"], "--dropout: expected a probability of dropping, in [0, 1), got '1.0'"), (["--features", "32x0"], "--features: expected blocks of convolutions separated by commas"),
     (["--zoom", "1.5"], "--zoom: expected a number in [0, 1), got '1.5'")],
)
def test_invalid_flags_are_rejected(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        mnist_cnn.main([*flags, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_ensemble_trains_each_network_from_its_own_seed_and_averages(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "ensemble"
    metrics = mnist_cnn.main(["--ensemble", "2", "--devices", "1", "--epochs", "1", "--train-examples", "2000", "--out", str(out),
                              "--data-dir", str(mnist_data_dir)])
    assert len(metrics["member_test_accuracies"]) == 2
    assert metrics["member_test_accuracies"][0] != metrics["member_test_accuracies"][1]  # seeds 0 and 1
    assert metrics["test_accuracy"] > 0.5  # chance is 0.10; one short epoch
    assert "test accuracy of the ensemble of 2" in capsys.readouterr().out
    for member in ("member1", "member2"):
        assert list((out / "checkpoints" / member).glob("step_*.ckpt")), member
