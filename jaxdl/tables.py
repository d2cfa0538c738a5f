"""Plain-text tables and grids for terminals and logs."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell, a rule under the header; ``right`` lists right-aligned columns."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines = [line(row) for row in cells]
    return "\n".join([lines[0], "-" * max(map(len, lines)), *lines[1:]])


def grid_lines(grid) -> list[str]:
    """A 2-D array as right-aligned text rows: integers where every value is one, else one decimal."""
    grid = np.asarray(grid)
    integral = np.allclose(grid, np.round(grid))
    cells = [[f"{v:.0f}" if integral else f"{v:.1f}" for v in row] for row in grid]
    width = max(len(c) for row in cells for c in row)
    return [" ".join(c.rjust(width) for c in row) for row in cells]


def side_by_side(*blocks: Sequence[str], gap: str = "    ") -> str:
    """Blocks of text lines next to each other, top-aligned."""
    widths = [max(map(len, block), default=0) for block in blocks]
    height = max(map(len, blocks), default=0)
    rows = []
    for i in range(height):
        row = [block[i] if i < len(block) else "" for block in blocks]
        rows.append(gap.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return "\n".join(rows)
