"""`[MASK:A-B]` gaps (issue 17 items 2 and 5) against an exact oracle.

A data law over records (words of 1 to 3 letters a, b; `_data_law`) is pushed through the pad
insertion scheme by enumerating its draws here, independently of `sedd_cli.pad_law`: a record of r
letters stays as it is with probability 1 - p (1 when r = L), and otherwise gets E pads at point a
with probability p / (r m), a in 0..r-1, E in 1..m, m = min(M, L - r). The result Q over
{a, b, pad}^3 is exactly what a model trained with ``data.insert_pads = p`` learns, and the oracle
(`AbsorbingOracle(Q)`) is that model, exact. Then:

* with ``gap_law="data"`` (the default for such a model) the fills must follow the *data's*
  conditional law: P(fills) proportional to P_data(the record they make), for fills of at least
  A tokens;
* with ``gap_law="model"`` they follow Q's own conditional: P(fills) proportional to the sum of Q
  over the rows (arrangements of pads) that compact to them.

Both are computed here by enumeration; chi-square at alpha = 1e-3 (`oracle.chi2`, pooled below 5
expected), on the fills and on their lengths."""

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

from .oracle import AbsorbingOracle, L, V, chi2, chi2_critical

PAD, LETTERS, M, P_INSERT = 2, "ab", 2, 0.6
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


def _data_law() -> dict[str, float]:
    """An arbitrary positive law over the records of 1 to 3 letters."""
    words = ["".join(w) for n in range(1, L + 1) for w in itertools.product(LETTERS, repeat=n)]
    weights = [1.0 + (7 * len(w) + 3 * w.count("a") + 5 * (w[0] == "b")) % 6 for w in words]
    total = sum(weights)
    return {w: x / total for w, x in zip(words, weights, strict=True)}


def _inserted_law(p: float) -> torch.Tensor:
    """Q[row] over {a, b, pad}^3: the data law through the scheme's draws (see the module doc)."""
    q = torch.zeros(V, V, V, dtype=torch.float64)
    for word, prob in _data_law().items():
        rec = [LETTERS.index(c) for c in word]
        r, most = len(rec), min(M, L - len(rec))
        q[tuple(rec + [PAD] * (L - r))] += prob * (1 - p if most > 0 else 1.0)
        for a, e in itertools.product(range(r), range(1, most + 1)):
            q[tuple((rec[:a] + [PAD] * e + rec[a:] + [PAD] * L)[:L])] += prob * p / (r * most)
    return q.clamp_min(1e-12) / q.clamp_min(1e-12).sum()  # the empty row has no mass


def _oracle(insert_pads: float = P_INSERT, q: torch.Tensor | None = None):
    cfg = load_preset("tiny")
    cfg.model.length = L
    cfg.data.layout = "pad"
    cfg.data.insert_pads, cfg.data.insert_pads_max = insert_pads, M
    return SimpleNamespace(
        model=AbsorbingOracle(_inserted_law(P_INSERT) if q is None else q), graph=Absorbing(V),
        noise=LogLinearNoise(1e-3), tokenizer=_Tok(), config=cfg, source="oracle",
        device=torch.device("cpu"),
    )  # fmt: skip


def _fills_of(row: tuple[int, ...], gaps: list[tuple[int, int]]) -> tuple[str, ...]:
    return tuple("".join(LETTERS[c] for c in row[a:b] if c != PAD) for a, b in gaps)


def _exact(template_cells: list[int | None], gaps: list[tuple[int, int]], least: int, law: str):
    """P(the gaps' fills): by the data law of the records they make ("data"), or by Q summed over
    the rows that agree with the given ids ("model"); fills below `least` excluded."""
    q = _inserted_law(P_INSERT)
    data = _data_law()
    out: dict[tuple[str, ...], float] = {}
    for cell in itertools.product(range(V), repeat=L):
        if any(t is not None and t != c for t, c in zip(template_cells, cell, strict=True)):
            continue
        fills = _fills_of(cell, gaps)
        if min(len(f) for f in fills) < least:
            continue
        record = "".join(LETTERS[c] for c in cell if c != PAD)
        if law == "model":
            out[fills] = out.get(fills, 0.0) + float(q[cell])
        elif record:
            out[fills] = data[record]  # every arrangement of the same fills gives the same record
    total = sum(out.values())
    return {k: v / total for k, v in out.items()}


def _assert_lengths_follow(exact: dict[tuple[str, ...], float], lengths: list[tuple[int, ...]]) -> None:
    """Chi-square of the drawn fill lengths against the length marginal of the enumerated law."""
    by_len: dict[tuple[int, ...], float] = {}
    for fills, v in exact.items():
        key = tuple(len(f) for f in fills)
        by_len[key] = by_len.get(key, 0.0) + v
    sizes = sorted(by_len)
    obs = torch.tensor([float(lengths.count(n)) for n in sizes])
    assert obs.sum() == len(lengths)  # every drawn length is one the law allows
    stat, df = chi2(obs, torch.tensor([by_len[n] for n in sizes]))
    assert stat < chi2_critical(max(df, 1)), (stat, df)


CASES = [  # template, its cells (None = free), its gaps, A
    ("[MASK:0-2]a", [None, None, 0], [(0, 2)], 0),
    ("[MASK:1-2]a", [None, None, 0], [(0, 2)], 1),
    ("[MASK:0-1]b[MASK:0-1]", [None, 1, None], [(0, 1), (2, 3)], 0),
    ("a[MASK:0-2]", [0, None, None], [(1, 3)], 0),
]


@pytest.mark.parametrize("law", ["data", "model"])
@pytest.mark.parametrize("template, cells, gaps, least", CASES, ids=[c[0] for c in CASES])
def test_fills_follow_the_exact_conditional(template, cells, gaps, least, law):
    """The fills (contents, hence lengths) against the enumerated law; given tokens kept; no pad or
    mask in any text or fill; each fill's length in [A, B] and equal to its text's."""
    res = infill(
        _oracle(), template=template, predictor="first-hitting", num_samples=N, batch_size=N, seed=1,
        gap_law=law,
    )  # fmt: skip
    exact = _exact(cells, gaps, least, law)
    keys = sorted(exact)
    seen = [tuple(text for text, filled in segs if filled) for segs in res.segments]
    assert all(s in exact for s in seen)  # nothing outside the law's support (e.g. below A)
    obs = torch.tensor([float(seen.count(k)) for k in keys])
    stat, df = chi2(obs, torch.tensor([exact[k] for k in keys]))
    assert stat < chi2_critical(max(df, 1)), (stat, df, dict(zip(keys, obs.tolist(), strict=True)))
    _assert_lengths_follow(exact, [tuple(len(f) for f in s) for s in seen])
    given = [c for c in cells if c is not None]
    for segs, ids, n, text in zip(res.segments, res.ids.tolist(), res.fill_lengths, res.texts, strict=True):
        assert [t for t, filled in segs if not filled and t] == [LETTERS[c] for c in given]  # "" = pad tail
        assert [len(t) for t, filled in segs if filled] == n
        assert all(least <= k <= b - a for k, (a, b) in zip(n, gaps, strict=True))
        assert "·" not in text and "[MASK]" not in text and V not in ids
        assert ids[: len(text)] == [LETTERS.index(c) for c in text]  # pads only after the text
    if least or law == "data":
        assert res.rounds > 1  # some samples were dropped and drawn again


def test_the_data_law_differs_from_the_models():
    """The correction matters here: the two enumerated laws of `[MASK:0-2]a` are far apart (so the
    chi-squares above tell them apart at N = 3000)."""
    data, model = (_exact([None, None, 0], [(0, 2)], 0, law) for law in ("data", "model"))
    assert 0.5 * sum(abs(data[k] - model.get(k, 0.0)) for k in data) > 0.15


def test_gap_option_is_the_template():
    """``--prefix P --suffix S --gap A-B`` is the template ``P[MASK:A-B]S``: the same draws."""
    a = infill(_oracle(), template="[MASK:0-2]a", predictor="first-hitting", num_samples=50, seed=5)
    b = infill(_oracle(), suffix="a", gap="0-2", predictor="first-hitting", num_samples=50, seed=5)
    assert torch.equal(a.ids, b.ids) and a.fill_lengths == b.fill_lengths and a.rounds == b.rounds


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


def test_rejection_gives_up_with_one_line():
    """A bound the law cannot meet (Q made to put all mass on empty fills) fails after the rounds."""
    q = torch.zeros(V, V, V, dtype=torch.float64)
    q[PAD, PAD, 0] = 1.0
    pre = _oracle(q=q.clamp_min(1e-30) / q.clamp_min(1e-30).sum())
    with pytest.raises(SeddError, match="after 20 rounds, 4 of 4 samples are still missing"):
        infill(pre, template="[MASK:1-2]a", predictor="first-hitting", num_samples=4, seed=0)


def test_untrained_model_refused_unless_forced():
    with pytest.raises(SeddError, match="needs a model trained with pad insertion"):
        infill(_oracle(0.0), template="[MASK:0-2]a", predictor="first-hitting", num_samples=2)
    res = infill(_oracle(0.0), template="[MASK:0-2]a", predictor="first-hitting", num_samples=2, force=True)
    assert len(res.texts) == 2
    pre = _oracle()
    pre.tokenizer = _Tok()
    pre.tokenizer.pad_id = pre.tokenizer.eos_id = PAD  # a pad that is end-of-text (GPT-2's own)
    with pytest.raises(SeddError, match="needs a model trained with data.insert_pads, which gives it a pad"):
        infill(pre, template="[MASK:0-2]a", predictor="first-hitting", num_samples=2)
    with pytest.raises(SeddError, match="--gap-law data needs a model trained with data.insert_pads"):
        infill(_oracle(0.0), template="[MASK:0-2]a", num_samples=2, force=True, gap_law="data")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"suffix": "a", "gap": "2-1"}, r"\[MASK:2-1\] \(--gap\): A is more than B"),
        ({"suffix": "a", "gap": "0-0"}, r"needs B of at least 1"),
        ({"suffix": "a", "gap": "x"}, r"--gap 'x': write the gap as A-B"),
        ({"suffix": "a", "gap": "0-9"}, r"more slots than the model's length"),
        ({"gap": "0-2"}, r"--gap A-B goes with --prefix and/or --suffix"),
        ({"template": "[MASK]a", "gap": "0-2"}, r"--gap A-B goes with --prefix and/or --suffix"),
        (
            {"template": "[MASK:0-2]a", "gap_law": "exact"},
            r"--gap-law 'exact': choose data \(the data's law\) or model",
        ),
    ],
)
def test_bad_gap_requests(kwargs, message):
    with pytest.raises(SeddError, match=message):
        infill(_oracle(), predictor="first-hitting", num_samples=2, **kwargs)


def test_pad_id_and_insertion_survive_save_load_and_convert(tmp_path):
    """A model trained with insertion, saved as a folder and converted again with `sedd convert`,
    keeps its pad id and its insertion settings (the law `--gap-law data` divides out), so a
    variable gap is served without --force and gives the same draws from either copy."""
    from typer.testing import CliRunner

    from sedd_cli.checkpoints import build_components, load_pretrained, save_model_dir
    from sedd_cli.cli import app
    from sedd_cli.tokenizers import get_tokenizer

    torch.manual_seed(0)
    cfg = load_preset("tiny")
    cfg.data.insert_pads, cfg.data.insert_pads_max = 0.4, 5
    tok = get_tokenizer("char", ["abc"])
    cfg.model.vocab_size = tok.vocab_size
    model, _, _ = build_components(cfg, tok.vocab_size)
    save_model_dir(tmp_path / "a", model.state_dict(), cfg, tok, {"step": 0})
    r = CliRunner().invoke(app, ["convert", str(tmp_path / "a"), str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    runs = []
    for folder in ("a", "b"):
        pre = load_pretrained(str(tmp_path / folder), "cpu")
        assert pre.tokenizer.pad_id == tok.pad_id is not None
        assert (pre.config.data.insert_pads, pre.config.data.insert_pads_max) == (0.4, 5)
        runs.append(infill(pre, template="a[MASK:0-4]b", predictor="first-hitting", num_samples=20, seed=3))
    assert torch.equal(runs[0].ids, runs[1].ids) and runs[0].fill_lengths == runs[1].fill_lengths


def test_live_view_shows_pads_then_a_final_frame_without_them():
    """The frames of a variable gap hold pads (drawn as a dim `·` by the view) while sampling; the
    last, "final" frame is the kept samples with the gaps' pads removed, equal to the result."""
    from sedd_cli.display import _header

    events = []
    res = infill(
        _oracle(), template="[MASK:0-2]a", predictor="first-hitting", num_samples=40, seed=4,
        on_step=events.append,
    )  # fmt: skip
    assert [e.phase for e in events].count("final") == 1 and events[-1].phase == "final"
    assert torch.equal(events[-1].x, res.ids)
    assert any((e.x[:, :2] == PAD).any() for e in events if e.phase == "denoise")  # pads shown
    assert "pads in their [MASK:A-B] gaps removed" in _header(events[-1], 0.0)


@pytest.mark.parametrize("template, cells, gaps", [c[:3] for c in CASES if c[3] == 0], ids=lambda x: str(x))
def test_shaped_fills_keep_the_datas_lengths(template, cells, gaps):
    """With the data's law at temperature 0.5 the lengths are drawn first at temperature 1, so
    their law is still the data's (chi-square against the enumerated length marginal), while the
    letters come from the shaped sampler given those lengths: every fill has exactly its length in
    real letters, and the given tokens stay."""
    res = infill(
        _oracle(), template=template, predictor="first-hitting", num_samples=N, batch_size=N, seed=6,
        temperature=0.5,
    )  # fmt: skip
    _assert_lengths_follow(_exact(cells, gaps, 0, "data"), [tuple(n) for n in res.fill_lengths])
    given = [LETTERS[c] for c in cells if c is not None]
    for segs, text in zip(res.segments, res.texts, strict=True):
        assert [t for t, filled in segs if not filled and t] == given and "·" not in text
    if template == "[MASK:0-2]a":  # one letter before "a": its slot is the only free one in stage 2
        # Q(x a pad) = P_data(x a) (1 - p) for both letters, so at temperature 1/2 the letter is
        # drawn in proportion to P_data(x a)^2 (pads rejected): exact, against the fills seen
        data = _data_law()
        want = torch.tensor([data["aa"] ** 2, data["ba"] ** 2])
        seen = [segs[0][0] for segs, n in zip(res.segments, res.fill_lengths, strict=True) if n == [1]]
        obs = torch.tensor([float(seen.count("a")), float(seen.count("b"))])
        stat, df = chi2(obs, want / want.sum())
        assert stat < chi2_critical(df), (stat, obs, want / want.sum())
        plain = torch.tensor([data["aa"], data["ba"]])
        assert abs(float(want[0] / want.sum() - plain[0] / plain.sum())) > 0.05  # the shaping shows


def test_shaped_letters_fall_back_to_stage_one_when_rarely_kept(monkeypatch):
    """A length whose letters the shaped sampler keeps too rarely (rounds run out in stage 2) keeps
    its letters from stage 1: with every stage-2 draw failing, the result at temperature 0.5 is the
    temperature-1 result of the same seed, sample for sample (stage 1 is that call)."""
    from sedd_cli.sampling import api

    real = api._draw_fills

    def failing_stage_two(pre, opts, run_length, fixed, on_step, accept):
        if accept.law is None and accept.gaps and all(g.least == g.end - g.start for g in accept.gaps):
            raise api.FillsMissing("too rare")
        return real(pre, opts, run_length, fixed, on_step, accept)

    plain = infill(_oracle(), template="[MASK:0-2]a", predictor="first-hitting", num_samples=300, seed=8)
    monkeypatch.setattr(api, "_draw_fills", failing_stage_two)
    shaped = infill(
        _oracle(), template="[MASK:0-2]a", predictor="first-hitting", num_samples=300, seed=8, temperature=0.5
    )
    assert torch.equal(shaped.ids, plain.ids) and shaped.fill_lengths == plain.fill_lengths


def _window_law() -> dict[str, float]:
    """An arbitrary positive law over pack windows: the 3-letter words."""
    words = ["".join(w) for w in itertools.product(LETTERS, repeat=L)]
    weights = [1.0 + (5 * w.count("a") + 3 * (w[1] == "b") + 2 * (w[0] == "a")) % 7 for w in words]
    total = sum(weights)
    return {w: x / total for w, x in zip(words, weights, strict=True)}


def _pack_inserted_law(p: float) -> torch.Tensor:
    """Q over {a, b, pad}^3 for a pack-layout model: each window kept (1 - p) or given E pads at a,
    a ~ U{0..2}, E ~ U{1..M}, and cut back to 3 (the scheme's draws, enumerated)."""
    q = torch.zeros(V, V, V, dtype=torch.float64)
    for word, prob in _window_law().items():
        w = [LETTERS.index(c) for c in word]
        q[tuple(w)] += prob * (1 - p)
        for a, e in itertools.product(range(L), range(1, M + 1)):
            q[tuple((w[:a] + [PAD] * e + w[a:])[:L])] += prob * p / (L * M)
    return q.clamp_min(1e-12) / q.clamp_min(1e-12).sum()


@pytest.mark.parametrize(
    "template, given, gaps", [("[MASK:0-2]a", "a", [(0, 2)]), ("a[MASK:0-2]", "a", [(1, 3)])]
)
def test_pack_layout_fills_follow_the_window_law(template, given, gaps):
    """A pack-layout model (windows, no record ends) trained with insertion: the template is the
    whole row, and with the data's law a fill c is drawn in proportion to the chance that a
    window starts with the text it makes (P c S), computed here from the window law; the pads
    it leaves after the suffix-less gap are the row's tail."""
    pre = _oracle(q=_pack_inserted_law(P_INSERT))
    pre.config.data.layout = "pack"
    res = infill(pre, template=template, predictor="first-hitting", num_samples=N, batch_size=N, seed=9)
    windows = _window_law()
    want: dict[str, float] = {}
    for k in range(3):
        for fill in map("".join, itertools.product(LETTERS, repeat=k)):
            text = fill + given if template.startswith("[") else given + fill
            want[fill] = sum(v for w, v in windows.items() if w.startswith(text))
    total = sum(want.values())
    keys = sorted(want)
    seen = [
        segs_fill
        for segs_fill in (
            next(t for t, f in segs if f) if any(f for _, f in segs) else "" for segs in res.segments
        )
    ]
    obs = torch.tensor([float(seen.count(k)) for k in keys])
    assert obs.sum() == N
    stat, df = chi2(obs, torch.tensor([want[k] / total for k in keys]))
    assert stat < chi2_critical(df), (stat, df, dict(zip(keys, obs.tolist(), strict=True)))
    assert all(
        text == (f + given if template.startswith("[") else given + f)
        for text, f in zip(res.texts, seen, strict=True)
    )
