"""benchmarks/quality_vs_nfe.py: its measures on known inputs, and the figure it writes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import quality_vs_nfe as q  # noqa: E402
from names_ngram import NGram  # noqa: E402


def test_measures_on_known_samples():
    ngram = NGram(2, ["ab", "ab", "ba"])
    out = q.measure(["ab", "zz", "ab", "a"], {"ab", "a"}, ngram)
    assert out["share_real"] == 0.75  # ab, ab, a
    assert out["mean_length"] == 1.75
    # entropy of "ab" is log 2, of "zz" and "a" 0: mean log(2) / 2
    assert out["entropy"] == round(math.log(2) / 2, 4)
    expected = sum(ngram.nll(x) for x in ["ab", "zz", "ab", "a"]) / 4
    assert out["ngram_nll"] == round(expected, 3)


def test_settings_skip_the_cache_for_time_conditioned_models():
    ti = list(q.settings(time_independent=True))
    tc = list(q.settings(time_independent=False))
    assert len(ti) - len(tc) == len(q.STEPS)
    assert all(not kw.get("cache") for _, kw, _ in tc)
    assert sum(steps is None for *_, steps in ti) == 3  # first-hitting with K = 1, 2, 4


def test_figure_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"sampler": "data", "share_real": 1.0, "ngram_nll": 15.0, "entropy": 1.6}]
    for nfe in (8, 16):
        rows.append(
            {
                "sampler": "analytic",
                "n": 100,
                "nfe": nfe,
                "share_real": 0.1,
                "ngram_nll": 22.0,
                "entropy": 1.6,
            }
        )
    rows.append(
        {
            "sampler": "first-hitting",
            "n": 100,
            "nfe": 16,
            "share_real": 0.12,
            "ngram_nll": 21.0,
            "entropy": 1.6,
        }
    )
    rows.append({"sampler": "analytic + cache", "steps": 8, "skipped": "no"})
    q.figure(rows, tmp_path / "f.svg", "title")
    text = (tmp_path / "f.svg").read_text()
    assert text.startswith("<?xml") and "first-hitting" in text
