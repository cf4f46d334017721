"""Sampling: the reverse process of sedd-spec §5 (predictors, final denoiser, projector for infill).

Driver (`generate`): start from the limit distribution (all masks for the absorbing graph), walk
the time grid ``t_i = linspace(1, eps, steps + 1)`` with ``dt = (1 - eps) / steps``; at every step
apply the projector, then the predictor at ``t_i``; finally (``denoise``) apply the projector and
the Tweedie denoiser at ``t = eps``, and the projector once more. One network evaluation per step
plus one for the denoiser (``nfe = steps + denoise``).

Predictors (registry `PREDICTORS`, add one with ``@register_predictor("name")``):

* ``euler``: weights ``onehot(x) + dt * dsigma(t) * reverse_rate(x, score)`` (tau-leaping).
* ``analytic``: with ``Delta = sigma(t) - sigma(t - dt)``, weights
  ``staggered_score(score, Delta) * transp_transition(x, Delta)`` ("Tweedie tau-leaping").
* ``none``: identity.

Both draw one categorical per position from the (unnormalised) weights.

Fast path for the absorbing graph. Unmasked tokens never change (their weight vector is one-hot
on themselves), so only the masked rows need work: the network's body runs on the whole batch
(attention needs every position), but the output head (`SEDD.head_logits`, real-token columns
only), the logsumexp, the predictor
weights and the draw run on the ``N`` masked rows ``[N, D]`` only, and the new ids are written
back with ``index_put``. At a masked row both predictors give token weights ``c * score_j``
(``j < V``) and a "stay masked" weight: analytic ``c = e^Delta - 1``, stay
``score_M - (e^Delta - 1) sum_{j<V} score_j``; Euler ``c = dt dsigma``, stay
``1 - dt dsigma sum_{j<V} score_j``. The categorical draw over the ``V + 1`` weights is done in
two exact stages: stay with probability ``w_stay / (w_stay + sum_j w_j)`` (a negative stay weight
counts as 0: it can never be drawn), and only for the rows that leave the
mask, a draw over the ``V`` token weights. With LogLinear noise a position leaves the
mask about once per run, so the full-vocabulary draw touches about ``B * L`` rows in total instead
of ``B * L * steps / 2``. Finding the masked rows (``nonzero``) is a host synchronisation on CUDA:
two small ones per step (masked rows, rows that unmask), and a third for the check that every
drawn row has positive finite weight (`sample_categorical`); everything else stays on the device.

Categorical draws (`sample_categorical`): negative weights count as 0 (Euler's stay weight
``1 - dt dsigma sum_y Q[x, y] s_y`` is negative on the uniform graph where steps are coarse, and
the analytic one can be with a learned score), a row with no positive finite weight is an error;
inverse CDF in float64 by default (float64 cumulative sums, one uniform per draw).
``precision="float32"`` reproduces the reference's float32 Gumbel-max
with noise ``E = 1e-10 - log(U + 1e-10)``, whose truncated tail lowers the effective temperature
(sedd-spec P1); it is there for comparison only.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import check_shaping
from .errors import SeddError
from .graph import Graph
from .noise import Noise
from .tokenizers import UnencodableText

__all__ = [
    "Predictor",
    "EulerPredictor",
    "AnalyticPredictor",
    "NonePredictor",
    "PREDICTORS",
    "PRECISIONS",
    "register_predictor",
    "get_predictor",
    "sample_categorical",
    "nucleus",
    "check_shaping",
    "StepEvent",
    "generate",
    "SampleResult",
    "InfillResult",
    "sample",
    "infill",
    "parse_template",
    "decode_samples",
    "MAX_STEPS",
    "MAX_SAMPLES",
]

PRECISIONS = ("float64", "float32")
MAX_STEPS = 100_000  # reverse-process steps; the paper's longest runs use 2048
MAX_SAMPLES = 1_000_000  # samples per call (--num-samples)
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


# --- categorical draws --------------------------------------------------------------------------


def _check_precision(precision: str) -> torch.dtype:
    if precision not in _DTYPES:
        raise SeddError(f"precision must be float64 or float32, got {precision!r}")
    return _DTYPES[precision]


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
    dtype = _check_precision(precision)
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


# --- predictors ---------------------------------------------------------------------------------


def _sigma(noise: Noise, t: float) -> tuple[float, float]:
    """(sigma(t), dsigma(t)) as Python floats, computed in float64 on the CPU (no device sync)."""
    sigma, dsigma = noise(torch.tensor(t, dtype=torch.float64))
    return float(sigma), float(dsigma)


ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B, L], sigma [B]) -> score


class Predictor:
    """One reverse step ``x_t -> x_{t - dt}``. Subclasses set `name` and implement `weights`
    (the general formula, any graph) and optionally `masked_weights` (absorbing fast path).

    ``update(model_fn, x, t, dt)``: `model_fn(x, sigma)` returns the score (exp of the log-score)
    ``[B, L, D]`` at total noise ``sigma`` ``[B]``; `t` and `dt` are floats. Returns new ids.
    """

    name = "base"

    def __init__(
        self,
        graph: Graph,
        noise: Noise,
        *,
        precision: str = "float64",
        generator: torch.Generator | None = None,
    ):
        self.graph = graph
        self.noise = noise
        self.precision = precision
        self.dtype = _check_precision(precision)
        self.generator = generator

    def weights(self, score: torch.Tensor, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        """Unnormalised transition weights ``[..., D]`` from the score at sigma(t)."""
        raise NotImplementedError

    def masked_weights(
        self, score_sum: torch.Tensor, t: float, dt: float
    ) -> tuple[float, torch.Tensor] | None:
        """Absorbing graph, masked rows with ``score_sum`` = sum_{j<V} score_j ``[N]`` (float64)
        and score_M = 1 (the log-score of the current token is 0): ``(c, stay)`` such that the
        weight of token j < V is ``c * score_j`` and the weight of staying masked is `stay`
        ``[N]``. None: no fast path."""
        return None

    def update(self, model_fn: ModelFn, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        sigma, _ = _sigma(self.noise, t)
        score = model_fn(x, torch.full((x.shape[0],), sigma, device=x.device))
        w = self.weights(score.to(self.dtype), x, t, dt)
        return sample_categorical(w, self.generator, self.precision)


PREDICTORS: dict[str, type[Predictor]] = {}


def register_predictor(name: str) -> Callable[[type[Predictor]], type[Predictor]]:
    """Class decorator: make a `Predictor` subclass available as ``--predictor NAME``."""

    def add(cls: type[Predictor]) -> type[Predictor]:
        cls.name = name
        PREDICTORS[name] = cls
        return cls

    return add


def get_predictor(name: str, graph: Graph, noise: Noise, **kw: Any) -> Predictor:
    if name not in PREDICTORS:
        raise SeddError(f"unknown predictor {name!r}: choose from {', '.join(PREDICTORS)}")
    return PREDICTORS[name](graph, noise, **kw)


@register_predictor("euler")
class EulerPredictor(Predictor):
    """tau-leaping: weights ``onehot(x) + dt dsigma(t) reverse_rate(x, score)`` (all positions
    jump in parallel). Absorbing + LogLinear: a mask becomes j with probability (dt / t) q_j."""

    def weights(self, score, x, t, dt):
        _, dsigma = _sigma(self.noise, t)
        rate = (dt * dsigma) * self.graph.reverse_rate(x, score)
        return rate.scatter_add(-1, x[..., None], torch.ones_like(rate[..., :1]))

    def masked_weights(self, score_sum, t, dt):
        _, dsigma = _sigma(self.noise, t)
        c = dt * dsigma
        return c, 1 - c * score_sum


@register_predictor("analytic")
class AnalyticPredictor(Predictor):
    """Tweedie tau-leaping: with Delta = sigma(t) - sigma(t - dt), weights
    ``staggered_score(score, Delta) * transp_transition(x, Delta)``. Absorbing: a mask becomes j
    with weight ``(e^Delta - 1) score_j`` and stays with ``1 - (e^Delta - 1) sum_{j<V} score_j``."""

    def _delta(self, t: float, dt: float) -> float:
        return _sigma(self.noise, t)[0] - _sigma(self.noise, t - dt)[0]

    def weights(self, score, x, t, dt):
        delta = torch.full((x.shape[0], 1), self._delta(t, dt), dtype=score.dtype, device=score.device)
        return self.graph.staggered_score(score, delta) * self.graph.transp_transition(x, delta).to(
            score.dtype
        )

    def masked_weights(self, score_sum, t, dt):
        # staggered score at column M: e^D s_M + (1 - e^D) sum_all s; times transp_transition 1
        # -> s_M - (e^D - 1) sum_{j<V} s_j with s_M = 1; at j < V: e^D s_j (1 - e^-D) = (e^D - 1) s_j
        c = math.expm1(self._delta(t, dt))
        return c, 1 - c * score_sum


@register_predictor("none")
class NonePredictor(Predictor):
    """The identity (no update); useful with the denoiser alone."""

    def update(self, model_fn, x, t, dt):
        return x


# --- the driver ---------------------------------------------------------------------------------


@dataclass
class StepEvent:
    """Progress of `generate`, passed to ``on_step``.

    `step` 0 is the initial state (after the projector), 1..`steps` the predictor steps, and
    ``steps + 1`` the denoised result (`phase` "start" | "step" | "denoise"). `x` ``[B, L]`` are
    the ids after the update (on the sampling device), `changed` ``[B, L]`` marks positions whose
    id changed in this update. `t` and `sigma` are the time and total noise the network saw
    (for "start": t = 1). `batch` numbers the batches of one `sample` / `infill` call.
    """

    step: int
    steps: int
    t: float
    sigma: float
    x: torch.Tensor
    changed: torch.Tensor
    phase: str = "step"
    batch: int = 0
    offset: int = 0  # index of the batch's first sequence among all samples


def _model_call(model: Any, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Log-score ``[B, L, D]`` at total noise `sigma` (float32 sigma per sequence)."""
    return model(x, torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32))


def _masked_rows_logits(model: Any, x: torch.Tensor, sigma: float, idx: tuple[torch.Tensor, ...], V: int):
    """At the masked positions `idx` (a nonzero() tuple): the token log-weights ``z [N, V]`` and
    ``offset [N]`` with log score_j = z_j - offset for j < V (the mask column is the current
    token, score 1). Uses `features` + `head_logits` (head on these rows, real columns only) when
    the model has them, else the rows of the full output."""
    sig = torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32)
    if hasattr(model, "head_logits") and hasattr(model, "features"):
        a = model.features(x, sig)  # [B, L, d]
        return model.head_logits(a[idx], sig[idx[0]], columns=V)
    log_score = model(x, sig)[idx]  # [N, D]
    return log_score[:, :V], torch.zeros(idx[0].numel(), dtype=torch.float32, device=x.device)


def nucleus(weights: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p filter of non-negative `weights` ``[N, V]``: keep, per row, the largest weights whose
    mass before them is below ``top_p`` of the row's total (so the largest is always kept, and the
    kept set is the smallest whose mass reaches ``top_p``); the rest become 0."""
    w, order = weights.sort(dim=-1, descending=True)  # [N, V]
    before = w.cumsum(dim=-1) - w  # mass of the larger weights
    keep = before < top_p * w.sum(dim=-1, keepdim=True)
    return torch.zeros_like(weights).scatter_(-1, order, w * keep)


def _draw_tokens(
    z: torch.Tensor,
    generator: torch.Generator | None,
    precision: str,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """One draw per row from weights proportional to exp(z / temperature) ``[N', V]`` (rows
    normalised first), restricted to the top-p nucleus when ``top_p < 1``; temperature 0 takes the
    arg-max."""
    dtype = _DTYPES[precision]
    z = z.to(dtype)
    if temperature == 0:
        return z.argmax(dim=-1)
    if temperature != 1:
        z = z / temperature
    w = torch.exp(z - z.amax(dim=-1, keepdim=True))
    if top_p < 1:
        w = nucleus(w, top_p)
    return sample_categorical(w, generator, precision)


def _absorbing_step(
    model: Any,
    graph: Graph,
    predictor: Predictor,
    x: torch.Tensor,
    t: float,
    dt: float,
    sigma: float,
    generator: torch.Generator | None,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """One predictor step on the masked rows only (see the module docstring). `temperature` and
    `top_p` shape only the choice of token for the rows that leave the mask, not which rows do."""
    M = graph.mask_id
    idx = (x == M).nonzero(as_tuple=True)  # ([N], [N])
    if idx[0].numel() == 0:
        return x
    z, offset = _masked_rows_logits(model, x, sigma, idx, M)  # [N, V], [N]
    # sum_{j<V} score_j = exp(logsumexp(z) - offset): one fused pass, no [N, V] exp copy
    score_sum = torch.exp(torch.logsumexp(z.float(), dim=-1).double() - offset.double())  # [N]
    c, stay = predictor.masked_weights(score_sum, t, dt)
    stay = stay.clamp(min=0)  # a negative weight counts as 0 (the reference's arg-max never picks it)
    move = c * score_sum  # [N]
    total = stay + move
    u = torch.rand(stay.shape, dtype=predictor.dtype, device=x.device, generator=generator)
    leave = (u * total >= stay) & (total > 0)  # P(leave) = move / total
    rows = leave.nonzero(as_tuple=True)[0]  # [N']
    if rows.numel() == 0:
        return x
    new = _draw_tokens(z[rows], generator, predictor.precision, temperature, top_p)  # [N'] (c, offset cancel)
    x = x.clone()
    x.index_put_((idx[0][rows], idx[1][rows]), new)
    return x


def _denoise(
    model: Any,
    graph: Graph,
    noise: Noise,
    x: torch.Tensor,
    eps: float,
    precision: str,
    generator: torch.Generator | None,
    fast: bool,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, float]:
    """Tweedie denoiser at t = eps: weights ``staggered_score(score, sigma) * transp_transition(x,
    sigma)``; absorbing: mask column dropped, so every mask resolves to j w.p. prop. to score_j."""
    sigma, _ = _sigma(noise, eps)
    dtype = _DTYPES[precision]
    if graph.absorb and fast:
        M = graph.mask_id
        idx = (x == M).nonzero(as_tuple=True)
        if idx[0].numel() == 0:
            return x, sigma
        z, _ = _masked_rows_logits(model, x, sigma, idx, M)  # [N, V]
        new = _draw_tokens(z, generator, precision, temperature, top_p)  # weights (e^sigma - 1) score_j
        x = x.clone()
        x.index_put_(idx, new)
        return x, sigma
    score = _model_call(model, x, sigma).to(dtype).exp()
    s = torch.full((x.shape[0], 1), sigma, dtype=dtype, device=x.device)  # [B, 1]
    w = graph.staggered_score(score, s) * graph.transp_transition(x, s).to(dtype)
    if graph.absorb:
        w = w[..., :-1]
    return sample_categorical(w, generator, precision), sigma


def generate(
    model: Any,
    graph: Graph,
    noise: Noise,
    *,
    batch_size: int,
    length: int,
    steps: int,
    predictor: str | Predictor = "analytic",
    eps: float = 1e-5,
    denoise: bool = True,
    precision: str = "float64",
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    projector: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_step: Callable[[StepEvent], None] | None = None,
    fast: bool = True,
    batch_index: int = 0,
    offset: int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> torch.LongTensor:
    """Sample one batch ``[batch_size, length]`` of ids by the reverse process (module docstring).

    `model(x, sigma)` returns log-scores ``[B, L, D]``; `projector(x)` (infill) overwrites the
    given positions. `fast` uses the masked-rows path for the absorbing graph (False: the general
    formulas on every position, identical in distribution; for tests). The model is run in eval
    mode under ``torch.inference_mode``. `temperature` / `top_p` (absorbing graph, fast path
    only) reshape the token drawn when a position leaves the mask: weights exp(z / temperature)
    (0 = arg-max), restricted to the top-p nucleus; 1 and 1 sample the model as it is.
    """
    check_shaping(temperature, top_p)
    if not 1 <= steps <= MAX_STEPS:
        raise SeddError(f"steps must be between 1 and {MAX_STEPS:,}, got {steps}")
    if length < 1:
        raise SeddError(f"length must be at least 1, got {length}")
    if not 0 < eps < 1:
        raise SeddError(f"eps must be in (0, 1), got {eps}")
    _check_precision(precision)
    if device is None:
        try:
            device = next(model.parameters()).device
        except (AttributeError, StopIteration):
            device = torch.device("cpu")
    device = torch.device(device)
    pred = (
        predictor
        if isinstance(predictor, Predictor)
        else get_predictor(predictor, graph, noise, precision=precision, generator=generator)
    )
    use_rows = fast and graph.absorb and pred.masked_weights.__func__ is not Predictor.masked_weights
    only_denoise = fast and graph.absorb and isinstance(pred, NonePredictor)  # the fast denoiser draws
    if (temperature != 1 or top_p != 1) and not (use_rows or only_denoise):
        raise SeddError(
            "--temperature and --top-p apply to absorbing (mask) models with the analytic, euler or "
            "none predictor only; drop them here"
        )
    project = projector or (lambda x: x)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()

    def model_fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return model(x, sigma.float()).float().exp()

    def emit(step: int, t: float, sigma: float, x: torch.Tensor, prev: torch.Tensor, phase: str) -> None:
        if on_step is not None:
            on_step(StepEvent(step, steps, t, sigma, x, x != prev, phase, batch_index, offset))

    try:
        with torch.inference_mode():
            x = graph.sample_limit(batch_size, length, device=device, generator=generator)
            x = project(x)
            emit(0, 1.0, _sigma(noise, 1.0)[0], x, x, "start")
            ts = torch.linspace(1, eps, steps + 1, dtype=torch.float64).tolist()
            dt = (1 - eps) / steps
            for i in range(steps):
                x = project(x)
                prev = x
                t = ts[i]
                sigma = _sigma(noise, t)[0]
                if use_rows:
                    x = _absorbing_step(model, graph, pred, x, t, dt, sigma, generator, temperature, top_p)
                else:
                    x = pred.update(model_fn, x, t, dt)
                emit(i + 1, ts[i + 1], _sigma(noise, ts[i + 1])[0], x, prev, "step")  # the time it reached
            if denoise:
                x = project(x)
                prev = x
                x, sigma = _denoise(
                    model, graph, noise, x, eps, precision, generator, fast, temperature, top_p
                )
                x = project(x)
                emit(steps + 1, eps, sigma, x, prev, "denoise")
            else:
                x = project(x)
    finally:
        if was_training:
            model.train()
    return x


# --- high-level API: sample and infill ----------------------------------------------------------


@dataclass
class SampleResult:
    """Samples and how they were made. `ids` ``[num_samples, length]`` (CPU); `nfe` is the number
    of network evaluations per sample (steps + denoise)."""

    texts: list[str]
    ids: torch.Tensor
    steps: int
    predictor: str
    precision: str
    nfe: int
    seed: int
    wall_s: float
    source: str
    eps: float = 1e-5
    denoise: bool = True
    length: int = 0
    device: str = "cpu"
    temperature: float = 1.0
    top_p: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.source,
            "steps": self.steps,
            "predictor": self.predictor,
            "precision": self.precision,
            "nfe": self.nfe,
            "seed": self.seed,
            "wall_s": round(self.wall_s, 4),
            "eps": self.eps,
            "denoise": self.denoise,
            "length": self.length,
            "device": self.device,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "num_samples": len(self.texts),
            "samples": [{"text": t, "ids": i} for t, i in zip(self.texts, self.ids.tolist(), strict=True)],
        }


@dataclass
class InfillResult(SampleResult):
    """`spans[k]`: the ``(start, end)`` token ranges that were filled in sample k; `segments[k]`:
    the sample's text as ``(text, filled)`` pieces, in order."""

    spans: list[list[tuple[int, int]]] = field(default_factory=list)
    segments: list[list[tuple[str, bool]]] = field(default_factory=list)
    template: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["template"] = self.template
        for s, spans, segs in zip(out["samples"], self.spans, self.segments, strict=True):
            s["spans"] = [list(p) for p in spans]
            s["filled"] = [text for text, filled in segs if filled]
        return out


_MASK_RE = re.compile(r"\[MASK(?::(\d+))?\]")
_MASK_LIKE_RE = re.compile(r"\[\s*mask\b[^\[\]]{0,40}\]?", re.IGNORECASE)  # anything that tries to be one


def parse_template(template: str, tokenizer: Any, max_tokens: int | None = None) -> list[int | None]:
    """Token ids of a template, None at masked positions.

    ``[MASK]`` is one masked token, ``[MASK:5]`` five; the text between masks is tokenized piece
    by piece and placed exactly (so with GPT-2, "The [MASK] sat" keeps " sat" as its own tokens).
    Anything else that looks like a mask (``[MASK:x]``, ``[MASK:]``, ``[mask]``, an unclosed
    ``[MASK:3``) is refused before tokenizing, whatever the tokenizer. `max_tokens` (the model's
    length) bounds the masked positions; without it, at most `MAX_SAMPLES` per mask.
    """
    limit = MAX_SAMPLES if max_tokens is None else max_tokens
    out: list[int | None] = []
    pos = 0
    n_masks = 0
    for m in _MASK_RE.finditer(template):
        if m.start() > pos:
            out.extend(_encode_piece(template[pos : m.start()], tokenizer))
        digits = m.group(1)
        if digits is not None and len(digits.lstrip("0")) > len(str(limit)):
            k = limit + 1  # too many digits to convert: certainly above the limit
        else:
            k = int(digits) if digits is not None else 1
        if k < 1:
            raise SeddError(f"{m.group(0)} in the template: a mask needs a count of at least 1")
        n_masks += k
        if n_masks > limit:
            what = "the model's length" if max_tokens is not None else "the limit"
            raise SeddError(
                f"{m.group(0)[:40]} in the template: more masked tokens than {what} {limit:,}; ask for fewer"
            )
        out.extend([None] * k)
        pos = m.end()
    if pos < len(template):
        out.extend(_encode_piece(template[pos:], tokenizer))
    if n_masks == 0:
        raise SeddError(
            "the template has no [MASK]: mark the positions to fill with [MASK] (one token) or "
            "[MASK:N] (N tokens), e.g. 'The [MASK:5] sat on the [MASK].'"
        )
    return out


def _encode_piece(text: str, tokenizer: Any) -> list[int]:
    """The ids of the text between two masks; a malformed mask in it is refused first."""
    bad = _MASK_LIKE_RE.search(text)
    if bad is not None:
        raise SeddError(
            f"malformed mask {bad.group(0)!r} in the template: write [MASK] for one token or "
            "[MASK:N] for N tokens (N a whole number, at least 1)"
        )
    return tokenizer.encode(text)


def _is_pad_layout(pre: Any) -> bool:
    return getattr(pre.config.data, "layout", "pack") == "pad" and pre.tokenizer.pad_id is not None


def decode_samples(ids: torch.Tensor, tokenizer: Any, *, pad_layout: bool, keep_eos: bool) -> list[str]:
    """Texts of the rows of `ids`. Pad-layout models: pads (and, unless `keep_eos`, everything from
    the first end-of-text id) are dropped. Other models: unless `keep_eos`, leading end-of-text ids
    are skipped and the text is cut at the next one. Remaining masks (``--no-denoise``) show as
    ``[MASK]``."""
    out = []
    eos = tokenizer.eos_id
    for row in ids.tolist():
        if not keep_eos and eos is not None:
            if not pad_layout:
                while row and row[0] == eos:
                    row = row[1:]
            if eos in row:
                row = row[: row.index(eos)]
        out.append(tokenizer.decode(row, mask="[MASK]", skip_special=pad_layout))
    return out


def _validate(steps, num_samples, batch_size, length, max_length) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise SeddError(f"--steps must be between 1 and {MAX_STEPS:,}, got {steps}")
    if not 1 <= num_samples <= MAX_SAMPLES:
        raise SeddError(
            f"--num-samples must be between 1 and {MAX_SAMPLES:,}, got {num_samples}: "
            "run several calls with different --seed for more"
        )
    if batch_size < 1:
        raise SeddError(f"--batch-size must be at least 1, got {batch_size}")
    _validate_length(length, max_length)


def _validate_length(length: int, max_length: int) -> None:
    if length < 1:
        raise SeddError(f"--length must be at least 1, got {length}")
    if length > max_length:
        raise SeddError(
            f"--length {length} is longer than the model's trained length {max_length}: "
            f"use at most {max_length}"
        )


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def _run_batches(
    pre: Any,
    *,
    num_samples: int,
    batch_size: int,
    run_length: int,
    steps: int,
    predictor: str,
    eps: float,
    denoise: bool,
    precision: str,
    seed: int,
    fixed: torch.Tensor | None,
    on_step: Callable[[StepEvent], None] | None,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, float]:
    """All samples ``[num_samples, run_length]`` in batches of at most `batch_size`; `fixed`
    ``[run_length]`` holds the given ids (-1 = free). Returns ids on the CPU and wall seconds."""
    device = pre.device
    gen = _generator(seed, device)
    get_predictor(predictor, pre.graph, pre.noise)  # validate the name before any work
    projector = None
    if fixed is not None:
        fixed_d = fixed.to(device)
        given = fixed_d >= 0  # [L]

        def projector(x: torch.Tensor) -> torch.Tensor:
            return torch.where(given, fixed_d, x)

    start = time.perf_counter()
    chunks = []
    for b, first in enumerate(range(0, num_samples, batch_size)):
        n = min(batch_size, num_samples - first)
        x = generate(
            pre.model,
            pre.graph,
            pre.noise,
            batch_size=n,
            length=run_length,
            steps=steps,
            predictor=predictor,
            eps=eps,
            denoise=denoise,
            precision=precision,
            device=device,
            generator=gen,
            projector=projector,
            on_step=on_step,
            batch_index=b,
            offset=first,
            temperature=temperature,
            top_p=top_p,
        )
        chunks.append(x.cpu())
    return torch.cat(chunks), time.perf_counter() - start


def _defaults(pre: Any, steps, predictor, num_samples, batch_size, eps, denoise, precision):
    s = pre.config.sample
    return (
        s.steps if steps is None else steps,
        s.predictor if predictor is None else predictor,
        s.num_samples if num_samples is None else num_samples,
        s.batch_size if batch_size is None else batch_size,
        s.eps if eps is None else eps,
        s.denoise if denoise is None else denoise,
        s.precision if precision is None else precision,
    )


def _shaping(pre: Any, temperature: float | None, top_p: float | None) -> tuple[float, float]:
    s = pre.config.sample
    temperature = s.temperature if temperature is None else float(temperature)
    top_p = s.top_p if top_p is None else float(top_p)
    check_shaping(temperature, top_p)
    return temperature, top_p


def _pad_tail(pre: Any, length: int) -> tuple[int, torch.Tensor | None]:
    """(run length, fixed ids or None): pad-layout models always run at their trained length with
    the positions from `length` on fixed to the pad id, as in training."""
    L = pre.config.model.length
    if _is_pad_layout(pre) and length < L:
        fixed = torch.full((L,), -1, dtype=torch.long)
        fixed[length:] = pre.tokenizer.pad_id
        return L, fixed
    return length, None


def sample(
    source: Any = None,
    *,
    steps: int | None = None,
    predictor: str | None = None,
    num_samples: int | None = None,
    batch_size: int | None = None,
    length: int | None = None,
    seed: int = 0,
    device: str = "auto",
    eps: float | None = None,
    denoise: bool | None = None,
    precision: str | None = None,
    keep_eos: bool = False,
    on_step: Callable[[StepEvent], None] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
) -> SampleResult:
    """Unconditional samples from a model.

    `source`: a run directory, checkpoint, model folder or pretrained id (see
    `checkpoint.load_pretrained`; None = the newest run under ``./runs``), or an already loaded
    `Pretrained`. Options left None come from the model's ``sample`` settings. `length` defaults
    to the model's trained length; for pad-layout models (names) a shorter `length` fixes the
    positions after it to the pad id, so texts have at most `length` tokens.
    """
    pre = _load(source, device)
    steps, predictor, num_samples, batch_size, eps, denoise, precision = _defaults(
        pre, steps, predictor, num_samples, batch_size, eps, denoise, precision
    )
    temperature, top_p = _shaping(pre, temperature, top_p)
    length = pre.config.model.length if length is None else length
    _validate(steps, num_samples, batch_size, length, pre.config.model.length)
    _check_precision(precision)
    run_length, fixed = _pad_tail(pre, length)
    ids, wall = _run_batches(
        pre,
        num_samples=num_samples,
        batch_size=batch_size,
        run_length=run_length,
        steps=steps,
        predictor=predictor,
        eps=eps,
        denoise=denoise,
        precision=precision,
        seed=seed,
        fixed=fixed,
        on_step=on_step,
        temperature=temperature,
        top_p=top_p,
    )
    ids = ids[:, :length]
    texts = decode_samples(ids, pre.tokenizer, pad_layout=_is_pad_layout(pre), keep_eos=keep_eos)
    return SampleResult(
        texts=texts,
        ids=ids,
        steps=steps,
        predictor=predictor,
        precision=precision,
        nfe=steps + int(denoise),
        seed=seed,
        wall_s=wall,
        source=pre.source,
        eps=eps,
        denoise=denoise,
        length=length,
        device=str(pre.device),
        temperature=temperature,
        top_p=top_p,
    )


def _load(source: Any, device: str) -> Any:
    if hasattr(source, "model") and hasattr(source, "graph") and hasattr(source, "tokenizer"):
        return source
    from .checkpoint import load_pretrained

    return load_pretrained(None if source is None else str(source), device=device)


def _spans(free: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True in `free` as (start, end) pairs."""
    spans, start = [], None
    for i, f in enumerate(list(free) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _slots(
    pre: Any, template: str | None, prefix: str | None, suffix: str | None, length: int | None
) -> tuple[list[int | None], int]:
    """(the row's token ids with None at the positions to fill, the row length) for a template or
    a prefix/suffix pair, checked against the model's length."""
    tok = pre.tokenizer
    max_len = pre.config.model.length
    if template is not None:
        if prefix or suffix:
            raise SeddError("give either a TEMPLATE or --prefix/--suffix, not both")
        if length is not None:
            _validate_length(length, max_len)
        slots = parse_template(template, tok, max_tokens=max_len)
        if length is None:
            length = len(slots) if not _is_pad_layout(pre) else max_len
        if len(slots) > length:
            raise SeddError(
                f"the template is {len(slots)} tokens long, more than the length {length}: "
                "shorten it or raise --length"
            )
        tail_id = tok.pad_id if _is_pad_layout(pre) else None
        slots = slots + [tail_id] * (length - len(slots))
    else:
        if not prefix and not suffix:
            raise SeddError(
                "nothing to infill around: give a TEMPLATE with [MASK], or --prefix and/or --suffix"
            )
        length = max_len if length is None else length
        _validate_length(length, max_len)
        pre_ids = tok.encode(prefix or "")
        suf_ids = tok.encode(suffix or "")
        if len(pre_ids) + len(suf_ids) > length:
            raise SeddError(
                f"prefix + suffix are {len(pre_ids) + len(suf_ids)} tokens, more than the length {length}: "
                "shorten them or raise --length"
            )
        slots = [*pre_ids, *([None] * (length - len(pre_ids) - len(suf_ids))), *suf_ids]
        if all(s is not None for s in slots):
            raise SeddError(
                "prefix + suffix fill the whole length: nothing is left to infill; raise --length"
            )
    return slots, length


def infill(
    source: Any = None,
    *,
    prefix: str | None = None,
    suffix: str | None = None,
    template: str | None = None,
    length: int | None = None,
    steps: int | None = None,
    predictor: str | None = None,
    num_samples: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    eps: float | None = None,
    denoise: bool | None = None,
    precision: str | None = None,
    keep_eos: bool = False,
    on_step: Callable[[StepEvent], None] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
) -> InfillResult:
    """Fill the masked positions of a template, or the gap between a prefix and a suffix.

    Template form (`template`): ``[MASK]`` = one token to fill, ``[MASK:N]`` = N tokens; the text
    in between is tokenized piecewise and kept exactly. Its length is the template's token count
    (`length` may extend it: the extra positions are free, or pad for pad-layout models).
    Prefix/suffix form: the prefix ids at positions ``0..``, the suffix ids ending at ``length - 1``
    (`length` defaults to the model's length). Given tokens are re-imposed before every step
    (the projector), so they never change. Other options as in `sample`.
    """
    pre = _load(source, device)
    steps, predictor, num_samples, batch_size, eps, denoise, precision = _defaults(
        pre, steps, predictor, num_samples, batch_size, eps, denoise, precision
    )
    temperature, top_p = _shaping(pre, temperature, top_p)
    max_len = pre.config.model.length
    try:
        slots, length = _slots(pre, template, prefix, suffix, length)
    except UnencodableText as exc:  # say which model's vocabulary it was
        raise UnencodableText(f"model {pre.source}: {exc}") from None
    tok = pre.tokenizer
    _validate(steps, num_samples, batch_size, length, max_len)
    _check_precision(precision)
    run_length, tail = _pad_tail(pre, length)
    fixed = torch.full((run_length,), -1, dtype=torch.long)
    fixed[:length] = torch.tensor([-1 if s is None else s for s in slots], dtype=torch.long)
    if tail is not None:
        fixed[length:] = tail[length:]
    ids, wall = _run_batches(
        pre,
        num_samples=num_samples,
        batch_size=batch_size,
        run_length=run_length,
        steps=steps,
        predictor=predictor,
        eps=eps,
        denoise=denoise,
        precision=precision,
        seed=seed,
        fixed=fixed,
        on_step=on_step,
        temperature=temperature,
        top_p=top_p,
    )
    ids = ids[:, :length]
    free = [s is None for s in slots]
    spans = _spans(free)
    pad_layout = _is_pad_layout(pre)
    texts, segments = [], []
    for row in ids.tolist():
        segs = []
        pos = 0
        for a, b in [*spans, (length, length)]:
            if a > pos:
                segs.append((_decode_piece(tok, row[pos:a], pad_layout, keep_eos), False))
            if b > a:
                segs.append((_decode_piece(tok, row[a:b], pad_layout, keep_eos), True))
            pos = b
        segments.append(segs)
        texts.append("".join(s for s, _ in segs))
    return InfillResult(
        texts=texts,
        ids=ids,
        steps=steps,
        predictor=predictor,
        precision=precision,
        nfe=steps + int(denoise),
        seed=seed,
        wall_s=wall,
        source=pre.source,
        eps=eps,
        denoise=denoise,
        length=length,
        device=str(pre.device),
        temperature=temperature,
        top_p=top_p,
        spans=[list(spans) for _ in texts],
        segments=segments,
        template=template,
    )


def _decode_piece(tok: Any, ids: list[int], pad_layout: bool, keep_eos: bool) -> str:
    """A span of an infilled sample: end-of-text ids are dropped (not cut: the given text after
    them must stay) unless `keep_eos`; pads are dropped for pad-layout models."""
    if not keep_eos and tok.eos_id is not None:
        ids = [i for i in ids if i != tok.eos_id]
    return tok.decode(ids, mask="[MASK]", skip_special=pad_layout or not keep_eos)
