"""experiments/per_example_grads.py: per-example gradient norms, and ordinary SGD against clipping and DP-SGD."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from experiment_scripts import load_experiment
from test_mnist_cnn import lines_dataset

from jaxdl import experiment
from jaxdl.checkpoint import latest_checkpoint, load_checkpoint
from jaxdl.data import ImageClassification
from jaxdl.losses import softmax_cross_entropy
from jaxdl.models import cnn

per_example = load_experiment("per_example_grads")

RUNS = ("ordinary", "clipped", "dp_sgd")
PLOTS = ("grad_norms.png", "largest_gradients.png", "accuracy.png")


def mnist_shaped_lines(n: int, seed: int = 0) -> dict:
    """Vertical (class 0) and horizontal (class 1) lines in 28x28 images: MNIST's shapes, so the
    model's initialisation compiled here serves the real-data test too."""
    data = lines_dataset(n, seed)
    return {"x": np.pad(data["x"], ((0, 0), (8, 8), (8, 8), (0, 0))), "y": data["y"]}


def lines_images(args, name):
    """A stand-in for experiment.load_images: lines for 2 of MNIST's 10 classes."""
    return ImageClassification(mnist_shaped_lines(300), mnist_shaped_lines(100, seed=1), 10, list("0123456789"))


@pytest.mark.slow
def test_a_run_on_synthetic_lines_writes_its_outputs_and_shows_the_largest_gradients(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(experiment, "load_images", lines_images)
    aggregates, aggregate = [], optax.contrib.differentially_private_aggregate

    def recorded(clip, noise, key):  # DP-SGD's clipping and noise (jaxdl.train's tests check what they do)
        aggregates.append((clip, noise, jax.random.key_impl(key)))
        return aggregate(clip, noise, key)

    monkeypatch.setattr(optax.contrib, "differentially_private_aggregate", recorded)
    out = tmp_path / "run"
    metrics = per_example.main(["--epochs", "2", "--batch-size", "32", "--clip", "0.5", "--noise", "2",
                                "--out", str(out)])
    # "ordinary" is plain SGD; "clipped" clips to --clip without noise; "dp_sgd" adds noise multiplier --noise
    assert [(clip, noise) for clip, noise, _ in aggregates] == [(0.5, 0.0), (0.5, 2.0)]
    assert all(str(impl) == "rbg" for _, _, impl in aggregates)
    printed = capsys.readouterr().out
    assert "s/step vs ordinary" in printed and "at initialisation: mean per-example gradient norm" in printed
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == {**metrics, "peak_rss_mb": on_disk["peak_rss_mb"]}
    assert (metrics["clip"], metrics["noise"], metrics["train_examples"]) == (0.5, 2.0, 300)
    for name in RUNS:
        run = metrics[name]
        assert len(run["test_accuracy_per_epoch"]) == 2 and run["test_accuracy"] == run["test_accuracy_per_epoch"][-1]
        assert list(run["grad_norm_quantiles"]) == ["0.1", "0.5", "0.9", "0.99"]
        assert run["steps_per_s"] > 0 and 0 <= run["fraction_clipped"] <= 1
        assert list((out / "checkpoints" / name).glob("step_*.ckpt")), name
    assert metrics["ordinary"]["time_per_step_vs_ordinary"] == 1.0
    for plot in PLOTS:
        assert (out / plot).read_bytes().startswith(b"\x89PNG"), plot

    final = {name: load_checkpoint(latest_checkpoint(out / "checkpoints" / name)).state["params"] for name in RUNS}
    assert not np.allclose(final["clipped"]["output"]["w"], final["dp_sgd"]["output"]["w"])  # the noise did something

    # Every training image's gradient norm by plain jax.grad on it alone, at the ordinary run's final weights.
    params = final["ordinary"]
    model = cnn(10, features=(8, 16), hidden=32, dropout=0.0)
    train = mnist_shaped_lines(300)

    @jax.jit
    def norm(x, y):
        grads = jax.grad(lambda p: softmax_cross_entropy(model.apply(p, x[None]), y[None]))(params)
        return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))

    by_hand = np.array([norm(x, y) for x, y in zip(train["x"], train["y"])])
    shown = metrics["largest_gradients"]
    assert len(shown["index"]) == 16
    np.testing.assert_allclose(shown["grad_norm"], by_hand[shown["index"]], rtol=1e-4)
    others = np.delete(by_hand, shown["index"])
    assert min(shown["grad_norm"]) >= others.max() * (1 - 1e-5)  # the 16 largest indeed
    assert shown["grad_norm"] == sorted(shown["grad_norm"], reverse=True)
    assert shown["label"] == train["y"][shown["index"]].tolist()
    np.testing.assert_allclose(metrics["ordinary"]["grad_norm_mean"], by_hand.mean(), rtol=1e-4)
    np.testing.assert_allclose(metrics["ordinary"]["fraction_clipped"], (by_hand > 0.5).mean())


def test_quick_run_on_real_mnist_learns_and_writes_its_outputs(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "run"
    metrics = per_example.main(["--devices", "1", "--train-examples", "2000", "--epochs", "1", "--batch-size", "64",
                                "--out", str(out),
                                "--data-dir", str(mnist_data_dir)])
    assert "s/step vs ordinary" in capsys.readouterr().out
    assert all(metrics[name]["test_accuracy"] > 0.3 for name in RUNS)  # chance is 0.10; 58-66% here
    assert metrics["init"]["fraction_clipped"] > 0.9  # at initialisation nearly every digit's gradient exceeds 1
    assert json.loads((out / "metrics.json").read_text())["dp_sgd"] == metrics["dp_sgd"]
    for plot in PLOTS:
        assert (out / plot).read_bytes().startswith(b"\x89PNG"), plot


@pytest.mark.parametrize(
    "flags, message",
    [(["--clip", "0"], "--clip: expected a positive finite number, got '0'"),
     (["--noise", "-1"], "--noise: expected a positive finite number, got '-1'"),
     (["--train-examples", "100"], "--train-examples (100) must be at least --batch-size (256)")],
)
def test_invalid_flags_are_rejected(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        per_example.main([*flags, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
