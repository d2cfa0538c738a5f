"""jaxdl.tables: plain-text tables and grids."""

import numpy as np

from jaxdl.tables import format_table, grid_lines, side_by_side


def test_a_table_pads_its_columns_and_aligns_the_ones_asked_right():
    table = format_table(("name", "n"), [("a", 1), ("long name", 100)], right=(1,))
    assert table.splitlines() == ["name         n", "--------------", "a            1", "long name  100"]


def test_grid_lines_show_integers_as_integers_and_other_values_with_one_decimal():
    assert grid_lines(np.array([[0, 1], [10, 3]])) == [" 0  1", "10  3"]
    assert grid_lines(np.array([[0.25, 1.0]])) == ["0.2 1.0"]


def test_side_by_side_puts_blocks_next_to_each_other_top_aligned():
    assert side_by_side(["ab", "c"], ["x", "yy", "z"], gap=" | ").splitlines() == ["ab | x", "c  | yy", "   | z"]
