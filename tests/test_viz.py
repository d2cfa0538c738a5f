"""jaxdl.viz: figures built with matplotlib's object API, saved as PNG when given a path."""

import numpy as np

from jaxdl import viz


def test_curves_over_few_points_have_markers_and_whole_number_ticks(tmp_path):
    fig = viz.plot_curves({"train": [1.0, 0.5], "val": [1.2, 0.9]}, tmp_path / "loss.png", title="loss")
    (ax,) = fig.axes
    assert [line.get_marker() for line in ax.lines] == ["o", "o"]
    fig.canvas.draw()
    assert all(float(tick).is_integer() for tick in ax.get_xticks())  # no epoch 1.5
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
    many = viz.plot_curves({"loss": np.linspace(1, 0, 100)})
    assert many.axes[0].lines[0].get_marker() in ("None", None, "")


def test_history_plots_the_train_and_val_curves_it_holds():
    history = [{"train_loss": 1.0, "val_loss": 1.1}, {"train_loss": 0.5}]
    (ax,) = viz.plot_history(history, "loss").axes
    assert [line.get_label() for line in ax.lines] == ["train", "val"]
    assert [len(line.get_xdata()) for line in ax.lines] == [2, 1]
