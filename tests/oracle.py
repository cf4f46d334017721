"""Oracles for the sampler tests: exact scores of a known law, and the exact law of the sampler.

`Oracle(p, absorb)` knows p, a joint table over {0, .., V-1}^L (V = L = 3). Its log-score at x_t
is the exact ``log p_t(y) / p_t(x_t)`` (y = x_t with one position changed), where p_t is p pushed
through the per-token forward kernel K_sigma of the graph on every position (absorbing: keep with
e^-sigma, mask otherwise; uniform: (1 - e^-sigma)/V + e^-sigma delta). At a masked position of the
absorbing graph this is ``p(x0_l = j | unmasked tokens) / (e^sigma - 1)``.

`OracleNet` adds the trained network's interface, ``features`` + ``head_logits`` (the head on
selected rows, real-token columns only, with the per-row offset of ``scale_by_sigma``), so the
sampler's fast path runs exactly as it does for a `SEDD` model.

`chain_law(model, graph, noise, steps, predictor)` is the exact law of the discretised reverse
chain the sampler runs (sedd-spec §5), by enumeration of its Markov chain over all ``D^L`` states
(64 for absorbing, 27 for uniform), with the step formulas written from the paper as dense
matrices (``expm(+-Delta Q)``), independently of `graph.py`: per position, Euler weights
``delta_xy + dt dsigma Q[x, y] s_y`` (diagonal ``1 - dt dsigma sum_{y != x} Q[x, y] s_y``),
analytic weights ``(expm(-Delta Q) s)_y expm(Delta Q)[x, y]``, negative weights counted as 0,
each row normalised; positions move independently given x_t; then the Tweedie denoiser at
``sigma(eps)`` (mask column dropped). The sampler, whatever its code path, must have this law.

Chi-square (`chi2`, `chi2_critical`): cells whose expected count is below 5 are pooled into one
cell; the critical value at alpha = 1e-3 is the Wilson-Hilferty approximation (54.18 for 26 df;
exact 54.05).
"""

from __future__ import annotations

import itertools
import math

import torch

V, L = 3, 3


def joint_table() -> torch.Tensor:
    """An arbitrary positive joint table p[a, b, c] (min 0.0065, max 0.071)."""
    w = torch.tensor(
        [
            1 + ((7 * a + 3 * b * b + 5 * a * c + 2 * c) % 11)
            for a, b, c in itertools.product(range(V), repeat=L)
        ],
        dtype=torch.float64,
    )
    return (w / w.sum()).view(V, V, V)


class Oracle:
    """``oracle(x [B, L], sigma [B]) -> exact log-score [B, L, D]`` (float32, as a network's).

    `distort` (optional): a fixed ``[D^L, L, D]`` table added to the log-score at y != x_t, a
    stand-in for a learned, imperfect score (the current token keeps log-score 0)."""

    def __init__(self, p: torch.Tensor, absorb: bool, distort: torch.Tensor | None = None):
        self.p = p
        self.absorb = absorb
        self.D = V + 1 if absorb else V
        self.strides = torch.tensor([self.D ** (L - 1 - l) for l in range(L)])
        self.distort = distort
        self.calls = 0

    def kernel(self, sigma: float) -> torch.Tensor:
        """K[y, x0] = p(x_sigma = y | x0), ``[D, V]``."""
        keep = math.exp(-sigma)
        if self.absorb:
            K = torch.zeros(self.D, V, dtype=torch.float64)
            K[:V] = torch.eye(V, dtype=torch.float64) * keep
            K[V] = 1 - keep
        else:
            K = torch.full((V, V), (1 - keep) / V, dtype=torch.float64) + torch.eye(V) * keep
        return K

    def pt(self, sigma: float) -> torch.Tensor:
        K = self.kernel(sigma)
        return torch.einsum("ia,jb,kc,abc->ijk", K, K, K, self.p).reshape(-1)  # [D^L]

    def log_score(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert torch.all(sigma == sigma[0]), "generate feeds one noise level per step"
        log_pt = self.pt(float(sigma[0])).clamp_min(1e-300).log()
        idx = (x * self.strides).sum(-1)  # [B]
        j = torch.arange(self.D)
        y = idx[:, None, None] + (j[None, None, :] - x[:, :, None]) * self.strides[None, :, None]  # [B, L, D]
        out = log_pt[y] - log_pt[idx][:, None, None]
        if self.distort is not None:
            out = out + self.distort[idx].scatter(-1, x[..., None], 0.0)
        return out.float()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.log_score(x, sigma)


class OracleNet(Oracle):
    """The oracle behind the network's interface: ``features(x, sigma)`` ``[B, L, d]`` and
    ``head_logits(a [N, d], sigma [N], columns)`` -> ``(z [N, columns], offset [N])`` with
    log-score = z - offset, offset = log(e^sigma - 1) + log(D - 1) (``SEDD`` with
    ``scale_by_sigma``). Here d = D and the feature of a position is its exact log-score row."""

    def __init__(self, p: torch.Tensor, absorb: bool = True):
        super().__init__(p, absorb)
        self.feature_calls = 0
        self.head_rows = 0

    @staticmethod
    def offset(sigma: torch.Tensor) -> torch.Tensor:
        return (torch.expm1(sigma.double()).log() + math.log(V)).float()

    def features(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.feature_calls += 1
        return self.log_score(x, sigma)

    def head_logits(self, a: torch.Tensor, sigma: torch.Tensor, columns: int | None = None):
        self.head_rows += a.shape[0]
        offset = self.offset(sigma)
        z = a if columns is None else a[:, :columns]
        return z + offset[:, None], offset


def _rate_matrix(absorb: bool) -> torch.Tensor:
    """Q[y, x] = rate of x -> y (columns sum to 0), float64, written from sedd-spec §2."""
    if absorb:
        D = V + 1
        Q = torch.zeros(D, D, dtype=torch.float64)
        Q[V, :V] = 1.0
        Q[range(V), range(V)] = -1.0
        return Q
    return torch.full((V, V), 1.0 / V, dtype=torch.float64) - torch.eye(V, dtype=torch.float64)


def _states(D: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(D), repeat=L)), dtype=torch.long)  # [D^L, L]


def _step_weights(score, X, Q, kind: str, dt: float, dsigma: float, delta: float) -> torch.Tensor:
    """Per-position weights ``[S, L, D]`` of one reverse step from every state X ``[S, L]``."""
    D = Q.shape[0]
    rows = Q[X]  # [S, L, D]: Q[x_l, y]
    if kind == "euler":
        rate = rows * score
        rate = rate.scatter(-1, X[..., None], 0.0)
        rate = rate.scatter(-1, X[..., None], -rate.sum(-1, keepdim=True))
        return torch.nn.functional.one_hot(X, D).double() + dt * dsigma * rate
    if kind == "analytic":
        back = torch.linalg.matrix_exp(-delta * Q)  # [D, D]
        fwd = torch.linalg.matrix_exp(delta * Q)
        return torch.einsum("yk,slk->sly", back, score) * fwd[X]
    raise ValueError(kind)


def _normalised(w: torch.Tensor) -> torch.Tensor:
    w = w.clamp(min=0)
    return w / w.sum(-1, keepdim=True)


def _transition(w: torch.Tensor) -> torch.Tensor:
    """``[S, L, D]`` per-position laws -> ``[S, D^L]`` joint law of the next state."""
    return torch.einsum("sa,sb,sc->sabc", w[:, 0], w[:, 1], w[:, 2]).reshape(w.shape[0], -1)


@torch.no_grad()
def chain_law(model, absorb: bool, noise, steps: int, predictor: str, eps: float = 1e-5) -> torch.Tensor:
    """Exact law ``[V, V, V]`` of `generate(model, ..., steps, predictor, eps, denoise=True)`
    (module docstring). `model(x, sigma)` is called on all states at once, as the network."""
    Q = _rate_matrix(absorb)
    D = Q.shape[0]
    X = _states(D)  # [S, L]
    S = X.shape[0]
    law = torch.zeros(S, dtype=torch.float64)
    if absorb:
        law[-1] = 1.0  # all masks
    else:
        law[:] = 1.0 / S  # uniform limit
    ts = torch.linspace(1, eps, steps + 1, dtype=torch.float64).tolist()
    dt = (1 - eps) / steps

    def sig(t: float) -> tuple[float, float]:
        s, ds = noise(torch.tensor(t, dtype=torch.float64))
        return float(s), float(ds)

    def score_at(sigma: float) -> torch.Tensor:
        sg = torch.full((S,), sigma, dtype=torch.float32)
        return model(X, sg).float().exp().double()  # [S, L, D], as the sampler's model_fn

    for i in range(steps):
        t = ts[i]
        sigma, dsigma = sig(t)
        delta = sigma - sig(t - dt)[0]
        w = _step_weights(score_at(sigma), X, Q, predictor, dt, dsigma, delta)
        law = law @ _transition(_normalised(w))
    sigma = sig(eps)[0]
    w = _step_weights(score_at(sigma), X, Q, "analytic", 0.0, 0.0, sigma)  # Tweedie denoiser
    if absorb:
        w = w[..., :V]
    return (law @ _transition(_normalised(w))).view(V, V, V)  # V columns: over the V^L cells


def counts(x: torch.Tensor) -> torch.Tensor:
    """Histogram of sequences over the 27 cells, shaped [V, V, V]."""
    assert x.min() >= 0 and x.max() < V, "ids outside the base vocabulary"
    flat = x[:, 0] * V * V + x[:, 1] * V + x[:, 2]
    return torch.bincount(flat, minlength=V**L).double().view(V, V, V)


def chi2_critical(df: int, z: float = 3.0902) -> float:
    """Upper 1e-3 point of chi-square(df) (Wilson-Hilferty; z = the normal 1e-3 point)."""
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3


def chi2(obs: torch.Tensor, p: torch.Tensor) -> tuple[float, int]:
    """(statistic, degrees of freedom) of `obs` counts against the law `p` (same shape); cells
    with expected count below 5 are pooled into one."""
    obs, p = obs.reshape(-1).double(), p.reshape(-1).double()
    n = obs.sum()
    exp = n * p
    small = exp < 5
    if small.any():
        obs = torch.cat([obs[~small], obs[small].sum()[None]])
        exp = torch.cat([exp[~small], exp[small].sum()[None]])
    stat = float(((obs - exp) ** 2 / exp).sum())
    return stat, obs.numel() - 1


def lam(q: torch.Tensor, p: torch.Tensor, n: int) -> float:
    """Noncentrality n sum (q - p)^2 / p of a chi-square test of samples from q against p."""
    return float(n * ((q - p) ** 2 / p).sum())


def tv(q: torch.Tensor, p: torch.Tensor) -> float:
    return float((q - p).abs().sum() / 2)


# --- closed-form absorbing oracles (first-hitting, caching) ---------------------------------------


def _marginals(p: torch.Tensor) -> torch.Tensor:
    """``marg[s]`` over the 64 absorbing states s: the probability that x0 ~ p agrees with s on
    its unmasked positions (the sum of p over the cells consistent with s)."""
    X, cells = _states(V + 1), _states(V)  # [64, L], [27, L]
    consistent = ((X[:, None, :] == cells[None]) | (X[:, None, :] == V)).all(-1)  # [64, 27]
    return consistent.double() @ p.reshape(-1).double()


class AbsorbingOracle:
    """The exact absorbing log-score at a total noise per sequence, in closed form.

    ``p_sigma(x) = marg[x] e^(-sigma u) (1 - e^-sigma)^m`` for x with u unmasked and m masked
    positions (each token kept with e^-sigma, masked otherwise, independently of x0), so
    ``log s(x, sigma)[l, j] = log p_sigma(y) - log p_sigma(x)`` with y = x, position l set to j.
    At a masked l and real j this is ``log p(x0_l = j | unmasked) - log(e^sigma - 1)``. `sigma`
    ``[B]`` may differ per row (the first-hitting sampler's per-sequence times), which the
    `Oracle` above does not allow. With the network's interface (``features`` + ``head_logits``,
    as `OracleNet`), counting calls, sequences and head rows."""

    time_conditioned = True

    def __init__(self, p: torch.Tensor):
        self.log_marg = _marginals(p).log()  # [64]
        self.strides = torch.tensor([(V + 1) ** (L - 1 - l) for l in range(L)])
        self.calls = self.sequences = self.head_rows = 0
        self.sigmas: list[torch.Tensor] = []  # the sigma [B] of every call

    def _log_pt(self, idx: torch.Tensor, masked: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        keep = -sigma  # log e^-sigma
        drop = torch.log(-torch.expm1(-sigma))  # log(1 - e^-sigma)
        return self.log_marg[idx] + (L - masked) * keep + masked * drop

    def log_score(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.double()[:, None, None]  # [B, 1, 1]
        idx = (x * self.strides).sum(-1)  # [B]
        j = torch.arange(V + 1)
        y = idx[:, None, None] + (j[None, None, :] - x[:, :, None]) * self.strides[None, :, None]
        m_x = (x == V).sum(-1)[:, None, None]  # [B, 1, 1]
        m_y = m_x + (j == V)[None, None, :].long() - (x == V)[:, :, None].long()  # [B, L, D]
        out = self._log_pt(y, m_y, s) - self._log_pt(idx[:, None, None], m_x, s)
        return out.scatter(-1, x[..., None], 0.0).float()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.sequences += x.shape[0]
        self.sigmas.append(sigma.clone())
        return self.log_score(x, sigma)

    def features(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self(x, sigma)

    def head_logits(self, a: torch.Tensor, sigma: torch.Tensor, columns: int | None = None):
        self.head_rows += a.shape[0]
        offset = OracleNet.offset(sigma)
        z = a if columns is None else a[:, :columns]
        return z + offset[:, None], offset


class ConditionOracle:
    """A time-independent oracle: ``log_condition(x)[l, j] = log p(x0_l = j | the other unmasked
    tokens of x)`` = log marg[x with l set to j] - log marg[x with l masked], exact for the law
    p; `model(x, sigma)` is its log-score ``log c - log(e^sigma - 1)`` (mask column and current
    token 0), as `SEDD` with ``time_conditioning: false``. The network's interface:
    ``features(x, sigma=None)`` (the feature of a position is its log c row) and
    ``head_log_condition(a)``; counters of calls, sequences and head rows."""

    time_conditioned = False

    def __init__(self, p: torch.Tensor):
        self.log_marg = _marginals(p).log()  # [64]
        self.strides = torch.tensor([(V + 1) ** (L - 1 - l) for l in range(L)])
        self.calls = self.sequences = self.head_rows = 0

    def log_condition(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.sequences += x.shape[0]
        idx = (x * self.strides).sum(-1)  # [B]
        base = idx[:, None] + (V - x) * self.strides  # [B, L]: position l masked
        j = torch.arange(V)
        y = base[..., None] + (j[None, None, :] - V) * self.strides[None, :, None]  # [B, L, V]
        return (self.log_marg[y] - self.log_marg[base][..., None]).float()

    def features(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return self.log_condition(x)

    def head_log_condition(self, a: torch.Tensor) -> torch.Tensor:
        self.head_rows += a.shape[0]
        return a

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = self.log_condition(x) - torch.log(torch.expm1(sigma.double())).float()[:, None, None]
        z = torch.cat([s, torch.zeros_like(s[..., :1])], dim=-1)
        return z.scatter(-1, x[..., None], 0.0)


def conditional_law(p: torch.Tensor, fixed: dict[int, int]) -> torch.Tensor:
    """The law ``[V, V, V]`` of x0 ~ p given the tokens `fixed` ({position: token})."""
    q = p.clone()
    for pos, tok in fixed.items():
        keep = torch.zeros(V, dtype=torch.bool)
        keep[tok] = True
        shape = [1, 1, 1]
        shape[pos] = V
        q = q * keep.view(shape)
    return q / q.sum()
