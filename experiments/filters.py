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

import numpy as np

from jaxdl import data, experiment, runs, viz
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
from jaxdl.tables import format_table, grid_lines, side_by_side

# Settings: the shared flags with this script's defaults, and its own (--help lists them).
parser = experiment.experiment_parser(__doc__.split("\n\n")[0], out="runs/filters", trains=False, data=True)
parser.add_argument("--padding", choices=("VALID", "SAME"), default="VALID",
                    help="VALID: only where the 3x3 window fits (14x14 -> 12x12); SAME: zero border, size kept")
parser.add_argument("--digits", type=experiment.non_negative_int, default=3,
                    help="MNIST test digits to filter, each of a different class (0: skip MNIST)")


@experiment.script
def main(argv=None) -> dict:
    args = parser.parse_args(argv)
    if args.digits > 10:
        parser.error(f"--digits must be at most 10 (one per MNIST class), got {args.digits}")
    args.out.mkdir(parents=True, exist_ok=True)
    names, kernels = list(FILTERS), filter_params()["w"]
    metrics = {"padding": args.padding, "filters": names}

    # The lecture's "1": the image, each filter's feature map beside its pooled map and the filter
    maps, pooled = (a[0] for a in filter_feature_maps(ONE[None, :, :, None], args.padding))
    print('the lecture\'s 14x14 "1" (1 = ink):')
    print("\n".join(grid_lines(ONE)))
    shapes = "feature map {}x{} ({}), max-pooled 2x2 {}x{}".format(*maps.shape[:2], args.padding, *pooled.shape[:2])
    for c, name in enumerate(names):
        print(f"\n{name} filter: {shapes}, the filter:")
        print(side_by_side(grid_lines(maps[..., c]), grid_lines(pooled[..., c]), grid_lines(FILTERS[name])))

    # Which filter fits the "1": the most full matches (its whole line on ink)
    responses = filter_responses(maps)
    best = strongest_filter(responses)
    rows = [(name, f"{r['max']:.0f}", r["full_matches"]) for name, r in responses.items()]
    print(f"\nresponse to the \"1\" per filter (a full match: response >= {FULL_MATCH}, the filter's whole line on ink):")
    print(format_table(("filter", "max", "full matches"), rows, right=(1, 2)))
    others = ", ".join(f"{n} {responses[n]['full_matches']}" for n in names if n != best)
    print(f"strongest response to the \"1\": the {best} filter, max {responses[best]['max']:.0f}, "
          f"{responses[best]['full_matches']} full matches (the others: {others})")
    viz.plot_feature_maps(
        ONE, maps, names, args.out / "one_feature_maps.png", pooled=pooled, kernels=kernels, annotate=True,
        title=f'the lecture\'s "1" through four hand-made filters ({args.padding} padding), then 2x2 max-pooling',
    )
    metrics["one"] = {"strongest_filter": best, "responses": responses,
                      "feature_map_shape": list(maps.shape[:2]), "pooled_shape": list(pooled.shape[:2])}

    # MNIST: --digits test digits of different classes, when the test set can be loaded
    test, started = None, time.perf_counter()
    if args.digits:
        try:
            test = data.load_image_classification("mnist", data_dir=args.data_dir, manual_dir=args.manual_dir).test
        except data.DataError as error:
            why_not = " ".join(str(error).split())
            print(f"filters: MNIST part skipped: {why_not}. To include it, point --manual-dir (or JAXDL_MANUAL_DIR) "
                  "at the raw MNIST files, or --data-dir at a folder where TFDS prepared mnist; --digits 0 skips it.",
                  file=sys.stderr)
            metrics["mnist_skipped"] = why_not
    if test is not None:
        load_time = time.perf_counter() - started
        indices = pick_digits(test["y"], args.digits, args.seed)
        images, labels = np.asarray(test["x"])[indices], np.asarray(test["y"])[indices]
        maps, pooled = filter_feature_maps(images, args.padding)
        rows, digits = [], []
        for image, label, index, m, p in zip(images, labels, indices, maps, pooled):
            responses = filter_responses(m)
            best = strongest_filter(responses)
            peaks = {name: round(float(p[..., c].max()), 3) for c, name in enumerate(names)}
            rows.append((int(label), index, *(f"{peaks[n]:.2f} ({responses[n]['full_matches']})" for n in names), best))
            digits.append({"label": int(label), "test_index": index, "pooled_max": peaks,
                           "full_matches": {n: responses[n]["full_matches"] for n in names}, "strongest_filter": best})
            viz.plot_feature_maps(
                image, m, names, args.out / f"mnist_{label}_index{index}.png", pooled=p, kernels=kernels,
                title=f"MNIST test image {index} (label {label}) through the four filters ({args.padding} padding)",
            )
        h, w = maps.shape[1:3]
        print(f"\nMNIST test digits (pixels in [0, 1]; feature maps {h}x{w}, pooled {pooled.shape[1]}x{pooled.shape[2]}): "
              f"the largest value of each filter's pooled map (full matches, response >= {FULL_MATCH}, in brackets)")
        print(format_table(("digit", "test index", *names, "strongest"), rows, right=range(2, 2 + len(names))))
        metrics.update({"digits": digits, "mnist_feature_map_shape": [h, w],
                        "mnist_pooled_shape": list(pooled.shape[1:3]), "mnist_load_time_s": round(load_time, 2)})

    path = runs.write_metrics(args.out, metrics)
    print(f"\nwrote {path} and plots to {args.out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
