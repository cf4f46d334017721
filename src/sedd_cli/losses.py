"""The training objective: diffusion-weighted denoising score entropy (sedd-spec §2.4-2.5).

For clean ids x0 ``[B, L]``, one time per sequence t ~ U[eps, 1] (eps = 1e-3), total noise
sigma = sigma(t), x_t ~ exp(sigma Q) x0, and log-score s = model(x_t, sigma):

    loss(x0) = sum_l dsigma(t) * l(s_l, sigma, x_t[l], x0[l])     (nats per sequence)

where l is the graph's score entropy. For the absorbing graph l = 0 exactly at unmasked
positions, so the output head (a ``[d, D]`` matrix product, the dominant cost for GPT-2's
D = 50258) and the loss are computed at masked positions only (`masked_only=True`), over the V
real-token columns, with the positive term as one logsumexp (`Absorbing.masked_score_entropy_logits`).

**Time-independent absorbing models** (RADD, sedd-spec §9; ``model.time_conditioning: false``).
The network gives log c = log p_theta(x0_l = j | unmasked tokens of x_t) (j < V) and the log-score
s_j = log c_j - log(e^sigma - 1). Three objectives (`train.loss`, registry `LOSSES`):

* ``dse`` (RADD's t-DSE): `score_entropy_loss` unchanged, with that implied score. At a masked
  position, with r = 1 / (e^sigma - 1), sum_j e^{s_j} = r (c sums to 1), so the score entropy is
  r - r (log c[x0] + log r) + r (log r - 1) = -r log c[x0], and the loss is
  sum_masked dsigma * (-log c[x0]) / (e^sigma - 1).
* ``t-dce`` (`t_dce_loss`): RADD's t-DCE, the negative term only, as RADD writes it:
  sum_masked dsigma * (-(log c[x0] - log(e^sigma - 1))) / (e^sigma - 1). It differs from t-DSE by
  sum_masked dsigma log(e^sigma - 1) / (e^sigma - 1), which does not depend on the network: same
  gradients, but the value is not a bound.
* ``lambda-dce`` (`lambda_dce_loss`): change of variable lambda = 1 - e^-sigma (the masking
  probability): dsigma dt / (e^sigma - 1) = d lambda / lambda, so with lambda ~ U(0, 1] and each
  token masked with probability lambda, -sum_masked log c[x0] / lambda has expectation the
  continuous-time negative ELBO int_0^1 E[-sum_masked log c[x0]] d lambda / lambda. At lambda = 1
  every token is masked, which is the sampler's start: no prior term.

For a model whose c is the exact conditional of the data law p, the lambda-form bound equals
-log p(x0) exactly: for a fixed set S of k masked positions int_0^1 lambda^(k-1) (1 - lambda)^(L-k)
d lambda = 1 / (k C(L, k)), so the expectation is the average over uniformly random unmasking
orders of an autoregressive factorisation of p, each equal to -log p(x0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import SeddError
from .graph import Absorbing, Graph, esigm1, log_esigm1
from .model import SEDD
from .noise import Noise

__all__ = [
    "LossOutput",
    "sample_t",
    "score_entropy_loss",
    "t_dce_loss",
    "lambda_dce_loss",
    "sample_lambda",
    "mask_tokens",
    "lambda_bound_per_sequence",
    "TrainingLoss",
    "LOSSES",
    "get_loss",
    "training_loss",
]


@dataclass
class LossOutput:
    """Per-sequence loss ``[B]`` and the draws that produced it.

    For `lambda_dce_loss` the "time" is the masking probability: ``t`` holds lambda,
    ``sigma = -log(1 - lambda)`` and ``dsigma = d sigma / d lambda = 1 / (1 - lambda)``."""

    loss: torch.Tensor  # [B], nats per sequence (dse: dsigma-weighted sum of score entropy)
    t: torch.Tensor  # [B]
    sigma: torch.Tensor  # [B]
    dsigma: torch.Tensor  # [B]
    xt: torch.Tensor  # [B, L], the corrupted ids


def sample_t(
    batch: int,
    eps: float = 1e-3,
    device=None,
    generator: torch.Generator | None = None,
    stratified: bool = False,
) -> torch.Tensor:
    """t = (1 - eps) U + eps: one diffusion time per sequence.

    ``stratified=False`` (the reference): U ~ U[0, 1) i.i.d. ``stratified=True``: U_i = (i + V_i) / B
    with V_i ~ U[0, 1) i.i.d., one draw in each of B equal strata. Each U_i is then uniform on its
    stratum only, but the batch mean of any f(t_i) is still an unbiased estimate of E f(t), with
    lower variance (the 1/t-weighted loss varies strongly with t).
    """
    u = torch.rand(batch, device=device, generator=generator)
    if stratified:
        u = (torch.arange(batch, device=u.device, dtype=u.dtype) + u) / batch
    return (1 - eps) * u + eps


def score_entropy_loss(
    model: SEDD,
    graph: Graph,
    noise: Noise,
    x0: torch.Tensor,
    t: torch.Tensor | None = None,
    *,
    xt: torch.Tensor | None = None,
    sampling_eps: float = 1e-3,
    masked_only: bool = True,
    generator: torch.Generator | None = None,
) -> LossOutput:
    """The SEDD objective per sequence.

    Args:
        x0: clean ids ``[B, L]``.
        t: diffusion times ``[B]``; drawn from U[sampling_eps, 1] when None.
        xt: corrupted ids ``[B, L]``; drawn from the forward process at sigma(t) when None.
        masked_only: absorbing graph only: evaluate the output head at masked positions only
            (same value as the full computation, cheaper). Ignored for other graphs.
    """
    B = x0.shape[0]
    if t is None:
        t = sample_t(B, sampling_eps, x0.device, generator)
    sigma, dsigma = noise(t)
    if xt is None:
        xt = graph.sample_transition(x0, sigma[:, None], generator=generator)

    if masked_only and isinstance(graph, Absorbing):
        a = model.features(xt, sigma)  # [B, L, d]
        masked = xt == graph.mask_id  # [B, L]
        rows = masked.nonzero(as_tuple=True)  # (batch index, position) of each masked token
        b = rows[0]
        # the mask column is the current token at these rows: only the V real columns matter
        z, offset = model.head_logits(a[rows], sigma[b], columns=graph.vocab_size)  # [N, V], [N]
        entropy = graph.masked_score_entropy_logits(z, offset, sigma[b], x0[rows])  # [N]
        weighted = dsigma[b].float() * entropy
        loss = torch.zeros(B, dtype=weighted.dtype, device=x0.device).index_add(0, b, weighted)
    else:
        log_score = model(xt, sigma)  # [B, L, D]
        entropy = graph.score_entropy(log_score, sigma[:, None], xt, x0)  # [B, L]
        loss = (dsigma[:, None] * entropy).sum(dim=-1)
    return LossOutput(loss=loss, t=t, sigma=sigma, dsigma=dsigma, xt=xt)


# --- time-independent absorbing models (RADD) ---------------------------------------------------


def _log_c_at_x0(model, xt: torch.Tensor, x0: torch.Tensor, mask_id: int):
    """(batch index ``[N]``, log c[x0] ``[N]`` float32) at the N masked positions of xt: the network's
    body on the whole batch, its head (`head_log_condition`) on the masked rows only."""
    rows = (xt == mask_id).nonzero(as_tuple=True)
    a = model.features(xt, None)  # [B, L, d]
    log_c = model.head_log_condition(a[rows])  # [N, V]
    return rows[0], log_c.gather(-1, x0[rows][:, None]).squeeze(-1)


def _per_sequence(values: torch.Tensor, b: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.zeros(batch, dtype=values.dtype, device=values.device).index_add(0, b, values)


def t_dce_loss(
    model: SEDD,
    graph: Absorbing,
    noise: Noise,
    x0: torch.Tensor,
    t: torch.Tensor | None = None,
    *,
    xt: torch.Tensor | None = None,
    sampling_eps: float = 1e-3,
    masked_only: bool = True,
    generator: torch.Generator | None = None,
) -> LossOutput:
    """RADD's t-DCE per sequence, for a time-independent absorbing model:

        loss(x0) = sum_{l masked in x_t} dsigma(t) * (-(log c[x0_l] - log(e^sigma - 1))) / (e^sigma - 1)

    t and x_t are drawn as in `score_entropy_loss` when not given (same arguments; `masked_only`
    is accepted for the same call contract: the head always runs on the masked rows only). It is
    t-DSE (the score entropy of the implied score) plus a network-free term, see the module notes.
    """
    B = x0.shape[0]
    if t is None:
        t = sample_t(B, sampling_eps, x0.device, generator)
    sigma, dsigma = noise(t)
    if xt is None:
        xt = graph.sample_transition(x0, sigma[:, None], generator=generator)
    b, log_c0 = _log_c_at_x0(model, xt, x0, graph.mask_id)
    sig = sigma[b].float()
    per_token = dsigma[b].float() * (log_esigm1(sig) - log_c0) / esigm1(sig)
    return LossOutput(loss=_per_sequence(per_token, b, B), t=t, sigma=sigma, dsigma=dsigma, xt=xt)


def sample_lambda(batch: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Masking probabilities ``[B]`` with RADD's decoupled stratification: lambda_i = (i + 1 - U_i) / B,
    U_i ~ U[0, 1) i.i.d., so lambda_i is uniform on (i / B, (i + 1) / B] (never 0: the loss divides
    by lambda) and the batch mean of any f(lambda_i) is an unbiased estimate of E f(lambda)."""
    u = torch.rand(batch, device=device, generator=generator)
    return (torch.arange(batch, device=u.device, dtype=u.dtype) + 1 - u) / batch


def mask_tokens(
    graph: Absorbing, x0: torch.Tensor, lam: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x0 ``[B, L]`` with each token replaced by the mask independently with probability lam ``[B]``
    (lambda = 1 masks every token)."""
    u = torch.rand(x0.shape, device=x0.device, generator=generator)
    return torch.where(u < lam[:, None].to(u.dtype), graph.mask_id, x0)


def lambda_dce_loss(
    model: SEDD,
    graph: Absorbing,
    noise: Noise | None,
    x0: torch.Tensor,
    lam: torch.Tensor | None = None,
    *,
    xt: torch.Tensor | None = None,
    sampling_eps: float = 1e-3,
    masked_only: bool = True,
    generator: torch.Generator | None = None,
) -> LossOutput:
    """RADD's lambda-DCE per sequence, for a time-independent absorbing model:

        loss(x0) = -sum_{l masked in x_lambda} log c[x0_l] / lambda

    with the masking probability `lam` ``[B]`` in (0, 1] (drawn by `sample_lambda` when None) and
    x_lambda (`xt`) masking each token with probability lambda (drawn by `mask_tokens` when None).
    Same call contract as `score_entropy_loss`, with lambda in the place of t; `noise`,
    `sampling_eps` and `masked_only` are not used. Its expectation over lambda ~ U(0, 1] is the
    negative ELBO (module notes); the returned sigma and dsigma are those of lambda (`LossOutput`).
    """
    B = x0.shape[0]
    if lam is None:
        lam = sample_lambda(B, x0.device, generator)
    if xt is None:
        xt = mask_tokens(graph, x0, lam, generator)
    b, log_c0 = _log_c_at_x0(model, xt, x0, graph.mask_id)
    loss = -_per_sequence(log_c0, b, B) / lam.float()
    sigma = -torch.log1p(-lam)
    return LossOutput(loss=loss, t=lam, sigma=sigma, dsigma=1 / (1 - lam), xt=xt)


@torch.no_grad()
def lambda_bound_per_sequence(
    model,
    graph: Absorbing,
    x0: torch.Tensor,
    lam: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte Carlo estimate of the lambda-form bound on -log p_theta(x0), nats per sequence ``[B]``
    (float64), for a time-independent absorbing model:

        N(x0) = int_0^1 E_{x_lambda}[-sum_masked log c[x0]] d lambda / lambda
              ~ (1/K) sum_k w_k * lambda_dce_loss(x0, lambda_k)

    `lam`, `weight` ``[K, B]`` are K stratified draws per sequence and their weights, exactly as
    the time samples of the DSE-form bound (`evaluate.stratified_times`, lambda in the place of t:
    sqrt spacing lambda = v^2, w = 2v, tames the ~1/lambda variance near 0); w = 1 when None. The
    generator draws the K masks, in order. No prior term: lambda = 1 masks every token, the
    sampler's start. Compared with the DSE-form diffusion part of the same model (lambda(t) =
    1 - e^-sigma(t) only reaches 1 - eps under the log-linear schedule), this is that integral
    plus the piece over lambda in (1 - eps, 1], in place of the prior term.
    """
    K, B = lam.shape
    if weight is None:
        weight = torch.ones(lam.shape, dtype=torch.float64, device=lam.device)
    if weight.shape != lam.shape or B != x0.shape[0]:
        raise ValueError(f"lam and weight must be [K, B] with B = {x0.shape[0]}, got {list(lam.shape)}")
    total = torch.zeros(B, dtype=torch.float64, device=x0.device)
    for k in range(K):
        out = lambda_dce_loss(model, graph, None, x0, lam[k], generator=generator)
        total += weight[k].double() * out.loss.double()
    return total / K


# --- the training objective registry (train.loss) ------------------------------------------------


def draw_t(graph: Graph, noise: Noise, x0: torch.Tensor, eps: float, generator, stratified: bool = False):
    """(t ``[B]``, x_t ``[B, L]``) for the t-losses: t from `sample_t`, then x_t ~ p_sigma(t)(. | x0)."""
    t = sample_t(x0.shape[0], eps, x0.device, generator, stratified)
    sigma, _ = noise(t)
    return t, graph.sample_transition(x0, sigma[:, None], generator=generator)


def draw_lambda(graph: Graph, noise: Noise, x0: torch.Tensor, eps: float, generator, stratified: bool = True):
    """(lambda ``[B]``, x_lambda ``[B, L]``) for lambda-DCE: always RADD's decoupled stratification
    (`sample_lambda`), whatever `stratified` says; `noise` and `eps` are not used."""
    lam = sample_lambda(x0.shape[0], x0.device, generator)
    return lam, mask_tokens(graph, x0, lam, generator)


@dataclass(frozen=True)
class TrainingLoss:
    """A training objective: ``loss(model, graph, noise, x0, t, xt=xt, sampling_eps=...)`` ->
    `LossOutput` (the call contract of `score_entropy_loss`), and ``draw(graph, noise, x0, eps,
    generator, stratified)`` -> (t, x_t), the draws that go with it (for lambda-dce, t is lambda)."""

    name: str
    loss: Callable[..., LossOutput]
    draw: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    time_independent: bool  # needs a time-independent absorbing model

    def __call__(self, *args, **kwargs) -> LossOutput:
        return self.loss(*args, **kwargs)


LOSSES: dict[str, TrainingLoss] = {
    "dse": TrainingLoss("dse", score_entropy_loss, draw_t, False),
    "t-dce": TrainingLoss("t-dce", t_dce_loss, draw_t, True),
    "lambda-dce": TrainingLoss("lambda-dce", lambda_dce_loss, draw_lambda, True),
}


def get_loss(name: str) -> TrainingLoss:
    """The objective `name` (``dse``, ``t-dce``, ``lambda-dce``; validated by the config)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise SeddError(f"unknown loss {name!r} (choose from {', '.join(LOSSES)})") from None


def training_loss(config) -> TrainingLoss:
    """The objective a run's `Config` asks for (``train.loss``)."""
    return get_loss(config.train.loss)
