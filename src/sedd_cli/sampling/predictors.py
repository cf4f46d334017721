"""Predictors: one reverse step ``x_t -> x_{t - dt}`` each, network call included, and their registry.

* ``euler``: weights ``onehot(x) + dt * dsigma(t) * reverse_rate(x, score)`` (tau-leaping).
* ``analytic``: with ``Delta = sigma(t) - sigma(t - dt)``, weights
  ``staggered_score(score, Delta) * transp_transition(x, Delta)`` ("Tweedie tau-leaping").
* ``none``: identity.

Both draw one categorical per position from the (unnormalised) weights.

A predictor owns its step: `Predictor.step(model, x, t, dt)` calls the network and draws, and
`Predictor.walk` runs the whole reverse walk (by default the time grid ``linspace(1, eps, steps +
1)``, one `step` per interval; the first-hitting sampler walks from one unmasking event to the
next instead). The classes here are the general path (every position, any graph); `absorbing.py`
registers, under the same names, the masked-rows classes the absorbing graph uses by default, and
`caching.py` the per-sequence cached ones for time-independent models. The registry maps a
user-facing name to its general class (`PREDICTORS`) and, optionally, its absorbing fast class and
its cached class; `get_predictor` picks by (name, graph kind, `fast`, `cached`). One instance
serves one `generate` call, so a predictor may keep state across its steps (the cache). Every
predictor counts its network calls in `calls` (`network.NetworkCalls`).

Adding one: subclass `Predictor`, implement `weights(score, x, t, dt)` (or `step` itself), and
decorate with ``@register_predictor("name")``; a masked-rows variant for the absorbing graph is a
second class registered with ``@register_predictor("name", absorbing=True)`` (see `absorbing.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SeddError
from ..graph import Graph
from ..noise import Noise
from .checks import check_precision
from .draws import sample_categorical
from .network import NetworkCalls, sigma_at
from .network import score as network_score


@dataclass(frozen=True)
class TimeGrid:
    """The time grid ``t_i = linspace(1, eps, steps + 1)`` with ``dt = (1 - eps) / steps``."""

    steps: int
    eps: float

    def times(self) -> list[float]:
        return torch.linspace(1, self.eps, self.steps + 1, dtype=torch.float64).tolist()

    @property
    def dt(self) -> float:
        return (1 - self.eps) / self.steps


class Predictor:
    """One reverse step ``x_t -> x_{t - dt}``. Subclasses set `name` (by `register_predictor`) and
    implement `weights` (the general formula, any graph), or override `step` altogether.

    ``step(model, x, t, dt)``: `model(x, sigma)` returns the log-score ``[B, L, D]`` at total
    noise ``sigma`` ``[B]``; `x` ``[B, L]`` are the ids at time `t`; `t` and `dt` are floats.
    Returns the ids at ``t - dt``. `shapes` (a class attribute) says whether the predictor honours
    `temperature` / `top_p` (the token drawn when a mask leaves); others refuse them.
    """

    name = "base"
    shapes = False  # honours temperature / top_p
    events = False  # walks from one unmasking event to the next: honours tokens_per_step

    def __init__(
        self,
        graph: Graph,
        noise: Noise,
        *,
        precision: str = "float64",
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        tokens_per_step: int = 1,
    ):
        self.check_shaping_support(temperature, top_p)
        self.check_tokens_support(tokens_per_step)
        self.graph = graph
        self.noise = noise
        self.precision = precision
        self.dtype = check_precision(precision)
        self.generator = generator
        self.temperature = temperature
        self.top_p = top_p
        self.tokens_per_step = tokens_per_step
        self.calls = NetworkCalls()

    @classmethod
    def check_tokens_support(cls, tokens_per_step: int) -> None:
        """Refuse ``tokens_per_step`` other than 1 unless the class walks by events (`events`)."""
        if tokens_per_step != 1 and not cls.events:
            raise SeddError(
                "--tokens-per-step applies to --predictor first-hitting only; drop it or choose "
                "that predictor"
            )

    @classmethod
    def check_shaping_support(cls, temperature: float, top_p: float) -> None:
        """Refuse shaping (temperature or top-p not 1) unless the class honours it (`shapes`)."""
        if (temperature != 1 or top_p != 1) and not cls.shapes:
            raise SeddError(
                "--temperature and --top-p apply to absorbing (mask) models with the analytic, "
                "euler, none or first-hitting predictor only; drop them here"
            )

    def weights(self, score: torch.Tensor, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        """Unnormalised transition weights ``[..., D]`` from the score at sigma(t)."""
        raise NotImplementedError

    def planned_steps(self, x: torch.Tensor, grid: TimeGrid) -> int:
        """How many events `walk` will emit from the projected start `x`: the grid's steps."""
        return grid.steps

    def walk(
        self,
        model: Any,
        x: torch.Tensor,
        grid: TimeGrid,
        project: Callable[[torch.Tensor], torch.Tensor],
        emit: Callable[..., None],
    ) -> torch.Tensor:
        """The reverse walk from `x` at t = 1 down to ``grid.eps``: before every step the projector,
        then `step` at ``t_i``; after it ``emit(step, steps, t, sigma, x, prev, "step")`` with the
        time it reached. Returns the projected end state (the driver's denoiser comes after)."""
        ts, dt = grid.times(), grid.dt
        for i in range(grid.steps):
            x = project(x)
            prev = x
            x = self.step(model, x, ts[i], dt)
            emit(i + 1, grid.steps, ts[i + 1], sigma_at(self.noise, ts[i + 1])[0], x, prev, "step")
        return project(x)

    def step(self, model: Any, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        """The general path: the score on every position, `weights`, one draw per position."""
        sigma, _ = sigma_at(self.noise, t)
        score = network_score(model, x, sigma)  # [B, L, D]
        self.calls.add(x.shape[0])
        w = self.weights(score.to(self.dtype), x, t, dt)
        return sample_categorical(w, self.generator, self.precision)


PREDICTORS: dict[str, type[Predictor]] = {}  # name -> the general class (any graph)
ABSORBING_PREDICTORS: dict[str, type[Predictor]] = {}  # name -> the absorbing masked-rows class
CACHED_PREDICTORS: dict[str, type[Predictor]] = {}  # name -> the cached class (time-independent)


def register_predictor(
    name: str, *, absorbing: bool = False, cached: bool = False
) -> Callable[[type[Predictor]], type[Predictor]]:
    """Class decorator: make a `Predictor` subclass available as ``--predictor NAME``; with
    `absorbing`, as the masked-rows variant of NAME that the absorbing graph uses when fast; with
    `cached`, as the per-sequence cached variant used for time-independent absorbing models."""

    def add(cls: type[Predictor]) -> type[Predictor]:
        cls.name = name
        table = CACHED_PREDICTORS if cached else ABSORBING_PREDICTORS if absorbing else PREDICTORS
        table[name] = cls
        return cls

    return add


def check_predictor(name: str, option: str = "--predictor") -> None:
    if name not in PREDICTORS:
        raise SeddError(f"{option}: unknown predictor {name!r}: choose from {', '.join(PREDICTORS)}")


def predictor_class(name: str, graph: Graph, *, fast: bool = True, cached: bool = False) -> type[Predictor]:
    """The class registered as `name` for `graph`: on the absorbing graph with `fast`, the cached
    variant when `cached` (the model is time-independent and the cache is on) and one is
    registered, else the masked-rows variant when one is registered; else the general class."""
    check_predictor(name)
    if fast and graph.absorb and cached and name in CACHED_PREDICTORS:
        return CACHED_PREDICTORS[name]
    if fast and graph.absorb and name in ABSORBING_PREDICTORS:
        return ABSORBING_PREDICTORS[name]
    return PREDICTORS[name]


def get_predictor(
    name: str,
    graph: Graph,
    noise: Noise,
    *,
    fast: bool = True,
    cached: bool = False,
    precision: str = "float64",
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    tokens_per_step: int = 1,
) -> Predictor:
    """A fresh predictor `name` for `graph` (see `predictor_class`), for one `generate` call."""
    cls = predictor_class(name, graph, fast=fast, cached=cached)
    return cls(
        graph, noise, precision=precision, generator=generator, temperature=temperature, top_p=top_p,
        tokens_per_step=tokens_per_step,
    )  # fmt: skip


@register_predictor("euler")
class EulerPredictor(Predictor):
    """tau-leaping: weights ``onehot(x) + dt dsigma(t) reverse_rate(x, score)`` (all positions
    jump in parallel). Absorbing + LogLinear: a mask becomes j with probability (dt / t) q_j."""

    def weights(self, score, x, t, dt):
        _, dsigma = sigma_at(self.noise, t)
        rate = (dt * dsigma) * self.graph.reverse_rate(x, score)
        return rate.scatter_add(-1, x[..., None], torch.ones_like(rate[..., :1]))


@register_predictor("analytic")
class AnalyticPredictor(Predictor):
    """Tweedie tau-leaping: with Delta = sigma(t) - sigma(t - dt), weights
    ``staggered_score(score, Delta) * transp_transition(x, Delta)``. Absorbing: a mask becomes j
    with weight ``(e^Delta - 1) score_j`` and stays with ``1 - (e^Delta - 1) sum_{j<V} score_j``."""

    def _delta(self, t: float, dt: float) -> float:
        return sigma_at(self.noise, t)[0] - sigma_at(self.noise, t - dt)[0]

    def weights(self, score, x, t, dt):
        delta = torch.full((x.shape[0], 1), self._delta(t, dt), dtype=score.dtype, device=score.device)
        return self.graph.staggered_score(score, delta) * self.graph.transp_transition(x, delta).to(
            score.dtype
        )


@register_predictor("none")
class NonePredictor(Predictor):
    """The identity (no update); useful with the denoiser alone."""

    def step(self, model, x, t, dt):
        return x
