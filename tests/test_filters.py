"""experiments/filters.py end to end: the lecture's hand-made filters on the "1" and on MNIST digits
(the pieces themselves: tests/test_lecture_filters.py)."""

import json
import types
from pathlib import Path

import numpy as np
import pytest

import jaxdl.data
from experiment_scripts import load_experiment
from jaxdl.lecture import FILTERS
from test_lecture_filters import ONE_BY_HAND, VERTICAL_BY_HAND, max_pool_by_hand, slide_by_hand

filters = load_experiment("filters")
PADDINGS = ["VALID", "SAME"]


# ------------------------------------------------------------------------- the script
@pytest.mark.slow
@pytest.mark.parametrize("padding", PADDINGS)
def test_main_on_the_one_prints_grids_and_writes_plots_and_metrics(padding, tmp_path, capsys):
    metrics = filters.main(["--digits", "0", "--padding", padding, "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    size = {"VALID": 12, "SAME": 14}[padding]
    assert metrics["filters"] == list(FILTERS) and metrics["padding"] == padding
    assert metrics["one"]["strongest_filter"] == "vertical"
    assert metrics["one"]["responses"]["vertical"] == {"max": 3.0, "full_matches": 14}
    assert metrics["one"]["feature_map_shape"] == [size, size]
    assert metrics["one"]["pooled_shape"] == [size // 2, size // 2]
    assert "digits" not in metrics and "mnist_skipped" not in metrics
    # The printed grids are the hand computation, row by row, the pooled map beside the map.
    by_hand = slide_by_hand(ONE_BY_HAND, VERTICAL_BY_HAND, padding)
    pooled = max_pool_by_hand(by_hand)
    for row, pooled_row in zip(by_hand, pooled):
        assert " ".join(map(str, row)) + "    " + " ".join(map(str, pooled_row)) in printed
    assert 'strongest response to the "1": the vertical filter, max 3' in printed
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["one"] == metrics["one"] and on_disk["padding"] == padding
    assert "peak_rss_mb" in on_disk
    assert (tmp_path / "one_feature_maps.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_main_on_digits_draws_each_one_with_a_stand_in_loader(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    labels = np.array([7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5, 9, 7, 3, 4, 8], np.int32)
    images = (rng.random((len(labels), 28, 28, 1)) > 0.7).astype(np.float32)
    calls = []

    def load(name, data_dir=None, manual_dir=None):
        calls.append((name, data_dir, manual_dir))
        return types.SimpleNamespace(test={"x": images, "y": labels})

    monkeypatch.setattr(jaxdl.data, "load_image_classification", load)
    metrics = filters.main(["--digits", "3", "--seed", "4", "--out", str(tmp_path), "--manual-dir", "raw", "--data-dir", "prep"])
    printed = capsys.readouterr().out
    assert calls == [("mnist", Path("prep"), Path("raw"))]
    assert metrics["digits"] == filters.main(["--digits", "3", "--seed", "4", "--out", str(tmp_path / "again")])["digits"]
    assert len({d["label"] for d in metrics["digits"]}) == 3
    for digit in metrics["digits"]:
        assert labels[digit["test_index"]] == digit["label"]
        assert labels[: digit["test_index"]].tolist().count(digit["label"]) == 0  # the first of its class
        assert (tmp_path / f"mnist_{digit['label']}_index{digit['test_index']}.png").read_bytes().startswith(b"\x89PNG")
        assert set(digit["pooled_max"]) == set(FILTERS)
    assert metrics["mnist_feature_map_shape"] == [26, 26] and metrics["mnist_pooled_shape"] == [13, 13]
    assert "MNIST test digits" in printed


@pytest.mark.slow
def test_main_skips_mnist_with_a_message_when_the_loader_fails(tmp_path, monkeypatch, capsys):
    def load(name, data_dir=None, manual_dir=None):
        raise jaxdl.data.DataError("mnist: no raw files in\n   /nowhere")

    monkeypatch.setattr(jaxdl.data, "load_image_classification", load)
    metrics = filters.main(["--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert metrics["mnist_skipped"] == "mnist: no raw files in /nowhere"
    assert metrics["one"]["strongest_filter"] == "vertical"
    lines = [line for line in err.splitlines() if "MNIST part skipped" in line]
    assert len(lines) == 1 and "mnist: no raw files in /nowhere" in lines[0] and "--manual-dir" in lines[0]
    assert (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_main_skips_mnist_when_the_manual_folder_is_empty(tmp_path, capsys):
    """The real loader: an empty --manual-dir ends in the skip message, not an error."""
    (tmp_path / "raw").mkdir()
    metrics = filters.main(
        ["--out", str(tmp_path / "out"), "--manual-dir", str(tmp_path / "raw"), "--data-dir", str(tmp_path / "prep")]
    )
    assert "MNIST part skipped" in capsys.readouterr().err
    assert "mnist_skipped" in metrics and "digits" not in metrics
    assert (tmp_path / "out" / "metrics.json").exists()


def test_main_on_real_mnist_digits(tmp_path, mnist_data_dir, capsys):
    metrics = filters.main(["--digits", "2", "--out", str(tmp_path / "out"), "--data-dir", str(mnist_data_dir)])
    assert "mnist_skipped" not in metrics, metrics.get("mnist_skipped")
    assert len({d["label"] for d in metrics["digits"]}) == 2
    assert metrics["mnist_feature_map_shape"] == [26, 26] and metrics["mnist_pooled_shape"] == [13, 13]
    for digit in metrics["digits"]:
        assert 0 < max(digit["pooled_max"].values()) <= 3.0 + 1e-5  # pixels in [0, 1], three ones per filter
        assert (tmp_path / "out" / f"mnist_{digit['label']}_index{digit['test_index']}.png").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--digits", "11"], "--digits must be at most 10"),
        (["--digits", "-1"], "--digits: expected an integer >= 0"),
        (["--padding", "FULL"], "--padding: invalid choice: 'FULL'"),
        (["--epochs", "3"], "unrecognized arguments: --epochs 3"),
    ],
)
def test_invalid_flags_are_rejected(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        filters.main([*flags, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_documents_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        filters.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--seed", "--out", "--padding", "--digits", "--manual-dir", "--data-dir"):
        assert flag in text
    assert "--lr" not in text and "--resume" not in text and "--batch-size" not in text and "--epochs" not in text
