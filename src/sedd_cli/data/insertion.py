"""Pad insertion (``data.insert_pads``): training rows that teach a pad-layout model that pads inside a
text mean "nothing here", so a ``[MASK:A-B]`` gap can be filled with fewer than B tokens.

For each row of a training batch, with probability p (``data.insert_pads``), draw independently of
the row's content

* a start s ~ U{0..L-1} and a content width k ~ U{0..M} (the span is positions ``[s, s + k)``,
  cut at L), and
* a pad count E ~ U{0..M} (M = ``data.insert_pads_max``),

and write the row as ``row[:s + k] + [pad] * E + row[s + k:]``, cut back to L: the span's content
stays left-aligned and is followed by E pads. Every draw is made for every row whatever p selects,
from the run's generator, so the stream is a function of the seed and resumes exactly.

The law this induces: given that the span holds k real tokens, the width of span + pads is
B = k + E, so P(width = B | k) = P(E = B - k) = 1/(M + 1) for every k <= B <= k + M: no fill length
is favoured by the number of ways to place pads (inserting pads at random positions would weigh k
tokens in B slots by C(B, k)). The span's place (s, k) has probability 1/(L (M + 1)) for every
record and every k, so it adds no bias in k either. What remains: rows left as they are (share
1 - p, and the E = 0 draws) also show a gap of B slots filled with B tokens, so the full width k = B
carries the extra weight of the plain data (see docs/training.md for the formula).
"""

from __future__ import annotations

import torch


def insert_pads(
    rows: torch.Tensor, pad_id: int, prob: float, max_pads: int, gen: torch.Generator
) -> torch.Tensor:
    """`rows` ``[B, L]`` with pads inserted as above (a new tensor; `rows` is not changed). p = 0
    returns `rows` itself and draws nothing, so runs without the option are unchanged."""
    if prob <= 0:
        return rows
    n, length = rows.shape
    chosen = torch.rand(n, generator=gen, dtype=torch.float64) < prob  # [B]
    start = torch.randint(0, length, (n,), generator=gen)  # [B]
    width = torch.randint(0, max_pads + 1, (n,), generator=gen)  # [B]
    pads = torch.randint(0, max_pads + 1, (n,), generator=gen)  # [B]
    at = start + width  # [B] insertion point (at >= L: the row is unchanged)
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
