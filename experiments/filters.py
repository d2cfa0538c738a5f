"""The lecture's convolution section: hand-made 3x3 filters, convolution and max-pooling.

Four filters written by hand, each a line of three ones: vertical, horizontal, and the
two diagonals. jaxdl's Conv layer, given them as fixed weights (w (3, 3, 1, 4), b = 0),
slides each over an image; where the image's ink lies along the filter's line, the
response is large (3 when all three pixels are ink). MaxPool(2) then keeps the largest
response of each 2x2 block: the map halves, and a line that moves by a pixel still shows.
The script does it on the lecture's 14x14 "1" (grids printed as integers and drawn) and,
when the MNIST test set can be loaded, on a few real digits (drawn; pooled maxima printed).

Padding: VALID by default (--padding SAME is the alternative). VALID computes only where
the 3x3 window lies wholly on the image, as one computes it by hand (every value is a
sum over nine real pixels): 14x14 -> 12x12 -> 6x6. SAME pads a border of zeros and keeps the size: 14x14 -> 14x14 -> 7x7; on the "1",
whose ink stays away from the border, it adds only zeros around the same values.

Conv computes a cross-correlation (the kernel is not flipped); these four filters are
symmetric under a half turn, so correlation and convolution agree on them.

    python experiments/filters.py                          # the "1", MNIST if it loads; runs/filters
    python experiments/filters.py --digits 5 --seed 1      # five digits of other classes
    python experiments/filters.py --padding SAME --digits 0
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data, experiment, runs, viz
from jaxdl.layers import Conv, MaxPool
from jaxdl.tables import format_table, grid_lines, side_by_side

# The lecture's 14x14 image of a "1" (1 = ink).
ONE = np.array(
    [[int(c) for c in row.split()] for row in """
    0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 1 1 0 0 0 0 0 0
    0 0 0 0 0 0 1 1 0 0 0 0 0 0
    0 0 0 0 0 0 1 1 1 0 0 0 0 0
    0 0 0 0 0 0 0 1 1 0 0 0 0 0
    0 0 0 0 0 0 0 1 1 0 0 0 0 0
    0 0 0 0 0 0 0 1 1 0 0 0 0 0
    0 0 0 0 0 0 0 1 1 1 0 0 0 0
    0 0 0 0 0 0 0 0 1 1 0 0 0 0
    0 0 0 0 0 0 0 0 1 1 0 0 0 0
    0 0 0 0 0 0 0 0 1 1 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0
    """.strip().splitlines()],
    np.float32,
)

# The lecture's filters: a line of three ones each.
FILTERS = {
    "vertical": np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], np.float32),
    "horizontal": np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], np.float32),
    "diagonal \\": np.eye(3, dtype=np.float32),
    "diagonal /": np.fliplr(np.eye(3, dtype=np.float32)),
}
NAMES = list(FILTERS)
FULL_MATCH = 2.5  # a response this high needs all three pixels of a filter's line inked (5/6 on average)

pool = MaxPool(2)  # 2x2 windows, stride 2: each side halves (an odd last row or column is dropped)


def filter_params() -> dict:
    """The hand-made filters as a Conv's params: w (3, 3, 1, 4) in HWIO order, b zero."""
    w = np.stack([FILTERS[name] for name in NAMES], axis=-1)[:, :, None, :]
    return {"w": jnp.asarray(w), "b": jnp.zeros(len(FILTERS))}


def feature_maps(images, padding: str = "VALID") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, 1) -> feature maps (N, H', W', 4) and their 2x2 max-pooled maps."""
    layer = Conv(len(FILTERS), 3, padding=padding, name="filters")
    maps = layer.apply(filter_params(), jnp.asarray(images, jnp.float32))
    return np.asarray(maps), np.asarray(pool.apply({}, maps))


def filter_responses(maps: np.ndarray) -> dict:
    """Per filter, for one image's maps (H', W', 4): the largest response and the full matches.

    A full match is a position where the response is at least FULL_MATCH: the filter's
    whole line lies on ink. The maximum alone does not tell the filters apart: on the "1"
    three of them reach 3, and a MNIST stroke 2-3 pixels thick holds a line of three in
    every direction (and each map sums to about 3 times the ink, whatever the filter).
    """
    return {
        name: {"max": float(maps[..., c].max()), "full_matches": int((maps[..., c] >= FULL_MATCH).sum())}
        for c, name in enumerate(NAMES)
    }


def strongest_filter(responses: dict) -> str:
    """The filter with the most full matches (ties: the higher maximum, then the first named)."""
    return max(NAMES, key=lambda n: (responses[n]["full_matches"], responses[n]["max"]))


def lecture_one(args) -> dict:
    """The filters on the lecture's "1": integer grids printed, one figure, the responses."""
    maps, pooled = (a[0] for a in feature_maps(ONE[None, :, :, None], args.padding))
    print('the lecture\'s 14x14 "1" (1 = ink):')
    print("\n".join(grid_lines(ONE)))
    shapes = "feature map {}x{} ({}), max-pooled 2x2 {}x{}".format(*maps.shape[:2], args.padding, *pooled.shape[:2])
    for c, name in enumerate(NAMES):
        print(f"\n{name} filter: {shapes}, the filter:")
        print(side_by_side(grid_lines(maps[..., c]), grid_lines(pooled[..., c]), grid_lines(FILTERS[name])))
    responses = filter_responses(maps)
    best = strongest_filter(responses)
    rows = [(name, f"{r['max']:.0f}", r["full_matches"]) for name, r in responses.items()]
    print(f"\nresponse to the \"1\" per filter (a full match: response >= {FULL_MATCH}, the filter's whole line on ink):")
    print(format_table(("filter", "max", "full matches"), rows, right=(1, 2)))
    others = ", ".join(f"{n} {responses[n]['full_matches']}" for n in NAMES if n != best)
    print(f"strongest response to the \"1\": the {best} filter, max {responses[best]['max']:.0f}, "
          f"{responses[best]['full_matches']} full matches (the others: {others})")
    viz.plot_feature_maps(
        ONE, maps, NAMES, args.out / "one_feature_maps.png", pooled=pooled,
        kernels=filter_params()["w"], annotate=True,
        title=f'the lecture\'s "1" through four hand-made filters ({args.padding} padding), then 2x2 max-pooling',
    )
    return {
        "strongest_filter": best,
        "responses": responses,
        "feature_map_shape": list(maps.shape[:2]),
        "pooled_shape": list(pooled.shape[:2]),
    }


def pick_digits(labels: np.ndarray, n: int, seed: int) -> list[int]:
    """Indices of the first example of ``n`` different classes; ``seed`` chooses the classes.

    Deterministic: the classes are a seeded permutation of those present, taken in
    ascending order; each gets its first index in ``labels``.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if n > len(classes):
        raise ValueError(f"asked for {n} digits of different classes, but the labels hold only {len(classes)} classes")
    chosen = np.sort(np.asarray(jax.random.permutation(jax.random.key(seed), classes))[:n])
    return [int(np.argmax(labels == c)) for c in chosen]


def load_mnist_test(args):
    """The MNIST test split, or (None, why not) when it cannot be loaded."""
    try:
        ds = data.load_image_classification("mnist", data_dir=args.data_dir, manual_dir=args.manual_dir)
    except data.DataError as error:
        return None, " ".join(str(error).split())
    return ds.test, None


def mnist_digits(args) -> dict:
    """The filters on ``--digits`` MNIST test digits: one figure per digit, pooled maxima printed."""
    started = time.perf_counter()
    test, why_not = load_mnist_test(args)
    if test is None:
        print(f"filters: MNIST part skipped: {why_not}. To include it, point --manual-dir (or JAXDL_MANUAL_DIR) "
              "at the raw MNIST files, or --data-dir at a folder where TFDS prepared mnist; --digits 0 skips it.",
              file=sys.stderr)
        return {"mnist_skipped": why_not}
    load_time = time.perf_counter() - started
    indices = pick_digits(test["y"], args.digits, args.seed)
    images, labels = np.asarray(test["x"])[indices], np.asarray(test["y"])[indices]
    maps, pooled = feature_maps(images, args.padding)
    rows, digits, kernels = [], [], filter_params()["w"]
    for image, label, index, m, p in zip(images, labels, indices, maps, pooled):
        responses = filter_responses(m)
        best = strongest_filter(responses)
        peaks = {name: round(float(p[..., c].max()), 3) for c, name in enumerate(NAMES)}
        rows.append((int(label), index, *(f"{peaks[n]:.2f} ({responses[n]['full_matches']})" for n in NAMES), best))
        digits.append({"label": int(label), "test_index": index, "pooled_max": peaks,
                       "full_matches": {n: responses[n]["full_matches"] for n in NAMES}, "strongest_filter": best})
        viz.plot_feature_maps(
            image, m, NAMES, args.out / f"mnist_{label}_index{index}.png", pooled=p, kernels=kernels,
            title=f"MNIST test image {index} (label {label}) through the four filters ({args.padding} padding)",
        )
    h, w = maps.shape[1:3]
    print(f"\nMNIST test digits (pixels in [0, 1]; feature maps {h}x{w}, pooled {pooled.shape[1]}x{pooled.shape[2]}): "
          f"the largest value of each filter's pooled map (full matches, response >= {FULL_MATCH}, in brackets)")
    print(format_table(("digit", "test index", *NAMES, "strongest"), rows, right=range(2, 2 + len(NAMES))))
    return {
        "digits": digits,
        "mnist_feature_map_shape": [h, w],
        "mnist_pooled_shape": list(pooled.shape[1:3]),
        "mnist_load_time_s": round(load_time, 2),
    }


def parse_args(argv):
    parser = experiment.experiment_parser(__doc__.split("\n\n")[0], out="runs/filters", trains=False, data=True)
    parser.add_argument("--padding", choices=("VALID", "SAME"), default="VALID",
                        help="VALID: only where the 3x3 window fits (14x14 -> 12x12); SAME: zero border, size kept")
    parser.add_argument("--digits", type=experiment.non_negative_int, default=3,
                        help="MNIST test digits to filter, each of a different class (0: skip MNIST)")
    args = parser.parse_args(argv)
    if args.digits > 10:
        parser.error(f"--digits must be at most 10 (one per MNIST class), got {args.digits}")
    return args


@experiment.script
def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = {"padding": args.padding, "filters": NAMES}
    metrics["one"] = lecture_one(args)
    if args.digits:
        metrics.update(mnist_digits(args))
    path = runs.write_metrics(args.out, metrics)
    print(f"\nwrote {path} and plots to {args.out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
