"""After sampling a template with ``[MASK:A-B]`` gaps: which samples to keep, and the rows with the
pads inside each gap removed.

A gap of B slots comes back holding real tokens and pads in any order; its fill is its real tokens,
in order (0 to B of them). `keep_probability` gives each drawn sample the probability with which
`api.infill` keeps it (rejection sampling): 0 for a fill below its gap's A; with the data's law
(`gap_law="data"`), c / Z(k) for fills of k_i tokens, which turns the law a model trained with pad
insertion draws, P_data(R_f) Z(k), into P_data(R_f) (`sedd_cli.pad_law`); with the model's law, 1.
`compact` moves the later tokens left over the removed pads and pads the row's end, so a
pad-layout row reads as the model's training rows do.
"""

from __future__ import annotations

import torch

from ..pad_law import GapLayout, PadLaw, fill_weight, least_fill_weight
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


class Acceptance:
    """Each drawn sample's probability of being kept: 0 below a gap's A, else c / Z(k) under
    `law` (the data's law of the fills) or 1 without one (the model's law)."""

    def __init__(self, gaps: list[Gap], pad_id: int | None, law: PadLaw | None, layout: GapLayout):
        self.gaps, self.pad_id, self.law, self.layout = gaps, pad_id, law, layout
        self.least = least_fill_weight(law, layout) if law is not None else None
        self._z: dict[tuple[int, ...], float] = {}

    @property
    def rejects(self) -> bool:
        """Whether any sample can be dropped (a lower bound A, or the data's law to restore)."""
        return self.pad_id is not None and (self.law is not None or any(g.least > 0 for g in self.gaps))

    def why(self) -> str:
        """Why samples are dropped, for the message when too few are kept."""
        out = []
        if any(g.least > 0 for g in self.gaps):
            least = max(self.gaps, key=lambda g: g.least)
            out.append(f"a fill below its gap's A, e.g. {least.text}, never is")
        if self.law is not None:
            out.append("the others with the probability that gives the data's law of the fills")
        return "; ".join(out)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """``[N]`` float64 keep probabilities of the samples `ids` ``[N, length]``."""
        lengths = gap_lengths(ids, self.gaps, self.pad_id).tolist()  # [N][G]
        return torch.tensor([self._one(tuple(k)) for k in lengths], dtype=torch.float64)

    def _one(self, k: tuple[int, ...]) -> float:
        if any(n < g.least for n, g in zip(k, self.gaps, strict=True)):
            return 0.0
        if self.law is None or self.least is None:
            return 1.0
        if k not in self._z:
            self._z[k] = fill_weight(self.law, self.layout, k)
        z = self._z[k]
        return min(1.0, self.least / z) if z > 0 else 0.0


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


def row_with_lengths(
    row: list[int | None], gaps: list[Gap], k: list[int], pad_id: int
) -> tuple[list[int | None], list[Gap], list[int]]:
    """The template `row` with gap i cut to exactly k_i free slots (a ``[MASK:k_i-k_i]`` gap, none
    when k_i = 0), padded back to its length; its gaps; and, for each position before that
    padding, the position of `row` it stands for (gap i's k_i slots are its first k_i)."""
    starts = {g.start: (g, n) for g, n in zip(gaps, k, strict=True)}
    out: list[int | None] = []
    new_gaps: list[Gap] = []
    src: list[int] = []
    i = 0
    while i < len(row):
        if i in starts:
            g, n = starts[i]
            if n:
                new_gaps.append(Gap(len(out), len(out) + n, n, g.text))
            out += [None] * n
            src += range(g.start, g.start + n)
            i = g.end
        else:
            out.append(row[i])
            src.append(i)
            i += 1
    return out + [pad_id] * (len(row) - len(out)), new_gaps, src
