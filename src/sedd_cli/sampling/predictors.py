"""Predictors: one reverse step ``x_t -> x_{t - dt}`` each, network call included, and their registry.

* ``euler``: weights ``onehot(x) + dt * dsigma(t) * reverse_rate(x, score)`` (tau-leaping).
* ``analytic``: with ``Delta = sigma(t) - sigma(t - dt)``, weights
  ``staggered_score(score, Delta) * transp_transition(x, Delta)`` ("Tweedie tau-leaping").
* ``none``: identity.

Both draw one categorical per position from the (unnormalised) weights.

A predictor owns its step: `Predictor.step(model, x, t, dt)` calls the network and draws. The
classes here are the general path (every position, any graph); `absorbing.py` registers, under
the same names, the masked-rows classes the absorbing graph uses by default. The registry maps a
user-facing name to its general class (`PREDICTORS`) and, optionally, its absorbing fast class;
`get_predictor` picks by (name, graph kind, `fast`). One instance serves one `generate` call, so a
predictor may keep state across its steps.

Adding one: subclass `Predictor`, implement `weights(score, x, t, dt)` (or `step` itself), and
decorate with ``@register_predictor("name")``; a masked-rows variant for the absorbing graph is a
second class registered with ``@register_predictor("name", absorbing=True)`` (see `absorbing.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import SeddError
from ..graph import Graph
from ..noise import Noise
from .checks import check_precision
from .draws import sample_categorical
from .network import score as network_score
from .network import sigma_at


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

    def __init__(
        self,
        graph: Graph,
        noise: Noise,
        *,
        precision: str = "float64",
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ):
        self.check_shaping_support(temperature, top_p)
        self.graph = graph
        self.noise = noise
        self.precision = precision
        self.dtype = check_precision(precision)
        self.generator = generator
        self.temperature = temperature
        self.top_p = top_p

    @classmethod
    def check_shaping_support(cls, temperature: float, top_p: float) -> None:
        """Refuse shaping (temperature or top-p not 1) unless the class honours it (`shapes`)."""
        if (temperature != 1 or top_p != 1) and not cls.shapes:
            raise SeddError(
                "--temperature and --top-p apply to absorbing (mask) models with the analytic, "
                "euler or none predictor only; drop them here"
            )

    def weights(self, score: torch.Tensor, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        """Unnormalised transition weights ``[..., D]`` from the score at sigma(t)."""
        raise NotImplementedError

    def step(self, model: Any, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        """The general path: the score on every position, `weights`, one draw per position."""
        sigma, _ = sigma_at(self.noise, t)
        score = network_score(model, x, sigma)  # [B, L, D]
        w = self.weights(score.to(self.dtype), x, t, dt)
        return sample_categorical(w, self.generator, self.precision)


PREDICTORS: dict[str, type[Predictor]] = {}  # name -> the general class (any graph)
ABSORBING_PREDICTORS: dict[str, type[Predictor]] = {}  # name -> the absorbing masked-rows class


def register_predictor(name: str, *, absorbing: bool = False) -> Callable[[type[Predictor]], type[Predictor]]:
    """Class decorator: make a `Predictor` subclass available as ``--predictor NAME``; with
    `absorbing`, as the masked-rows variant of NAME that the absorbing graph uses when fast."""

    def add(cls: type[Predictor]) -> type[Predictor]:
        cls.name = name
        (ABSORBING_PREDICTORS if absorbing else PREDICTORS)[name] = cls
        return cls

    return add


def check_predictor(name: str, option: str = "--predictor") -> None:
    if name not in PREDICTORS:
        raise SeddError(f"{option}: unknown predictor {name!r}: choose from {', '.join(PREDICTORS)}")


def predictor_class(name: str, graph: Graph, *, fast: bool = True) -> type[Predictor]:
    """The class registered as `name` for `graph`: the absorbing masked-rows variant when the graph
    absorbs, `fast` is set and one is registered, else the general class."""
    check_predictor(name)
    if fast and graph.absorb and name in ABSORBING_PREDICTORS:
        return ABSORBING_PREDICTORS[name]
    return PREDICTORS[name]


def get_predictor(
    name: str,
    graph: Graph,
    noise: Noise,
    *,
    fast: bool = True,
    precision: str = "float64",
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> Predictor:
    """A fresh predictor `name` for `graph` (see `predictor_class`), for one `generate` call."""
    cls = predictor_class(name, graph, fast=fast)
    return cls(graph, noise, precision=precision, generator=generator, temperature=temperature, top_p=top_p)


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
