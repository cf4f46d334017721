"""After sampling a template with ``[MASK:A-B]`` gaps: which samples are too short, and the rows with
the pads inside each gap removed.

A gap of B slots comes back holding real tokens and pads in any order; its fill is its real tokens,
in order (0 to B of them). `short` marks the samples with a fill below its gap's A, which
`api.infill` draws again (rejection: the kept samples follow the sampler's law conditioned on every
fill having at least A tokens). `compact` moves the later tokens left over the removed pads and
pads the row's end, so a pad-layout row reads as the model's training rows do.
"""

from __future__ import annotations

import torch

from .templates import Gap, spans


def gap_lengths(ids: torch.Tensor, gaps: list[Gap], pad_id: int | None) -> torch.Tensor:
    """``[N, G]``: the real tokens of each gap's fill (all B slots when there is no pad id)."""
    cols = []
    for g in gaps:
        part = ids[:, g.start : g.end]
        cols.append(
            (part != pad_id).sum(1) if pad_id is not None else torch.full_like(part[:, 0], g.end - g.start)
        )
    return torch.stack(cols, 1)


def short(ids: torch.Tensor, gaps: list[Gap], pad_id: int | None) -> torch.Tensor:
    """``[N]`` bool: the samples with some gap filled with fewer than its A tokens."""
    least = torch.tensor([g.least for g in gaps])
    return (gap_lengths(ids, gaps, pad_id) < least).any(1)


def compact(
    ids: torch.Tensor, free: list[bool], gaps: list[Gap], pad_id: int | None
) -> tuple[torch.Tensor, list[list[tuple[int, int]]]]:
    """(`ids` ``[N, length]`` with the pads inside the gaps removed and the row's end padded, each
    sample's filled spans): a span per run of free slots of the template, empty where a gap was
    filled with nothing. Without a pad id the rows are as they came."""
    runs = spans(free)
    if pad_id is None:
        return ids, [list(runs) for _ in range(ids.shape[0])]
    in_gap = torch.zeros(ids.shape[1], dtype=torch.bool)
    for g in gaps:
        in_gap[g.start : g.end] = True
    out = torch.full_like(ids, pad_id)
    all_spans = []
    for n, row in enumerate(ids):
        keep = ~(in_gap & (row == pad_id))  # [length]
        out[n, : int(keep.sum())] = row[keep]
        shift = torch.cumsum((~keep).long(), 0)  # removed slots up to and including each position
        moved = [(a - int(shift[a - 1]) if a else 0, b - int(shift[b - 1])) for a, b in runs]
        all_spans.append(moved)
    return out, all_spans


def fill_lengths(
    ids: torch.Tensor, row_spans: list[list[tuple[int, int]]], pad_id: int | None
) -> list[list[int]]:
    """The tokens of each sample's filled spans: its real (non-pad) tokens, or its width without a
    pad id."""
    out = []
    for row, sp in zip(ids, row_spans, strict=True):
        out.append([int((row[a:b] != pad_id).sum()) if pad_id is not None else b - a for a, b in sp])
    return out
