"""`[MASK:A-B]` gaps (issue 17 item 2) against an exact oracle.

The oracle's law p over {0, 1, 2}^3 (`oracle.joint_table`) is read as rows of letters a (0), b (1)
and the pad (2), so it is a known law over sequences containing pads, as a model trained with
pad insertion would have learnt one. A gap of B slots filled by the exact (first-hitting) sampler
gives B tokens drawn from p's conditional; with its pads removed the fill is the letters in them,
in order. Its law is computed here by enumeration of the cells of p consistent with the given
tokens: P(fill = f) = sum of p over the cells whose gap letters are f, normalised, and for a
lower bound A the same restricted to |f| >= A (rejection conditions on it exactly). Chi-square at
alpha = 1e-3 (`oracle.chi2`, pooled below 5 expected)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from sedd_cli.config import load_preset
from sedd_cli.errors import SeddError
from sedd_cli.graph import Absorbing
from sedd_cli.noise import LogLinearNoise
from sedd_cli.sampling import infill

from .oracle import AbsorbingOracle, L, V, chi2, chi2_critical, joint_table

PAD, LETTERS = 2, "ab"
N = 3000


class _Tok:
    """Two letters and the pad (id 2); the mask is id 3."""

    pad_id, eos_id, vocab_size, kind = PAD, None, V, "char"

    def encode(self, text: str) -> list[int]:
        return [LETTERS.index(c) for c in text]

    def decode(self, ids, mask: str = "[MASK]", skip_special: bool = False) -> str:
        return "".join(
            mask if i == V else ("" if skip_special else "·") if i == PAD else LETTERS[i] for i in ids
        )


def _oracle(insert_pads: float = 0.5):
    cfg = load_preset("tiny")
    cfg.model.length = L
    cfg.data.insert_pads = insert_pads
    return SimpleNamespace(
        model=AbsorbingOracle(joint_table()), graph=Absorbing(V), noise=LogLinearNoise(1e-3),
        tokenizer=_Tok(), config=cfg, source="oracle", device=torch.device("cpu"),
    )  # fmt: skip


def _exact(
    template_cells: list[int | None], gaps: list[tuple[int, int]], least: int
) -> dict[tuple[str, ...], float]:
    """P(the gaps' fills) by enumeration of p's cells that agree with the given ids."""
    p = joint_table()
    law: dict[tuple[str, ...], float] = {}
    for cell in itertools.product(range(V), repeat=L):
        if any(t is not None and t != c for t, c in zip(template_cells, cell, strict=True)):
            continue
        fills = tuple("".join(LETTERS[c] for c in cell[a:b] if c != PAD) for a, b in gaps)
        if min(len(f) for f in fills) < least:
            continue
        law[fills] = law.get(fills, 0.0) + float(p[cell])
    total = sum(law.values())
    return {k: v / total for k, v in law.items()}


CASES = [  # template, its cells (None = free), its gaps, A
    ("[MASK:0-2]a", [None, None, 0], [(0, 2)], 0),
    ("[MASK:1-2]a", [None, None, 0], [(0, 2)], 1),
    ("[MASK:0-1]b[MASK:0-1]", [None, 1, None], [(0, 1), (2, 3)], 0),
]


@pytest.mark.parametrize("template, cells, gaps, least", CASES, ids=[c[0] for c in CASES])
def test_fills_follow_the_exact_conditional(template, cells, gaps, least):
    """The fills (contents, hence lengths) against the enumerated law; given tokens kept; no pad or
    mask in any text or fill; each fill's length in [A, B] and equal to its text's."""
    res = infill(_oracle(), template=template, predictor="first-hitting", num_samples=N, batch_size=N, seed=1)
    law = _exact(cells, gaps, least)
    keys = sorted(law)
    seen = [tuple(text for text, filled in segs if filled) for segs in res.segments]
    assert all(s in law for s in seen)  # nothing outside the law's support (e.g. below A)
    obs = torch.tensor([float(seen.count(k)) for k in keys])
    stat, df = chi2(obs, torch.tensor([law[k] for k in keys]))
    assert stat < chi2_critical(max(df, 1)), (stat, df, dict(zip(keys, obs.tolist(), strict=True)))
    lengths = torch.tensor([[len(f) for f in s] for s in seen]).flatten()
    by_len = {n: sum(v for k, v in law.items() for f in k if len(f) == n) for n in range(3)}
    sizes = [n for n in range(3) if by_len[n] > 0]
    obs_len = torch.tensor([float((lengths == n).sum()) for n in sizes])
    assert obs_len.sum() == lengths.numel()
    stat, df = chi2(obs_len, torch.tensor([by_len[n] / len(gaps) for n in sizes]))
    assert stat < chi2_critical(max(df, 1))
    given = [c for c in cells if c is not None]
    for segs, ids, n, text in zip(res.segments, res.ids.tolist(), res.fill_lengths, res.texts, strict=True):
        assert [t for t, filled in segs if not filled and t] == [LETTERS[c] for c in given]  # "" = pad tail
        assert [len(t) for t, filled in segs if filled] == n
        assert all(least <= k <= b - a for k, (a, b) in zip(n, gaps, strict=True))
        assert "·" not in text and "[MASK]" not in text and V not in ids
        assert ids[: len(text)] == [LETTERS.index(c) for c in text]  # pads only after the text
    if least:
        assert res.rounds > 1  # p gives an empty fill some mass: some samples were drawn again


@pytest.mark.parametrize("predictor", ["euler", "analytic", "none", "first-hitting"])
def test_every_predictor_keeps_the_invariants(predictor):
    res = infill(_oracle(), template="[MASK:1-2]a", predictor=predictor, steps=8, num_samples=200, seed=2)
    for segs, n in zip(res.segments, res.fill_lengths, strict=True):
        assert segs[-1] == ("a", False) and 1 <= n[0] <= 2 and len(segs[0][0]) == n[0]
    d = res.to_dict()
    assert d["samples"][0]["fill_lengths"] == res.fill_lengths[0]
    assert d["samples"][0]["filled"] == [segs[0][0] for segs in res.segments[:1]]


def test_fixed_masks_keep_their_meaning():
    """`[MASK:2]` is two slots as before: pads in them are not moved (the ids stay as sampled)."""
    res = infill(_oracle(), template="[MASK:2]a", predictor="first-hitting", num_samples=200, seed=3)
    assert res.rounds == 1 and all(sp == [(0, 2)] for sp in res.spans)
    assert all(row[2] == 0 for row in res.ids.tolist())


def test_rejection_gives_up_with_one_line(monkeypatch):
    """A bound the law cannot meet (p made to put all mass on empty fills) fails after the rounds."""
    p = torch.zeros(V, V, V)
    p[PAD, PAD, 0] = 1.0
    pre = _oracle()
    pre.model = AbsorbingOracle(p.clamp_min(1e-30) / p.clamp_min(1e-30).sum())
    with pytest.raises(SeddError, match="rounds, .* samples still fill a gap below"):
        infill(pre, template="[MASK:1-2]a", predictor="first-hitting", num_samples=4, seed=0)


def test_untrained_model_refused_unless_forced():
    with pytest.raises(SeddError, match="needs a model trained with pad insertion"):
        infill(_oracle(0.0), template="[MASK:0-2]a", predictor="first-hitting", num_samples=2)
    res = infill(_oracle(0.0), template="[MASK:0-2]a", predictor="first-hitting", num_samples=2, force=True)
    assert len(res.texts) == 2
    pre = _oracle()
    pre.config.data.layout = "pack"
    with pytest.raises(SeddError, match="needs a pad-layout model trained with data.insert_pads"):
        infill(pre, template="[MASK:0-2]a", predictor="first-hitting", num_samples=2)
