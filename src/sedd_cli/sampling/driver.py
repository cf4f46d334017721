"""The reverse process of sedd-spec §5: the walk, the projector, the final denoiser, the events.

`generate`: start from the limit distribution (all masks for the absorbing graph), apply the
projector, let the predictor walk (`Predictor.walk`: by default the time grid
``t_i = linspace(1, eps, steps + 1)`` with ``dt = (1 - eps) / steps``, the projector then the
predictor's `step` at ``t_i``; the first-hitting predictor walks from one unmasking event to the
next instead), and finally (``denoise``) apply the projector and the Tweedie denoiser at
``t = eps``, and the projector once more. The denoiser finds nothing to do (and calls no network)
when no mask is left. How a step is taken is the predictor's business (`predictors.py`,
`absorbing.py`, `caching.py`, `first_hitting.py`); the driver picks only the predictor class (a
registry lookup by name, graph kind, `fast`, and whether the model is time-independent and the
cache on) and the denoiser: the masked-rows one for the absorbing graph when `fast`, else the
general formula. Network calls are counted (`network.NetworkCalls`): one per step that ran the
network plus one for the denoiser, ``steps + 1`` without the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..config import check_shaping
from ..graph import Graph
from ..noise import Noise
from .absorbing import denoise_masked_rows
from .checks import check_eps, check_length, check_precision, check_steps, check_tokens_per_step
from .draws import sample_categorical
from .network import NetworkCalls, log_score, sigma_at, time_independent
from .predictors import Predictor, TimeGrid, get_predictor


@dataclass
class StepEvent:
    """Progress of `generate`, passed to ``on_step``.

    `step` 0 is the initial state (after the projector), 1..`steps` the predictor steps (for the
    first-hitting predictor its network calls, one event each), and ``steps + 1`` the denoised
    result (`phase` "start" | "step" | "denoise"); `infill` with ``[MASK:A-B]`` gaps ends with one
    "final" event of all kept samples with the gaps' pads removed. `x` ``[B, L]`` are
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


@dataclass
class _Denoiser:
    """The final Tweedie step at t = eps (the masked-rows variant when `fast` on the absorbing graph)."""

    graph: Graph
    noise: Noise
    eps: float
    precision: str
    generator: torch.Generator | None
    fast: bool
    temperature: float = 1.0
    top_p: float = 1.0
    calls: NetworkCalls | None = None

    def __call__(self, model: Any, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Weights ``staggered_score(score, sigma) * transp_transition(x, sigma)``; absorbing: mask
        column dropped, so every mask resolves to j w.p. prop. to score_j."""
        sigma, _ = sigma_at(self.noise, self.eps)
        if self.graph.absorb and self.fast:
            x = denoise_masked_rows(
                model, self.graph, x, sigma, self.generator, self.precision, self.temperature,
                self.top_p, self.calls,
            )  # fmt: skip
            return x, sigma
        dtype = check_precision(self.precision)
        if self.calls is not None:
            self.calls.add(x.shape[0])
        score = log_score(model, x, sigma).to(dtype).exp()
        s = torch.full((x.shape[0], 1), sigma, dtype=dtype, device=x.device)  # [B, 1]
        w = self.graph.staggered_score(score, s) * self.graph.transp_transition(x, s).to(dtype)
        if self.graph.absorb:
            w = w[..., :-1]
        return sample_categorical(w, self.generator, self.precision), sigma


def _device(model: Any, device: torch.device | str | None) -> torch.device:
    if device is None:
        try:
            device = next(model.parameters()).device
        except (AttributeError, StopIteration):
            device = torch.device("cpu")
    return torch.device(device)


def _predictor(predictor: str | Predictor, graph: Graph, noise: Noise, **kw: Any) -> Predictor:
    """A user's instance as it is (shaping and tokens per step checked against its class), else a
    fresh one by name."""
    if isinstance(predictor, Predictor):
        type(predictor).check_shaping_support(kw["temperature"], kw["top_p"])
        type(predictor).check_tokens_support(kw["tokens_per_step"])
        return predictor
    return get_predictor(predictor, graph, noise, **kw)


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
    cache: bool = True,
    tokens_per_step: int = 1,
    calls: NetworkCalls | None = None,
) -> torch.LongTensor:
    """Sample one batch ``[batch_size, length]`` of ids by the reverse process (module docstring).

    `model(x, sigma)` returns log-scores ``[B, L, D]``; `projector(x)` (infill) overwrites the
    given positions. `predictor`: a registered name (a fresh instance is made for this call, see
    `get_predictor`) or a `Predictor` instance. `fast` uses the masked-rows classes and denoiser
    for the absorbing graph (False: the general formulas on every position, identical in
    distribution; for tests). The model is run in eval mode under ``torch.inference_mode``.
    `temperature` / `top_p` (absorbing graph, fast path only) reshape the token drawn when a
    position leaves the mask: weights exp(z / temperature) (0 = arg-max), restricted to the top-p
    nucleus; 1 and 1 sample the model as it is.

    `cache` (default on): for a time-independent model (``model.time_conditioned`` False) the
    Euler and analytic predictors are the per-sequence cached classes (`caching.py`; same draws,
    same values, fewer network rows); False uses the uncached ones. `tokens_per_step` (the
    first-hitting predictor only): positions unmasked per network call, 1 to `length`. `calls`
    (a `NetworkCalls`, optional) receives the network calls made and the rows they ran.
    """
    check_shaping(temperature, top_p)
    check_steps(steps)
    check_length(length)
    check_eps(eps)
    check_precision(precision)
    check_tokens_per_step(tokens_per_step, length)
    device = _device(model, device)
    shaping = dict(temperature=temperature, top_p=top_p, tokens_per_step=tokens_per_step)
    cached = cache and time_independent(model)
    pred = _predictor(
        predictor, graph, noise, fast=fast, cached=cached, precision=precision, generator=generator, **shaping
    )
    counted = NetworkCalls() if calls is None else calls
    denoiser = None
    if denoise:
        denoiser = _Denoiser(graph, noise, eps, precision, generator, fast, temperature, top_p, counted)

    def emit(
        step: int, n: int, t: float, sigma: float, x: torch.Tensor, prev: torch.Tensor, phase: str
    ) -> None:
        if on_step is not None:
            on_step(StepEvent(step, n, t, sigma, x, x != prev, phase, batch_index, offset))

    emit.active = on_step is not None  # a walk may skip work that only the events need

    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.inference_mode():
            x = graph.sample_limit(batch_size, length, device=device, generator=generator)
            pred.calls = NetworkCalls()  # this call's count, also for a reused instance
            grid = TimeGrid(steps, eps)
            x = _reverse(model, noise, x, pred, denoiser, grid, projector or (lambda x: x), emit)
            counted.merge(pred.calls)
            return x
    finally:
        if was_training:
            model.train()


def _reverse(
    model: Any,
    noise: Noise,
    x: torch.Tensor,
    pred: Predictor,
    denoiser: _Denoiser | None,
    grid: TimeGrid,
    project: Callable[[torch.Tensor], torch.Tensor],
    emit: Callable[..., None],
) -> torch.Tensor:
    """The walk from the limit sample `x` at t = 1 down to t = eps (then the denoiser, if any).
    Events: 0 the start, then the predictor's ``1..n`` (`Predictor.planned_steps`), then the
    denoised state ``n + 1``."""
    x = project(x)
    n = pred.planned_steps(x, grid)
    emit(0, n, 1.0, sigma_at(noise, 1.0)[0], x, x, "start")
    x = pred.walk(model, x, grid, project, emit)
    if denoiser is not None:
        prev = x
        x, sigma = denoiser(model, x)
        x = project(x)
        emit(n + 1, n, grid.eps, sigma, x, prev, "denoise")
    return x
