"""Harness requests as rows (`evaluation.requests`): tokens, truncation, regions, windows, stops.
No lm-eval needed: these are the layout rules the adapter applies before any network call."""

from __future__ import annotations

import pytest

from sedd_cli.errors import SeddError
from sedd_cli.evaluation import Layout, encode_pair, generated_text, generation_row, rolling_rows, score_row
from sedd_cli.tokenizers import get_tokenizer

EOS, PAD = 1, 0
PACK = Layout("pack", 16, EOS, PAD)
PADL = Layout("pad", 16, EOS, PAD)


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer("char", ["abc def"])  # <pad> 0, <eos> 1, ' ' 2, a..f 3..8


def test_encode_pair_moves_trailing_space_to_the_continuation(tok):
    ctx, cont = encode_pair(tok, "abc ", "def")
    assert tok.decode(ctx) == "abc" and tok.decode(cont) == " def"
    assert encode_pair(tok, "", "ab") == ([], tok.encode("ab"))


def test_pack_rows_cut_the_context_from_the_left(tok):
    ctx, cont = list(range(3, 9)) * 4, [3, 4, 5, 6, 7]  # 24 + 5 tokens, L = 16
    row = score_row(PACK, ctx, cont)
    assert row.ids == (*ctx[-11:], *cont) and (row.start, row.end, row.truncated) == (11, 16, 13)
    short = score_row(PACK, [3, 4], [5])
    assert short.ids == (3, 4, 5) and (short.start, short.end) == (2, 3)  # runs at its own length
    empty = score_row(PACK, [], [5, 6])
    assert empty.ids == (EOS, 5, 6) and empty.start == 1  # an empty context is the end-of-text id
    assert score_row(PACK, ctx, [3] * 16).ids == (3,) * 16  # the whole row scored: no context left
    with pytest.raises(SeddError, match="continuation is 17 tokens, more than the model's length 16"):
        score_row(PACK, ctx, [3] * 17)


def test_pad_rows_score_the_continuation_and_its_pads(tok):
    row = score_row(PADL, [3, 4], [5, 6])
    assert row.ids == (3, 4, 5, 6) + (PAD,) * 12 and (row.start, row.end) == (2, 16)
    assert score_row(PADL, [], [5]).start == 0  # no prefix: the record starts the row
    assert score_row(PADL, [3] * 10, [4] * 6).ids == (3,) * 10 + (4,) * 6  # exactly L: no pad left
    with pytest.raises(SeddError, match="are 17 tokens, more than the pad-layout model's length 16"):
        score_row(PADL, [3] * 10, [4] * 7, "request 3")


@pytest.mark.parametrize("n", [0, 5, 15, 16, 17, 40])
def test_rolling_windows_score_every_token_once(n):
    """Pack: the windows' regions, in order, are the text's ids exactly once; every window but a
    short first one is a full row of L (the last one's context fills it); each window is the
    log-likelihood row of (the ids before it, its ids)."""
    ids = [3 + (i % 6) for i in range(n)]
    rows = rolling_rows(PACK, ids)
    assert [t for r in rows for t in r.ids[r.start : r.end]] == ids
    assert all(len(r.ids) == 16 for r in rows[1:]) and all(r.scored <= 16 for r in rows)
    if 0 < n < 16:
        assert rows[0].ids == (EOS, *ids)
    for k, r in enumerate(rows):
        assert r == score_row(PACK, ids[: 16 * k], ids[16 * k : 16 * (k + 1)])


def test_rolling_on_a_pad_model_is_one_record():
    assert rolling_rows(PADL, [3, 4, 5]) == [score_row(PADL, [], [3, 4, 5])]
    with pytest.raises(SeddError, match="more than the pad-layout model's length"):
        rolling_rows(PADL, [3] * 17)


def test_generation_rows_leave_room_for_the_new_tokens():
    g = generation_row(PACK, list(range(3, 9)) * 3, 5)  # 18 context tokens, 5 to generate
    assert g.slots == (*(list(range(3, 9)) * 3)[-11:], *[None] * 5) and (g.start, g.free, g.truncated) == (
        11,
        5,
        7,
    )
    assert generation_row(PACK, [], 3).slots == (EOS, None, None, None)
    assert generation_row(PACK, [3], 100).free == 16  # at most the model's length
    p = generation_row(PADL, [3, 4], 100)
    assert p.slots == (3, 4, *[None] * 14) and p.free == 14  # pad layout: up to the row's end
    with pytest.raises(SeddError, match="leaves no room to generate"):
        generation_row(PADL, [3] * 16, 4)
    with pytest.raises(SeddError, match="max_gen_toks must be a whole number of at least 1"):
        generation_row(PACK, [3], 0)


def test_generated_text_stops_at_end_of_text_pad_and_stop_strings(tok):
    ids = tok.encode("ab cd") + [EOS] + tok.encode("ef")
    assert generated_text(PACK, tok, ids, []) == "ab cd"
    assert generated_text(PACK, tok, ids, [" c", "b"]) == "a"  # the earliest stop wins
    assert generated_text(PADL, tok, tok.encode("abc") + [PAD] + tok.encode("d"), ["zz"]) == "abc"


def test_without_the_eval_extra_lm_eval_is_one_line(monkeypatch):
    """lm-eval absent (hidden here): `sedd lm-eval` says which extra to install, in one line, and
    `sedd_cli.evaluation` (the bound, the layouts, the model_args) imports without it."""
    import sys

    from typer.testing import CliRunner

    from sedd_cli.cli import app

    for name in [m for m in sys.modules if m == "lm_eval" or m.startswith("lm_eval.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    monkeypatch.delitem(sys.modules, "sedd_cli.evaluation.harness", raising=False)
    r = CliRunner().invoke(app, ["lm-eval", "--model", "sedd", "--tasks", "x"])
    assert r.exit_code == 1
    assert r.stderr.strip() == "error: the harness adapter needs lm-eval: pip install 'sedd-cli[eval]'"
    import sedd_cli.evaluation as evaluation

    assert callable(evaluation.conditional_bound) and callable(evaluation.harness_options)
