"""Pad insertion (`data.insert_pads`, issue 17 item 1): the transform against its stated law, by
exact enumeration of its draws, and the config's rules."""

from __future__ import annotations

import itertools

import pytest
import torch

from sedd_cli.config import ConfigError, load_preset
from sedd_cli.data.insertion import insert_pads, widen

from .oracle import chi2, chi2_critical

PAD, L, M = 0, 8, 3


def _where_and_how_many(out: list[int], n: int) -> tuple[int, int]:
    """(insertion point, pads inserted) read back from a widened row whose record is 1..n (distinct
    ids): the first pad before the last real id starts the run; (n, 0) when nothing shows."""
    real = [i for i, t in enumerate(out) if t != PAD]
    if not real or real[-1] == len(real) - 1:
        return n, 0
    at = next(i for i, t in enumerate(out) if t == PAD)
    return at, real[at] - at if at < len(real) else 0


def _exact_law(n: int, p: float) -> dict[tuple[int, int], float]:
    """P(insertion point, visible pads) by enumerating s ~ U{0..L-1}, k ~ U{0..M}, E ~ U{0..M}: the
    stated scheme, written independently of the code (a point at or past the record's end shows
    nothing, nor does E = 0; pads pushed past L are cut)."""
    law: dict[tuple[int, int], float] = {(n, 0): 1 - p}
    for s, k, e in itertools.product(range(L), range(M + 1), range(M + 1)):
        at = s + k
        key = (at, e) if (e > 0 and at < n) else (n, 0)
        law[key] = law.get(key, 0.0) + p / (L * (M + 1) ** 2)
    return law


@pytest.mark.parametrize("p", [1.0, 0.4])
def test_insertion_follows_its_stated_law(p):
    """Chi-square of the (insertion point, pad count) pairs of 40,000 widened rows against the exact
    enumeration; with the record's ids distinct both are read back from the row (the span's content
    stays in place: the row is the record with E pads before position s + k)."""
    n = 5
    row = torch.tensor([[*range(1, n + 1), *[PAD] * (L - n)]] * 40_000)
    out = insert_pads(row, PAD, p, M, torch.Generator().manual_seed(1))
    law = _exact_law(n, p)
    keys = sorted(law)
    seen = [_where_and_how_many(r, n) for r in out.tolist()]
    obs = torch.tensor([float(sum(1 for x in seen if x == k)) for k in keys])
    assert sum(obs) == len(seen)  # every row is one of the enumerated outcomes
    stat, df = chi2(obs, torch.tensor([law[k] for k in keys]))
    assert stat < chi2_critical(df), (stat, df)
    for r in out.tolist():  # the record's ids keep their order; nothing but pads is added
        assert [t for t in r if t != PAD] == list(range(1, n + 1))[: len([t for t in r if t != PAD])]


def test_width_is_uniform_given_the_content_length():
    """P(span width = B | k) = 1/(M + 1) for k <= B <= k + M: given the insertion point (s + k) the
    pads after it are E ~ U{0..M}, whatever k. A full record of distinct ids shows both; the
    chi-square is on the pad count given the point, against U{0..M} cut at L (exact enumeration)."""
    gen = torch.Generator().manual_seed(2)
    row = torch.tensor([[*range(1, L + 1)]] * 30_000)  # a full record: every insertion shows
    out = insert_pads(row, PAD, 1.0, M, gen).tolist()
    for at in range(1, L - M + 1):  # points where no pad is cut away
        pads = [sum(1 for t in r if t == PAD) for r in out if r[at] == PAD and r[at - 1] == at]
        counts = torch.tensor([float(pads.count(e)) for e in range(1, M + 1)])
        stat, df = chi2(counts, torch.full((M,), 1 / M))  # E = 0 shows nothing: E | E > 0 is U{1..M}
        assert stat < chi2_critical(df), (at, stat, df)


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
    with pytest.raises(ConfigError, match="data.insert_pads needs data.layout=pad"):
        cfg.validate()
    cfg.data.layout = "pad"
    cfg.data.insert_pads = 1.5
    with pytest.raises(ConfigError, match="data.insert_pads"):
        cfg.validate()
