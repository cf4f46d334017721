"""Pad insertion (`data.insert_pads`, issue 17 item 1): the transform against its stated law, by
exact enumeration of its draws, and the config's rules."""

from __future__ import annotations

import itertools

import pytest
import torch

from sedd_cli.config import ConfigError, load_preset
from sedd_cli.data.insertion import insert_pads, widen
from sedd_cli.pad_law import GapLayout, PadLaw, fill_weight, least_fill_weight

from .oracle import chi2, chi2_critical

PAD, L, M = 0, 8, 3


def _where_and_how_many(out: list[int], n: int) -> tuple[int, int]:
    """(insertion point, pads inserted) read back from a widened row whose record is 1..n (distinct
    ids): the first pad before the last real id starts the run; (n, 0) when nothing shows."""
    real = [i for i, t in enumerate(out) if t != PAD]
    if not real or real[-1] == len(real) - 1:
        return n, 0
    at = next(i for i, t in enumerate(out) if t == PAD)
    return at, real[at] - at


def _exact_law(n: int, p: float) -> dict[tuple[int, int], float]:
    """P(insertion point, pads) by enumerating the stated scheme, written independently of the code:
    a ~ U{0..n-1}, E ~ U{1..min(M, L - n)} with probability p when 1 <= n < L, else nothing."""
    most = min(M, L - n)
    if n == 0 or most == 0:
        return {(n, 0): 1.0}
    law = {(n, 0): 1 - p} if p < 1 else {}
    for a, e in itertools.product(range(n), range(1, most + 1)):
        law[(a, e)] = p / (n * most)
    return law


@pytest.mark.parametrize("p, n", [(1.0, 5), (0.4, 5), (0.4, 7), (0.7, 2)])
def test_insertion_follows_its_stated_law(p, n):
    """Chi-square of the (insertion point, pad count) pairs of 40,000 widened rows against the exact
    enumeration (with the record's ids distinct both are read back from the row), and the same law
    is `PadLaw.row_weight`'s closed form; no real token is ever cut or moved out of order."""
    row = torch.tensor([[*range(1, n + 1), *[PAD] * (L - n)]] * 40_000)
    out = insert_pads(row, PAD, p, M, torch.Generator().manual_seed(1))
    law = _exact_law(n, p)
    keys = sorted(law)
    seen = [_where_and_how_many(r, n) for r in out.tolist()]
    obs = torch.tensor([float(sum(1 for x in seen if x == k)) for k in keys])
    assert sum(obs) == len(seen)  # every row is one of the enumerated outcomes
    stat, df = chi2(obs, torch.tensor([law[k] for k in keys]))
    assert stat < chi2_critical(df), (stat, df)
    pad_law = PadLaw(p, M, L)
    for (_, e), prob in law.items():
        assert pad_law.row_weight(n, e) == pytest.approx(prob)
    for r in out.tolist():
        assert [t for t in r if t != PAD] == list(range(1, n + 1))


@pytest.mark.parametrize("p", [1.0, 0.4])
def test_pack_insertion_follows_its_stated_law(p):
    """Pack layout: a window of L real tokens gets a ~ U{0..L-1}, E ~ U{1..M} and is cut back to
    L. Chi-square of (first pad, pads shown) against the enumeration, and each shown pattern's
    probability is `PadLaw(pack=True).row_weight` (a run followed by a real token, or a tail)."""
    row = torch.arange(1, L + 1).repeat(40_000, 1)
    out = insert_pads(row, PAD, p, M, torch.Generator().manual_seed(5), pack=True).tolist()
    law: dict[tuple[int, int], float] = {(L, 0): 1 - p} if p < 1 else {}
    for a, e in itertools.product(range(L), range(1, M + 1)):
        key = (a, min(e, L - a))
        law[key] = law.get(key, 0.0) + p / (L * M)
    seen = [(r.index(PAD), r.count(PAD)) if PAD in r else (L, 0) for r in out]
    keys = sorted(law)
    obs = torch.tensor([float(seen.count(k)) for k in keys])
    assert obs.sum() == len(seen)
    stat, df = chi2(obs, torch.tensor([law[k] for k in keys]))
    assert stat < chi2_critical(df), (stat, df)
    pad_law = PadLaw(p, M, L, pack=True)
    for (a, shown), prob in law.items():
        tail = shown if a + shown == L and shown else 0
        run = shown - tail
        assert pad_law.row_weight(L - shown, run, tail, L) == pytest.approx(prob), (a, shown)
    for r, (_, shown) in zip(out, seen, strict=True):  # the window's tokens in order, its end cut
        assert [t for t in r if t != PAD] == list(range(1, L - shown + 1))


def test_full_and_empty_rows_are_left_alone():
    """r = L (no room) and r = 0 (no record) draw but never change: u(r) = 1 in the law."""
    full = torch.arange(1, L + 1).repeat(50, 1)
    empty = torch.full((50, L), PAD)
    gen = torch.Generator().manual_seed(4)
    assert torch.equal(insert_pads(full, PAD, 1.0, M, gen), full)
    assert torch.equal(insert_pads(empty, PAD, 1.0, M, gen), empty)
    assert PadLaw(1.0, M, L).row_weight(L, 0) == 1.0


def _brute_fill_weight(law: PadLaw, layout: GapLayout, k: tuple[int, ...]) -> float:
    """Z(k) by listing every arrangement (which slots of each gap hold its k_i tokens: C(B_i, k_i)
    ways each) and weighing each row by its interior runs, counted from the pattern itself."""
    t = len(layout.given)
    choices = [itertools.combinations(range(a, b), n) for (a, b, _), n in zip(layout.gaps, k, strict=True)]
    total = 0.0
    for picks in itertools.product(*choices):
        ones = [g and not i for g, i in zip(layout.given, layout.in_gap(), strict=True)]
        for pick in picks:
            for i in pick:
                ones[i] = True
        last = max((i for i in range(t) if ones[i]), default=-1)
        runs = [len(m) for m in "".join("1" if o else "0" for o in ones[: last + 1]).split("1") if m]
        if len(runs) <= 1:
            total += law.row_weight(sum(ones), runs[0] if runs else 0, t - 1 - last, t)
    return total


_T, _F = True, False
LAYOUTS = [  # (slots: real given or in a gap, pad tail; gaps): ma[0-6]a, [1-4]son, x[0-2]y[0-2]z, ab[0-3]
    ((_T, _T, *[_T] * 6, _T, *[_F] * 7), ((2, 8, 0),)),
    ((*[_T] * 4, _T, _T, _T, *[_F] * 9), ((0, 4, 1),)),
    ((_T, _T, _T, _T, _T, _T, _T, *[_F] * 9), ((1, 3, 0), (4, 6, 0))),
    ((_T, _T, _T, _T, _T, *[_F] * 11), ((2, 5, 0),)),
    ((_T, _T, _T, _T, _T, _T, *[_F] * 10), ((1, 3, 0), (3, 5, 0))),  # x[0-2][0-2]y: one run may span both
]


PACK_LAYOUTS = [  # pack rows end with the template: ma[0-6]a, ab[0-3] (its pads are the row's tail)
    ((_T, _T, *[_T] * 6, _T), ((2, 8, 0),)),
    ((_T, _T, _T, _T, _T), ((2, 5, 0),)),
    ((_T, _T, _T, _T, _T, _T, _T), ((1, 3, 0), (4, 6, 0))),
]


@pytest.mark.parametrize(
    "given, gaps, pack", [(*x, False) for x in LAYOUTS] + [(*x, True) for x in PACK_LAYOUTS]
)
def test_fill_weight_equals_the_sum_over_arrangements(given, gaps, pack):
    """`fill_weight`'s (start, length) listing against brute force over all C(B, k) arrangements,
    for every allowed k, and `least_fill_weight` is the least positive of them."""
    law = PadLaw(0.5, 6, 16, pack=pack)
    layout = GapLayout(given, gaps)
    ranges = [range(least, b - a + 1) for a, b, least in gaps]
    weights = []
    for k in itertools.product(*ranges):
        z = fill_weight(law, layout, k)
        assert z == pytest.approx(_brute_fill_weight(law, layout, k)), k
        weights.append(z)
    assert least_fill_weight(law, layout) == pytest.approx(min(w for w in weights if w > 0))
    if len(gaps) == 2 and gaps[1][0] > gaps[0][1]:  # text between them: both short needs two runs
        assert fill_weight(law, layout, (1, 1)) == 0.0


def test_zero_probability_draws_nothing():
    rows = torch.ones(4, L, dtype=torch.long)
    gen = torch.Generator().manual_seed(3)
    before = gen.get_state()
    assert insert_pads(rows, PAD, 0.0, M, gen) is rows
    assert torch.equal(gen.get_state(), before)


def test_widen_cuts_back_to_the_length():
    row = torch.tensor([1, 2, 3, 4])
    assert widen(row, 1, 2, PAD).tolist() == [1, 0, 0, 2]
    assert widen(row, 4, 2, PAD).tolist() == [1, 2, 3, 4]


def test_config_rules():
    cfg = load_preset("names")
    cfg.data.insert_pads = 0.5
    cfg.validate()
    cfg.data.layout = "pack"
    cfg.validate()  # char (and gpt2, which then gets a pad) have a pad of their own
    cfg.data.tokenizer = "byte"
    with pytest.raises(ConfigError, match="needs a pad distinct from end-of-text"):
        cfg.validate()
    cfg.data.tokenizer = "char"
    cfg.data.layout = "pad"
    cfg.data.insert_pads = 1.5
    with pytest.raises(ConfigError, match="data.insert_pads"):
        cfg.validate()
