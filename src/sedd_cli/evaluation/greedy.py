"""Greedy fill: would the model's most confident deterministic infill write the continuation?

The harness asks, with every log-likelihood, whether the continuation is the model's greedy
answer (`is_greedy`; LAMBADA's accuracy is this flag). A diffusion model has no left-to-right
argmax, so the greedy fill of a region [s, e) given the rest of the row is defined as the
deterministic decode that unmasks one position per network call, most confident first:

    x <- x0 with the region masked
    while the region has masked positions:
        p_l(j) = the model's denoising distribution at every masked l: softmax over the V real
                 tokens of the log-score at sigma = -log(1 - m), m = (masked positions) / L
                 (the masking level the row shows), or of log c for a time-independent model
        (l*, j*) = argmax over masked l and tokens j of p_l(j)   (ties: the lower position, id)
        x[l*] <- j*

and `greedy_matches` says whether the result equals x0 on the region. It stops a row at its first
wrong token (the answer is then known: no), so a wrong continuation costs about one call and a
right one |R| calls. Only the absorbing graph has masks to fill; for a uniform-graph model the
answer is always False (documented in docs/evaluation.md). Rows run in passes of whole tiles
(`rows`), so a row's answer does not depend on its batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..graph import Absorbing, Graph
from ..noise import Noise
from ..sampling.network import time_independent
from .conditional import region_mask
from .rows import in_passes, pass_rows, token_logits

__all__ = ["greedy_matches"]


def _step(
    model: Any, graph: Absorbing, x: torch.Tensor, sigma_max: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One call on rows `x` ``[B, L]`` that each hold a masked position: (position ``[B]``, token
    ``[B]``) of the most confident (position, token) pair of each row."""
    B, L = x.shape
    masked = x == graph.mask_id  # [B, L]
    sigma = None
    if not time_independent(model):
        m = masked.sum(dim=1).double() / L  # [B] masking level
        sigma = (-torch.log1p(-m)).clamp(max=sigma_max).float()
    rows = masked.nonzero(as_tuple=True)
    logp = torch.log_softmax(token_logits(model, graph, x, sigma, rows).double(), dim=-1)  # [N, V]
    best, tok = logp.max(dim=-1)  # [N]
    score = torch.full((B, L), -math.inf, dtype=torch.float64, device=x.device)
    score[rows] = best
    pos = score.argmax(dim=1)  # [B], first maximum: the lower position
    tokens = torch.zeros((B, L), dtype=torch.long, device=x.device)
    tokens[rows] = tok
    return pos, tokens.gather(1, pos[:, None]).squeeze(1)


@torch.no_grad()
def greedy_matches(
    model: Any,
    graph: Graph,
    noise: Noise,
    x0: torch.Tensor,
    start: Sequence[int],
    end: Sequence[int],
    *,
    batch_size: int = 16,
) -> torch.Tensor:
    """Whether the greedy fill of each row's region [start_i, end_i) equals x0 there, ``[B]`` bool
    (module docstring). An empty region matches; a uniform-graph model never does."""
    B, L = x0.shape
    if not isinstance(graph, Absorbing):
        return torch.zeros(B, dtype=torch.bool)
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration):
        device = torch.device("cpu")
    x0 = x0.detach().cpu().long()
    region = region_mask(L, start, end)
    x = torch.where(region, graph.mask_id, x0)
    alive = torch.ones(B, dtype=torch.bool)
    sigma_max = float(noise.total(torch.tensor(1.0, dtype=torch.float64)))
    rows = pass_rows(batch_size)
    while True:
        todo = (alive & (x == graph.mask_id).any(dim=1)).nonzero().flatten()  # rows still filling
        if todo.numel() == 0:
            return alive
        pos, tok = in_passes(lambda c: _step(model, graph, c.to(device), sigma_max), x[todo], rows=rows)
        pos, tok = pos.cpu(), tok.cpu()
        right = tok == x0[todo, pos]
        alive[todo[~right]] = False
        x[todo[right], pos[right]] = tok[right]
