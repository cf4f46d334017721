"""Evaluation blocks: reading a data set into blocks ``[N, L]`` and bounding every block.

Per block i: b_i = R(x0_i) + D(x0_i) + L KL(p_1 || pi) (`bound`; for a time-independent
absorbing model the lambda-form bound N(x0_i) alone, `bound.lambda_bound`), and n_i, the tokens that count
(all L positions for pack layouts, the non-pad positions for pad layouts; `protocols`). One
generator seeded once serves the whole pass, batch after batch: first the K time samples of a
batch, then its reconstruction draws (only when sigma(0) > 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SeddError
from ..graph import Graph
from ..noise import Noise
from .bound import (
    T_MIN,
    bound_per_sequence,
    estimator_for,
    lambda_bound,
    prior_kl_per_position,
    reconstruction_term,
)
from .options import check_batch_size, check_mc
from .protocols import DataPlan, Protocol, plan_data

__all__ = ["PerplexityStep", "BlockBounds", "evaluate_blocks"]


@dataclass
class PerplexityStep:
    """Progress event: blocks done so far and the running bound."""

    blocks_done: int
    blocks_total: int
    tokens_done: int
    nll: float  # running per-token bound (nats), prior included
    tokens_per_second: float


@dataclass
class BlockBounds:
    """What `evaluate_blocks` returns, per block i of N."""

    bounds: torch.Tensor  # [N] float64, b_i = R_i + D_i + L * prior (nats per block)
    counts: torch.Tensor  # [N] long, tokens that count (all L for pack, non-pad for pad)
    reconstruction: torch.Tensor  # [N] float64, R_i (0 when sigma(0) = 0)
    prior: float  # KL(p_1(.|x0) || pi) per position (0 for lambda-dce)
    seconds: float
    estimator: str = "dwdse"  # dwdse | lambda-dce (`bound.estimator_for`)


def _counts(tokens: torch.Tensor, layout: str, pad_id: int | None) -> torch.Tensor:
    """Tokens that count per block ``[N]``: all positions (pack) or non-pad positions (pad)."""
    if layout == "pad" and pad_id is not None:
        return (tokens != pad_id).sum(dim=1)
    return torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long)


def _block_rows(tokens: Any) -> tuple[int, int, Callable[[int, int], torch.Tensor]]:
    """(N, L, rows(lo, hi) -> LongTensor [hi - lo, L]) for a LongTensor ``[N, L]`` or a
    `data.TokenBlocks` (possibly memory-mapped: its rows are read through ``.batch``)."""
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [N, L], got {list(tokens.shape)}")
        N, L = tokens.shape
        return N, L, lambda lo, hi: tokens[lo:hi].long()
    return len(tokens), tokens.length, lambda lo, hi: tokens.batch(torch.arange(lo, hi))


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """The model in eval mode for the pass, back in training mode afterwards if it was."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


@dataclass
class _Pass:
    """One bound pass over blocks: the model, the options, the shared generator and the results."""

    model: Any
    graph: Graph
    noise: Noise
    layout: str
    pad_id: int | None
    mc: int
    t_min: float
    spacing: str
    device: torch.device
    generator: torch.Generator
    out: BlockBounds

    def bound_batch(self, x0_cpu: torch.Tensor, lo: int, hi: int) -> int:
        """Bound the blocks lo..hi-1 (``x0_cpu`` ``[b, L]``) into `out`; the tokens that count."""
        out, L = self.out, x0_cpu.shape[1]
        out.counts[lo:hi] = _counts(x0_cpu, self.layout, self.pad_id)
        x0 = x0_cpu.to(self.device)
        if out.estimator == "lambda-dce":  # no prior, no reconstruction term
            out.bounds[lo:hi] = lambda_bound(
                self.model, self.graph, x0, self.mc, self.generator, spacing=self.spacing, t_min=self.t_min
            ).cpu()
            return int(out.counts[lo:hi].sum())
        diffusion = bound_per_sequence(
            self.model,
            self.graph,
            self.noise,
            x0,
            self.mc,
            self.generator,
            t_min=self.t_min,
            spacing=self.spacing,
        )  # [b]
        out.reconstruction[lo:hi] = reconstruction_term(
            self.model, self.graph, self.noise, x0, self.generator
        ).cpu()
        out.bounds[lo:hi] = diffusion.cpu() + out.reconstruction[lo:hi] + out.prior * L
        return int(out.counts[lo:hi].sum())

    def progress(self, hi: int, done_tokens: int, start: float) -> PerplexityStep:
        """The event after blocks 0..hi-1: the running per-token bound and the speed."""
        elapsed = max(time.perf_counter() - start, 1e-9)
        return PerplexityStep(
            blocks_done=hi,
            blocks_total=self.out.bounds.shape[0],
            tokens_done=done_tokens,
            nll=float(self.out.bounds[:hi].sum()) / max(done_tokens, 1),
            tokens_per_second=done_tokens / elapsed,
        )


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
    """Bound every block of `tokens` ``[N, L]``: b_i = R(x0_i) + D(x0_i) + L KL (`bound`), or the
    lambda-form bound N(x0_i) for a time-independent absorbing model (`bound.estimator_for`).

    `tokens`: a LongTensor ``[N, L]`` or a `data.TokenBlocks`. One generator seeded with `seed` on
    `device` serves the whole pass, batch after batch, first for the K time samples of a batch
    (`bound_per_sequence`), then for its reconstruction draws (only when sigma(0) > 0); so results
    depend on `batch_size` only through the order of random draws."""
    check_mc(mc)
    check_batch_size(batch_size)
    N, _, rows = _block_rows(tokens)
    if N == 0:
        raise SeddError("nothing to evaluate: the split has no complete block")
    device = torch.device(device)
    counts = torch.zeros(N, dtype=torch.long)
    estimator = estimator_for(model, graph)
    prior = prior_kl_per_position(graph, noise) if estimator == "dwdse" else 0.0
    generator = torch.Generator(device=device).manual_seed(seed)
    out = BlockBounds(
        torch.zeros(N, dtype=torch.float64),
        counts,
        torch.zeros(N, dtype=torch.float64),
        prior,
        0.0,
        estimator,
    )
    run = _Pass(model, graph, noise, layout, pad_id, mc, t_min, spacing, device, generator, out)
    start = time.perf_counter()
    done_tokens = 0
    with _eval_mode(model):
        for lo in range(0, N, batch_size):
            hi = min(lo + batch_size, N)
            done_tokens += run.bound_batch(rows(lo, hi), lo, hi)
            if on_step is not None:
                on_step(run.progress(hi, done_tokens, start))
    out.seconds = time.perf_counter() - start
    return out


# --- the blocks of an evaluation set --------------------------------------------------------------


@dataclass
class _EvalSet:
    """The blocks to bound and how they were read."""

    tokens: Any  # LongTensor [N, L] or data.TokenBlocks
    layout: str
    pad_id: int | None
    protocol: Protocol
    data: str  # the data set's name as reported
    split: str | None

    @property
    def shape(self) -> tuple[int, int]:
        if isinstance(self.tokens, torch.Tensor):
            return tuple(self.tokens.shape)  # type: ignore[return-value]
        return len(self.tokens), self.tokens.length


def _tensor_set(pre: Any, tokens: torch.Tensor, split: str | None, max_blocks: int | None) -> _EvalSet:
    """In-memory blocks ``[N, L]``: the model's layout decides what counts; ids must be the model's."""
    tokens = tokens.long()
    if max_blocks is not None:
        tokens = tokens[:max_blocks]
    layout, pad_id = pre.config.data.layout, pre.tokenizer.pad_id
    proto = Protocol("tensor", split or "", False, layout, False, "in-memory blocks")
    if tokens.dim() != 2 or tokens.shape[0] == 0:
        raise SeddError(f"split {split!r} of 'tensor' is empty: nothing to evaluate")
    vmax = int(tokens.max())
    if vmax >= pre.tokenizer.vocab_size or int(tokens.min()) < 0:
        raise SeddError(
            f"model/tokenizer mismatch: the data has token id {vmax} but the model's vocabulary "
            f"has {pre.tokenizer.vocab_size} ids"
        )
    return _EvalSet(tokens, layout, pad_id, proto, "tensor", split)


def _load_blocks(pre: Any, plan: DataPlan, max_blocks: int | None) -> _EvalSet:
    """Read the data set of `plan` with the model's tokenizer and length."""
    from ..config import config_from_dict
    from ..data import prepare_data

    proto, data = plan.protocol, plan.data
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
    if plan.split == "all":  # every record: the train side of a split that holds nothing out
        cfg.data.valid_fraction = 0.0
    blocks = prepare_data(cfg, pre.tokenizer, plan.read, detokenize=proto.detokenize, max_blocks=max_blocks)
    if len(blocks) == 0:
        raise SeddError(
            f"split {plan.split!r} of {data!r} is empty: no complete block of {cfg.model.length} tokens; "
            "choose another --split or more text"
        )
    layout = blocks.layout or cfg.data.layout
    pad_id = blocks.pad_id if blocks.pad_id is not None else pre.tokenizer.pad_id
    return _EvalSet(blocks, layout, pad_id, proto, data, plan.split)


def eval_set(
    pre: Any, data: Any, plan: DataPlan | None, split: str | None, max_blocks: int | None
) -> _EvalSet:
    """The blocks `perplexity` bounds: in-memory blocks (`data` a tensor), or the data set of `plan`
    (None: the model's own training data, planned here)."""
    if isinstance(data, torch.Tensor):
        return _tensor_set(pre, data, split, max_blocks)
    return _load_blocks(pre, plan or plan_data(pre.config.data.name, split), max_blocks)
