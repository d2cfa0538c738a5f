"""jaxdl.lecture, section 2: the lecture's hand-made filters, by hand and against lax references."""

import numpy as np
import pytest
from jax import lax

from jaxdl.lecture import (
    FILTERS,
    FULL_MATCH,
    ONE,
    filter_feature_maps,
    filter_params,
    filter_responses,
    pick_digits,
    strongest_filter,
)

PADDINGS = ["VALID", "SAME"]
NAMES = ["vertical", "horizontal", "diagonal \\", "diagonal /"]

# The lecture's "1" as plain Python lists, typed again here rather than taken from the library.
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


def test_the_lectures_image_and_filters_and_their_conv_params():
    np.testing.assert_array_equal(ONE, ONE_BY_HAND)
    assert list(FILTERS) == NAMES
    np.testing.assert_array_equal(FILTERS["vertical"], VERTICAL_BY_HAND)
    for name, kernel in FILTERS.items():
        assert kernel.shape == (3, 3) and kernel.sum() == 3  # a line of three ones
    params = filter_params()
    w = np.asarray(params["w"])
    assert w.shape == (3, 3, 1, 4)
    for c, name in enumerate(NAMES):
        np.testing.assert_array_equal(w[:, :, 0, c], FILTERS[name])
    np.testing.assert_array_equal(params["b"], np.zeros(4))


@pytest.mark.parametrize("padding", PADDINGS)
def test_vertical_filter_on_the_one_equals_the_hand_computation(padding):
    by_hand = slide_by_hand(ONE_BY_HAND, VERTICAL_BY_HAND, padding)
    maps, pooled = filter_feature_maps(ONE[None, :, :, None], padding)
    assert maps.shape == (1, len(by_hand), len(by_hand[0]), 4)
    assert len(by_hand) == {"VALID": 12, "SAME": 14}[padding]
    np.testing.assert_array_equal(maps[0, :, :, 0], by_hand)
    pooled_by_hand = max_pool_by_hand(by_hand)
    assert len(pooled_by_hand) == {"VALID": 6, "SAME": 7}[padding]
    np.testing.assert_array_equal(pooled[0, :, :, 0], pooled_by_hand)


@pytest.mark.parametrize("padding", PADDINGS)
def test_all_four_filters_equal_the_lax_references(padding):
    rng = np.random.default_rng(0)
    images = np.concatenate([ONE[None], rng.random((3, 14, 14), dtype=np.float32)])[..., None]
    maps, pooled = filter_feature_maps(images, padding)
    for c, name in enumerate(NAMES):
        kernel = FILTERS[name][:, :, None, None]
        reference = lax.conv_general_dilated(images, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        np.testing.assert_allclose(maps[..., c : c + 1], reference, rtol=1e-6, atol=1e-6)
        for n in range(len(images)):  # and each map against the loops, not only lax
            np.testing.assert_allclose(
                maps[n, :, :, c], slide_by_hand(images[n, :, :, 0].tolist(), FILTERS[name].tolist(), padding),
                rtol=1e-5, atol=1e-5,
            )
    reference = lax.reduce_window(maps, -np.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    np.testing.assert_array_equal(pooled, reference)


@pytest.mark.parametrize("padding", PADDINGS)
def test_the_vertical_filter_responds_most_to_the_one(padding):
    maps, _ = filter_feature_maps(ONE[None, :, :, None], padding)
    responses = filter_responses(maps[0])
    assert strongest_filter(responses) == "vertical"
    assert responses["vertical"] == {"max": 3.0, "full_matches": 14}
    # Three filters reach 3 somewhere; the vertical one finds its whole line far more often.
    assert [responses[n]["max"] for n in NAMES] == [3, 3, 3, 2]
    assert [responses[n]["full_matches"] for n in NAMES] == [14, 2, 6, 0]


def test_a_horizontal_bar_responds_most_to_the_horizontal_filter():
    bar = np.zeros((14, 14), np.float32)
    bar[6, 3:11] = 1.0
    maps, _ = filter_feature_maps(bar[None, :, :, None])
    responses = filter_responses(maps[0])
    assert strongest_filter(responses) == "horizontal"
    assert [responses[n]["max"] for n in NAMES] == [1, 3, 1, 1]
    assert responses["horizontal"]["full_matches"] == 6  # the bar's 8 pixels hold 6 lines of three


def test_full_matches_count_responses_from_the_threshold_and_ties_go_to_the_higher_max():
    maps = np.zeros((2, 2, 4), np.float32)
    maps[0, 0] = [FULL_MATCH, FULL_MATCH - 0.01, 3.0, 0.0]  # on the threshold counts; just below does not
    maps[1, 1, 1] = 2.4
    responses = filter_responses(maps)
    assert [responses[n]["full_matches"] for n in NAMES] == [1, 0, 1, 0]
    assert strongest_filter(responses) == "diagonal \\"  # one match each, the higher maximum (3 > 2.5)
    assert strongest_filter(filter_responses(np.zeros((2, 2, 4), np.float32))) == "vertical"  # all tied: the first


def test_pick_digits_takes_the_first_of_different_classes_chosen_by_the_seed():
    labels = np.array([3, 1, 3, 0, 2, 1, 0, 2, 4, 4])
    first = {3: 0, 1: 1, 0: 3, 2: 4, 4: 8}
    picks = {seed: pick_digits(labels, 3, seed) for seed in range(6)}
    for indices in picks.values():
        assert len({int(labels[i]) for i in indices}) == 3
        assert all(first[int(labels[i])] == i for i in indices)
        assert list(labels[indices]) == sorted(labels[indices])
    assert pick_digits(labels, 3, 2) == picks[2]  # deterministic
    assert len({tuple(p) for p in picks.values()}) > 1  # and the seed matters
    assert sorted(pick_digits(labels, 5, 0)) == sorted(first.values())
    with pytest.raises(ValueError, match="only 5 classes"):
        pick_digits(labels, 6, 0)
