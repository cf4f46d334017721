"""Pad insertion (``data.insert_pads``): training rows that teach a pad-layout model that pads inside a
text mean "nothing here", so a ``[MASK:A-B]`` gap can be filled with fewer than B tokens.

For each row of a training batch holding a record of r real tokens (then pads), with probability p
(``data.insert_pads``) and if 1 <= r < L: a point a ~ U{0..r-1} and a count E ~ U{1..m(r)},
m(r) = min(M, L - r) (M = ``data.insert_pads_max``); the row becomes
``R[:a] + [pad] * E + R[a:]`` + pads, so no real token is cut. The law this induces, and how the
sampler turns a gap's fills back into the data's law, are stated in `sedd_cli.pad_law`
(docs/training.md). Three uniforms are drawn for every row whatever p selects, from the run's
generator, so the stream is a function of the seed and resumes exactly.

Pack layout (windows of L real tokens, no record ends): a ~ U{0..L-1}, E ~ U{1..M}, and the
window is cut back to L, so its last E tokens fall off.
"""

from __future__ import annotations

import torch


def insert_pads(
    rows: torch.Tensor, pad_id: int, prob: float, max_pads: int, gen: torch.Generator, pack: bool = False
) -> torch.Tensor:
    """`rows` ``[B, L]`` (pad layout: each a record, then pads) with one run of pads inserted in
    the chosen ones as above (a new tensor; `rows` is not changed). p = 0 returns `rows` itself
    and draws nothing, so runs without the option are unchanged. `pack`: the rows are windows of
    L real tokens; r is taken as L and E ~ U{1..M}, and the window is cut back to L."""
    if prob <= 0:
        return rows
    n, length = rows.shape
    u = torch.rand(n, 3, generator=gen, dtype=torch.float64)  # [B, 3]: choose, point, count
    if pack:
        r = torch.full((n,), length)  # [B] a window is all real tokens
        most = torch.full((n,), max_pads)  # [B] E ~ U{1..M}, the window's end cut away
    else:
        r = (rows != pad_id).sum(1).cpu()  # [B] the record's real tokens
        most = (length - r).clamp(max=max_pads)  # [B] m(r): pads that fit without cutting a token
    chosen = (u[:, 0] < prob) & (r > 0) & (most > 0)
    at = torch.minimum((u[:, 1] * r).long(), (r - 1).clamp(min=0))  # [B] a ~ U{0..r-1}
    pads = 1 + torch.minimum((u[:, 2] * most).long(), (most - 1).clamp(min=0))  # [B] E ~ U{1..m(r)}
    count = torch.where(chosen, pads, torch.zeros_like(pads))  # [B] pads inserted (0: unchanged)
    return widen_rows(rows, at, count, pad_id)


def widen_rows(rows: torch.Tensor, at: torch.Tensor, count: torch.Tensor, pad_id: int) -> torch.Tensor:
    """`rows` ``[B, L]`` with ``count[b]`` pads inserted before position ``at[b]`` of row b, cut
    back to L, in one gather: output position k reads ``k`` before the insertion point, a pad in
    ``[at, at + count)`` and ``k - count`` after it."""
    k = torch.arange(rows.shape[1])[None]  # [1, L]
    at, count = at[:, None], count[:, None]  # [B, 1]
    is_pad = (k >= at) & (k < at + count)  # [B, L]
    src = torch.where(k < at, k, (k - count).clamp(min=0))  # [B, L]
    out = rows.gather(1, src.to(rows.device))
    return out.masked_fill_(is_pad.to(rows.device), pad_id)


def widen(row: torch.Tensor, at: int, count: int, pad_id: int) -> torch.Tensor:
    """`row` ``[L]`` with `count` pads inserted before position `at` (at >= L: unchanged), cut to L."""
    return widen_rows(row[None], torch.tensor([at]), torch.tensor([count]), pad_id)[0]
