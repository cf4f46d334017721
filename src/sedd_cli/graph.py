"""Forward corruption graphs (CTMC generators Q), reverse rates and the score-entropy loss.

Convention (sedd-spec §2): Q[y, x] is the rate of jumping x -> y, columns sum to zero, tokens
evolve independently with dp_t/dt = dsigma(t) Q p_t, so p_t(. | x0) = exp(sigma(t) Q) e_{x0}.

Shapes: token ids `i` / `x` are ``[...]`` int64 (usually ``[B, L]``); a per-token vector over the
graph's states has a trailing axis of size D = `graph.dim`; `sigma` is anything that broadcasts
against `i` (a ``[B, 1]`` column for per-sequence noise, or a tensor of the same shape as `i`).

The network outputs the *log* concrete score s(x_t)_y ~ log p_t(y) / p_t(x_t); `score` below
means exp(s).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import GraphConfig
from .errors import ConfigError

__all__ = ["Graph", "Absorbing", "Uniform", "get_graph", "esigm1", "log_esigm1"]


def esigm1(sigma: torch.Tensor) -> torch.Tensor:
    """e^sigma - 1, via expm1 below 0.5 (accurate for small sigma) as the reference does."""
    return torch.where(sigma < 0.5, torch.expm1(sigma), torch.exp(sigma) - 1)


def log_esigm1(sigma: torch.Tensor) -> torch.Tensor:
    """log(e^sigma - 1) for sigma > 0, accurate at both ends: log(expm1(sigma)) below 0.5 (no
    cancellation near 0), sigma + log1p(-e^-sigma) above (no overflow of e^sigma for large sigma)."""
    small = sigma < 0.5
    return torch.where(
        small, torch.expm1(torch.where(small, sigma, 0.5)).log(), sigma + torch.log1p(-torch.exp(-sigma))
    )


def _col(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """sigma as a tensor broadcastable against ``like[..., None]`` (an extra trailing axis)."""
    sigma = torch.as_tensor(sigma, device=like.device)
    return sigma[..., None] if sigma.dim() > 0 else sigma


class Graph:
    """A forward CTMC on D states. Subclasses: `Absorbing`, `Uniform`."""

    dim: int
    absorb: bool = False

    def rate(self, i: torch.Tensor) -> torch.Tensor:
        """Column i of Q (rates out of state i), ``[..., D]``."""
        raise NotImplementedError

    def transp_rate(self, i: torch.Tensor) -> torch.Tensor:
        """Row i of Q (rates into state i), ``[..., D]``: used for the reverse rates."""
        raise NotImplementedError

    def transp_transition(self, i: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Row i of exp(sigma Q): entry y = p(x_sigma = i | x_0 = y), ``[..., D]``."""
        raise NotImplementedError

    def sample_transition(
        self, i: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw x_sigma ~ exp(sigma Q) e_i for every token independently."""
        raise NotImplementedError

    def sample_limit(
        self, *shape: int, device=None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw from the limit distribution (t -> infinity)."""
        raise NotImplementedError

    def staggered_score(self, score: torch.Tensor, dsigma: torch.Tensor) -> torch.Tensor:
        """exp(-dsigma Q) applied to the score vector (the analytic/Tweedie step), ``[..., D]``."""
        raise NotImplementedError

    def score_entropy(
        self, log_score: torch.Tensor, sigma: torch.Tensor, x: torch.Tensor, x0: torch.Tensor
    ) -> torch.Tensor:
        """Denoising score entropy per token, ``[...]`` (without the dsigma weight)."""
        raise NotImplementedError

    def reverse_rate(self, i: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """Reverse-time rates out of the current state i: R_y = Q[i, y] score_y for y != i and
        R_i = -sum_{y != i} R_y, so each row sums to zero. ``[..., D]``."""
        rate = self.transp_rate(i) * score
        rate = rate.scatter(-1, i[..., None], 0.0)
        return rate.scatter(-1, i[..., None], -rate.sum(dim=-1, keepdim=True))


class Absorbing(Graph):
    """Every token jumps to the mask state M = V (the last id) at rate 1; M is absorbing.

    ``Absorbing(V)`` has D = V + 1 states. Masking probability after total noise sigma is
    1 - e^(-sigma); unmasked tokens are never changed by the reverse process.
    """

    absorb = True

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self.dim = vocab_size + 1
        self.mask_id = vocab_size

    def __repr__(self) -> str:
        return f"Absorbing(vocab_size={self.vocab_size})"

    def rate(self, i: torch.Tensor) -> torch.Tensor:
        return F.one_hot(torch.full_like(i, self.mask_id), self.dim).float() - F.one_hot(i, self.dim).float()

    def transp_rate(self, i: torch.Tensor) -> torch.Tensor:
        # i != M: -e_i ; i == M: 1 at every non-mask column, 0 at M
        edge = -F.one_hot(i, self.dim).float()
        return edge + (i == self.mask_id).float()[..., None]

    def transp_transition(self, i: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        keep = torch.exp(-torch.as_tensor(sigma, device=i.device))  # e^-sigma, broadcasts with i
        edge = keep[..., None] * F.one_hot(i, self.dim).to(keep.dtype)
        return edge + torch.where(i == self.mask_id, 1 - keep, 0.0)[..., None]

    def sample_transition(self, i, sigma, generator=None):
        move_chance = -torch.expm1(-torch.as_tensor(sigma, device=i.device))  # 1 - e^-sigma
        u = torch.rand(i.shape, device=i.device, generator=generator)
        return torch.where(u < move_chance, self.mask_id, i)

    def sample_limit(self, *shape, device=None, generator=None):
        return torch.full(shape, self.mask_id, dtype=torch.long, device=device)

    def staggered_score(self, score, dsigma):
        # out_j = e^dsigma score_j for every j, plus (1 - e^dsigma) sum_j score_j added at M
        # (the sum is over all D columns of the unscaled score).
        edsigma = _col(torch.exp(torch.as_tensor(dsigma, device=score.device)), score[..., 0])
        extra = (1 - edsigma) * score.sum(dim=-1, keepdim=True)  # [..., 1]
        out = score * edsigma
        out[..., self.mask_id] += extra[..., 0]
        return out

    def score_entropy(self, log_score, sigma, x, x0):
        masked = x == self.mask_id  # [B, L]
        dtype = torch.promote_types(log_score.dtype, torch.float32)
        out = torch.zeros(x.shape, dtype=dtype, device=x.device)
        sigma_tok = torch.as_tensor(sigma, device=x.device).expand_as(x)
        out[masked] = self.masked_score_entropy(log_score[masked], sigma_tok[masked], x0[masked])
        return out

    def masked_score_entropy(
        self, log_score: torch.Tensor, sigma: torch.Tensor, x0: torch.Tensor
    ) -> torch.Tensor:
        """Score entropy at masked positions only: rows ``[N, D]``, `sigma` and `x0` ``[N]``.

        With r = 1 / (e^sigma - 1): l = sum_{j<V} e^{s_j} - r s_{x0} + r (log r - 1).
        """
        dtype = torch.promote_types(log_score.dtype, torch.float32)
        ratio = 1 / esigm1(sigma.to(dtype))
        neg = ratio * log_score.gather(-1, x0[:, None]).squeeze(-1).to(dtype)
        pos = log_score[:, : self.vocab_size].exp().sum(dim=-1).to(dtype)
        const = ratio * (ratio.log() - 1)
        return pos - neg + const

    def masked_score_entropy_logits(
        self, z: torch.Tensor, offset: torch.Tensor, sigma: torch.Tensor, x0: torch.Tensor
    ) -> torch.Tensor:
        """`masked_score_entropy` from the raw head output over the V real tokens: with
        s_j = z_j - offset (``z [N, V]``, ``offset``, `sigma`, `x0` ``[N]``; offset carries no
        gradient), l = sum_{j<V} exp(z_j - offset) - r (z_{x0} - offset) + r (log r - 1),
        r = 1 / (e^sigma - 1). A fused autograd function: one exp pass forward, one multiply
        backward (d l / d z_j = exp(z_j - offset) - r [j = x0]); equal to the log-score form."""
        dtype = torch.promote_types(z.dtype, torch.float32)
        ratio = 1 / esigm1(sigma.to(dtype))
        const = ratio * (ratio.log() - 1)
        return _PosNegTerms.apply(z, x0, offset.to(dtype).detach(), ratio.detach()) + const


class _PosNegTerms(torch.autograd.Function):
    """P - N of the absorbing score entropy from logits z ``[N, V]``: sum_j e^(z_j - offset) -
    r (z_{x0} - offset). Saves the ``[N, V]`` exponentials for the backward pass."""

    @staticmethod
    def forward(ctx, z, x0, offset, ratio):
        e = torch.exp(z.to(offset.dtype) - offset[:, None])  # [N, V]
        zx = z.gather(-1, x0[:, None]).squeeze(-1).to(offset.dtype)
        ctx.save_for_backward(e, x0, ratio)
        ctx.z_dtype = z.dtype
        return e.sum(dim=-1) - ratio * (zx - offset)

    @staticmethod
    def backward(ctx, grad):
        e, x0, ratio = ctx.saved_tensors
        grad_z = e * grad[:, None]
        grad_z.scatter_add_(-1, x0[:, None], (-grad * ratio)[:, None])
        return grad_z.to(ctx.z_dtype), None, None, None


class Uniform(Graph):
    """Q = (1/D) 11^T - I: every token jumps to a uniformly drawn state (possibly itself)."""

    def __init__(self, dim: int):
        self.dim = dim

    def __repr__(self) -> str:
        return f"Uniform(dim={self.dim})"

    def rate(self, i):
        return torch.full((*i.shape, self.dim), 1 / self.dim, device=i.device) - F.one_hot(i, self.dim)

    def transp_rate(self, i):
        return self.rate(i)

    def transition(self, i: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Column i of exp(sigma Q): (1 - e^-sigma)/D off i, 1 - (D-1)(1 - e^-sigma)/D at i."""
        move = -torch.expm1(-_col(sigma, i))  # [..., 1]
        trans = (move / self.dim).expand(*i.shape, self.dim).clone()
        trans = trans.scatter(-1, i[..., None], 0.0)
        return trans.scatter(-1, i[..., None], 1 - trans.sum(dim=-1, keepdim=True))

    def transp_transition(self, i, sigma):
        return self.transition(i, sigma)  # Q is symmetric

    def sample_transition(self, i, sigma, generator=None):
        move_chance = -torch.expm1(-torch.as_tensor(sigma, device=i.device))
        u = torch.rand(i.shape, device=i.device, generator=generator)
        other = torch.randint(0, self.dim, i.shape, device=i.device, generator=generator)
        return torch.where(u < move_chance, other, i)

    def sample_limit(self, *shape, device=None, generator=None):
        return torch.randint(0, self.dim, shape, device=device, generator=generator)

    def staggered_score(self, score, dsigma):
        # with E = e^-dsigma: out_j = ((E - 1) / (D E)) sum_k score_k + score_j / E
        epow = _col(torch.exp(-torch.as_tensor(dsigma, device=score.device)), score[..., 0])
        return ((epow - 1) / (self.dim * epow)) * score.sum(dim=-1, keepdim=True) + score / epow

    def score_entropy(self, log_score, sigma, x, x0):
        """Closed form of sedd-spec §2.4 (weights 1/D, ratios from exp(sigma Q))."""
        D = self.dim
        sigma = torch.as_tensor(sigma, device=x.device)
        em1 = esigm1(sigma)
        ratio = 1 - D / (em1 + D)
        s_x = log_score.gather(-1, x[..., None]).squeeze(-1)
        s_x0 = log_score.gather(-1, x0[..., None]).squeeze(-1)
        base = log_score.mean(dim=-1) - s_x / D  # (1/D) sum_{j != x} s_j
        same = x == x0
        neg = torch.where(same, ratio * base, s_x0 / em1 + base)
        const = torch.where(
            same,
            (D - 1) / D * ratio * (ratio.log() - 1),
            ((-ratio.log() - 1) / ratio - (D - 2)) / D,
        )
        sexp = log_score.exp()
        pos = sexp.mean(dim=-1) - sexp.gather(-1, x[..., None]).squeeze(-1) / D
        return pos - neg + const


def get_graph(cfg: GraphConfig, vocab_size: int) -> Graph:
    """The graph named by ``cfg.type`` over a base vocabulary of `vocab_size` tokens."""
    if cfg.type == "absorb":
        return Absorbing(vocab_size)
    if cfg.type == "uniform":
        return Uniform(vocab_size)
    raise ConfigError(f"graph.type must be absorb or uniform, got {cfg.type!r}")
