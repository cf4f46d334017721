"""Harness requests as rows of token ids: what is given, what is scored or filled (docs/evaluation.md).

No `lm_eval` import: these are the layout rules, testable alone. L is the model's length.

**Tokens** (the harness's own convention for causal models): trailing whitespace of the context
moves to the start of the continuation; the continuation's ids are those of context +
continuation after the context's ids. An empty context is, for a pack-layout model, the
end-of-text id (a document starts after one in packed training; the harness's prefix token);
for a pad-layout model nothing (the record starts the row).

**Pack layout** (documents joined with end-of-text and cut into rows; GPT-2-style models): the row
is context + continuation, run at its own length (as `sedd infill` runs a template), the context
cut from the left when the two exceed L, as the harness does for causal models. The scored region
is the continuation. A continuation longer than L cannot be scored: one-line error.

**Pad layout** (one record per row, right-padded; the names models): the row is context +
continuation + pads up to L, and the scored region is the continuation *and the pads after it*:
the bound is on "the record continues with exactly this and ends", the only reading of p(cont |
ctx) such a model has (`sedd perplexity` scores a pad-layout record's pads the same way). A row
starts at its record's start, so the context cannot be cut: context + continuation longer than L
is a one-line error.

**Rolling** (``loglikelihood_rolling``, perplexity tasks): pack layout, the text's ids in windows
of L: each window's continuation is its L new tokens, its context the tokens before it (the
end-of-text id before the first), cut from the left to fit (so full windows are unconditional and
the last, short one sees the most context), the harness's own windows for causal models; the
text's bound is the sum over windows. Pad layout: the text is one record (at most L tokens),
scored whole. Either way a window is exactly the log-likelihood request (text before it, its text).

**Generation** (``generate_until``): the context (cut from the left to leave room) then k =
min(max_gen_toks, room) free positions; pad layout: the rest of the row pads, and a context of L
tokens leaves no room (one-line error). The text generated ends at the first end-of-text (pack)
or pad (pad layout), then at the first stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SeddError

__all__ = [
    "Layout",
    "ScoreRow",
    "encode_pair",
    "score_row",
    "rolling_rows",
    "GenerationRow",
    "generation_row",
    "generated_text",
]


@dataclass(frozen=True)
class Layout:
    """How a model's rows look: pack or pad, its length L, its end-of-text and pad ids."""

    kind: str  # pack | pad
    length: int
    eos_id: int | None
    pad_id: int | None

    @classmethod
    def of(cls, pre: Any) -> Layout:
        """The layout of a loaded model (`Pretrained`): pad when its config says so and its
        tokenizer has a pad id (`sampling.templates.is_pad_layout`)."""
        tok = pre.tokenizer
        pad = getattr(pre.config.data, "layout", "pack") == "pad" and tok.pad_id is not None
        return cls("pad" if pad else "pack", int(pre.config.model.length), tok.eos_id, tok.pad_id)


@dataclass(frozen=True)
class ScoreRow:
    """One row to bound: its ids, the scored region [start, end), the context tokens dropped from
    the left, and the token lists its generator seed is hashed from."""

    ids: tuple[int, ...]
    start: int
    end: int
    truncated: int
    seed_parts: tuple[tuple[int, ...], ...]

    @property
    def scored(self) -> int:
        return self.end - self.start


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) by the harness's convention (module docstring); an empty
    context gives no ids here (`score_row` adds the prefix)."""
    if context == "":
        return [], list(tokenizer.encode(continuation))
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = list(tokenizer.encode(context + continuation))
    ctx = list(tokenizer.encode(context))
    return ctx, whole[len(ctx) :]


def _prefix(layout: Layout, ctx: Sequence[int]) -> list[int]:
    """The context as given, or the end-of-text id for an empty one (pack layout)."""
    if not ctx and layout.kind == "pack" and layout.eos_id is not None:
        return [layout.eos_id]
    return list(ctx)


def score_row(layout: Layout, ctx: Sequence[int], cont: Sequence[int], what: str = "the request") -> ScoreRow:
    """The row that bounds -log p(cont | ctx) under `layout` (module docstring); SeddError when it
    cannot fit the model's length."""
    L = layout.length
    full = _prefix(layout, ctx)
    if layout.kind == "pad":
        n = len(full) + len(cont)
        if n > L:
            raise SeddError(
                f"{what}: context + continuation are {n} tokens, more than the pad-layout model's length "
                f"{L} (one record per row: the context cannot be cut)"
            )
        ids = [*full, *cont] + [layout.pad_id] * (L - n)
        return ScoreRow(tuple(ids), len(full), L, 0, (tuple(full),))
    if len(cont) > L:
        raise SeddError(f"{what}: the continuation is {len(cont)} tokens, more than the model's length {L}")
    keep = full[len(full) - (L - len(cont)) :] if len(full) + len(cont) > L else full
    ids = (*keep, *cont)
    return ScoreRow(tuple(ids), len(keep), len(ids), len(full) - len(keep), (tuple(full),))


def rolling_rows(layout: Layout, ids: Sequence[int], what: str = "the text") -> list[ScoreRow]:
    """The rows whose bounds add up to the rolling bound of a text's `ids` (module docstring):
    window w (the ids from w L on) is `score_row` of (the ids before it, its ids), so a window is
    the log-likelihood request of its text given the text before it, seed included."""
    L = layout.length
    ids = list(ids)
    if layout.kind == "pad":
        return [score_row(layout, [], ids, what)]
    return [
        score_row(layout, ids[:offset], ids[offset : offset + L], what) for offset in range(0, len(ids), L)
    ]


@dataclass(frozen=True)
class GenerationRow:
    """The row a generation fills: the slots (ids; None = free), where the free run starts, its
    length, the context tokens dropped from the left, and the seed's token lists."""

    slots: tuple[int | None, ...]
    start: int
    free: int
    truncated: int
    seed_parts: tuple[tuple[int, ...], ...]


def generation_row(
    layout: Layout, ctx: Sequence[int], max_gen_toks: int, what: str = "the request"
) -> GenerationRow:
    """Context then min(max_gen_toks, room) free slots (module docstring)."""
    L = layout.length
    if isinstance(max_gen_toks, bool) or not isinstance(max_gen_toks, int) or max_gen_toks < 1:
        raise SeddError(f"{what}: max_gen_toks must be a whole number of at least 1, got {max_gen_toks!r}")
    full = _prefix(layout, ctx)
    if layout.kind == "pad":
        if len(full) >= L:
            raise SeddError(
                f"{what}: the context is {len(full)} tokens, which leaves no room to generate in the "
                f"pad-layout model's length {L} (one record per row: the context cannot be cut)"
            )
        k = min(max_gen_toks, L - len(full))
        keep = full
    else:
        k = min(max_gen_toks, L)
        keep = full[len(full) - (L - k) :] if len(full) + k > L else full
    slots = (*keep, *([None] * k))
    return GenerationRow(slots, len(keep), k, len(full) - len(keep), (tuple(full), (max_gen_toks,)))


def generated_text(layout: Layout, tokenizer: Any, ids: Sequence[int], until: Sequence[str]) -> str:
    """The text of the generated ids: up to the first end-of-text (pack) or pad (pad layout),
    decoded, then cut at the first of the stop strings `until`."""
    stop_id = layout.pad_id if layout.kind == "pad" else layout.eos_id
    ids = list(ids)
    if stop_id is not None and stop_id in ids:
        ids = ids[: ids.index(stop_id)]
    text = tokenizer.decode(ids)
    cut = len(text)
    for s in until:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]
