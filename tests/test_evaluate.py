"""`sedd perplexity` and `sedd_cli.evaluation`: the likelihood bound against an oracle, its
standard error, the token rules, generative-perplexity arithmetic and the CLI."""

from __future__ import annotations

import itertools
import json
import math
import sys

import pytest
import torch
from typer.testing import CliRunner

from sedd_cli.checkpoints import Pretrained, build_components, load_pretrained, save_model_dir
from sedd_cli.cli import app
from sedd_cli.config import load_preset
from sedd_cli.errors import SeddError
from sedd_cli.evaluation import (
    DECODER_FLOOR,
    MAX_MC,
    SampleScore,
    bound_per_sequence,
    check_mc,
    evaluate_blocks,
    perplexity,
    prior_kl_per_position,
    read_samples,
    reconstruction_term,
    summarize_bounds,
    summarize_samples,
    unigram_entropy,
)
from sedd_cli.graph import Absorbing, Uniform, esigm1
from sedd_cli.losses import score_entropy_loss
from sedd_cli.noise import GeometricNoise, LogLinearNoise
from sedd_cli.tokenizers import get_tokenizer

from .helpers import save_tiny_char_model

# --- an oracle for a toy distribution over V^L sequences -----------------------------------------


class Oracle(torch.nn.Module):
    """The exact log-score of the absorbing forward process for data law `probs` over V^L.

    At a masked position l of x_t: s_j = log p(x0_l = j | unmasked tokens of x_t) - log(e^sigma - 1)
    for j < V (since p_t(y)/p_t(x_t) = e^-sigma / (1 - e^-sigma) * posterior); 0 at the current
    token. Unmasked positions never enter the absorbing loss."""

    def __init__(self, probs: torch.Tensor, V: int, L: int):
        super().__init__()
        self.V = V
        self.configs = torch.tensor(list(itertools.product(range(V), repeat=L)))  # [C, L]
        self.p = probs.double()
        self.onehot = torch.nn.functional.one_hot(self.configs, V).double()  # [C, L, V]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        consistent = ((x[:, None, :] == self.configs[None]) | (x[:, None, :] == self.V)).all(-1)  # [B, C]
        w = consistent.double() * self.p[None]
        post = torch.einsum("bc,clv->blv", w, self.onehot) / w.sum(-1)[:, None, None]  # [B, L, V]
        s = post.log() - esigm1(sigma.double()).log()[:, None, None]
        s = torch.cat([s, torch.zeros_like(s[..., :1])], -1)  # [B, L, V + 1]
        return torch.scatter(s, -1, x[..., None], 0.0).float()


V, L, EPS = 3, 3, 1e-3


@pytest.fixture(scope="module")
def toy():
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(V**L, generator=g, dtype=torch.float64) + 0.2
    probs /= probs.sum()
    return Oracle(probs, V, L), probs


def exact_diffusion_part(oracle: Oracle, probs: torch.Tensor, idx: int) -> float:
    """The DWDSE integral for the exact score, in closed form.

    Path-measure chain rule: KL(P(.|x0) || Q) = -log p(x0) + E_{x1|x0} log(p_1(x1) / pi(x1)) for the
    exact reverse process Q started at pi, and KL(P(.|x0) || Q) = DWDSE(x0) + KL(p_1(.|x0) || pi), so
    DWDSE(x0) = -log p(x0) + E_{x1|x0} log(p_1(x1) / p_1(x1 | x0)). At t = 1 each position is kept
    with probability eps; the ratio only depends on which positions are kept:
    p_1(x1) / p_1(x1|x0) = P(x0' agrees with x0 on the kept positions)."""
    x0 = oracle.configs[idx]
    value = -math.log(float(probs[idx]))
    for keep in itertools.product([0, 1], repeat=L):
        p_keep = math.prod(EPS if k else 1 - EPS for k in keep)
        agree = torch.ones(len(probs), dtype=torch.bool)
        for pos, k in enumerate(keep):
            if k:
                agree &= oracle.configs[:, pos] == x0[pos]
        value += p_keep * math.log(float(probs[agree].sum()))
    return value


def test_prior_term_closed_forms():
    """Absorbing + log-linear: eps log V (GPT-2: 1e-3 ln 50257 = 0.0108249). Uniform: the KL of the
    column of exp(sigma(1) Q) against 1/D, checked against torch.matrix_exp."""
    assert prior_kl_per_position(Absorbing(50257), LogLinearNoise()) == pytest.approx(1e-3 * math.log(50257))
    assert prior_kl_per_position(Absorbing(50257), LogLinearNoise()) == pytest.approx(0.0108249, abs=1e-7)
    D, noise = 5, GeometricNoise(1e-4, 2.0)  # sigma(1) = 2: far from the limit, KL clearly > 0
    Q = torch.full((D, D), 1 / D, dtype=torch.float64) - torch.eye(D, dtype=torch.float64)
    p1 = torch.linalg.matrix_exp(2.0 * Q)[:, 0]
    kl = float((p1 * (p1 * D).log()).sum())
    assert kl > 0.01
    assert prior_kl_per_position(Uniform(D), noise) == pytest.approx(kl, rel=1e-9)


@pytest.mark.parametrize("idx", [0, 13])
def test_oracle_bound_matches_exact_value(toy, idx):
    """With the exact score the estimator is unbiased for the closed form of
    `exact_diffusion_part`, for every K; n = 3000 copies of one x0, K = 8. Tolerance 4 standard
    errors (two-sided false alarm 6e-5 for a normal mean). The SE must be below 0.04 nats, so
    errors of the size of a mis-weighted integrand (e.g. forgetting dsigma: O(1) nats) are caught.
    Adding the prior gives -log p(x0) + E log(p_1(x1)/pi(x1)), within eps L log V = 0.0033 of the NLL."""
    oracle, probs = toy
    graph, noise = Absorbing(V), LogLinearNoise(EPS)
    x0 = oracle.configs[idx].repeat(3000, 1)
    b = bound_per_sequence(oracle, graph, noise, x0, 8, torch.Generator().manual_seed(idx), masked_only=False)
    mean, se = float(b.mean()), float(b.std()) / math.sqrt(len(b))
    exact = exact_diffusion_part(oracle, probs, idx)
    assert se < 0.04
    assert abs(mean - exact) < 4 * se
    nll = -math.log(float(probs[idx]))
    prior = L * prior_kl_per_position(graph, noise)
    assert abs(exact + prior - nll) < L * EPS * math.log(V * 1 / float(probs.min())) + 1e-9


def test_oracle_bound_is_upper_bound_on_entropy(toy):
    """x0 drawn from the toy law: E[bound] = H + KL(p_1 || pi) >= H (the entropy, the exact mean NLL).
    Checks mean >= H - 3 SE and |mean - H| < 4 SE + eps L log V (the prior-definition gap)."""
    oracle, probs = toy
    graph, noise = Absorbing(V), LogLinearNoise(EPS)
    g = torch.Generator().manual_seed(7)
    idx = torch.multinomial(probs, 3000, replacement=True, generator=g)
    x0 = oracle.configs[idx]
    b = bound_per_sequence(oracle, graph, noise, x0, 8, g, masked_only=False)
    b = b + L * prior_kl_per_position(graph, noise)
    mean, se = float(b.mean()), float(b.std()) / math.sqrt(len(b))
    H = -float((probs * probs.log()).sum())
    assert mean >= H - 3 * se
    assert abs(mean - H) < 4 * se + L * EPS * math.log(V)


def test_uniform_spacing_is_also_unbiased(toy):
    """t stratified uniformly (no change of variables) estimates the same integral."""
    oracle, probs = toy
    x0 = oracle.configs[5].repeat(3000, 1)
    b = bound_per_sequence(
        oracle, Absorbing(V), LogLinearNoise(EPS), x0, 8, torch.Generator().manual_seed(3),
        masked_only=False, spacing="uniform",
    )  # fmt: skip
    se = float(b.std()) / math.sqrt(len(b))
    assert abs(float(b.mean()) - exact_diffusion_part(oracle, probs, 5)) < 4 * se


def test_standard_error_shrinks_as_one_over_sqrt_k(toy):
    """One x0 repeated (no data variance), so the SE is pure Monte Carlo error. Stratified with one
    sample per stratum, Var = (1/K^2) sum_k Var_k; in v = sqrt(t) the within-stratum variance is
    bounded, so Var ~ c/K plus a between-strata remainder O(1/K^3) that only inflates small K:
    SE(4)/SE(16) ~ 2 (>= 2 in theory). The SE estimates from n = 3000 draws each carry a few %
    relative error (kurtosis ~ 20: sqrt(19 / 4n) = 4 %); band [1.6, 2.6]."""
    oracle, _ = toy
    x0 = oracle.configs[13].repeat(3000, 1)
    graph, noise = Absorbing(V), LogLinearNoise(EPS)
    se = {}
    for K in (4, 16):
        b = bound_per_sequence(
            oracle, graph, noise, x0, K, torch.Generator().manual_seed(K), masked_only=False
        )
        se[K] = float(b.std()) / math.sqrt(len(b))
    assert 1.6 < se[4] / se[16] < 2.6


def exact_integrand(oracle: Oracle, probs: torch.Tensor, idx: int, t: float) -> float:
    """The DWDSE integrand at one time t for the exact score, in closed form (log-linear noise).

    On [t, 1] the same chain rule as in `exact_diffusion_part` gives
    int_t^1 (integrand) = F(t) - F(1), F(t) = E_{x_t|x0} log(p_t(x_t|x0) / p_t(x_t)), so the
    integrand is -F'(t). Given the set S of kept positions (each kept with probability
    a = e^-sigma(t) = 1 - (1 - eps) t) log(p_t(x_t|x0) / p_t(x_t)) = -log P(x0' agrees with x0 on
    S), so F(t) = sum_S P(S) (-log agree(S)) and dP(S)/dt = P(S) (|S|/a - (L - |S|)/(1 - a)) da/dt,
    da/dt = -(1 - eps). Nothing here calls the loss code."""
    x0 = oracle.configs[idx]
    a = 1 - (1 - EPS) * t
    dF = 0.0
    for keep in itertools.product([0, 1], repeat=L):
        k = sum(keep)
        p_keep = a**k * (1 - a) ** (L - k)
        agree = torch.ones(len(probs), dtype=torch.bool)
        for pos, kk in enumerate(keep):
            if kk:
                agree &= oracle.configs[:, pos] == x0[pos]
        dP = p_keep * (k / a - (L - k) / (1 - a)) * -(1 - EPS)
        dF += dP * -math.log(float(probs[agree].sum()))
    return -dF


@pytest.mark.parametrize("t0", [0.3, 0.8])
def test_fixed_time_bound_equals_the_exact_integrand(toy, t0):
    """With given times (K = 1, t = t0 for every copy, weight 1) the estimator is an unbiased
    estimate of the integrand at t0, whose exact value `exact_integrand` comes from the
    time derivative of a closed form (no loss code involved). n = 4000 copies of one x0; 4 SE
    (false alarm 6e-5). A missing or wrong dsigma weight (dsigma(0.8) = 4.98 vs 1), a wrong
    masking probability or unmasked positions that count would each be tens of SE off."""
    oracle, probs = toy
    idx = 13
    x0 = oracle.configs[idx].repeat(4000, 1)
    t = torch.full((1, len(x0)), t0)
    b = bound_per_sequence(
        oracle,
        Absorbing(V),
        LogLinearNoise(EPS),
        x0,
        1,
        torch.Generator().manual_seed(2),
        t=t,
        masked_only=False,
    )
    mean, se = float(b.mean()), float(b.std()) / math.sqrt(len(b))
    exact = exact_integrand(oracle, probs, idx, t0)
    assert exact > 0.5 and se < 0.05 * exact
    assert abs(mean - exact) < 4 * se, (mean, exact, se)


# --- the uniform graph, geometric schedule: the t = 0 reconstruction term ---------------------------


class UniformOracle(torch.nn.Module):
    """The exact log-score of the uniform forward process for data law `probs` over D^L:
    s(x)_{l, y} = log p_sigma(x with position l set to y) - log p_sigma(x), where
    p_sigma(x) = sum_c p(c) prod_m p(x_m | c_m) (float64, returned as float32 like a network)."""

    def __init__(self, probs: torch.Tensor, D: int, L: int):
        super().__init__()
        self.D, self.L, self.graph = D, L, Uniform(D)
        self.configs = torch.tensor(list(itertools.product(range(D), repeat=L)))  # [C, L]
        self.p = probs.double()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        B, D, C = x.shape[0], self.D, len(self.p)
        T = self.graph.transition(torch.arange(D).expand(B, D), sigma.double()[:, None])  # [B, j, y] = p(y|j)
        K = T[:, self.configs, :]  # [B, C, L, D]: p(y | c_l)
        px = K.gather(-1, x[:, None, :, None].expand(B, C, self.L, 1)).squeeze(-1)  # [B, C, L]
        full = (px.prod(-1) * self.p).sum(-1)  # [B]
        out = torch.empty(B, self.L, D, dtype=torch.float64)
        for pos in range(self.L):
            others = torch.cat([px[..., :pos], px[..., pos + 1 :]], -1).prod(-1) * self.p  # [B, C]
            out[:, pos] = torch.einsum("bc,bcy->by", others, K[:, :, pos, :]).log() - full.log()[:, None]
        return out.float()


def _uniform_exact(oracle: UniformOracle, noise: GeometricNoise, idx: int) -> dict[str, float]:
    """Exact values by enumeration of the D^L states, for x0 = configs[idx]:

    * ``R``: E_{x'|x0} -sum_l log dec_l(x0_l | x'), dec = (1 - floor) posterior marginal + floor/D
      (the exact score makes the Tweedie denoiser the exact posterior marginal);
    * ``D``: the DWDSE integral, E_{x'|x0} log(p(x'|x0)/p_s0(x')) + E_{x1|x0} log(p_1(x1)/p_1(x1|x0))
      (path chain rule as in `exact_diffusion_part`, started at x' ~ p_s0(.|x0) instead of x0);
    * ``prior``: L KL(p_1(.|x0) || uniform);
    * ``model_nll``: -log p_theta(x0) of the model the bound is about: x1 ~ pi (uniform), the
      exact reverse process to t = 0 (marginal q0(x') = p_s0(x') sum_x1 pi(x1) p(x1|x')/p_1(x1),
      with p(x1|x') the forward kernel over sigma_max - sigma_min), then the denoiser.
    """
    C, D, L_ = oracle.configs, oracle.D, oracle.L
    probs = oracle.p

    def seq_kernel(sig: float) -> torch.Tensor:  # [x, c] = p(x | c) for whole sequences
        T = torch.stack(
            [
                oracle.graph.transition(torch.tensor(j), torch.tensor(sig, dtype=torch.float64))
                for j in range(D)
            ],
            1,
        )
        return T[C[:, None, :], C[None, :, :]].prod(-1)

    s0, s1 = noise.sigma_min, noise.sigma_max
    P0, P1, Pd = seq_kernel(s0), seq_kernel(s1), seq_kernel(s1 - s0)
    px0, px1 = P0 @ probs, P1 @ probs
    post = P0 * probs[None]
    post = post / post.sum(1, keepdim=True)  # [x', c] = p(x0 = c | x')
    marg = torch.stack(
        [torch.stack([post[:, C[:, pos] == j].sum(1) for j in range(D)], -1) for pos in range(L_)], 1
    )  # [x', L, D]
    dec = (1 - DECODER_FLOOR) * marg + DECODER_FLOOR / D
    pi = torch.full_like(probs, 1 / len(probs))
    q0 = px0 * ((pi / px1) @ Pd)
    dec_c = dec[:, torch.arange(L_)[None, :], C].prod(-1)  # [x', c] = prod_l dec_l(c_l | x')
    a, b = P0[:, idx], P1[:, idx]
    return {
        "R": float((a * -dec[:, torch.arange(L_), C[idx]].log().sum(-1)).sum()),
        "D": float((a * (a.log() - px0.log())).sum() + (b * (px1.log() - b.log())).sum()),
        "prior": L_ * prior_kl_per_position(oracle.graph, noise),
        "model_nll": -math.log(float(q0 @ dec_c[:, idx])),
    }


@pytest.fixture(scope="module")
def uniform_toy():
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(V**L, generator=g, dtype=torch.float64) + 0.2
    return UniformOracle(probs / probs.sum(), V, L)


@pytest.mark.parametrize("idx", [0, 13])
def test_uniform_bound_with_reconstruction_bounds_the_models_likelihood(uniform_toy, idx):
    """Uniform graph, geometric schedule with sigma_min = 0.05 (large, so that x' != x0 for 10 % of
    the sequences and the t = 0 term R ~ 0.6 nats is 20 SE: without it the estimate falls below
    the model's NLL). Exact: R + D + prior >= -log p_theta(x0), within 0.005 nats for the exact
    score. Estimated (n = 3000 copies, K = 8): within 4 SE (SE ~ 0.03) of R + D + prior and
    >= the model's NLL - 3 SE; R alone from 20000 draws within 4 SE of its exact value."""
    oracle = uniform_toy
    noise = GeometricNoise(0.05, 5.0)
    ex = _uniform_exact(oracle, noise, idx)
    exact_bound = ex["R"] + ex["D"] + ex["prior"]
    assert ex["R"] > 0.4
    assert ex["model_nll"] <= exact_bound < ex["model_nll"] + 0.005

    x0 = oracle.configs[idx].repeat(3000, 1)
    res = evaluate_blocks(oracle, oracle.graph, noise, x0, mc=8, batch_size=3000, seed=idx)
    mean, se = float(res.bounds.mean()), float(res.bounds.std()) / math.sqrt(len(x0))
    assert se < 0.04
    assert abs(mean - exact_bound) < 4 * se, (mean, exact_bound, se)
    assert mean >= ex["model_nll"] - 3 * se

    r = reconstruction_term(
        oracle, oracle.graph, noise, oracle.configs[idx].repeat(20000, 1), torch.Generator().manual_seed(5)
    )
    r_mean, r_se = float(r.mean()), float(r.std()) / math.sqrt(len(r))
    assert abs(r_mean - ex["R"]) < 4 * r_se, (r_mean, ex["R"], r_se)


def test_reconstruction_is_zero_without_noise_at_t0(toy):
    """Log-linear schedule: sigma(0) = 0, so x' = x0 and the term is exactly 0 (no draw made)."""
    oracle, _ = toy
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    r = reconstruction_term(oracle, Absorbing(V), LogLinearNoise(EPS), oracle.configs[:5], g)
    assert torch.equal(r, torch.zeros(5, dtype=torch.float64)) and torch.equal(g.get_state(), state)


# --- the real model: training-loss equality, token rules ------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random char model (pad layout, pad id 0) saved as a model folder."""
    return save_tiny_char_model(tmp_path_factory.mktemp("evalm") / "m")


def _blocks(pre: Pretrained, n: int = 6, seed: int = 0) -> torch.Tensor:
    """Random names right-padded with the pad id (0): [n, L]."""
    g = torch.Generator().manual_seed(seed)
    Lm = pre.config.model.length
    x = torch.randint(1, pre.tokenizer.vocab_size, (n, Lm), generator=g)
    lengths = torch.randint(2, Lm, (n,), generator=g)
    return torch.where(torch.arange(Lm)[None] < lengths[:, None], x, 0)


def test_command_with_one_time_sample_is_the_training_loss(tiny):
    """The documented link to training: the command with K = 1, uniform spacing and seed s equals
    the training loss at t = max(u, 1e-6), u the generator's first float64 draw (same generator
    => same x_t), plus the prior, over the token count. (Correctness of the value itself is the
    oracle's business: `test_fixed_time_bound_equals_the_exact_integrand`.)"""
    pre = load_pretrained(str(tiny), device="cpu")
    x0 = _blocks(pre)
    B = x0.shape[0]
    result = perplexity(pre, data=x0, mc=1, spacing="uniform", seed=11, batch_size=B)
    g = torch.Generator().manual_seed(11)
    u = torch.rand(B, generator=g, dtype=torch.float64)
    with torch.no_grad():
        loss = score_entropy_loss(
            pre.model, pre.graph, pre.noise, x0, t=u.clamp_min(1e-6).float(), generator=g
        )
    n_tok = int((x0 != 0).sum())
    prior = prior_kl_per_position(pre.graph, pre.noise) * x0.numel()
    assert result.nll == pytest.approx((float(loss.loss.sum()) + prior) / n_tok, rel=1e-6)


def test_pads_are_scored_but_not_counted(toy):
    """Pad layout on the oracle, token 0 as the pad: records "1 2 0" (two tokens and a pad) and
    "2 0 0" (one token, two pads). The bound per block must be the exact value over all L = 3
    positions (closed form, pads included: a bound that skipped pads would miss their share of
    -log p(x0), here > 1 nat), while the count is 2 and 1 tokens. n = 2000 copies each, 4 SE."""
    oracle, probs = toy
    graph, noise = Absorbing(V), LogLinearNoise(EPS)
    rows = {(1, 2, 0): 2, (2, 0, 0): 1}
    for row, n_tok in rows.items():
        idx = next(i for i, c in enumerate(oracle.configs.tolist()) if tuple(c) == row)
        x0 = oracle.configs[idx].repeat(2000, 1)
        res = evaluate_blocks(
            oracle, graph, noise, x0, layout="pad", pad_id=0, mc=8, batch_size=2000, seed=idx
        )
        assert torch.equal(res.counts, torch.full((2000,), n_tok))
        exact = exact_diffusion_part(oracle, probs, idx) + L * prior_kl_per_position(graph, noise)
        mean, se = float(res.bounds.mean()), float(res.bounds.std()) / math.sqrt(2000)
        assert abs(mean - exact) < 4 * se, (row, mean, exact, se)
        summary = summarize_bounds(res.bounds, res.counts)
        assert summary.nll == pytest.approx(mean / n_tok, rel=1e-12) and summary.n_tokens == 2000 * n_tok


def test_pad_layout_reports_a_figure_per_record(tiny):
    """`perplexity` on a pad-layout model: nats per token over non-pad tokens, nats per record =
    mean over rows of the block bound (= nll * tokens / rows exactly), its SE std / sqrt(rows);
    pack layout has no per-record figure."""
    pre = load_pretrained(str(tiny), device="cpu")
    x0 = _blocks(pre)
    pad = perplexity(pre, data=x0, mc=2, seed=3)
    assert pad.layout == "pad" and "non-pad" in pad.token_rule
    assert pad.n_tokens == int((x0 != 0).sum()) < x0.numel() == pad.n_positions
    assert pad.nll_per_record == pytest.approx(pad.nll * pad.n_tokens / len(x0), rel=1e-12)
    res = evaluate_blocks(pre.model, pre.graph, pre.noise, x0, layout="pad", pad_id=0, mc=2, seed=3)
    assert pad.stderr_per_record == pytest.approx(float(res.bounds.std()) / math.sqrt(len(x0)), rel=1e-9)
    assert pad.perplexity == pytest.approx(math.exp(pad.nll))
    assert pad.bits == pytest.approx(pad.nll / math.log(2)) and pad.unit == "character"
    pre.config.data.layout = "pack"
    pack = perplexity(pre, data=x0, mc=2, seed=3)
    assert pack.n_tokens == x0.numel() and "EOS" in pack.token_rule and pack.nll_per_record is None


def test_ratio_standard_error():
    """Equal counts: the ratio SE is std(b_i / n) / sqrt(N) exactly. Unequal counts, by hand:
    b = (1, 2, 6), n = (1, 2, 3): nll = 9/6 = 1.5, residuals b - 1.5 n = (-0.5, -1, 1.5), squares
    sum to 3.5, SE = sqrt(3.5 / (3 * 2)) / 2 = 0.381881."""
    b = torch.tensor([10.0, 12.0, 9.0, 15.0, 11.0], dtype=torch.float64)
    n = torch.full((5,), 4)
    s = summarize_bounds(b, n)
    assert s.nll == pytest.approx(57 / 20)
    assert s.stderr == pytest.approx(float((b / 4).std()) / math.sqrt(5))
    assert summarize_bounds(b[:1], n[:1]).stderr is None
    s = summarize_bounds(torch.tensor([1.0, 2.0, 6.0]), torch.tensor([1, 2, 3]))
    assert s.nll == 1.5 and s.stderr == pytest.approx(math.sqrt(3.5 / 6) / 2, rel=1e-12)


def test_ratio_standard_error_matches_the_spread_of_the_estimate():
    """Unequal counts, brute force: 4000 replicate evaluation sets of N = 40 blocks with
    n_i ~ U{1..16} tokens and b_i = 2 n_i + 3 z_i, z ~ N(0, 1) (block noise independent of length,
    so short blocks have noisy ratios). The spread of the 4000 ratio estimates is the true SE;
    the mean reported SE must be within 6 % of it (the SD of 4000 draws is known to 1.1 %; the
    delta method's O(1/N) bias is ~2 %). The mean of ratios' SE std(b_i/n_i)/sqrt(N), correct
    only for equal counts, is off by a factor ~2 here, so a formula that ignored the counts fails."""
    g = torch.Generator().manual_seed(0)
    reps, N = 4000, 40
    n = torch.randint(1, 17, (reps, N), generator=g).double()
    b = 2 * n + 3 * torch.randn(reps, N, generator=g, dtype=torch.float64)
    estimates = b.sum(1) / n.sum(1)
    true_se = float(estimates.std())
    reported = torch.tensor([summarize_bounds(b[r], n[r]).stderr for r in range(reps)])
    assert abs(float(reported.mean()) / true_se - 1) < 0.06
    naive = float(((b / n).std(1) / math.sqrt(N)).mean())
    assert naive / true_se > 1.5


def test_uniform_model_reports_the_reconstruction_term(tmp_path):
    """A uniform-graph model (geometric schedule, sigma(0) = 1e-4): the result carries R, the parts
    add up to the bound, and the words say the sampler starts from pi itself."""
    torch.manual_seed(0)
    cfg = load_preset("tiny")
    tok = get_tokenizer("char", ["abc def"])
    cfg.model.vocab_size = tok.vocab_size
    cfg.graph.type, cfg.noise.type, cfg.model.scale_by_sigma = "uniform", "geometric", False
    model, _, _ = build_components(cfg, tok.vocab_size)
    save_model_dir(tmp_path / "u", model.state_dict(), cfg, tok, {"step": 0})
    pre = load_pretrained(str(tmp_path / "u"), device="cpu")
    r = perplexity(pre, data=_blocks(pre), mc=2, seed=1)
    assert r.nll_reconstruction > 0 and r.all_mask_gap is None and "sampler's own start" in r.bound_on
    assert r.nll == pytest.approx(r.nll_diffusion + r.nll_prior + r.nll_reconstruction, rel=1e-12)


@pytest.mark.parametrize("mc", [0, -3, MAX_MC + 1, 10**12, 2.5, True])
def test_mc_out_of_range_is_one_error(tiny, mc):
    """K outside [1, MAX_MC] is refused by one check (`check_mc`) before anything is loaded or
    allocated: `perplexity`, `evaluate_blocks` and `bound_per_sequence` give the same message."""
    pre = load_pretrained(str(tiny), device="cpu")
    x0 = _blocks(pre)
    message = f"--mc must be an integer from 1 to {MAX_MC:,}"
    for call in (
        lambda: perplexity(pre, data=x0, mc=mc),
        lambda: evaluate_blocks(pre.model, pre.graph, pre.noise, x0, mc=mc),
        lambda: bound_per_sequence(pre.model, pre.graph, pre.noise, x0, mc),
    ):
        with pytest.raises(SeddError, match=message):
            call()
    assert check_mc(MAX_MC) == MAX_MC and check_mc(1) == 1


# --- generative perplexity -------------------------------------------------------------------------


def test_generative_conventions_with_stub_scores():
    """Sample A: 2 tokens, nll 2 ln 4 (ppl 4); sample B: 6 tokens, nll 6 ln 16 (ppl 16).
    Mean of per-sample ppl = 10; exp(mean token NLL) = exp((4 + 24) ln 2 / 8) = 2^3.5.
    Entropies: {1,1,2,2} -> ln 2, {5,5,5,5} -> 0, mean ln(2)/2."""
    scores = [SampleScore([1, 1, 2, 2], 2 * math.log(4), 2), SampleScore([5, 5, 5, 5], 6 * math.log(16), 6)]
    r = summarize_samples(scores, evaluator="stub")
    assert r.mean_sample_perplexity == pytest.approx(10.0)
    assert r.perplexity == pytest.approx(2**3.5)
    assert r.entropy == pytest.approx(math.log(2) / 2)
    assert r.n_tokens == 8 and r.n_samples == 2
    assert unigram_entropy([0, 1, 2, 3]) == pytest.approx(math.log(4))


def test_read_samples_formats(tmp_path):
    lines = tmp_path / "a.txt"
    lines.write_text("emma\n\nolivia\nava\n")
    assert read_samples(lines) == ["emma", "olivia", "ava"]
    blocks = tmp_path / "b.txt"
    blocks.write_text("first line\nsecond line\n=====\nother sample\n=====\n")
    assert read_samples(blocks) == ["first line\nsecond line", "other sample"]
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(SeddError, match="no samples"):
        read_samples(tmp_path / "e.txt")


# --- the command line ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("evald") / "names.txt"
    path.write_text("\n".join(["abc", "def fed", "cab bad", "ace", "bed dab cafe"] * 2) + "\n")
    return path


def test_cli_json_and_human(tiny, text_file):
    runner = CliRunner()
    r = runner.invoke(app, ["perplexity", str(tiny), "--data", str(text_file), "--mc", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["n_blocks"] == 10 and doc["split"] == "all" and doc["layout"] == "pad"
    assert doc["n_tokens"] == sum(len(s) for s in ["abc", "def fed", "cab bad", "ace", "bed dab cafe"]) * 2
    assert doc["perplexity"] == pytest.approx(math.exp(doc["nll"]))
    assert doc["stderr_nll"] > 0 and doc["tokens_per_second"] > 0 and doc["unit"] == "character"
    assert doc["nll_prior"] == pytest.approx(doc["prior_per_position"] * doc["n_positions"] / doc["n_tokens"])
    # what is bounded, in words, and the per-record figure of the pad layout
    assert doc["bound_on"].startswith("-log p^pi(x0)") and "all-mask" in doc["bound_on"]
    assert "mask with probability 1 - 0.001" in doc["prior"]
    assert doc["all_mask_gap"] == pytest.approx(-math.log1p(-1e-3))
    assert doc["nll_per_record"] == pytest.approx(doc["nll"] * doc["n_tokens"] / doc["n_blocks"])
    assert doc["stderr_per_record"] > 0 and doc["nll_reconstruction"] == 0.0
    # the same computation through the Python API gives the same number
    api = perplexity(str(tiny), data=str(text_file), mc=2, device="cpu")
    assert api.nll == pytest.approx(doc["nll"], rel=1e-9)
    r = runner.invoke(app, ["perplexity", str(tiny), "--data", str(text_file), "--mc", "1"])
    assert r.exit_code == 0, r.output
    assert "perplexity" in r.stdout and "bits/char" in r.stdout
    assert "nats/record" in r.stdout and "-log p^pi(x0)" in r.stdout and "sedd sample" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "wikitext2"], "model/tokenizer mismatch"),
        (["--data", "wikitxt2"], "unknown protocol"),
        (["--data", "TEXT", "--mc", "0"], "--mc must be an integer from 1 to 10,000"),
        (["--data", "TEXT", "--mc", str(10**12)], "--mc must be an integer from 1 to 10,000"),
        (
            ["--generative", "BINARY", "--eval-model", "gpt2-large"],
            "is not UTF-8 text (invalid start byte at byte 3)",
        ),
        (["--data", "TEXT", "--split", "validation"], "holds no text"),
        (["--generative", "SAMPLES", "--eval-model", "gpt2-large"], "no evaluator"),
    ],
)
def test_cli_errors_are_one_line(tiny, text_file, tmp_path, monkeypatch, args, message):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails even where it is installed
    samples = tmp_path / "s.txt"
    samples.write_text("abc\ndef\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"abc\xff\xfe\x00def")
    files = {"TEXT": str(text_file), "SAMPLES": str(samples), "BINARY": str(binary)}
    args = [files.get(a, a) for a in args]
    r = CliRunner().invoke(app, ["perplexity", str(tiny), *args])
    assert r.exit_code == 1
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_generative_with_sedd_evaluator(tiny, tmp_path):
    """Zero-download evaluator: a sedd model scores a samples file by its bound."""
    samples = tmp_path / "s.txt"
    samples.write_text("abc\n====\ndef fed\n====\ncab\n")
    r = CliRunner().invoke(
        app,
        ["perplexity", "--generative", str(samples), "--eval-model", f"sedd:{tiny}", "--mc", "2", "--json"],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["n_samples"] == 3 and doc["n_tokens"] == 3 + 7 + 3
    assert doc["mean_sample_perplexity"] == pytest.approx(sum(doc["sample_perplexities"]) / 3)
    assert doc["perplexity"] == pytest.approx(math.exp(doc["nll"]))
    assert doc["entropy"] == pytest.approx((math.log(3) + unigram_entropy(list("def fed")) + math.log(3)) / 3)


def test_generative_samples_ignore_the_models_temperature(tiny, monkeypatch):
    """--generative MODEL scores the model as it is: temperature 1 and top-p 1 reach the sampler
    even when the model's sample settings sharpen (docs/evaluation.md)."""
    import sedd_cli.sampling as sampling
    from sedd_cli.checkpoints import load_pretrained
    from sedd_cli.evaluation.generative import _generate_texts

    pre = load_pretrained(str(tiny), device="cpu")
    pre.config.sample.temperature, pre.config.sample.top_p = 0.5, 0.9
    seen = []
    real = sampling.generate

    def spy(*args, **kw):
        seen.append((kw["temperature"], kw["top_p"]))
        return real(*args, **kw)

    monkeypatch.setattr(sampling, "generate", spy)
    texts, _ = _generate_texts(pre, num_samples=3, steps=2, batch_size=2, seed=0, device="cpu")
    assert len(texts) == 3 and seen == [(1.0, 1.0), (1.0, 1.0)]


def test_generative_steps_zero_is_refused_not_replaced(tiny):
    """--generative MODEL --steps 0 reaches the sampler's own check (it used to fall back to the
    model's sample.steps silently)."""
    r = CliRunner().invoke(
        app,
        ["perplexity", "--generative", str(tiny), "--eval-model", f"sedd:{tiny}", "--steps", "0"],
    )
    assert r.exit_code == 1 and "steps must be between 1 and" in r.stderr, r.output
