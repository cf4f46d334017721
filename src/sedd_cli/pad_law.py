"""The law of pad insertion (``data.insert_pads``), stated once: what a pad-layout model trained with
it has learnt, and the weights that turn a ``[MASK:A-B]`` gap's fills back into the data's law.

**The scheme** (drawn by `data.insertion.insert_pads`). A training row of a pad-layout model holds
a record R of r real tokens followed by L - r pads. With probability p (``data.insert_pads``), and
only if 1 <= r < L, the row gets one run of E pads inside its record:

    a ~ U{0 .. r-1},   E ~ U{1 .. m(r)},   m(r) = min(M, L - r)   (M = ``data.insert_pads_max``),
    row = R[:a] + pad^E + R[a:] + pad^(L - r - E)

so nothing real is ever cut. Otherwise the row is R as it is.

**The law it induces.** Call a run of pads *interior* when a real token follows it. A row showing
record R with

* no interior run has probability  P_data(R) u(r),  u(r) = 1 - p for r < L and 1 for r = L;
* one interior run of E pads (1 <= E <= m(r)) has probability  P_data(R) p / (r m(r))
  (the point a and the count E are each one of r and m(r) equally likely values);
* two or more interior runs has probability 0 (one insertion per row).

`row_weight` is that factor after P_data(R). Pack-layout models (windows of L real tokens, no
record ends; GPT-2 gets a pad id of its own for this) have their own weights, stated in
`PadLaw.row_weight`; everything below holds for them with R the start of a window.

**A gap's fills.** A template of T slots (given tokens and gaps; pads after it, as in training)
whose gaps get fills of k_1..k_G real tokens can show those fills in several *arrangements* (where
the gaps' pads sit among their tokens). A model that learnt the law exactly draws fills f with
probability proportional to

    P_data(R_f) Z(k),   Z(k) = sum over arrangements of row_weight,

because every arrangement of f shows the same record R_f. `fill_weight` computes Z(k) by listing
the arrangements with at most one interior run (the others weigh 0): the run-free one, and one per
(start, length) of the run. Keeping a drawn sample with probability c / Z(k), c = the least
Z over the lengths the template allows (`least_fill_weight`), therefore returns fills with
probability proportional to P_data(R_f): the data's own conditional law of the gaps given the
template (rejection sampling; exact for an exact model). Fills whose Z is 0 (two gaps each shorter
than its width with real tokens after both) cannot be shown by one insertion and are never kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PadLaw:
    """The scheme's parameters: p (``data.insert_pads``), M (``data.insert_pads_max``), L (the
    model's length), and whether the model is pack-layout (`pack`, see `row_weight`)."""

    prob: float
    max_pads: int
    length: int
    pack: bool = False

    def most_pads(self, r: int) -> int:
        """m(r) = min(M, L - r): the most pads one insertion adds to a record of r tokens."""
        return max(0, min(self.max_pads, self.length - r))

    def row_weight(self, r: int, run: int, tail: int = 0, t: int | None = None) -> float:
        """The factor after P_data(R) of a row showing R, r real tokens, with one interior run of
        `run` pads (0: none) and `tail` pads after its last real token, in a row of t slots.

        Pad layout: R is a record and the tail is its trailing pads (free): see the module doc.

        Pack layout: a window W of L real tokens gets a ~ U{0..L-1}, E ~ U{1..M} and is cut back
        to L, and a row of t <= L slots is the start of such a window, so R is W's first r
        tokens and P_data(R) the chance a window starts with R. Then no pad in the t slots has
        weight 1 - p + p (L - t) / L (the point at or past t); one interior run of E <= M pads
        p / (L M); a tail of z pads (the run reaches the row's end: a = t - z, E >= z)
        p (M - z + 1) / (L M) for z <= M; an interior run and a tail together, 0."""
        if self.pack:
            return self._pack_weight(run, tail, self.length if t is None else t)
        if run == 0:
            return 1.0 if (r >= self.length or r == 0) else 1.0 - self.prob
        m = self.most_pads(r)
        return self.prob / (r * m) if 1 <= run <= m else 0.0

    def _pack_weight(self, run: int, tail: int, t: int) -> float:
        p, big_l, m = self.prob, self.length, self.max_pads
        if run and tail:
            return 0.0
        if run:
            return p / (big_l * m) if run <= m else 0.0
        if tail:
            return p * (m - tail + 1) / (big_l * m) if tail <= m else 0.0
        return 1.0 - p + p * (big_l - t) / big_l


@dataclass(frozen=True)
class GapLayout:
    """A template's T slots (the model's length for a pad-layout model): outside the gaps,
    `given[i]` is True where slot i holds a real token (given text, or a fixed ``[MASK:N]`` slot,
    counted as always holding a token) and False where it holds a pad (the tail); `gaps` are the
    ``[MASK:A-B]`` gaps as (start, end, least) slot ranges (`given` is not read inside them)."""

    given: tuple[bool, ...]
    gaps: tuple[tuple[int, int, int], ...]

    def in_gap(self) -> list[bool]:
        out = [False] * len(self.given)
        for a, b, _ in self.gaps:
            out[a:b] = [True] * (b - a)
        return out

    def real_given(self) -> int:
        """Real tokens outside the gaps."""
        return sum(g and not inside for g, inside in zip(self.given, self.in_gap(), strict=True))


def _arrangement_fits(
    layout: GapLayout, inside: Sequence[bool], ones: Sequence[bool], k: Sequence[int]
) -> bool:
    """Whether a real/pad pattern over the T slots agrees with the given slots and puts exactly k_i
    real tokens in gap i."""
    if any(o != g for o, g, i in zip(ones, layout.given, inside, strict=True) if not i):
        return False
    return all(sum(ones[a:b]) == n for (a, b, _), n in zip(layout.gaps, k, strict=True))


def fill_weight(law: PadLaw, layout: GapLayout, k: Sequence[int]) -> float:
    """Z(k): the sum of `row_weight` over the arrangements of fills with k_i real tokens in gap i.

    A pattern with at most one interior run is ``1^s 0^e 1^(r-s) 0^(T-r-e)`` for a run at s of e
    pads (s in 0..r-1, e >= 1), or ``1^r 0^(T-r)`` with none; r = real given slots + sum(k)."""
    t = len(layout.given)
    inside = layout.in_gap()
    r = layout.real_given() + sum(k)
    total = 0.0
    if _arrangement_fits(layout, inside, [i < r for i in range(t)], k):
        total += law.row_weight(r, 0, t - r, t)
    for s, e in itertools.product(range(r), range(1, t - r + 1)):
        ones = [i < s or s + e <= i < r + e for i in range(t)]
        if _arrangement_fits(layout, inside, ones, k):
            total += law.row_weight(r, e, t - r - e, t)
    return total


def least_fill_weight(law: PadLaw, layout: GapLayout, limit: int = 100_000) -> float | None:
    """c: the least positive Z(k) over the fill lengths the template allows (A_i <= k_i <= B_i for
    every gap). When those number over `limit`, the looser bound min(1 - p, p / (T M)), which no
    positive Z is below (a positive Z has a term u(r) >= 1 - p or p / (r m(r)) with r <= T,
    m(r) <= M). None when no allowed lengths have a positive weight."""
    ranges = [range(least, b - a + 1) for a, b, least in layout.gaps]
    count = 1
    for rg in ranges:
        count *= len(rg)
    if count > limit:
        t = len(layout.given)
        loose = [w for w in (1.0 - law.prob, law.prob / (max(t, law.length) * law.max_pads)) if w > 0]
        return min(loose) if loose else None
    weights = [fill_weight(law, layout, k) for k in itertools.product(*ranges)]
    positive = [w for w in weights if w > 0]
    return min(positive) if positive else None
