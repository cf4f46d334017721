"""The absorbing graph's fast path: predictor steps and the final denoiser on masked rows only.

Unmasked tokens never change (their weight vector is one-hot on themselves), so only the masked
rows need work: the network's body runs on the whole batch (attention needs every position), but
the output head (`SEDD.head_logits`, real-token columns only), the logsumexp, the predictor
weights and the draw run on the ``N`` masked rows ``[N, D]`` only, and the new ids are written
back with ``index_put``. At a masked row both predictors give token weights ``c * score_j``
(``j < V``) and a "stay masked" weight: analytic ``c = e^Delta - 1``, stay
``score_M - (e^Delta - 1) sum_{j<V} score_j``; Euler ``c = dt dsigma``, stay
``1 - dt dsigma sum_{j<V} score_j``. The categorical draw over the ``V + 1`` weights is done in
two exact stages: stay with probability ``w_stay / (w_stay + sum_j w_j)`` (a negative stay weight
counts as 0: it can never be drawn), and only for the rows that leave the
mask, a draw over the ``V`` token weights. With LogLinear noise a position leaves the
mask about once per run, so the full-vocabulary draw touches about ``B * L`` rows in total instead
of ``B * L * steps / 2``. Finding the masked rows (``nonzero``) is a host synchronisation on CUDA:
two small ones per step (masked rows, rows that unmask), and a third for the check that every
drawn row has positive finite weight (`sample_categorical`); everything else stays on the device.

Temperature and top-p shape only the token a leaving row takes (`draw_tokens`), not which rows
leave, so these classes (and the fast denoiser) honour them (``shapes = True``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..graph import Graph
from .draws import draw_tokens
from .network import NetworkCalls, masked_rows_logits, sigma_at
from .predictors import AnalyticPredictor, EulerPredictor, NonePredictor, register_predictor


class MaskedRowsStep:
    """Mixin for a `Predictor` of the absorbing graph: `step` on the masked rows only (module
    docstring). The class supplies `masked_weights`."""

    shapes = True

    def masked_weights(self, score_sum: torch.Tensor, t: float, dt: float) -> tuple[float, torch.Tensor]:
        """Masked rows with ``score_sum`` = sum_{j<V} score_j ``[N]`` (float64) and score_M = 1 (the
        log-score of the current token is 0): ``(c, stay)`` such that the weight of token j < V is
        ``c * score_j`` and the weight of staying masked is `stay` ``[N]``."""
        raise NotImplementedError

    def masked_logits(self, model: Any, x: torch.Tensor, sigma: float, idx: tuple[torch.Tensor, ...]):
        """``(z [N, V], offset [N])`` at the masked rows `idx` (`network.masked_rows_logits`): one
        network call on the whole batch. The cached classes (`caching.py`) override it."""
        self.calls.add(x.shape[0])
        return masked_rows_logits(model, x, sigma, idx, self.graph.mask_id)

    def step(self, model: Any, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        M = self.graph.mask_id
        idx = (x == M).nonzero(as_tuple=True)  # ([N], [N])
        if idx[0].numel() == 0:
            return x
        sigma = sigma_at(self.noise, t)[0]
        z, offset = self.masked_logits(model, x, sigma, idx)  # [N, V], [N]
        # sum_{j<V} score_j = exp(logsumexp(z) - offset): one fused pass, no [N, V] exp copy
        score_sum = torch.exp(torch.logsumexp(z.float(), dim=-1).double() - offset.double())  # [N]
        c, stay = self.masked_weights(score_sum, t, dt)
        stay = stay.clamp(min=0)  # a negative weight counts as 0 (the reference's arg-max never picks it)
        move = c * score_sum  # [N]
        total = stay + move
        u = torch.rand(stay.shape, dtype=self.dtype, device=x.device, generator=self.generator)
        leave = (u * total >= stay) & (total > 0)  # P(leave) = move / total
        rows = leave.nonzero(as_tuple=True)[0]  # [N']
        if rows.numel() == 0:
            return x
        # [N'] token draws (c and the offset cancel in the normalisation)
        new = draw_tokens(z[rows], self.generator, self.precision, self.temperature, self.top_p)
        x = x.clone()
        x.index_put_((idx[0][rows], idx[1][rows]), new)
        return x


@register_predictor("euler", absorbing=True)
class AbsorbingEulerPredictor(MaskedRowsStep, EulerPredictor):
    """Euler on masked rows: ``c = dt dsigma``, stay ``1 - dt dsigma sum_{j<V} score_j``."""

    def masked_weights(self, score_sum, t, dt):
        _, dsigma = sigma_at(self.noise, t)
        c = dt * dsigma
        return c, 1 - c * score_sum


@register_predictor("analytic", absorbing=True)
class AbsorbingAnalyticPredictor(MaskedRowsStep, AnalyticPredictor):
    """Analytic on masked rows: ``c = e^Delta - 1``, stay ``1 - (e^Delta - 1) sum_{j<V} score_j``."""

    def masked_weights(self, score_sum, t, dt):
        # staggered score at column M: e^D s_M + (1 - e^D) sum_all s; times transp_transition 1
        # -> s_M - (e^D - 1) sum_{j<V} s_j with s_M = 1; at j < V: e^D s_j (1 - e^-D) = (e^D - 1) s_j
        c = math.expm1(self._delta(t, dt))
        return c, 1 - c * score_sum


@register_predictor("none", absorbing=True)
class AbsorbingNonePredictor(NonePredictor):
    """The identity on the absorbing graph: the fast denoiser alone draws, shaped if asked."""

    shapes = True


def denoise_masked_rows(
    model: Any,
    graph: Graph,
    x: torch.Tensor,
    sigma: float,
    generator: torch.Generator | None,
    precision: str,
    temperature: float = 1.0,
    top_p: float = 1.0,
    calls: NetworkCalls | None = None,
) -> torch.Tensor:
    """The Tweedie denoiser at total noise `sigma` on masked rows: mask column dropped, so every
    mask resolves to j with weight ``(e^sigma - 1) score_j`` (shaped by temperature / top-p).
    The network call, if any (none when nothing is masked), is counted in `calls`."""
    M = graph.mask_id
    idx = (x == M).nonzero(as_tuple=True)
    if idx[0].numel() == 0:
        return x
    if calls is not None:
        calls.add(x.shape[0])
    z, _ = masked_rows_logits(model, x, sigma, idx, M)  # [N, V]
    new = draw_tokens(z, generator, precision, temperature, top_p)  # weights (e^sigma - 1) score_j
    x = x.clone()
    x.index_put_(idx, new)
    return x
