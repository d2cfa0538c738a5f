"""experiments/filters.py: the lecture's hand-made filters, by hand and against lax references."""

import json
import types
from pathlib import Path

import numpy as np
import pytest
from jax import lax

import jaxdl.data
from experiment_scripts import load_experiment

filters = load_experiment("filters")
PADDINGS = ["VALID", "SAME"]

# The lecture's "1" as plain Python lists, typed again here rather than taken from the script.
ONE_BY_HAND = [
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
]
VERTICAL_BY_HAND = [[0, 1, 0], [0, 1, 0], [0, 1, 0]]


def slide_by_hand(image, kernel, padding):
    """Slide a 3x3 kernel over the image: the sum of products at each position, in plain loops.

    VALID: only where the kernel lies wholly on the image. SAME: the image gets a border of
    one zero on each side first, so the output keeps the image's size.
    """
    if padding == "SAME":
        width = len(image[0]) + 2
        image = [[0] * width] + [[0] + list(row) + [0] for row in image] + [[0] * width]
    out = []
    for i in range(len(image) - 2):
        row = []
        for j in range(len(image[0]) - 2):
            total = 0
            for di in range(3):
                for dj in range(3):
                    total += image[i + di][j + dj] * kernel[di][dj]
            row.append(total)
        out.append(row)
    return out


def max_pool_by_hand(grid):
    """The largest value of each 2x2 block, blocks not overlapping; an odd last row or column is dropped."""
    out = []
    for i in range(0, len(grid) - 1, 2):
        row = []
        for j in range(0, len(grid[0]) - 1, 2):
            row.append(max(grid[i][j], grid[i][j + 1], grid[i + 1][j], grid[i + 1][j + 1]))
        out.append(row)
    return out


def test_the_script_holds_the_lectures_image_and_filter():
    np.testing.assert_array_equal(filters.ONE, ONE_BY_HAND)
    np.testing.assert_array_equal(filters.FILTERS["vertical"], VERTICAL_BY_HAND)
    w = np.asarray(filters.filter_params()["w"])
    assert w.shape == (3, 3, 1, 4)
    for c, name in enumerate(filters.NAMES):
        np.testing.assert_array_equal(w[:, :, 0, c], filters.FILTERS[name])


@pytest.mark.parametrize("padding", PADDINGS)
def test_vertical_filter_on_the_one_equals_the_hand_computation(padding):
    by_hand = slide_by_hand(ONE_BY_HAND, VERTICAL_BY_HAND, padding)
    maps, pooled = filters.feature_maps(filters.ONE[None, :, :, None], padding)
    assert maps.shape == (1, len(by_hand), len(by_hand[0]), 4)
    assert len(by_hand) == {"VALID": 12, "SAME": 14}[padding]
    np.testing.assert_array_equal(maps[0, :, :, 0], by_hand)
    pooled_by_hand = max_pool_by_hand(by_hand)
    assert len(pooled_by_hand) == {"VALID": 6, "SAME": 7}[padding]
    np.testing.assert_array_equal(pooled[0, :, :, 0], pooled_by_hand)


@pytest.mark.parametrize("padding", PADDINGS)
def test_all_four_filters_equal_the_lax_references(padding):
    rng = np.random.default_rng(0)
    images = np.concatenate([filters.ONE[None], rng.random((3, 14, 14), dtype=np.float32)])[..., None]
    maps, pooled = filters.feature_maps(images, padding)
    for c, name in enumerate(filters.NAMES):
        kernel = filters.FILTERS[name][:, :, None, None]
        reference = lax.conv_general_dilated(images, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        np.testing.assert_allclose(maps[..., c : c + 1], reference, rtol=1e-6, atol=1e-6)
        for n in range(len(images)):  # and each map against the loops, not only lax
            np.testing.assert_allclose(
                maps[n, :, :, c], slide_by_hand(images[n, :, :, 0].tolist(), filters.FILTERS[name].tolist(), padding),
                rtol=1e-5, atol=1e-5,
            )
    reference = lax.reduce_window(maps, -np.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    np.testing.assert_array_equal(pooled, reference)


@pytest.mark.parametrize("padding", PADDINGS)
def test_the_vertical_filter_responds_most_to_the_one(padding):
    maps, _ = filters.feature_maps(filters.ONE[None, :, :, None], padding)
    responses = filters.filter_responses(maps[0])
    assert filters.strongest_filter(responses) == "vertical"
    assert responses["vertical"]["max"] == 3
    # Three filters reach 3 somewhere; the vertical one finds its whole line far more often.
    assert [responses[n]["full_matches"] for n in filters.NAMES] == [14, 2, 6, 0]


def test_a_horizontal_bar_responds_most_to_the_horizontal_filter():
    bar = np.zeros((14, 14), np.float32)
    bar[6, 3:11] = 1.0
    maps, _ = filters.feature_maps(bar[None, :, :, None])
    responses = filters.filter_responses(maps[0])
    assert filters.strongest_filter(responses) == "horizontal"
    assert [responses[n]["max"] for n in filters.NAMES] == [1, 3, 1, 1]


def test_pick_digits_takes_the_first_of_different_classes_chosen_by_the_seed():
    labels = np.array([3, 1, 3, 0, 2, 1, 0, 2, 4, 4])
    first = {3: 0, 1: 1, 0: 3, 2: 4, 4: 8}
    picks = {seed: filters.pick_digits(labels, 3, seed) for seed in range(6)}
    for indices in picks.values():
        assert len({int(labels[i]) for i in indices}) == 3
        assert all(first[int(labels[i])] == i for i in indices)
        assert list(labels[indices]) == sorted(labels[indices])
    assert filters.pick_digits(labels, 3, 2) == picks[2]  # deterministic
    assert len({tuple(p) for p in picks.values()}) > 1  # and the seed matters
    assert sorted(filters.pick_digits(labels, 5, 0)) == sorted(first.values())
    with pytest.raises(ValueError, match="only 5 classes"):
        filters.pick_digits(labels, 6, 0)


# ------------------------------------------------------------------------- the script
@pytest.mark.slow
@pytest.mark.parametrize("padding", PADDINGS)
def test_main_on_the_one_prints_grids_and_writes_plots_and_metrics(padding, tmp_path, capsys):
    metrics = filters.main(["--digits", "0", "--padding", padding, "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    size = {"VALID": 12, "SAME": 14}[padding]
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
        assert set(digit["pooled_max"]) == set(filters.NAMES)
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
