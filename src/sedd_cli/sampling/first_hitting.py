"""The first-hitting sampler (Zheng et al. 2024, arXiv 2409.02908): the absorbing reverse process
simulated exactly, one unmasking event at a time.

**Derivation.** Under the absorbing forward process a token is masked by time s with probability
``m(s) = 1 - e^-sigma(s)``, independently of the other tokens and of the data, so its masking time
tau has ``P(tau <= s) = m(s)``. Given that a position is masked at time t, ``P(tau <= s | tau <=
t) = m(s) / m(t)`` for s <= t. Reversing time, tau is the moment the position is *unmasked*. With
n masked positions at t their taus are independent with this law, so the next unmasking time is
their maximum, ``P(max <= s) = (m(s) / m(t))^n``; by the inverse CDF with ``U ~ U(0, 1)``:

    m(s) = m(t) U^(1/n),   sigma(s) = -log(1 - m(s)),   s = sigma^-1(sigma(s))

(LogLinear: m(t) = (1 - eps) t, so s = t U^(1/n); `Noise.inverse` gives s for any schedule that
has one, and only names the time: the network reads sigma). Which position unmasks is uniform
among the n (they are exchangeable), and between t and s nothing else changes, so its token is
drawn from p0(x^i = j | the unmasked tokens of x_t): for a time-conditioned SEDD model the
normalised score at sigma(s) (softmax of the real-token log-scores, exact when the score is);
for a time-independent model the conditional c(x), which needs no time at all, so there the
times are not drawn: the order is a uniformly random permutation and every sequence of the batch
advances together. The walk ends when nothing is masked: no final denoiser is needed, and the
samples are the model's own distribution, the limit of infinitely many Euler / analytic steps, in
exactly one network call per unmasked token (``L`` for an unconditional sample).

Per call the network needs the conditional at ONE position per sequence: the trunk runs on the
batch and the output head on those rows only (`network.event_logits`). Times are per sequence
(sigma is a ``[B]`` tensor), floored at sigma(eps) (the end of the grid) where the network was
trained; `--steps` does not apply (the walk takes as many calls as there are masked positions).

**tokens_per_step K > 1** (approximate, fewer calls): the next K events of a sequence (K random
masked positions; for time-conditioned models K successive times, ``m <- m U^(1/n)``,
``m <- m U^(1/(n - 1))``, ...) from one network call at the first event's time, their tokens
drawn independently from it, so the tokens unmasked together ignore each other.
Temperature / top-p shape the token draw (``draw_tokens``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import SeddError
from ..noise import Noise
from .draws import draw_tokens
from .network import event_logits, sigma_at, time_independent
from .predictors import Predictor, TimeGrid, register_predictor


def check_first_hitting(absorb: bool, noise: Noise) -> None:
    """The first-hitting sampler needs the absorbing graph and a schedule with an inverse."""
    if not absorb:
        raise SeddError(
            "--predictor first-hitting needs an absorbing (mask) model; this one uses the uniform "
            "graph: choose analytic or euler"
        )
    if type(noise).inverse is Noise.inverse:
        raise SeddError(
            f"--predictor first-hitting needs a noise schedule with an inverse sigma^-1 (loglinear "
            f"or geometric), not {type(noise).__name__}"
        )


@register_predictor("first-hitting")
class FirstHittingPredictor(Predictor):
    """Exact absorbing sampler, one unmasking event per network call (module docstring)."""

    shapes = True
    events = True

    def __init__(self, graph, noise, **kw: Any):
        check_first_hitting(graph.absorb, noise)
        super().__init__(graph, noise, **kw)

    def step(self, model, x, t, dt):
        raise SeddError("the first-hitting predictor walks by events: call walk(), not step()")

    def planned_steps(self, x, grid):
        """ceil(n / K) network calls, n the masked positions of the fullest sequence."""
        return math.ceil(int((x == self.graph.mask_id).sum(dim=1).max()) / self.tokens_per_step)

    def walk(self, model, x, grid: TimeGrid, project, emit):
        """Events until nothing is masked; ``emit(i, events, t, sigma, x, prev, "step")`` after
        each network call, with the time the batch reached (the latest sequence's). That time is
        read back from the device only when someone listens (``emit.active``, set by the driver):
        without a live view the loop has no host synchronisation of its own for it."""
        x = project(x)
        M = self.graph.mask_id
        n0 = int((x == M).sum(dim=1).max())  # masked positions of the fullest sequence
        events = self.planned_steps(x, grid)
        floor = sigma_at(self.noise, grid.eps)[0]
        m = torch.full((x.shape[0],), -math.expm1(-sigma_at(self.noise, 1.0)[0]), dtype=torch.float64)
        m = m.to(x.device)  # [B] masking probability at each sequence's time
        ti = time_independent(model)
        for i in range(1, events + 1):
            x = project(x)
            prev = x
            x, m = self._event(model, x, m, floor, ti)
            if getattr(emit, "active", True):
                shown = m.max() if not ti else m[0] * int((x == M).sum(dim=1).max()) / max(n0, 1)
                sigma = max(-math.log1p(-float(shown)), floor)
                t = float(self.noise.inverse(torch.tensor(sigma, dtype=torch.float64)))
                emit(i, events, t, sigma, x, prev, "step")
        return project(x)

    def _event(self, model, x, m, floor: float, ti: bool):
        """One network call: K uniformly random masked positions per sequence get their tokens."""
        M = self.graph.mask_id
        masked = x == M  # [B, L]
        n = masked.sum(dim=1)  # [B]
        keys = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=self.generator)
        top, pos = keys.masked_fill(~masked, -1.0).topk(min(self.tokens_per_step, x.shape[1]), dim=1)
        valid = top >= 0  # [B, K]: a masked position was chosen
        sigma = None
        if not ti:
            m, sigma = self._times(m, n, valid, floor)
        live = n > 0  # [B] sequences with a masked position: the network runs on these only
        b, j = valid.nonzero(as_tuple=True)  # [N], [N]
        p = pos[b, j]
        local = torch.cumsum(live, 0) - 1  # index of a live sequence among the live ones
        xs, sig = (x, sigma) if bool(live.all()) else (x[live], None if ti else sigma[live])
        self.calls.add(xs.shape[0])
        z = event_logits(model, xs, sig, (local[b], p), M)  # [N, V]
        new = draw_tokens(z, self.generator, self.precision, self.temperature, self.top_p)
        x = x.clone()
        x[b, p] = new
        return x, m

    def _times(self, m, n, valid, floor: float):
        """The next event times of each sequence, as masking probabilities: ``m <- m U^(1/n)``
        once per chosen position (n decreasing); the network's sigma ``[B]`` (float32) is the
        first event's, floored at `floor`."""
        first = None
        for j in range(valid.shape[1]):
            u = torch.rand(m.shape, dtype=torch.float64, device=m.device, generator=self.generator)
            m = torch.where(valid[:, j], m * u.pow(1.0 / (n - j).clamp(min=1)), m)
            first = m if first is None else first
        sigma = (-torch.log1p(-first)).clamp(min=floor)
        return m, sigma.float()
