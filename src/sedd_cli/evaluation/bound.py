"""The likelihood bound: its estimator, the t = 0 and prior terms, and the summary (docs/evaluation.md).

**What is bounded** (sedd-spec §2.4-2.5, §6.1; paper Thm. 3.6). The model p^pi_theta: the reverse
process with the learned score started at t = 1 from the prior pi below, run to t = 0, followed
(when sigma(0) > 0) by the model's denoiser at sigma(0). For a block x0 of L tokens

    -log p^pi_theta(x0) <= R(x0) + D(x0) + KL( p_1(.|x0) || pi )

    D(x0) = int_0^1 E_{x_t ~ p_t(.|x0)} [ sum_l dsigma(t) l_l(t) ] dt          (diffusion part)
    R(x0) = E_{x' ~ p_{sigma(0)}(.|x0)} [ -log p_theta(x0 | x') ]              (reconstruction)

where l_l is the denoising score entropy of position l (exactly 0 at unmasked positions of the
absorbing graph). D is estimated with K time samples per sequence, stratified with one shared
offset: u ~ U[0, 1) per sequence and t_k = max((k + u) / K, t_min), k = 0 .. K-1, with
t_min = 1e-6 because t = 0 gives sigma = 0 and a 0/0 in the absorbing weight 1 / (e^sigma - 1).
Each t_k gets its own x_t draw (`score_entropy_loss` with ``t=t_k``); the K values are averaged.
The clamp changes the integral by at most t_min times the integrand near 0 (about 1e-6 L log V
nats), far below the Monte Carlo error.

**The reconstruction term.** The log-linear schedule has sigma(0) = 0, so x' = x0 and R = 0. The
geometric schedule (the uniform graph's) has sigma(0) = sigma_min = 1e-4: the integral then covers
[sigma_min, sigma_max] and alone bounds slightly noised data (at L = 1024 about 10 % of sequences
have a perturbed token). R closes the gap: one draw x' ~ p_{sigma(0)}(.|x0) per block and the
denoiser the sampler ends with (sedd-spec §5.3, Tweedie): per position
w_j = [exp(-sigma(0) Q) s(x')]_j * p(x'_l | x0_l = j), the mask column dropped (absorbing), clamped at
0, normalised, mixed with DECODER_FLOOR of the uniform law (so every token has positive
probability), and R = -sum_l log p_theta(x0_l | x'). With the exact score w is the exact posterior
marginal of x0_l given x'.

**The prior term.** With the log-linear schedule p_1(.|x0) keeps each token with probability
e^-sigma(1) = eps = 1e-3 and masks it otherwise, so against the all-mask start of `sedd sample`
the KL is infinite. pi is, per position, "mask with probability 1 - e^-sigma(1), else a uniform
token": then KL = e^-sigma(1) log V per position (eps log V = 0.01082 nats for GPT-2's V = 50257),
added for all L positions of a block. So the bound is on -log p^pi(x0), not on the all-mask
sampler's -log p^M(x0): the all-mask start is pi conditioned on no position drawing a token, an
event of probability (1 - eps)^L, so p^pi(x0) >= (1 - eps)^L p^M(x0), i.e. -log p^pi(x0) <=
-log p^M(x0) - L log(1 - eps) (1.02 nats per 1024-token block). For the uniform graph pi is the
uniform limit, the sampler's own start, and the KL of the exact transition column is computed in
closed form (`prior_kl_per_position`).

**Time-independent absorbing models** (RADD, ``model.time_conditioning: false``; `estimator_for`
says ``lambda-dce``). The network's conditional c(x_t) does not depend on t, so the bound is
written in the masking probability lambda = 1 - e^-sigma(t) (sedd-spec §9, `losses`):

    -log p_theta(x0) <= N(x0) = int_0^1 E_{x_lambda}[ -sum_masked log c[x0] ] d lambda / lambda

with x_lambda masking each token independently with probability lambda. lambda = 1 masks every
token, the all-mask start of `sedd sample`, so there is no prior term, and no reconstruction term
(lambda -> 0 leaves x0 itself). p_theta is the model's continuous-time reverse process from all
masks (the exact sampler's law), whatever the noise schedule. `lambda_bound` estimates N with K
stratified lambda per sequence exactly as D above (lambda in the place of t: same offsets, same
sqrt spacing and weights, the same clamp lambda >= t_min), one mask draw each
(`losses.lambda_bound_per_sequence`).

**Reporting.** Per block i the estimate b_i (R + D + prior) and the tokens that count n_i. The
per-token bound is the ratio nll = sum_i b_i / sum_i n_i, its standard error the delta-method ratio
SE sqrt(sum_i (b_i - nll n_i)^2 / (n (n - 1))) / mean(n_i) (for equal n_i this is
std(b_i / n_i) / sqrt(n)); perplexity = exp(nll) with SE exp(nll) SE_nll. Pad layouts (one record
per row) also get the bound per record, mean(b_i), with SE std(b_i) / sqrt(n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SeddError
from ..graph import Absorbing, Graph
from ..losses import lambda_bound_per_sequence, score_entropy_loss
from ..noise import Noise
from .options import check_mc, check_spacing

__all__ = [
    "T_MIN",
    "DECODER_FLOOR",
    "stratified_times",
    "bound_per_sequence",
    "ESTIMATORS",
    "estimator_for",
    "lambda_bound",
    "sigma_at_zero",
    "reconstruction_term",
    "prior_kl_per_position",
    "BoundSummary",
    "summarize_bounds",
    "describe_bound",
]

T_MIN = 1e-6  # lower clamp of the time samples: t = 0 gives sigma = 0 (division by e^0 - 1 = 0)
DECODER_FLOOR = 1e-6  # share of the uniform law mixed into the t = 0 denoiser (costs <= 1e-6 nats/token)

# which estimator ran (`estimator_for`) -> the words `PerplexityResult.estimator` reports
ESTIMATORS = {
    "dwdse": (
        "DWDSE integral over t in (0, 1] with K stratified time samples per block + prior KL"
        " + t = 0 reconstruction term (when sigma(0) > 0)"
    ),
    "lambda-dce": (
        "lambda-DCE integral over the masking probability lambda in (0, 1] with K stratified samples"
        " per block (time-independent model); no prior term (lambda = 1 masks every token)"
        " and no reconstruction term"
    ),
}


def stratified_times(
    batch: int,
    K: int,
    *,
    generator: torch.Generator | None = None,
    device=None,
    t_min: float = T_MIN,
    spacing: str = "sqrt",
) -> tuple[torch.Tensor, torch.Tensor]:
    """K stratified time samples per sequence and their weights, both ``[K, B]``.

    One offset u ~ U[0, 1) per sequence, shared by all strata, v_k = (k + u) / K, so each stratum
    [k/K, (k+1)/K) holds exactly one sample.

    * ``uniform``: t_k = v_k, weight 1 (int_0^1 f(t) dt ~ (1/K) sum_k f(t_k)).
    * ``sqrt`` (default): t_k = v_k^2, weight 2 v_k, from int_0^1 f(t) dt = int_0^1 f(v^2) 2v dv.
      For the absorbing graph the integrand's conditional variance grows like L/t near t = 0 (a
      masked token costs ~1/t with probability ~t), so with uniform t the variance is
      log-divergent and dominated by rare draws at tiny t; in v the weighted variance is bounded,
      the standard error is honest and shrinks as 1/sqrt(K).

    Times are clamped to t >= t_min (sigma(0) = 0 makes the absorbing weight 1/(e^sigma - 1) blow up).
    """
    check_mc(K)
    check_spacing(spacing)
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)  # [B]
    k = torch.arange(K, device=u.device, dtype=u.dtype)[:, None]  # [K, 1]
    v = (k + u[None, :]) / K  # [K, B]
    if spacing == "uniform":
        t, weight = v, torch.ones_like(v)
    else:
        t, weight = v * v, 2 * v
    return t.clamp_min(t_min).float(), weight


@torch.no_grad()
def bound_per_sequence(
    model: Any,
    graph: Graph,
    noise: Noise,
    x0: torch.Tensor,
    K: int,
    generator: torch.Generator | None = None,
    *,
    t: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    spacing: str = "sqrt",
    masked_only: bool | None = None,
    t_min: float = T_MIN,
) -> torch.Tensor:
    """Monte Carlo estimate of the diffusion part of the bound, nats per sequence, ``[B]`` (float64).

        D(x0) = int_0^1 E_{x_t}[ sum_l dsigma(t) l_l(x_t, x0) ] dt
              ~ (1/K) sum_k w_k * score_entropy_loss(x0, t = t_k)

    with (t, w) ``[K, B]`` from `stratified_times` unless `t` is given (then w = `weight` or 1).
    The generator is used first for the offsets u (when t is None), then by each of the K loss
    calls, in order, to draw x_t; so with given t, K = 1 and the same generator state the value
    equals the training loss exactly. `masked_only` (default: when the model has ``head_logits``)
    evaluates the output head at masked positions only (absorbing graph).
    """
    check_mc(K)
    B = x0.shape[0]
    if t is None:
        t, weight = stratified_times(
            B, K, generator=generator, device=x0.device, t_min=t_min, spacing=spacing
        )
    if weight is None:
        weight = torch.ones(t.shape, dtype=torch.float64, device=t.device)
    if t.shape != (K, B) or weight.shape != (K, B):
        raise ValueError(f"t and weight must be [K, B] = [{K}, {B}], got {list(t.shape)}")
    if masked_only is None:
        masked_only = hasattr(model, "head_logits") and isinstance(graph, Absorbing)
    total = torch.zeros(B, dtype=torch.float64, device=x0.device)
    for k in range(K):
        out = score_entropy_loss(
            model, graph, noise, x0, t=t[k], masked_only=masked_only, generator=generator
        )
        total += weight[k].double() * out.loss.double()
    return total / K


def estimator_for(model: Any, graph: Graph) -> str:
    """``lambda-dce`` for a time-independent absorbing model (``model.time_conditioned`` false),
    else ``dwdse`` (the keys of `ESTIMATORS`)."""
    if isinstance(graph, Absorbing) and getattr(model, "time_conditioned", True) is False:
        return "lambda-dce"
    return "dwdse"


@torch.no_grad()
def lambda_bound(
    model: Any,
    graph: Absorbing,
    x0: torch.Tensor,
    K: int,
    generator: torch.Generator | None = None,
    *,
    spacing: str = "sqrt",
    t_min: float = T_MIN,
) -> torch.Tensor:
    """Monte Carlo estimate of the lambda-form bound N(x0) of a time-independent absorbing model,
    nats per sequence ``[B]`` (float64):

        N(x0) ~ (1/K) sum_k w_k * lambda_dce_loss(x0, lambda = lambda_k)

    with (lambda, w) ``[K, B]`` from `stratified_times` (lambda in the place of t, clamped at
    t_min). The generator draws the offsets first, then the K masks in order."""
    check_mc(K)
    lam, weight = stratified_times(
        x0.shape[0], K, generator=generator, device=x0.device, t_min=t_min, spacing=spacing
    )
    return lambda_bound_per_sequence(model, graph, x0, lam, weight, generator=generator)


def sigma_at_zero(noise: Noise) -> float:
    """sigma(0): 0 for the log-linear schedule, sigma_min for the geometric one."""
    return float(noise.total(torch.tensor(0.0, dtype=torch.float64)))


@torch.no_grad()
def reconstruction_term(
    model: Any,
    graph: Graph,
    noise: Noise,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    floor: float = DECODER_FLOOR,
    xp: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """R(x0) = E_{x' ~ p_{sigma(0)}(.|x0)}[-log p_theta(x0 | x')], one draw of x' per sequence, ``[B]``
    nats (float64); exactly 0 when sigma(0) = 0 (then x' = x0 and nothing is left to decode).

    p_theta(x0 | x') factorises over positions and is the denoiser `sedd sample` ends with (Tweedie,
    sedd-spec §5.3): w_j = [exp(-sigma Q) exp(s(x', sigma))]_j * p(x'_l | x0_l = j) at sigma = sigma(0)
    (`graph.staggered_score` times `graph.transp_transition`), over the V real tokens for the
    absorbing graph (the mask column dropped), clamped at 0 and normalised, then mixed with `floor`
    of the uniform law, p = (1 - floor) w / sum w + floor / V: a distribution whatever the score, so
    the bound stays valid for a learned score. With the exact score w / sum w is the exact posterior
    p(x0_l = j | x'). The model is called on the full output (all D columns) once per sequence.

    `xp` (optional, ``[B, L]``): a given draw x' (the generator is then not used); `positions`
    (optional, bool ``[B, L]``): sum over these positions only (the conditional bound's region,
    `conditional`, where x' differs from x0 only inside it).
    """
    sigma0 = sigma_at_zero(noise)
    B = x0.shape[0]
    if sigma0 <= 0.0:
        return torch.zeros(B, dtype=torch.float64, device=x0.device)
    sigma = torch.full((B,), sigma0, device=x0.device)
    if xp is None:
        xp = graph.sample_transition(x0, sigma[:, None], generator=generator)  # [B, L]
    log_score = model(xp, sigma)  # [B, L, D]
    # float64 where it is cheap (tests, small vocabularies); the model's float32 otherwise
    dtype = torch.float64 if log_score.numel() <= 1 << 24 else torch.float32
    s0 = torch.tensor(sigma0, dtype=dtype, device=x0.device)
    w = graph.staggered_score(log_score.to(dtype).exp(), s0) * graph.transp_transition(xp, s0).to(dtype)
    if isinstance(graph, Absorbing):
        w = w[..., : graph.vocab_size]  # the denoiser resolves every mask: never to the mask
    w = w.clamp_min(0.0)
    total = w.sum(dim=-1, keepdim=True)
    V = w.shape[-1]
    p = torch.where(total > 0, w / total.clamp_min(1e-300), 1.0 / V)  # no positive weight: uniform
    p = (1 - floor) * p + floor / V
    log_p = p.gather(-1, x0[..., None]).squeeze(-1).log().double()  # [B, L]
    if positions is not None:
        log_p = torch.where(positions, log_p, 0.0)
    return -log_p.sum(dim=-1)


def prior_kl_per_position(graph: Graph, noise: Noise) -> float:
    """KL(p_1(.|x0) || pi) for one position, in nats, computed in float64.

    Absorbing: p_1 keeps x0 with probability q = e^-sigma(1) and masks otherwise; pi masks with
    probability 1 - q and else draws one of the V tokens uniformly, so KL = q log V (for the
    log-linear schedule q = eps: 1e-3 ln 50257 = 0.010825 nats).
    Uniform: p_1 = column of exp(sigma(1) Q): keep with 1 - (D-1) m / D, each other state m / D
    (m = 1 - e^-sigma(1)); pi = uniform 1/D; the KL is the same for every x0.
    """
    sigma1 = float(noise.total(torch.tensor(1.0, dtype=torch.float64)))
    q = math.exp(-sigma1)
    if isinstance(graph, Absorbing):
        return q * math.log(graph.vocab_size)
    D = graph.dim
    m = -math.expm1(-sigma1)
    keep = 1 - (D - 1) * m / D
    other = m / D
    kl = keep * math.log(keep * D) if keep > 0 else 0.0
    if other > 0:
        kl += (D - 1) * other * math.log(other * D)
    return max(kl, 0.0)  # >= 0; near the limit (sigma(1) = 20) rounding can give -1e-12


@dataclass
class BoundSummary:
    nll: float
    stderr: float | None
    n_tokens: int
    n_blocks: int


def summarize_bounds(bounds: torch.Tensor, counts: torch.Tensor) -> BoundSummary:
    """Ratio estimate nll = sum b_i / sum n_i with its delta-method standard error.

    SE = sqrt( sum_i (b_i - nll n_i)^2 / (n (n - 1)) ) / mean(n_i); None when n < 2."""
    b = bounds.double().cpu()
    n_i = counts.double().cpu()
    n = b.numel()
    total_tokens = float(n_i.sum())
    if n == 0 or total_tokens <= 0:
        raise SeddError("nothing to evaluate: no tokens counted")
    nll = float(b.sum()) / total_tokens
    se = None
    if n >= 2:
        resid = b - nll * n_i
        se = math.sqrt(float((resid**2).sum()) / (n * (n - 1))) / float(n_i.mean())
    return BoundSummary(nll=nll, stderr=se, n_tokens=int(total_tokens), n_blocks=n)


def describe_bound(
    graph: Graph, noise: Noise, L: int, estimator: str = "dwdse"
) -> tuple[str, str, float | None]:
    """(what the bound bounds, the prior pi, the all-mask gap per position) in words and numbers.

    ``lambda-dce`` (a time-independent model): the bound is on the all-mask start itself (gap None).

    Absorbing: pi masks each position with probability 1 - q, q = e^-sigma(1), else draws a uniform
    token; `sedd sample` starts from all masks, pi conditioned on an event of probability
    (1 - q)^L, so -log p^pi(x0) <= -log p^M(x0) - L log(1 - q): the gap returned is -log(1 - q)
    per position. Uniform: pi is the uniform law, the sampler's own start (gap None)."""
    sigma1 = float(noise.total(torch.tensor(1.0, dtype=torch.float64)))
    q = math.exp(-sigma1)
    if estimator == "lambda-dce":
        prior = "all masks (lambda = 1 masks every token), the sampler's own start"
        bound_on = (
            "-log p_theta(x0): the time-independent model's reverse process from the all-mask start of "
            "sedd sample, in continuous time (the law of an exact sampler)"
        )
        return bound_on, prior, None
    recon = " then the t = 0 denoiser," if sigma_at_zero(noise) > 0 else ""
    if isinstance(graph, Absorbing):
        gap = -math.log1p(-q)
        prior = f"per position: mask with probability 1 - {q:.3g}, else a uniform token of {graph.vocab_size}"
        bound_on = (
            f"-log p^pi(x0): the model's reverse process started from pi ({prior}),{recon} not from the "
            f"all-mask start of sedd sample; that start is pi given no token drawn (probability "
            f"(1 - {q:.3g})^{L} = {math.exp(L * math.log1p(-q)):.3g}), so -log p^pi <= -log p^all-mask + "
            f"{L * gap:.4g} nats per block, and the bound is not one on -log p^all-mask"
        )
        return bound_on, prior, gap
    prior = f"per position: a uniform token of {graph.dim}, the sampler's own start"
    bound_on = (
        f"-log p^pi(x0): the model's reverse process started from pi ({prior}),{recon} as sedd sample runs it"
    )
    return bound_on, prior, None
