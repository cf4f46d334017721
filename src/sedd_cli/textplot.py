"""A line plot in the terminal: one series y(x) drawn with braille dots, as a Rich renderable.

Each character cell is a 2 x 4 grid of dots (Unicode braille, U+2800 + a bit per dot), so a plot
of ``W`` columns and ``H`` rows has ``2W x 4H`` dots. The points are bucketed by x into the ``2W``
dot columns (x_min in the first, x_max in the last: column = round((x - x_min) / (x_max - x_min)
(2W - 1))); a column shows the mean of its points at dot row round((mean - y_min) / (y_max -
y_min) (4H - 1)) from the bottom. Between two such columns the row is interpolated linearly, and
each column is joined to the one before by a vertical run of dots, so the curve is unbroken. The
y axis is labelled with the data's y_min (bottom row) and y_max (top row), the x axis with x_min
and x_max. Non-finite points are left out (and counted in the title);
no points is one line saying so; one point (or a constant series) is drawn in the middle row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

# bit of the dot at (column dx in 0..1, row dy in 0..3 from the top) of a braille cell
_DOT = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
_BRAILLE = 0x2800


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _columns(xs: list[float], ys: list[float], n: int) -> list[float | None]:
    """The mean y of the points in each of `n` dot columns (None: no point there)."""
    x0, x1 = min(xs), max(xs)
    sums, counts = [0.0] * n, [0] * n
    for x, y in zip(xs, ys, strict=True):
        c = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (n - 1))
        sums[c] += y
        counts[c] += 1
    return [s / k if k else None for s, k in zip(sums, counts, strict=True)]


def _dot_rows(means: list[float | None], y0: float, y1: float, m: int) -> list[int | None]:
    """Dot row (0 = top, m - 1 = bottom) of each column's mean; the middle row when y0 == y1."""
    out: list[int | None] = []
    for v in means:
        if v is None:
            out.append(None)
        elif y1 == y0:
            out.append(m // 2)
        else:
            out.append(m - 1 - round((v - y0) / (y1 - y0) * (m - 1)))
    return out


def _path(rows: list[int | None]) -> list[tuple[int, int]]:
    """(column, dot row) of every column from the first to the last one holding points, rows
    interpolated linearly between the columns that hold points."""
    known = [(c, r) for c, r in enumerate(rows) if r is not None]
    out = [known[0]]
    for (c0, r0), (c1, r1) in zip(known, known[1:], strict=False):
        out += [(c, round(r0 + (r1 - r0) * (c - c0) / (c1 - c0))) for c in range(c0 + 1, c1 + 1)]
    return out


def braille_rows(xs: Sequence[float], ys: Sequence[float], width: int, height: int) -> list[str]:
    """The plot area: `height` strings of `width` braille characters (finite points only)."""
    grid = [[0] * width for _ in range(height)]
    rows = _dot_rows(_columns(list(xs), list(ys), 2 * width), min(ys), max(ys), 4 * height)
    prev: int | None = None
    for c, r in _path(rows):
        lo, hi = (r, r) if prev is None else (min(r, prev), max(r, prev))
        for rr in range(lo, hi + 1):  # join to the previous column: an unbroken curve
            grid[rr // 4][c // 2] |= _DOT[rr % 4][c % 2]
        prev = r
    return ["".join(chr(_BRAILLE + b) for b in line) for line in grid]


@dataclass
class TextPlot:
    """`ys` against `xs` (e.g. loss against step) in at most `width` x (`height` + 3) cells."""

    xs: Sequence[float]
    ys: Sequence[float]
    title: str = ""
    width: int = 60
    height: int = 6
    style: str = "cyan"

    def lines(self, width: int | None = None) -> list[Text]:
        """The plot as Text lines, each at most `width` (default `self.width`) cells wide."""
        width = min(self.width, width or self.width)
        pts = [(x, y) for x, y in zip(self.xs, self.ys, strict=True) if math.isfinite(x) and math.isfinite(y)]
        dropped = len(self.xs) - len(pts)
        plural = "s" if dropped > 1 else ""
        title = self.title + (f" ({dropped} non-finite point{plural} left out)" if dropped else "")
        if not pts:
            return [Text(f"{title}: no points"[:width])]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        top, bottom = _fmt(max(ys)), _fmt(min(ys))
        pad = max(len(top), len(bottom))
        area = max(width - pad - 2, 1)  # "label ┤" then the dots
        out = [Text(title[:width], style="bold")] if title else []
        for i, row in enumerate(braille_rows(xs, ys, area, self.height)):
            label = top if i == 0 else bottom if i == self.height - 1 else ""
            line = Text(f"{label:>{pad}} " + ("┤" if label else "│"), style="dim")
            out.append(line.append(row, style=self.style))
        out.append(Text(" " * pad + " └" + "─" * area, style="dim"))
        left, right = _fmt(min(xs)), _fmt(max(xs))
        gap = max(area - len(left) - len(right), 1)
        out.append(Text((" " * (pad + 2) + left + " " * gap + right)[:width], style="dim"))
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(options.max_width)
