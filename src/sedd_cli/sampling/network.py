"""How the sampler calls the score network and the noise schedule.

`model(x, sigma)` returns log-scores ``[B, L, D]`` at total noise ``sigma`` ``[B]`` (float32, one
per sequence). Models with `features` + `head_logits` (`SEDD`) also give the output head on chosen
rows only, over the ``V`` real-token columns: the absorbing fast path uses that.
"""

from __future__ import annotations

from typing import Any

import torch

from ..noise import Noise


def sigma_at(noise: Noise, t: float) -> tuple[float, float]:
    """(sigma(t), dsigma(t)) as Python floats, computed in float64 on the CPU (no device sync)."""
    sigma, dsigma = noise(torch.tensor(t, dtype=torch.float64))
    return float(sigma), float(dsigma)


def log_score(model: Any, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Log-score ``[B, L, D]`` at total noise `sigma` (float32 sigma per sequence)."""
    return model(x, torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32))


def score(model: Any, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The score ``[B, L, D]`` (exp of the log-score, in float32) at total noise `sigma`."""
    return log_score(model, x, sigma).float().exp()


def masked_rows_logits(model: Any, x: torch.Tensor, sigma: float, idx: tuple[torch.Tensor, ...], V: int):
    """At the masked positions `idx` (a nonzero() tuple): the token log-weights ``z [N, V]`` and
    ``offset [N]`` with log score_j = z_j - offset for j < V (the mask column is the current
    token, score 1). Uses `features` + `head_logits` (head on these rows, real columns only) when
    the model has them, else the rows of the full output."""
    sig = torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32)
    if hasattr(model, "head_logits") and hasattr(model, "features"):
        a = model.features(x, sig)  # [B, L, d]
        return model.head_logits(a[idx], sig[idx[0]], columns=V)
    log_s = model(x, sig)[idx]  # [N, D]
    return log_s[:, :V], torch.zeros(idx[0].numel(), dtype=torch.float32, device=x.device)
