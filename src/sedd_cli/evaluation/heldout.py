"""The `perplexity()` entry: the likelihood bound of a model on held-out text (an evaluation set).

Reads the set into blocks (`blocks`), bounds every block (`evaluate_blocks`), and reports the ratio
estimate nll = sum_i b_i / sum_i n_i with its standard error (`bound.summarize_bounds`), split into
the diffusion, prior and reconstruction parts, as perplexity and bits per token/character/byte,
and (pad layouts) per record: mean(b_i) with SE std(b_i) / sqrt(n).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .blocks import BlockBounds, PerplexityStep, _EvalSet, eval_set, evaluate_blocks
from .bound import ESTIMATORS, T_MIN, BoundSummary, describe_bound, summarize_bounds
from .options import check_batch_size, check_max_blocks, check_mc, check_spacing, check_split
from .protocols import plan_data, token_rule

__all__ = ["PerplexityResult", "perplexity"]


@dataclass
class PerplexityResult:
    """The per-token likelihood bound of a model on an evaluation set."""

    nll: float  # nats per token: an upper bound on -log p^pi(x0) per token (see `bound_on`)
    nll_diffusion: float  # the DWDSE integral per token (lambda-dce: the whole lambda-form bound)
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
    mc: int  # K, time samples per block (lambda-dce: masking probabilities)
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
    estimator: str = ESTIMATORS["dwdse"]  # which estimator ran, in words (the values of bound.ESTIMATORS)

    @property
    def estimator_name(self) -> str:
        """``dwdse`` or ``lambda-dce``: the key of `bound.ESTIMATORS` whose words `estimator` holds."""
        return next(k for k, v in ESTIMATORS.items() if v == self.estimator)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    ``[N, L]`` (then the model's layout decides what counts). See `sedd_cli.evaluation.bound` for
    the estimator and docs/evaluation.md for the protocols. Every option, and the data set when it
    is named, is checked before the model is loaded.
    """
    from ..checkpoints import Pretrained, load_pretrained

    check_mc(mc)
    check_batch_size(batch_size)
    check_spacing(spacing)
    check_max_blocks(max_blocks)
    check_split(split)
    plan = None if data is None or isinstance(data, torch.Tensor) else plan_data(data, split)
    pre = source if isinstance(source, Pretrained) else load_pretrained(source, device=device)
    blocks = eval_set(pre, data, plan, split, max_blocks)
    res = evaluate_blocks(
        pre.model,
        pre.graph,
        pre.noise,
        blocks.tokens,
        layout=blocks.layout,
        pad_id=blocks.pad_id,
        mc=mc,
        batch_size=batch_size,
        seed=seed,
        device=pre.device,
        on_step=on_step,
        t_min=t_min,
        spacing=spacing,
    )
    summary = summarize_bounds(res.bounds, res.counts)
    return PerplexityResult(
        **_bound_figures(res, summary, blocks),
        **_run_facts(pre, blocks, res, summary, mc=mc, t_min=t_min, spacing=spacing, seed=seed),
    )


def _bound_figures(res: BlockBounds, summary: BoundSummary, blocks: _EvalSet) -> dict[str, Any]:
    """The bound and its parts per token, as perplexity and bits, with standard errors; per record
    for pad layouts."""
    N, L = blocks.shape
    nll_prior = res.prior * N * L / summary.n_tokens
    nll_recon = float(res.reconstruction.sum()) / summary.n_tokens
    per_record = se_record = None
    if blocks.layout == "pad":
        per_record = float(res.bounds.mean())
        se_record = float(res.bounds.std()) / math.sqrt(N) if N >= 2 else None
    ln2 = math.log(2)
    ppl = math.exp(summary.nll)
    return dict(
        nll=summary.nll,
        nll_diffusion=summary.nll - nll_prior - nll_recon,
        nll_prior=nll_prior,
        nll_reconstruction=nll_recon,
        perplexity=ppl,
        bits=summary.nll / ln2,
        stderr_nll=summary.stderr,
        stderr_perplexity=None if summary.stderr is None else ppl * summary.stderr,
        stderr_bits=None if summary.stderr is None else summary.stderr / ln2,
        n_tokens=summary.n_tokens,
        n_positions=N * L,
        n_blocks=N,
        nll_per_record=per_record,
        stderr_per_record=se_record,
    )


def _run_facts(
    pre: Any,
    blocks: _EvalSet,
    res: BlockBounds,
    summary: BoundSummary,
    *,
    mc: int,
    t_min: float,
    spacing: str,
    seed: int,
) -> dict[str, Any]:
    """What was measured, how and where: the estimator's settings, the data, the model, the speed,
    and what the bound bounds, in words."""
    _, L = blocks.shape
    bound_on, prior_words, gap = describe_bound(pre.graph, pre.noise, L, res.estimator)
    return dict(
        unit=_unit(pre.tokenizer),
        mc=mc,
        t_min=t_min,
        spacing=spacing,
        prior_per_position=res.prior,
        seconds=res.seconds,
        tokens_per_second=summary.n_tokens / max(res.seconds, 1e-9),
        data=str(blocks.data),
        split=blocks.split,
        protocol=blocks.protocol.name,
        layout=blocks.layout,
        token_rule=token_rule(blocks.layout),
        detokenize=blocks.protocol.detokenize,
        model=pre.source,
        step=pre.step,
        weights=pre.weights,
        seed=seed,
        device=str(pre.device),
        bound_on=bound_on,
        prior=prior_words,
        all_mask_gap=gap,
        estimator=ESTIMATORS[res.estimator],
    )


def _unit(tokenizer: Any) -> str:
    kind = getattr(tokenizer, "kind", "")
    return {"char": "character", "byte": "byte"}.get(kind, "token")
