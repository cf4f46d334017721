"""Per-sequence caching for time-independent absorbing models (RADD; issue #16).

A time-independent network's output c(x) depends on the tokens x only, not on the time, so a
sequence whose tokens did not change since its last network call would get exactly the same
output again. With many steps most steps change no token of most sequences (with LogLinear noise
a position leaves the mask about once per run, so a sequence of L positions changes in at most L
of the steps). The cached Euler and analytic predictors keep, for one `generate` call:

* ``seen [B, L]``: each sequence's tokens at its last network call;
* ``log_c [B, L, V]``: its conditional log c at its masked positions then.

At a step, the sequences that changed since their last call and still have a masked position
(all of them at the first step) are gathered, the trunk and the head run on them only
(`network.condition_rows`: the head on their masked rows), and the results are scattered into the
cache; a step where no sequence changed calls no network. The masked rows' ``z = log c`` are then
read from the cache and the step continues exactly as the uncached masked-rows step
(`absorbing.MaskedRowsStep`): the same uniforms and token draws, in the same order, from the same
values. Network values are bit-identical to the uncached ones because both run through
`condition_rows`, whose products are padded to whole tiles of 16 rows (see `network.py`); on CUDA
cuBLAS may choose another kernel for another batch size, so there the guarantee is the law, not
the bits (docs/sampling.md).

``offset = log(e^sigma - 1)`` is computed, as in the uncached step, on the ``[N]`` masked rows.
`calls` counts a network call only when some sequence ran, and ``rows`` the sequences it ran.
"""

from __future__ import annotations

from typing import Any

import torch

from ..graph import log_esigm1
from .absorbing import AbsorbingAnalyticPredictor, AbsorbingEulerPredictor
from .network import condition_rows
from .predictors import register_predictor


class CachedRows:
    """Mixin for a `MaskedRowsStep` predictor: `masked_logits` from the per-sequence cache
    (module docstring). Only for time-independent models (`driver.generate` picks it)."""

    seen: torch.Tensor | None = None  # [B, L] tokens at each sequence's last call
    log_c: torch.Tensor | None = None  # [B, L, V] log c at the masked positions then

    def masked_logits(self, model: Any, x: torch.Tensor, sigma: float, idx: tuple[torch.Tensor, ...]):
        M = self.graph.mask_id
        masked = x == M  # [B, L]
        if self.seen is None or self.seen.shape != x.shape:
            self.seen = torch.full_like(x, -1)  # no sequence seen yet
            self.log_c = torch.empty(*x.shape, M, dtype=torch.float32, device=x.device)
        stale = ((x != self.seen).any(dim=1) & masked.any(dim=1)).nonzero(as_tuple=True)[0]  # [R]
        if stale.numel() > 0:
            xs = x[stale]  # [R, L]
            rows = (xs == M).nonzero(as_tuple=True)  # masked rows of the stale sequences
            self.calls.add(stale.numel())
            self.log_c[stale[rows[0]], rows[1]] = condition_rows(model, xs, rows)  # [N_R, V]
            self.seen[stale] = xs
        sig = torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32)
        return self.log_c[idx], log_esigm1(sig[idx[0]])  # [N, V], [N]


@register_predictor("euler", cached=True)
class CachedEulerPredictor(CachedRows, AbsorbingEulerPredictor):
    """Euler on masked rows with the per-sequence cache (time-independent models)."""


@register_predictor("analytic", cached=True)
class CachedAnalyticPredictor(CachedRows, AbsorbingAnalyticPredictor):
    """Analytic on masked rows with the per-sequence cache (time-independent models)."""
