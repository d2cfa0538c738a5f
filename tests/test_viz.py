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


def test_precision_recall_plots_curves_points_and_lines_of_equal_f1(tmp_path):
    from jaxdl.metrics import binary_scores, precision_recall_curve

    scores, labels = np.array([3.0, 2.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 1, 0])
    curve = precision_recall_curve(scores, labels)
    fig = viz.plot_precision_recall({"unit": curve}, tmp_path / "pr.png", title="pr",
                                    points={"cut at 1.5": binary_scores(labels, scores > 1.5)}, f1_levels=(0.5,))
    (ax,) = fig.axes
    f1_line, unit, point = ax.lines
    np.testing.assert_allclose(unit.get_xdata(), curve.recall)
    np.testing.assert_allclose(unit.get_ydata(), curve.precision)
    assert unit.get_marker() == "o"  # few operating points: each marked
    assert (point.get_xdata()[0], point.get_ydata()[0]) == (2 / 3, 2 / 3)
    r, p = f1_line.get_xdata(), f1_line.get_ydata()
    np.testing.assert_allclose(2 * p * r / (p + r), 0.5)  # every point of the grey line has F1 0.5
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["unit", "cut at 1.5"]
    assert (tmp_path / "pr.png").read_bytes().startswith(b"\x89PNG")
