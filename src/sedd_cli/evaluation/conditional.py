"""The conditional likelihood bound: -log p(continuation | context), with only the continuation corrupted.

**What is bounded.** A row x0 ``[L]`` holds a context (fixed) and a region [s, e) to score (the
continuation; for a pad-layout model also the pads after it, which say where the record ends).
Run the forward process on the region's positions only: the context stays clean at every t. The
reverse process that fills the region with the model's scores (`sedd infill`'s law: the given
tokens are never corrupted) is a continuous-time Markov chain on the region's |R| = e - s
positions whose rates are the model's, read with the context in view. The ELBO of the paper
(Thm. 3.6; `bound` module) holds for any such chain and its own forward process, so with the
same argument restricted to R

    -log p^pi_theta(x0_R | x0_ctx) <= R_0 + D_R + |R| KL(p_1 || pi)
    D_R = int_0^1 E_{x_t}[ sum_{l in R} dsigma(t) l_l(x_t, x0) ] dt

where x_t corrupts the positions of R only (the context is in x_t unchanged), the score entropy
l_l is summed over R only (for the absorbing graph it is 0 at every unmasked position anyway,
so over R's masked positions), the prior term counts |R| positions and the reconstruction term
R_0 (only when sigma(0) > 0, the geometric schedule) decodes R's positions only. With the exact
score of a law p the region's forward process is that of p(. | context), so the bound is the
unconditional bound of the conditional law: tight up to the prior term.

**Time-independent absorbing models** (``model.time_conditioning: false``; `bound.estimator_for`
says ``lambda-dce``): the lambda form restricted to R,

    -log p_theta(x0_R | x0_ctx) <= int_0^1 E_{x_lambda}[ -sum_{l in R masked} log c[x0_l] ] d lambda / lambda

x_lambda masking each position of R with probability lambda (lambda = 1 masks all of R: the
infill sampler's start), no prior and no reconstruction term. For the exact conditional c it is
the average over random unmasking orders of R of an autoregressive factorisation of
p(x0_R | context): exactly -log p(x0_R | x0_ctx).

**Estimator.** K (`mc`) stratified times per row (`bound.stratified_times`: one offset u, t_k =
((k + u)/K)^2 with weight 2 sqrt(t_k), clamped at t_min), one corruption draw per time; the
estimate is b = (1/K) sum_k v_k with v_k = w_k * (the integrand's sample at t_k), plus the prior
and reconstruction terms. Its standard error is reported as sd(v_1..v_K) / sqrt(K), the error of
K independent samples: stratification can only lower the true error for an integrand that varies
smoothly with t, so the figure is on the safe side, and it falls as 1/sqrt(K) (it is None for K = 1).

**Seeds and batches.** Every row has its own CPU generator, seeded by the caller (the harness
adapter hashes the seed with the request's context: `request_seed`). It draws, in order, the
offset u of the K times, then K float64 uniform vectors U ``[K, width]`` in one draw (and for the
uniform graph K token vectors ``[K, width]``), then, for the reconstruction term, one more pair.
Region position s + j is corrupted at sample k when U[k, j] < 1 - e^-sigma(t_k) (lambda_k): the
draws are indexed from the region's start, so two continuations of one context share their times
and masks (common random numbers: the difference of their bounds has a smaller error than
either). The network runs on (row, sample) pairs in row-major order, in passes of whole tiles
(`rows`); a row's U is drawn when a pass first needs it and dropped after its last sample, so
memory holds about one pass of draws, and a row's bound does not depend on the rows it is batched
with.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..graph import Absorbing, Graph
from ..noise import Noise
from .bound import (
    T_MIN,
    estimator_for,
    prior_kl_per_position,
    reconstruction_term,
    sigma_at_zero,
    stratified_times,
)
from .options import check_mc, check_spacing
from .rows import dwdse_rows, in_passes, lambda_rows, padded, pass_rows

__all__ = ["ConditionalBounds", "conditional_bound", "request_seed", "region_mask"]


@dataclass
class ConditionalBounds:
    """Per row i of B: the bound on -log p(x0[region] | the rest) and its parts (nats, float64)."""

    bound: torch.Tensor  # [B] mean_k v_ik + prior_i + reconstruction_i
    stderr: torch.Tensor  # [B] sd_k(v_ik) / sqrt(K); nan when K = 1
    values: torch.Tensor  # [B, K] the weighted samples v_ik of the diffusion (or lambda) integral
    prior: torch.Tensor  # [B] |R_i| KL(p_1 || pi) per position (0 for lambda-dce)
    reconstruction: torch.Tensor  # [B] R_0 (0 unless sigma(0) > 0)
    estimator: str  # dwdse | lambda-dce


def request_seed(seed: int, *parts: Sequence[int]) -> int:
    """A 63-bit generator seed from `seed` and token lists: sha256 of their decimal text, so the same
    request gets the same draws in any batch, process or order."""
    h = hashlib.sha256(str(int(seed)).encode())
    for part in parts:
        h.update(b"|" + ",".join(str(int(i)) for i in part).encode())
    return int.from_bytes(h.digest()[:8], "big") & (2**63 - 1)


def region_mask(L: int, start: Sequence[int], end: Sequence[int]) -> torch.Tensor:
    """``[B, L]`` bool, True on [start_i, end_i) of row i."""
    pos = torch.arange(L)
    s = torch.as_tensor(list(start), dtype=torch.long)[:, None]
    e = torch.as_tensor(list(end), dtype=torch.long)[:, None]
    return (pos[None] >= s) & (pos[None] < e)


class _Draws:
    """Every row's generator (CPU) and its K times (or masking probabilities) and weights ``[B, K]``,
    drawn first; then, when a pass first needs row i, its K uniform vectors ``[K, width]`` (float64;
    and K token vectors for the uniform graph) in one draw each, kept until its last sample is done
    (memory: one pass of rows, not B K); the reconstruction pair, when needed, comes last."""

    def __init__(self, seeds: Sequence[int], K: int, width: int, dim: int | None, spacing: str, t_min: float):
        self.gens = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        tw = [stratified_times(1, K, generator=g, t_min=t_min, spacing=spacing) for g in self.gens]
        self.t = torch.stack([t[:, 0] for t, _ in tw])  # [B, K]
        self.weight = torch.stack([w[:, 0] for _, w in tw])  # [B, K] float64
        self.K, self.width, self.dim = K, width, dim
        self._held: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def _pair(self, i: int, *shape: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        g = self.gens[i]
        u = torch.rand(*shape, self.width, generator=g, dtype=torch.float64)
        other = None if self.dim is None else torch.randint(0, self.dim, (*shape, self.width), generator=g)
        return u, other

    def samples(self, i: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The draws ``[n, width]`` of the (row, sample) pairs (i, k) of one pass, in row-major order
        (each row's samples a contiguous run); a row's block is released after its last sample."""
        us, others = [], []
        for a, lo, hi in _runs(i.tolist(), k.tolist()):
            if a not in self._held:
                self._held[a] = self._pair(a, self.K)
            u, other = self._held[a]
            us.append(u[lo:hi])
            others.append(other[lo:hi] if other is not None else None)
            if hi == self.K:
                del self._held[a]
        return torch.cat(us), (None if self.dim is None else torch.cat(others))

    def reconstruction(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Row i's draw for x' (after its K samples' draws)."""
        return self._pair(i)


def _runs(rows: list[int], samples: list[int]) -> list[tuple[int, int, int]]:
    """(row, first sample, last sample + 1) of each run of consecutive pairs of one row."""
    out: list[tuple[int, int, int]] = []
    for a, b in zip(rows, samples, strict=True):
        if out and out[-1][0] == a and out[-1][2] == b:
            out[-1] = (a, out[-1][1], b + 1)
        else:
            out.append((a, b, b + 1))
    return out


def _aligned(values: torch.Tensor, start: torch.Tensor, L: int) -> torch.Tensor:
    """Draws ``[n, width]`` indexed from each row's region start -> ``[n, L]``: row position p reads
    draw p - start (positions outside the region read a clamped index and are not used)."""
    idx = (torch.arange(L)[None] - start[:, None]).clamp(0, values.shape[-1] - 1)  # [n, L]
    return values.gather(-1, idx)


def _corrupt(graph: Graph, x0, region, start, u, other, move: torch.Tensor) -> torch.Tensor:
    """x0 ``[n, L]`` with its region positions jumping where the aligned U < `move` ``[n]``: to the
    mask (absorbing) or to the aligned drawn token (uniform)."""
    L = x0.shape[1]
    jump = region & (_aligned(u, start, L) < move[:, None])
    target = graph.mask_id if isinstance(graph, Absorbing) else _aligned(other, start, L)
    return torch.where(jump, target, x0)


def _pass(fn: Any, tensors: tuple[torch.Tensor, ...], device: torch.device) -> torch.Tensor:
    """`fn` on `tensors` (``[n, ...]`` each) padded to whole tiles and moved to `device`; ``[n]`` (CPU)."""
    n = tensors[0].shape[0]
    return fn(*(padded(t).to(device) for t in tensors))[:n].cpu()


def _check_regions(L: int, width: int, start: torch.Tensor, end: torch.Tensor) -> None:
    if bool(((start < 0) | (end > L) | (start > end)).any()):
        raise ValueError(f"regions must satisfy 0 <= start <= end <= L = {L}")
    if bool(((end - start) > width).any()):
        raise ValueError(f"a region is longer than the draw width {width}")


@torch.no_grad()
def conditional_bound(
    model: Any,
    graph: Graph,
    noise: Noise,
    x0: torch.Tensor,
    start: Sequence[int],
    end: Sequence[int],
    mc: int,
    seeds: Sequence[int],
    *,
    width: int | None = None,
    batch_size: int = 16,
    spacing: str = "sqrt",
    t_min: float = T_MIN,
) -> ConditionalBounds:
    """Bound -log p(x0_i[start_i:end_i] | the rest of row i) for every row of `x0` ``[B, L]``
    (module docstring), K = `mc` samples per row drawn from a generator seeded with `seeds[i]`;
    `width` (default L) is the length of each row's uniform draws, at least every region's length
    (the harness adapter passes the model length, so rows of different lengths draw alike).
    `batch_size`: sequences per forward pass, rounded up to a whole tile (`rows.pass_rows`)."""
    check_mc(mc)
    check_spacing(spacing)
    B, L = x0.shape
    width = L if width is None else int(width)
    s = torch.as_tensor(list(start), dtype=torch.long)
    e = torch.as_tensor(list(end), dtype=torch.long)
    if len(seeds) != B or s.shape[0] != B or e.shape[0] != B:
        raise ValueError(f"start, end and seeds need one entry per row ({B})")
    _check_regions(L, width, s, e)
    estimator = estimator_for(model, graph)
    recon = estimator == "dwdse" and sigma_at_zero(noise) > 0
    dim = None if isinstance(graph, Absorbing) else graph.dim
    d = _Draws(seeds, mc, width, dim, spacing, t_min)
    x0c = x0.detach().cpu().long()
    region = region_mask(L, s, e)
    loss = _diffusion(model, graph, noise, x0c, region, s, d, estimator, pass_rows(batch_size))  # [B, K]
    values = d.weight * loss
    zeros = torch.zeros(B, dtype=torch.float64)
    n_region = (e - s).double()
    prior = n_region * prior_kl_per_position(graph, noise) if estimator == "dwdse" else zeros
    R0 = _reconstruction(model, graph, noise, x0c, region, s, d, pass_rows(batch_size)) if recon else zeros
    K = mc
    se = values.std(dim=1) / math.sqrt(K) if K >= 2 else torch.full((B,), float("nan"), dtype=torch.float64)
    return ConditionalBounds(values.mean(dim=1) + prior + R0, se, values, prior, R0, estimator)


def _diffusion(model, graph, noise, x0, region, s, d: _Draws, estimator: str, rows: int) -> torch.Tensor:
    """The unweighted integrand samples ``[B, K]`` (float64): one network row per (row i, sample k),
    in row-major order, `rows` to a pass; each pass draws its corruptions as it goes."""
    B, L = x0.shape
    K = d.t.shape[1]
    if estimator == "lambda-dce":
        move = d.t.double()  # [B, K], the masking probabilities lambda
        extra: tuple[torch.Tensor, ...] = (d.t,)
        fn = lambda a, b, lam: lambda_rows(model, graph, a, b, lam)  # noqa: E731
    else:
        sigma, dsigma = noise(d.t)  # [B, K]
        move = -torch.expm1(-sigma.double())  # 1 - e^-sigma
        extra = (sigma.float(), dsigma.float())
        fn = lambda a, b, sg, ds, r: dwdse_rows(model, graph, a, b, sg, ds, r)  # noqa: E731
    dev = _device(model)
    out = torch.empty(B * K, dtype=torch.float64)
    for lo in range(0, B * K, rows):
        flat = torch.arange(lo, min(lo + rows, B * K))
        i, k = flat // K, flat % K
        u, other = d.samples(i, k)  # [n, width]
        xt = _corrupt(graph, x0[i], region[i], s[i], u, other, move[i, k])  # [n, L]
        tensors = (x0[i], xt, *(t[i, k] for t in extra))
        if estimator != "lambda-dce":
            tensors = (*tensors, region[i])
        out[lo : lo + len(flat)] = _pass(fn, tensors, dev)
    return out.view(B, K)


def _reconstruction(model, graph, noise, x0, region, s, d: _Draws, rows: int) -> torch.Tensor:
    """R_0 per row ``[B]``: one x' that corrupts the region at sigma(0) (each row's draw after its K
    corruption draws), decoded over the region."""
    B = x0.shape[0]
    p0 = torch.full((B,), -math.expm1(-sigma_at_zero(noise)), dtype=torch.float64)
    draws = [d.reconstruction(a) for a in range(B)]
    u = torch.stack([u for u, _ in draws])
    other = None if d.dim is None else torch.stack([o for _, o in draws])
    xp = _corrupt(graph, x0, region, s, u, other, p0)  # [B, L]
    dev = _device(model)

    def fn(a, b, c):
        return reconstruction_term(model, graph, noise, a.to(dev), xp=b.to(dev), positions=c.to(dev))

    return in_passes(fn, x0, xp, region, rows=rows).cpu()


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")
