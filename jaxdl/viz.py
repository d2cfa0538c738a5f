"""Plots, written as PNG files. Uses matplotlib's object API (no pyplot state):
each function builds a ``Figure``, saves it when given a path, and returns it
(a notebook shows a returned figure)."""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    fig.tight_layout()
    if path is not None:
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
) -> Figure:
    """One line per named curve (e.g. train and validation loss per epoch)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for label, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=label)
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
