"""benchmarks/infill_quality.py: its measures on known inputs (the sampler itself is checked
against exact laws in tests/test_variable_gaps.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import infill_quality as iq  # noqa: E402

NAMES = {"maa", "mara", "maria", "maya", "marta", "ma", "jon", "jan", "john"}


def test_data_lengths_count_the_middles():
    # ma_a names: maa (nothing between), mara, maya (1 letter), maria, marta (2); "ma" has no room
    assert iq.data_lengths(NAMES, "ma", "a", 0, 6) == pytest.approx(
        {0: 0.2, 1: 0.4, 2: 0.4, 3: 0, 4: 0, 5: 0, 6: 0}
    )
    assert iq.data_lengths(NAMES, "j", "n", 1, 2) == pytest.approx({1: 2 / 3, 2: 1 / 3})


def test_total_variation():
    assert iq.total_variation({1: 0.5, 2: 0.5}, {1: 0.5, 2: 0.5}) == 0
    assert iq.total_variation({1: 1.0}, {2: 1.0}) == 1
    assert iq.total_variation({1: 0.2, 2: 0.8}, {1: 0.5, 2: 0.5}) == pytest.approx(0.3)


def test_one_template_reports_against_the_data(monkeypatch):
    """With the draws replaced by known fills, the report's shares and distances are the ones
    computed by hand."""

    class _Res:
        predictor, temperature, top_p, nfe = "first-hitting", 1.0, 1.0, 16

    def fake_draw(model, template, args, gap_law=None):
        if "0-6" in template:  # the variable gap: maa, mara, mara, maxyza
            texts, lengths = ["maa", "mara", "mara", "maxyza"], [0, 1, 1, 3]
        else:  # a fixed k: real for k = 1 only
            k = int(template.split(":")[1].split("]")[0])
            texts, lengths = ["maya" if k == 1 else "ma" + "q" * k + "a"] * 4, [k] * 4
        return {"texts": texts, "lengths": lengths, "rounds": 1, "rows": 64, "res": _Res()}

    monkeypatch.setattr(iq, "draw", fake_draw)
    args = argparse.Namespace(run="RUN", fixed_model=None, gap_law=None, skip_fixed=False)
    row = iq.one_template("ma[MASK:0-6]a", NAMES, args)
    assert row["sampled_lengths"][0] == 0.25 and row["sampled_lengths"][1] == 0.5
    # data: 0 -> 0.2, 1 -> 0.4, 2 -> 0.4; sampled: 0 -> .25, 1 -> .5, 3 -> .25
    assert row["tv_lengths"] == pytest.approx(0.5 * (0.05 + 0.1 + 0.4 + 0.25))
    assert row["share_real"] == 0.75
    assert row["best_fixed"] == {"k": 1, "share_real": 1.0, "tv_lengths": 0.6}
