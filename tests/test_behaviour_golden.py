"""Behaviour goldens: today's sample / generate / infill ids, per-sequence bounds and a short
training run's metrics, recorded in `fixtures/behaviour-golden.json` by
`scripts/record_goldens.py`, must come out exactly the same (ids equal, floats bit for bit).

The recording functions are the script's own (imported from it), so this test is: recompute,
compare. A failure means behaviour changed: find why, and re-record only deliberately, with a
CHANGELOG line saying why outputs changed (fixtures/README.md)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("record_goldens", REPO / "scripts" / "record_goldens.py")
rg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rg)

GOLDEN = json.loads(rg.FIXTURE.read_text())

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pres(tmp_path_factory, one_thread):
    return rg.models(tmp_path_factory.mktemp("golden-models"))


def assert_same(got, want, where: str = "") -> None:
    """Exact equality, naming the first differing entry (== on floats is bit equality here:
    both sides are the float64 values JSON round-trips exactly)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys differ"
        for k in want:
            assert_same(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: lengths differ"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    else:
        assert type(got) is type(want) and got == want, f"{where}: got {got!r}, recorded {want!r}"


@pytest.mark.parametrize("graph", sorted(rg.GRAPHS))
@pytest.mark.parametrize("section", list(rg.RECORDERS))
def test_matches_golden(section, graph, pres):
    got = json.loads(json.dumps(rg.RECORDERS[section](pres[graph], graph)))  # as recorded
    assert_same(got, GOLDEN[section][graph], f"{section}/{graph}")


def test_training_metrics_match_golden(tmp_path):
    got = json.loads(json.dumps(rg.record_train(tmp_path)))
    assert_same(got, GOLDEN["train"], "train")


def test_golden_covers_every_predictor():
    """A predictor added to the registry must be recorded (re-record deliberately)."""
    for graph in rg.GRAPHS:
        recorded = {k.split("/")[0] for k in GOLDEN["sample"][graph]}
        assert recorded == set(rg.predictors())
