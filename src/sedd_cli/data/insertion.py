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
    out = rows.clone()
    for i in torch.nonzero(chosen & (pads > 0)).flatten().tolist():
        out[i] = widen(rows[i], int(start[i] + width[i]), int(pads[i]), pad_id)
    return out


def widen(row: torch.Tensor, at: int, count: int, pad_id: int) -> torch.Tensor:
    """`row` ``[L]`` with `count` pads inserted before position `at` (at >= L: unchanged), cut to L."""
    length = row.shape[0]
    if at >= length:
        return row.clone()
    filler = torch.full((count,), pad_id, dtype=row.dtype)
    return torch.cat([row[:at], filler, row[at:]])[:length]
