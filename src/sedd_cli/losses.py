"""The training objective: diffusion-weighted denoising score entropy (sedd-spec §2.4-2.5).

For clean ids x0 ``[B, L]``, one time per sequence t ~ U[eps, 1] (eps = 1e-3), total noise
sigma = sigma(t), x_t ~ exp(sigma Q) x0, and log-score s = model(x_t, sigma):

    loss(x0) = sum_l dsigma(t) * l(s_l, sigma, x_t[l], x0[l])     (nats per sequence)

where l is the graph's score entropy. For the absorbing graph l = 0 exactly at unmasked
positions, so the output head (a ``[d, D]`` matrix product, the dominant cost for GPT-2's
D = 50258) and the loss are computed at masked positions only (`masked_only=True`), over the V
real-token columns, with the positive term as one logsumexp (`Absorbing.masked_score_entropy_logits`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .graph import Absorbing, Graph
from .model import SEDD
from .noise import Noise

__all__ = ["LossOutput", "sample_t", "score_entropy_loss"]


@dataclass
class LossOutput:
    """Per-sequence loss ``[B]`` and the draws that produced it."""

    loss: torch.Tensor  # [B], dsigma-weighted sum of per-token score entropy
    t: torch.Tensor  # [B]
    sigma: torch.Tensor  # [B]
    dsigma: torch.Tensor  # [B]
    xt: torch.Tensor  # [B, L], the corrupted ids


def sample_t(
    batch: int,
    eps: float = 1e-3,
    device=None,
    generator: torch.Generator | None = None,
    stratified: bool = False,
) -> torch.Tensor:
    """t = (1 - eps) U + eps: one diffusion time per sequence.

    ``stratified=False`` (the reference): U ~ U[0, 1) i.i.d. ``stratified=True``: U_i = (i + V_i) / B
    with V_i ~ U[0, 1) i.i.d., one draw in each of B equal strata. Each U_i is then uniform on its
    stratum only, but the batch mean of any f(t_i) is still an unbiased estimate of E f(t), with
    lower variance (the 1/t-weighted loss varies strongly with t).
    """
    u = torch.rand(batch, device=device, generator=generator)
    if stratified:
        u = (torch.arange(batch, device=u.device, dtype=u.dtype) + u) / batch
    return (1 - eps) * u + eps


def score_entropy_loss(
    model: SEDD,
    graph: Graph,
    noise: Noise,
    x0: torch.Tensor,
    t: torch.Tensor | None = None,
    *,
    xt: torch.Tensor | None = None,
    sampling_eps: float = 1e-3,
    masked_only: bool = True,
    generator: torch.Generator | None = None,
) -> LossOutput:
    """The SEDD objective per sequence.

    Args:
        x0: clean ids ``[B, L]``.
        t: diffusion times ``[B]``; drawn from U[sampling_eps, 1] when None.
        xt: corrupted ids ``[B, L]``; drawn from the forward process at sigma(t) when None.
        masked_only: absorbing graph only: evaluate the output head at masked positions only
            (same value as the full computation, cheaper). Ignored for other graphs.
    """
    B = x0.shape[0]
    if t is None:
        t = sample_t(B, sampling_eps, x0.device, generator)
    sigma, dsigma = noise(t)
    if xt is None:
        xt = graph.sample_transition(x0, sigma[:, None], generator=generator)

    if masked_only and isinstance(graph, Absorbing):
        a = model.features(xt, sigma)  # [B, L, d]
        masked = xt == graph.mask_id  # [B, L]
        rows = masked.nonzero(as_tuple=True)  # (batch index, position) of each masked token
        b = rows[0]
        # the mask column is the current token at these rows: only the V real columns matter
        z, offset = model.head_logits(a[rows], sigma[b], columns=graph.vocab_size)  # [N, V], [N]
        entropy = graph.masked_score_entropy_logits(z, offset, sigma[b], x0[rows])  # [N]
        weighted = dsigma[b].float() * entropy
        loss = torch.zeros(B, dtype=weighted.dtype, device=x0.device).index_add(0, b, weighted)
    else:
        log_score = model(xt, sigma)  # [B, L, D]
        entropy = graph.score_entropy(log_score, sigma[:, None], xt, x0)  # [B, L]
        loss = (dsigma[:, None] * entropy).sum(dim=-1)
    return LossOutput(loss=loss, t=t, sigma=sigma, dsigma=dsigma, xt=xt)
