"""Plots, written as PNG files. Uses matplotlib's object API (no pyplot state):
each function builds a ``Figure``, saves it when given a path, and returns it (a notebook
shows a returned figure once ``%matplotlib inline`` has run). In a multi-process run only
process 0 writes files."""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxdl.devices import is_main_process


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    fig.tight_layout()
    if path is not None and is_main_process():
        fig.savefig(path, dpi=120)
    return fig


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
    xlabel: str = "epoch",
    ylabel: str = "loss",
    log_y: bool = False,
    markers: bool | None = None,
) -> Figure:
    """One line per named curve over points 1, 2, ... (epochs, layers), on whole-number ticks;
    ``markers`` on each point (default: when no curve has more than 30)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    if markers is None:
        markers = max((len(values) for values in curves.values()), default=0) <= 30
    for label, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=label, marker="o" if markers else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if log_y:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_history(history: Sequence[Mapping[str, float]], metric: str, path=None, **kwargs) -> Figure:
    """``train_<metric>`` and ``val_<metric>`` per epoch from a ``fit`` history."""
    curves = {
        split: [record[f"{split}_{metric}"] for record in history if f"{split}_{metric}" in record]
        for split in ("train", "val")
    }
    return plot_curves({k: v for k, v in curves.items() if v}, path, ylabel=metric, **kwargs)


def plot_decision_surface(
    predict: Callable[[np.ndarray], np.ndarray],
    inputs: np.ndarray,
    targets: np.ndarray,
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
    label: str = "P(y = 1)",
    margin: float = 0.5,
    resolution: int = 200,
) -> Figure:
    """The output of ``predict`` (points (M, 2) -> values (M,)) over the plane, with the data on top."""
    lo, hi = inputs.min(0) - margin, inputs.max(0) + margin
    xs, ys = np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float32)
    values = np.asarray(predict(grid)).reshape(resolution, resolution)
    fig = Figure(figsize=(5, 4.4))
    ax = fig.add_subplot()
    filled = ax.contourf(xs, ys, values, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8)
    ax.contour(xs, ys, values, levels=[0.5], colors="k", linewidths=1.5)
    fig.colorbar(filled, ax=ax, label=label)
    ax.scatter(inputs[:, 0], inputs[:, 1], c=targets, cmap="RdBu_r", vmin=0, vmax=1, s=160, edgecolors="k")
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$")
    return _finish(fig, path)


def plot_curve_bundles(
    bundles: Mapping[str, np.ndarray],
    path: str | os.PathLike | None = None,
    *,
    xlabel: str = "epoch",
    ylabel: str = "loss",
    log_y: bool = False,
) -> Figure:
    """One panel per named bundle of runs (runs, steps): every run as a faint line."""
    fig = Figure(figsize=(4 * len(bundles), 3.6))
    axes = fig.subplots(1, len(bundles), sharey=True, squeeze=False)[0]
    for ax, (label, runs) in zip(axes, bundles.items()):
        ax.plot(np.arange(1, runs.shape[1] + 1), np.asarray(runs).T, alpha=0.5, linewidth=1)
        ax.set(title=label, xlabel=xlabel)
        ax.grid(alpha=0.3)
        if log_y:
            ax.set_yscale("log")
    axes[0].set_ylabel(ylabel)
    return _finish(fig, path)


def _grid_panel(ax, grid: np.ndarray, cmap: str, vmin: float, vmax: float, annotate: bool) -> None:
    """One 2-D array as an image without ticks; with ``annotate``, each non-zero cell's value written in it."""
    ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if not annotate:
        return
    integral = np.allclose(grid, np.round(grid))
    size = max(4.0, min(9.0, 110.0 / max(grid.shape)))
    for (i, j), value in np.ndenumerate(grid):
        if value != 0:
            dark = (value - vmin) > 0.55 * (vmax - vmin)  # dark cell: light text
            ax.text(j, i, f"{value:.0f}" if integral else f"{value:.1f}", ha="center", va="center",
                    fontsize=size, color="white" if dark else "black")


def plot_feature_maps(
    image: np.ndarray,
    maps: np.ndarray,
    titles: Sequence[str],
    path: str | os.PathLike | None = None,
    *,
    pooled: np.ndarray | None = None,
    kernels: np.ndarray | None = None,
    annotate: bool = False,
    title: str = "",
) -> Figure:
    """An image and what a bank of K filters makes of it, as a grid of panels.

    A column per filter, titled by ``titles``: its kernel (if ``kernels`` is given),
    its feature map, and its pooled map (if ``pooled`` is given); the input image
    sits at the start of the feature-map row. Every panel of a row shares one colour
    scale (from 0, or the row's minimum if lower, to its maximum), so the filters compare
    by shade; each map's maximum is written under it.

    Args:
      image: (H, W) or (H, W, 1), drawn dark where it is large (ink).
      maps: (H', W', K), one image's output of a ``Conv`` (channels last).
      titles: K names, one per filter.
      pooled: (h, w, K), the maps after pooling.
      kernels: (kh, kw, K) or a one-input-channel ``Conv`` weight (kh, kw, 1, K);
        always annotated with their values.
      annotate: write each non-zero value into its cell (for small integer grids).
      title: the figure's title.
    """
    image = np.asarray(image).reshape(np.shape(image)[:2])
    maps = np.asarray(maps)
    k = maps.shape[-1]
    if len(titles) != k:
        raise ValueError(f"got {len(titles)} titles for {k} feature maps")
    rows = []  # (label, (h, w, K) stack, colour map, annotate, caption with the maximum)
    if kernels is not None:
        kernels = np.asarray(kernels).reshape(*np.shape(kernels)[:2], k)
        rows.append(("filter {}x{}".format(*kernels.shape[:2]), kernels, "Greys", True, False))
    image_row = len(rows)
    rows.append(("feature map {}x{}".format(*maps.shape[:2]), maps, "Blues", annotate, True))
    if pooled is not None:
        pooled = np.asarray(pooled)
        rows.append(("pooled {}x{}".format(*pooled.shape[:2]), pooled, "Blues", annotate, True))
    scale = 1.4 if annotate else 1.0
    fig = Figure(figsize=(1.9 * scale * (k + 1), 2.0 * scale * len(rows) + (0.4 if title else 0)))
    axes = fig.subplots(len(rows), k + 1, squeeze=False)
    for r, (label, stack, cmap, write, caption) in enumerate(rows):
        vmin, vmax = min(0.0, float(stack.min())), float(stack.max()) or 1.0
        for c in range(k):
            ax = axes[r, c + 1]
            _grid_panel(ax, stack[..., c], cmap, vmin, vmax, write)
            if r == 0:
                ax.set_title(titles[c])
            if caption:
                ax.set_xlabel(f"max {stack[..., c].max():.3g}", fontsize=8)
        axes[r, 1].set_ylabel(label)
        axes[r, 0].set_axis_off()
    ax = axes[image_row, 0]
    ax.set_axis_on()
    _grid_panel(ax, image, "Greys", min(0.0, float(image.min())), float(image.max()) or 1.0, annotate)
    ax.set_title("input {}x{}".format(*image.shape))
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_image_grid(
    images: np.ndarray,
    path: str | os.PathLike | None = None,
    *,
    titles: Sequence[str] | None = None,
    columns: int = 8,
    cmap: str = "gray_r",
    shared_scale: bool = False,
    centered: bool = False,
    title: str = "",
) -> Figure:
    """Images (N, H, W) or (N, H, W, 1) in a grid of ``columns``, each with an optional title.

    Each image gets its own colour scale unless ``shared_scale`` (then one for all);
    ``centered`` makes a scale symmetric around 0 (for weights, with a diverging cmap).
    """
    images = np.asarray(images)
    images = images[..., 0] if images.ndim == 4 else images
    rows = -(-len(images) // columns)
    fig = Figure(figsize=(1.5 * columns, 1.6 * rows + (0.4 if title else 0)))
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(images):
            scaled = images if shared_scale else images[i]
            lo, hi = scaled.min(), scaled.max()
            if centered:
                lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
            ax.imshow(images[i], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray, path: str | os.PathLike | None = None, *, labels: Sequence[str] | None = None, title: str = ""
) -> Figure:
    """Counts (C, C), rows = true class, columns = predicted; log-shaded so rare mistakes show."""
    matrix = np.asarray(matrix)
    labels = labels if labels is not None else [str(i) for i in range(len(matrix))]
    fig = Figure(figsize=(0.5 * len(matrix) + 2, 0.5 * len(matrix) + 1.5))
    ax = fig.add_subplot()
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if i == j else "black")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=title)
    return _finish(fig, path)


def plot_precision_recall(
    curves: Mapping[str, object],
    path: str | os.PathLike | None = None,
    *,
    points: Mapping[str, object] | None = None,
    title: str = "",
    f1_levels: Sequence[float] = (0.2, 0.4, 0.6, 0.8),
) -> Figure:
    """Precision against recall: a line through the operating points of each named curve
    (a :class:`jaxdl.metrics.PrecisionRecallCurve`: only its points are reachable, marked
    when there are 100 or fewer), a large marker for each named single point (anything with
    ``precision`` and ``recall``, e.g. :class:`jaxdl.metrics.Scores`), and grey lines of
    equal F1 at ``f1_levels``, so that points compare by F1 at a glance."""
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    recall = np.linspace(0.001, 1, 400)
    for level in f1_levels:  # F1 = 2PR / (P + R) = level  <=>  P = level R / (2R - level)
        reach = recall > level / 2
        precision = level * recall[reach] / (2 * recall[reach] - level)
        keep = precision <= 1
        ax.plot(recall[reach][keep], precision[keep], color="0.75", linewidth=0.8, zorder=0)
        ax.text(level / (2 - level) + 0.01, 0.99, f"F1 {level:g}", fontsize=7, color="0.45", va="top")  # at P = 1
    for label, curve in curves.items():
        r, p = np.asarray(curve.recall), np.asarray(curve.precision)
        ax.plot(r, p, label=label, marker="o" if len(r) <= 100 else None, markersize=3)
    for i, (label, point) in enumerate((points or {}).items()):
        ax.plot([point.recall], [point.precision], linestyle="none", marker="*^sDPX"[i % 6], markersize=13,
                markeredgecolor="black", color=f"C{len(curves) + i}", label=label)
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    if len(curves) + len(points or {}) > 1:
        ax.legend(loc="lower left", fontsize=8)
    return _finish(fig, path)


def plot_norm_histograms(norms: Mapping[str, np.ndarray], clip: float, path=None, *, title: str = "") -> Figure:
    """One histogram of per-example gradient norms per name, stacked, on a shared log x axis with
    ``clip`` marked. The axis starts at the 0.5% quantile of all norms; smaller ones count in the first bin."""
    values = np.concatenate(list(norms.values()))
    positive = values[values > 0]
    lo = min(np.quantile(positive, 0.005) if positive.size else clip, clip) / 1.1
    bins = np.geomspace(lo, max(values.max(), clip) * 1.1, 60)
    fig = Figure(figsize=(6.5, 1.3 + 1.6 * len(norms)))
    axes = fig.subplots(len(norms), 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, (label, v)) in enumerate(zip(axes, norms.items())):
        ax.hist(np.maximum(v, lo), bins=bins, color=f"C{i}", alpha=0.8, label=label)
        ax.axvline(clip, color="k", linestyle="--", label=f"--clip {clip:g}")
        ax.set_ylabel("images")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_xscale("log")
    axes[0].set_title(title)
    axes[-1].set_xlabel("per-example gradient norm (L2 over all weights)")
    return _finish(fig, path)
