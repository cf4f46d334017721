"""Categorical draws, and the shaping of the token drawn when a mask leaves (temperature, top-p).

`sample_categorical`: negative weights count as 0 (Euler's stay weight
``1 - dt dsigma sum_y Q[x, y] s_y`` is negative on the uniform graph where steps are coarse, and
the analytic one can be with a learned score), a row with no positive finite weight is an error;
inverse CDF in float64 by default (float64 cumulative sums, one uniform per draw).
``precision="float32"`` reproduces the reference's float32 Gumbel-max
with noise ``E = 1e-10 - log(U + 1e-10)``, whose truncated tail lowers the effective temperature
(sedd-spec P1); it is there for comparison only.

`draw_tokens`: a token from weights ``exp(z / T)`` (``z`` the head's logits, ``T = 0`` the
arg-max), restricted to the top-p `nucleus`.
"""

from __future__ import annotations

import torch

from ..errors import SeddError
from .checks import DTYPES, check_precision


def _exp_noise(shape, device, generator: torch.Generator | None) -> torch.Tensor:
    """The reference's float32 Exp(1) noise ``1e-10 - log(U + 1e-10)`` (truncated tail)."""
    u = torch.rand(shape, dtype=torch.float32, device=device, generator=generator)
    return 1e-10 - torch.log(u + 1e-10)


def sample_categorical(
    weights: torch.Tensor, generator: torch.Generator | None = None, precision: str = "float64"
) -> torch.Tensor:
    """One draw per row of the unnormalised `weights` ``[..., K]`` -> ids ``[...]``.

    Negative weights count as 0: the reverse-process weights go negative where a step is coarse
    (Euler's stay weight ``1 - dt dsigma sum_y Q[x, y] s_y``; the analytic stay weight with a
    learned score), and the law drawn from is ``max(w, 0) / sum max(w, 0)``, as with the
    reference's Gumbel arg-max, which never picks a negative entry. Without the clamp the inverse
    CDF below is not monotone: (0.3, 0.3, 0.3, 0.3, -0.9) would always give 0. A row with no
    positive weight, or whose total is not finite (NaN or inf scores), is a `SeddError`.

    ``float64`` (default): inverse CDF. With ``c_k = w_1 + ... + w_k`` accumulated in float64 and
    one ``U ~ U[0, 1)`` per row, return the first k with ``c_k > U c_K``: k with probability
    ``w_k / sum w`` exactly (up to float64 rounding of the sums, about 1e-16 relative), zero weights
    never. One uniform per row instead of K exponentials (a log per entry for Gumbel-max): a
    `gpt2-tiny` batch sampled in 8.7 s instead of 9.7 s (`benchmarks/sample_speed.py`).

    ``float32``: the reference's Gumbel-max ``argmax_k w_k / E_k`` with its float32 noise
    ``E = 1e-10 - log(U + 1e-10)``, whose truncated tail lowers the effective temperature
    (sedd-spec P1); kept to reproduce the reference, not for use.

    The check of the totals is one reduction and, on CUDA, one host synchronisation per call.
    """
    dtype = check_precision(precision)
    w = weights.to(torch.float64).clamp(min=0)  # a new tensor: the caller's weights are untouched
    cdf = w.cumsum_(dim=-1) if dtype == torch.float64 else None  # [..., K]
    total = cdf[..., -1] if cdf is not None else w.sum(dim=-1)  # [...]
    if not bool(torch.all((total > 0) & torch.isfinite(total))):
        bad = int((~((total > 0) & torch.isfinite(total))).sum())
        raise SeddError(
            f"{bad} categorical draw(s) have no positive finite weight (all <= 0, NaN or inf): the "
            "model's scores are not finite numbers; check the checkpoint's weights"
        )
    if cdf is None:
        noise = _exp_noise(weights.shape, weights.device, generator)
        return (w.to(torch.float32) / noise).argmax(dim=-1)
    u = torch.rand(cdf.shape[:-1] + (1,), dtype=torch.float64, device=cdf.device, generator=generator)
    k = torch.searchsorted(cdf, u * total[..., None], right=True)  # [..., 1], first c_k > U c_K
    return k.squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def nucleus(weights: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p filter of non-negative `weights` ``[N, V]``: keep, per row, the largest weights whose
    mass before them is below ``top_p`` of the row's total (so the largest is always kept, and the
    kept set is the smallest whose mass reaches ``top_p``); the rest become 0."""
    w, order = weights.sort(dim=-1, descending=True)  # [N, V]
    before = w.cumsum(dim=-1) - w  # mass of the larger weights
    keep = before < top_p * w.sum(dim=-1, keepdim=True)
    return torch.zeros_like(weights).scatter_(-1, order, w * keep)


def draw_tokens(
    z: torch.Tensor,
    generator: torch.Generator | None,
    precision: str,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """One draw per row from weights proportional to exp(z / temperature) ``[N', V]`` (rows
    normalised first), restricted to the top-p nucleus when ``top_p < 1``; temperature 0 takes the
    arg-max."""
    dtype = DTYPES[precision]
    z = z.to(dtype)
    if temperature == 0:
        return z.argmax(dim=-1)
    if temperature != 1:
        z = z / temperature
    w = torch.exp(z - z.amax(dim=-1, keepdim=True))
    if top_p < 1:
        w = nucleus(w, top_p)
    return sample_categorical(w, generator, precision)
