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
template (rejection sampling; exact for an exact model). Fills whose Z is 0 (two gaps with text
between them, each shorter than its width, with text after both) cannot be shown by one insertion
and are never kept; adjacent gaps can share one run.
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


class _Slots:
    """Prefix counts over a template's T slots, so that whether a pattern ``1^s 0^e 1^(r-s) 0^...``
    fits the template is a few subtractions per gap instead of a walk over the slots."""

    def __init__(self, layout: GapLayout):
        inside = layout.in_gap()
        real = [g and not i for g, i in zip(layout.given, inside, strict=True)]
        pad = [not g and not i for g, i in zip(layout.given, inside, strict=True)]
        self.t, self.real, self.gaps = len(real), real, layout.gaps
        self._real = list(itertools.accumulate(real, initial=0))  # [T + 1]
        self._pad = list(itertools.accumulate(pad, initial=0))  # [T + 1]

    @staticmethod
    def _count(prefix: list[int], a: int, b: int) -> int:
        return prefix[b] - prefix[a] if b > a else 0

    def fits(self, r: int, s: int, e: int, k: Sequence[int]) -> bool:
        """Whether real tokens on [0, s) and [s + e, r + e), pads elsewhere, put a real token on
        every given text slot, a pad on every pad slot and exactly k_i real tokens in gap i."""
        t = self.t
        if self._count(self._real, s, s + e) or self._count(self._real, r + e, t):
            return False
        if self._count(self._pad, 0, s) or self._count(self._pad, s + e, r + e):
            return False
        for (a, b, _), n in zip(self.gaps, k, strict=True):
            ones = max(0, min(b, s) - a) + max(0, min(b, r + e) - max(a, s + e))
            if ones != n:
                return False
        return True


def fill_weight(law: PadLaw, layout: GapLayout, k: Sequence[int]) -> float:
    """Z(k): the sum of `row_weight` over the arrangements of fills with k_i real tokens in gap i.

    A pattern with at most one interior run is ``1^s 0^e 1^(r-s) 0^(T-r-e)`` for a run at s of e
    pads (s in 0..r-1, e >= 1), or ``1^r 0^(T-r)`` with none; r = real given slots + sum(k). A run
    cannot cover a given text slot, so only starts off those slots are tried, and a run stops
    growing at the first one: O(free slots x widest run x gaps)."""
    slots = _Slots(layout)
    t = slots.t
    r = layout.real_given() + sum(k)
    total = law.row_weight(r, 0, t - r, t) if slots.fits(r, r, 0, k) else 0.0
    for s in range(r):
        if slots.real[s]:
            continue
        for e in range(1, t - r + 1):
            if slots.real[s + e - 1]:
                break
            if slots.fits(r, s, e, k):
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
