"""The reverse process of sedd-spec §5: the time grid, the projector, the final denoiser, the events.

`generate`: start from the limit distribution (all masks for the absorbing graph), walk the time
grid ``t_i = linspace(1, eps, steps + 1)`` with ``dt = (1 - eps) / steps``; at every step apply
the projector, then the predictor's `step` at ``t_i``; finally (``denoise``) apply the projector
and the Tweedie denoiser at ``t = eps``, and the projector once more. One network evaluation per
step plus one for the denoiser (``nfe = steps + denoise``). How a step is taken is the
predictor's business (`predictors.py`, `absorbing.py`); the driver picks only the denoiser: the
masked-rows one for the absorbing graph when `fast`, else the general formula.
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
from .checks import check_eps, check_length, check_precision, check_steps
from .draws import sample_categorical
from .network import log_score, sigma_at
from .predictors import Predictor, get_predictor


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

    def __call__(self, model: Any, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Weights ``staggered_score(score, sigma) * transp_transition(x, sigma)``; absorbing: mask
        column dropped, so every mask resolves to j w.p. prop. to score_j."""
        sigma, _ = sigma_at(self.noise, self.eps)
        if self.graph.absorb and self.fast:
            x = denoise_masked_rows(
                model, self.graph, x, sigma, self.generator, self.precision, self.temperature, self.top_p
            )
            return x, sigma
        dtype = check_precision(self.precision)
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
    """A user's instance as it is (shaping checked against its class), else a fresh one by name."""
    if isinstance(predictor, Predictor):
        type(predictor).check_shaping_support(kw["temperature"], kw["top_p"])
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
    """
    check_shaping(temperature, top_p)
    check_steps(steps)
    check_length(length)
    check_eps(eps)
    check_precision(precision)
    device = _device(model, device)
    shaping = dict(temperature=temperature, top_p=top_p)
    pred = _predictor(predictor, graph, noise, fast=fast, precision=precision, generator=generator, **shaping)
    denoiser = _Denoiser(graph, noise, eps, precision, generator, fast, **shaping) if denoise else None

    def emit(step: int, t: float, sigma: float, x: torch.Tensor, prev: torch.Tensor, phase: str) -> None:
        if on_step is not None:
            on_step(StepEvent(step, steps, t, sigma, x, x != prev, phase, batch_index, offset))

    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.inference_mode():
            x = graph.sample_limit(batch_size, length, device=device, generator=generator)
            return _reverse(model, noise, x, pred, denoiser, steps, eps, projector or (lambda x: x), emit)
    finally:
        if was_training:
            model.train()


def _reverse(
    model: Any,
    noise: Noise,
    x: torch.Tensor,
    pred: Predictor,
    denoiser: _Denoiser | None,
    steps: int,
    eps: float,
    project: Callable[[torch.Tensor], torch.Tensor],
    emit: Callable[..., None],
) -> torch.Tensor:
    """The walk from the limit sample `x` at t = 1 down to t = eps (then the denoiser, if any)."""
    x = project(x)
    emit(0, 1.0, sigma_at(noise, 1.0)[0], x, x, "start")
    ts = torch.linspace(1, eps, steps + 1, dtype=torch.float64).tolist()
    dt = (1 - eps) / steps
    for i in range(steps):
        x = project(x)
        prev = x
        x = pred.step(model, x, ts[i], dt)
        emit(i + 1, ts[i + 1], sigma_at(noise, ts[i + 1])[0], x, prev, "step")  # the time it reached
    x = project(x)
    if denoiser is not None:
        prev = x
        x, sigma = denoiser(model, x)
        x = project(x)
        emit(steps + 1, eps, sigma, x, prev, "denoise")
    return x
