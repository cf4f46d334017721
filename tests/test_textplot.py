"""The terminal plot (`textplot.TextPlot`) against facts, and the curves `sedd train` and `sedd info
RUN` show from a run's metrics.jsonl.

Dots are decoded with the Unicode braille table (dot n of a cell is bit n - 1: dots 1-3 and 7
down the left column, 4-6 and 8 down the right), written out here independently of the module.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from sedd_cli.cli import app
from sedd_cli.textplot import TextPlot
from sedd_cli.training import read_metrics

from .helpers import NAMES

# (row, column) of each bit of a braille cell
BITS = {
    0x01: (0, 0),
    0x02: (1, 0),
    0x04: (2, 0),
    0x40: (3, 0),
    0x08: (0, 1),
    0x10: (1, 1),
    0x20: (2, 1),
    0x80: (3, 1),
}


def dots(plot: TextPlot, width: int | None = None) -> list[set[int]]:
    """For each dot column of the plot area, the set of lit dot rows (0 = top)."""
    lines = [t.plain for t in plot.lines(width)]
    area = [line.split("┤" if "┤" in line else "│", 1)[1] for line in lines if "┤" in line or "│" in line]
    cols: list[set[int]] = [set() for _ in range(2 * len(area[0]))]
    for i, line in enumerate(area):
        for j, ch in enumerate(line):
            bits = ord(ch) - 0x2800
            assert 0 <= bits < 256, ch
            for bit, (r, c) in BITS.items():
                if bits & bit:
                    cols[2 * j + c].add(4 * i + r)
    return cols


def labels(plot: TextPlot) -> tuple[float, float]:
    """(top, bottom) y labels."""
    found = [float(t.plain.split("┤")[0]) for t in plot.lines() if "┤" in t.plain]
    return found[0], found[-1]


def test_a_decreasing_series_is_drawn_top_left_to_bottom_right_and_unbroken():
    xs = list(range(1, 201))
    ys = [50.0 * math.exp(-x / 40) + 3 for x in xs]
    cols = dots(TextPlot(xs, ys, width=40, height=5))
    assert all(cols), "every dot column holds a dot: an unbroken curve"
    assert min(cols[0]) == 0 and max(cols[-1]) == 4 * 5 - 1  # y_max at the top left, y_min bottom right
    lowest = [max(c) for c in cols]
    highest = [min(c) for c in cols]
    assert lowest == sorted(lowest) and highest == sorted(highest)  # monotone: rows only go down


def test_an_increasing_series_goes_up():
    cols = dots(TextPlot([0, 1, 2, 3], [1.0, 2.0, 4.0, 8.0], width=20, height=4))
    lowest = [max(c) for c in cols]
    assert lowest == sorted(lowest, reverse=True) and max(cols[0]) == 15 and min(cols[-1]) == 0


def test_labels_are_the_data_min_and_max_and_the_step_range():
    ys = [12.5, 7.25, 9.0, 3.125, 4.0]
    plot = TextPlot([10, 20, 30, 40, 50], ys, title="loss", width=50, height=4)
    assert labels(plot) == (max(ys), min(ys))
    assert plot.lines()[0].plain == "loss"
    assert plot.lines()[-1].plain.split() == ["10", "50"]


@pytest.mark.parametrize("width", [20, 33, 72])
def test_the_width_is_respected(width):
    plot = TextPlot(list(range(500)), [math.sin(i / 30) for i in range(500)], title="t" * 100, width=200)
    assert all(t.cell_len <= width for t in plot.lines(width))
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(plot)
    assert all(len(line) <= width for line in console.export_text().splitlines())


def test_non_finite_points_are_left_out_and_counted():
    plot = TextPlot([1, 2, 3, 4], [5.0, float("nan"), 1.0, float("inf")], title="loss", width=40, height=3)
    assert plot.lines()[0].plain == "loss (2 non-finite points left out)"
    assert labels(plot) == (5.0, 1.0)


def test_no_points_one_point_and_a_constant_series():
    assert [t.plain for t in TextPlot([], [], title="val").lines()] == ["val: no points"]
    assert [t.plain for t in TextPlot([1], [float("nan")], title="val").lines()] == [
        "val (1 non-finite point left out): no points"
    ]
    one = dots(TextPlot([7], [2.5], width=10, height=2))
    assert one[0] == {4} and not any(one[1:])  # one dot, first column, middle row of 8
    flat = dots(TextPlot([1, 2, 3], [4.0, 4.0, 4.0], width=10, height=2))
    assert all(c == {4} for c in flat)
    assert labels(TextPlot([1, 2], [4.0, 4.0], height=2)) == (4.0, 4.0)


# --- the curves of a run -----------------------------------------------------------------------


def _plot_blocks(text: str) -> dict[str, list[str]]:
    """The plot blocks of a command's output, by title line."""
    out, title = {}, None
    for line in text.splitlines():
        if line.endswith("by step"):
            title = line
            out[title] = []
        elif title is not None:
            out[title].append(line)
    return out


def test_train_summary_and_info_show_the_runs_curves(tmp_path):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(NAMES) + "\n")
    run = tmp_path / "run"
    r = CliRunner().invoke(
        app, ["train", "--model", "tiny", "--data", str(data), "--max-steps", "6", "--run-dir", str(run),
              "--device", "cpu", "--set", "train.log_every=1", "--set", "train.eval_every=2",
              "--set", "data.valid_fraction=0.1"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    shown = _plot_blocks(r.stdout)
    loss_title = "training loss (nats/sequence) by step"
    val_title = "validation loss (nats/sequence, EMA weights) by step"
    assert sorted(shown) == sorted([loss_title, val_title])
    rows = read_metrics(run)
    for title, key in ((loss_title, "loss"), (val_title, "val_loss")):
        values = [m[key] for m in rows if key in m]
        tops = [float(line.split("┤")[0]) for line in shown[title] if "┤" in line]
        assert tops[0] == pytest.approx(max(values), rel=1e-3) and tops[-1] == pytest.approx(
            min(values), rel=1e-3
        )
    assert shown[loss_title][-1].split() == ["1", "6"] and shown[val_title][-1].split() == ["2", "6"]

    info = CliRunner().invoke(app, ["info", str(run)])
    assert info.exit_code == 0, info.output
    assert _plot_blocks(info.stdout) == shown  # the same plots, from metrics.jsonl
    assert re.search(r"^step\s+6$", info.stdout, re.M)


def test_info_on_a_model_folder_shows_no_curves(tmp_path):
    from .helpers import save_tiny_char_model

    folder = save_tiny_char_model(tmp_path / "model")
    r = CliRunner().invoke(app, ["info", str(Path(folder))])
    assert r.exit_code == 0, r.output
    assert "by step" not in r.stdout
