"""Time-independent absorbing models (RADD, sedd-spec §9; issue #16 items 1-2).

* RADD's own outputs (tests/fixtures/reference/radd-golden-tiny.json) on its tiny deterministically
  initialised network: the conditional, the raw head and the t-DSE, t-DCE and lambda-DCE losses,
  within 1e-4; RADD small's state-dict layout (names, shapes, order, parameter count).
* The log-score contract that keeps every sampler, loss and bound working: model(x, sigma) at a
  masked row is log c - log(e^sigma - 1) over the real tokens and 0 at the mask; `features` +
  `head_logits` give the same numbers; the fused masked-rows loss has the full loss's gradient.
* The lambda-form bound: for the exact conditional of a known law its expectation is exactly
  -log p(x0) (closed form by enumeration, and the Monte Carlo estimator within 5 standard errors);
  for a network it matches the DSE-form diffusion integral over the lambda range that the
  schedule covers, the rest being the piece over lambda in (1 - eps, 1].
* The bad combinations: one line each, one origin each.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sedd_cli import config as config_mod
from sedd_cli.config import ConfigError, ModelConfig, config_from_dict
from sedd_cli.errors import SeddError
from sedd_cli.graph import Absorbing, log_esigm1
from sedd_cli.losses import (
    LOSSES,
    LossOutput,
    get_loss,
    lambda_bound_per_sequence,
    lambda_dce_loss,
    sample_lambda,
    sample_t,
    score_entropy_loss,
    t_dce_loss,
    training_loss,
)
from sedd_cli.model import SEDD, count_parameters
from sedd_cli.noise import LogLinearNoise

from .checks import assert_checked_once
from .helpers import deterministic_init_, radd_golden, radd_state_dict

GOLDEN = radd_golden()
TOL = 1e-4


def _close(actual: torch.Tensor, expected, tol: float = TOL) -> float:
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol)
    return float((actual.double() - expected).abs().max())


def _golden_model() -> SEDD:
    c = GOLDEN["config"]
    cfg = ModelConfig(
        hidden_size=c["hidden_size"],
        n_blocks=c["n_blocks"],
        n_heads=c["n_heads"],
        mlp_ratio=c["mlp_ratio"],
        dropout=c["dropout"],
        length=c["length"],
        time_conditioning=False,
    )
    model = SEDD(cfg, c["tokens"] + 1).eval()  # eval: dropout off, as RADD's outputs were taken
    names = deterministic_init_(model)
    # RADD's parameter names for 2 blocks (the small model's list, blocks 0 and 1), sorted as strings
    ref = [n for n, _ in radd_state_dict()["state_dict"] if n != "rotary_emb.inv_freq"]
    assert names == sorted(n for n in ref if not n.startswith("blocks.") or n.split(".")[1] in "01")
    return model


def _golden_inputs():
    g = GOLDEN
    t = torch.tensor(g["t"])
    sigma, dsigma = LogLinearNoise(1e-3)(t)
    return torch.tensor(g["x0"]), torch.tensor(g["xt"]), t, sigma, dsigma


# --- RADD's outputs and layout -------------------------------------------------------------------


def test_golden_schedule_and_corruption():
    g = GOLDEN
    x0, xt, _, sigma, dsigma = _golden_inputs()
    _close(sigma, g["sigma"])
    _close(dsigma, g["dsigma"])
    B, L = x0.shape  # the corruption rule of the file, reproduced
    k, b = torch.arange(L)[None, :], torch.arange(B)[:, None]
    t_decimal = torch.tensor([round(t, 6) for t in g["t"]], dtype=torch.float64)  # 0.3, 0.8
    masked = (3 * k + 7 * b) % 10 < 10 * t_decimal[:, None]
    assert torch.equal(xt, torch.where(masked, g["config"]["tokens"], x0))


def test_golden_log_condition_and_raw_head():
    """Columns 0..V-1 of RADD's log_condition are our `log_condition`; its column V (the mask's raw
    logit, never read) is compared through the raw head, with every other column of `logits`."""
    model = _golden_model()
    _, xt, _, _, _ = _golden_inputs()
    V = GOLDEN["config"]["tokens"]
    expected = torch.tensor(GOLDEN["log_condition"], dtype=torch.float64)
    with torch.no_grad():
        log_c = model.log_condition(xt)
        raw = model.output_layer.linear(model.features(xt))
    assert log_c.shape == (2, 16, V)
    _close(log_c, expected[..., :V])
    _close(raw, GOLDEN["logits"])
    _close(raw[..., V], expected[..., V])


@pytest.mark.parametrize("masked_only", [True, False])
def test_golden_losses(masked_only):
    """t-DSE is `score_entropy_loss` with the implied score (fused masked-rows path and full path);
    t-DCE and lambda-DCE (lambda = 1 - e^-sigma, the masking probability of these x_t)."""
    model = _golden_model()
    graph, noise = Absorbing(GOLDEN["config"]["tokens"]), LogLinearNoise(1e-3)
    x0, xt, t, sigma, _ = _golden_inputs()
    with torch.no_grad():
        dse = score_entropy_loss(model, graph, noise, x0, t, xt=xt, masked_only=masked_only)
        tdce = t_dce_loss(model, graph, noise, x0, t, xt=xt)
        ldce = lambda_dce_loss(model, graph, noise, x0, -torch.expm1(-sigma), xt=xt)
    _close(dse.loss, GOLDEN["loss_t_dse"])
    _close(tdce.loss, GOLDEN["loss_t_dce"])
    _close(ldce.loss, GOLDEN["loss_lambda_dce"])


def test_radd_small_layout():
    """RADD small (hidden 768, 12 blocks, 12 heads, GPT-2 + mask), built on the meta device."""
    ref = radd_state_dict()
    cfg = ModelConfig(hidden_size=768, n_blocks=12, n_heads=12, time_conditioning=False)
    with torch.device("meta"):
        model = SEDD(cfg, 50257 + 1)
    ours = [[name, list(v.shape)] for name, v in model.state_dict().items()]
    assert ours == ref["state_dict"]  # same names, shapes and order
    # the file's count (162,265,714) sums the whole state dict, the rotary buffer's 32 included
    assert sum(v.numel() for v in model.state_dict().values()) == ref["params"] == 162_265_714
    assert count_parameters(model) == ref["params"] - 32
    assert model.time_conditioned is False


# --- the log-score contract ----------------------------------------------------------------------

V, L_TINY = 7, 6


def _tiny(seed: int = 0, time_conditioning: bool = False) -> SEDD:
    cfg = ModelConfig(
        hidden_size=16, n_blocks=2, n_heads=2, dropout=0.0, length=L_TINY, time_conditioning=time_conditioning
    )
    model = SEDD(cfg, V + 1).eval()
    deterministic_init_(model)
    with torch.no_grad():  # break the init's symmetry a little, per seed
        g = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[7, 1, 7, 3, 7, 0], [7, 7, 7, 7, 7, 7], [2, 7, 4, 7, 6, 7], [1, 2, 3, 4, 5, 6]])
    sigma = torch.tensor([1e-6, 0.3, 2.0, 20.0])
    return x, sigma


def test_log_esigm1_is_accurate_at_both_ends():
    sigma = torch.tensor([1e-7, 1e-4, 0.1, 0.4999, 0.5, 3.0, 50.0, 100.0, 1e4])
    exact = [math.log(math.expm1(s)) if s < 700 else s for s in sigma.double().tolist()]
    torch.testing.assert_close(
        log_esigm1(sigma).double(), torch.tensor(exact, dtype=torch.float64), rtol=1e-6, atol=1e-6
    )


def test_model_output_is_the_implied_log_score():
    model = _tiny()
    x, sigma = _tiny_batch()
    with torch.no_grad():
        s = model(x, sigma)  # [B, L, D]
        log_c = model.log_condition(x)  # [B, L, V]
    assert s.shape == (4, L_TINY, V + 1) and log_c.shape == (4, L_TINY, V)
    assert torch.isfinite(s).all()
    torch.testing.assert_close(log_c.exp().sum(-1), torch.ones(4, L_TINY))
    masked = x == V
    offset = torch.log(torch.expm1(sigma.double()))[:, None, None].expand(-1, L_TINY, V)
    torch.testing.assert_close(
        s[masked][:, :V].double(), (log_c.double() - offset)[masked], rtol=1e-6, atol=1e-5
    )
    assert (s[masked][:, V] == 0).all()  # the mask is the current token there
    assert (s.gather(-1, x[..., None]) == 0).all()  # current token: log-ratio 0
    # sum_j s_j = 1 / (e^sigma - 1): the chance to unmask does not depend on the network
    total = s[masked][:, :V].double().exp().sum(-1)
    rate = (1 / torch.expm1(sigma.double()))[:, None].expand(-1, L_TINY)[masked]
    torch.testing.assert_close(total, rate, rtol=1e-5, atol=0)
    # sigma is not an input: the conditional is the same at every sigma
    with torch.no_grad():
        s2 = model(x, sigma.flip(0) + 1.0)
    torch.testing.assert_close(
        s2[masked][:, :V] + log_esigm1(sigma.flip(0) + 1.0)[:, None, None].expand(-1, L_TINY, V)[masked],
        log_c[masked],
    )


@pytest.mark.parametrize("columns", [V, None])
def test_head_logits_agree_with_forward(columns):
    model = _tiny()
    x, sigma = _tiny_batch()
    idx = (x == V).nonzero(as_tuple=True)
    with torch.no_grad():
        full = model(x, sigma)[idx]  # [N, D]
        a = model.features(x, sigma)
        z, offset = model.head_logits(a[idx], sigma[idx[0]], columns=columns)
        a_none = model.features(x, None)
    assert torch.equal(a, a_none)  # sigma is ignored
    n = V + 1 if columns is None else V
    assert z.shape == (len(idx[0]), n) and offset.dtype == torch.float32
    torch.testing.assert_close(z - offset[:, None], full[:, :n])
    torch.testing.assert_close(offset, log_esigm1(sigma[idx[0]]))


def _grads(model, fn) -> list[torch.Tensor]:
    model.zero_grad()
    fn().sum().backward()
    return [p.grad.clone() for p in model.parameters()]


def test_fused_loss_gradient_and_loss_identities():
    """masked-only (fused, offset held constant) and full t-DSE give the same loss and gradient;
    t-DCE = t-DSE + a network-free term (same gradient); t-DSE = lambda-DCE * lambda dsigma /
    (e^sigma - 1) at lambda = 1 - e^-sigma (the change of variable)."""
    model = _tiny(1)
    graph, noise = Absorbing(V), LogLinearNoise(1e-3)
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randint(0, V, (8, L_TINY), generator=gen)
    t = sample_t(8, 1e-3, generator=gen, stratified=True)
    sigma, dsigma = noise(t)
    xt = graph.sample_transition(x0, sigma[:, None], generator=gen)

    def loss(fn, *args, **kw):
        return lambda: fn(model, graph, noise, x0, *args, xt=xt, **kw).loss

    fused = _grads(model, loss(score_entropy_loss, t, masked_only=True))
    full = _grads(model, loss(score_entropy_loss, t, masked_only=False))
    tdce = _grads(model, loss(t_dce_loss, t))
    for a, b, c in zip(fused, full, tdce, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        dse = score_entropy_loss(model, graph, noise, x0, t, xt=xt).loss.double()
        dce = t_dce_loss(model, graph, noise, x0, t, xt=xt).loss.double()
        lam = -torch.expm1(-sigma)
        ldce = lambda_dce_loss(model, graph, noise, x0, lam, xt=xt).loss.double()
    n_masked = (xt == V).sum(-1).double()
    em1 = torch.expm1(sigma.double())
    torch.testing.assert_close(dce - dse, n_masked * dsigma.double() * em1.log() / em1, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dse, ldce * lam.double() * dsigma.double() / em1, rtol=1e-5, atol=1e-4)


# --- the loss registry ---------------------------------------------------------------------------


def test_loss_registry_and_its_call_contract():
    assert set(LOSSES) == set(config_mod.LOSSES) == {"dse", "t-dce", "lambda-dce"}
    assert get_loss("dse").loss is score_entropy_loss
    cfg = config_from_dict({"model": {"time_conditioning": False}, "train": {"loss": "lambda-dce"}})
    assert training_loss(cfg).name == "lambda-dce"
    assert training_loss(config_from_dict({})).name == "dse"  # the default, today's objective
    with pytest.raises(SeddError, match="unknown loss"):
        get_loss("dce")
    model = _tiny(2)
    graph, noise = Absorbing(V), LogLinearNoise(1e-3)
    x0 = torch.randint(0, V, (16, L_TINY), generator=torch.Generator().manual_seed(5))
    for name, objective in LOSSES.items():
        gen = torch.Generator().manual_seed(7)
        t, xt = objective.draw(graph, noise, x0, 1e-3, gen, True)  # as the trainer's _draw
        out = objective(model, graph, noise, x0, t, xt=xt, sampling_eps=1e-3)  # as the trainer calls
        assert isinstance(out, LossOutput) and out.loss.shape == (16,) and out.loss.requires_grad
        assert torch.isfinite(out.loss).all()
        if name != "t-dce":  # t-DCE carries a network-free term of either sign
            assert (out.loss >= 0).all()
        assert objective.time_independent == (name != "dse")
    # the t-draw is the trainer's: sample_t, then the forward process, from one generator
    gen, ref = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    t, xt = LOSSES["dse"].draw(graph, noise, x0, 1e-3, gen, False)
    t_ref = sample_t(16, 1e-3, None, ref, False)
    assert torch.equal(t, t_ref)
    assert torch.equal(xt, graph.sample_transition(x0, noise(t_ref)[0][:, None], generator=ref))


def test_lambda_draws_are_decoupled_strata():
    lam = sample_lambda(1000, generator=torch.Generator().manual_seed(0))
    k = torch.arange(1000)
    assert ((lam > k / 1000) & (lam <= (k + 1) / 1000)).all()
    out = lambda_dce_loss(
        _tiny(), Absorbing(V), None, torch.zeros(4, L_TINY, dtype=torch.long), torch.ones(4)
    )
    assert (out.xt == V).all()  # lambda = 1 masks everything


# --- the lambda-form bound -----------------------------------------------------------------------


class ConditionalOracle:
    """The exact conditional log p(x0_l = j | unmasked tokens of x) of a joint table p over
    {0..V-1}^L, with the time-independent model's interface (`features` + `head_log_condition`).
    A feature row is (index of the state x, position l); the table holds every state's answer."""

    time_conditioned = False

    def __init__(self, p: torch.Tensor):
        self.V, self.L = p.shape[0], p.dim()
        clean = torch.tensor(list(itertools.product(range(self.V), repeat=self.L)))  # [V^L, L]
        states = torch.tensor(list(itertools.product(range(self.V + 1), repeat=self.L)))
        flat = p.reshape(-1)
        table = torch.zeros(len(states), self.L, self.V, dtype=torch.float64)
        for s, x in enumerate(states):
            w = flat * ((clean == x) | (x == self.V)).all(-1)  # consistent with x's unmasked tokens
            for pos in range(self.L):
                marginal = torch.zeros(self.V, dtype=torch.float64).index_add(0, clean[:, pos], w)
                table[s, pos] = (marginal / marginal.sum()).log()
        self.table = table
        self.strides = (self.V + 1) ** torch.arange(self.L - 1, -1, -1)

    def features(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        index = (x * self.strides).sum(-1)  # [B]
        return torch.stack([index[:, None].expand_as(x), torch.arange(self.L).expand_as(x)], dim=-1)

    def head_log_condition(self, a: torch.Tensor) -> torch.Tensor:
        return self.table[a[..., 0], a[..., 1]]

    def log_condition(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_log_condition(self.features(x))


def _exact_lambda_bound(model, x0: torch.Tensor, mask_id: int, upper: float = 1.0) -> float:
    """int_0^upper E_{x_lambda}[-sum_masked log c[x0]] d lambda / lambda for one sequence x0 [L], by
    enumerating the 2^L mask sets S: sum_S f(S) int_0^upper lambda^(k-1) (1 - lambda)^(L-k) d lambda
    (k = |S|), the integral expanded binomially (upper = 1: the Beta function 1 / (k C(L, k)))."""
    L = x0.shape[0]
    total = 0.0
    for bits in itertools.product([False, True], repeat=L):
        S = torch.tensor(bits)
        k = int(S.sum())
        if k == 0:
            continue
        x = torch.where(S, mask_id, x0)[None]
        f = -float(model.log_condition(x)[0, S].double().gather(-1, x0[S][:, None]).sum())
        integral = sum(math.comb(L - k, i) * (-1) ** i * upper ** (k + i) / (k + i) for i in range(L - k + 1))
        total += f * integral
    return total


def _stratified(B: int, K: int, gen: torch.Generator, t_min: float = 1e-6):
    """evaluate.stratified_times' sqrt spacing: v_k = (k + u) / K, x = v^2, weight 2v, ``[K, B]``."""
    u = torch.rand(B, generator=gen, dtype=torch.float64)
    v = (torch.arange(K, dtype=torch.float64)[:, None] + u[None]) / K
    return (v * v).clamp_min(t_min).float(), 2 * v


def _within(samples: torch.Tensor, exact: float, z: float = 5.0) -> None:
    """The sample mean is within z standard errors of `exact` (z = 5: a false alarm ~6e-7)."""
    mean, se = float(samples.mean()), float(samples.std() / math.sqrt(len(samples)))
    assert abs(mean - exact) < z * se, f"mean {mean:.5f} vs exact {exact:.5f} (SE {se:.5f})"


def _joint() -> torch.Tensor:
    w = torch.tensor(
        [
            1 + ((7 * a + 3 * b * b + 5 * a * c + 2 * c) % 11)
            for a, b, c in itertools.product(range(3), repeat=3)
        ],
        dtype=torch.float64,
    )
    return (w / w.sum()).view(3, 3, 3)


def test_lambda_bound_is_exact_for_the_true_conditional():
    """E[lambda-form bound] = -log p(x0) for the exact conditional: every x0 by enumeration, and
    the estimator (stratified lambda, masks drawn) within 5 standard errors for one x0."""
    p = _joint()
    oracle = ConditionalOracle(p)
    for x0 in itertools.product(range(3), repeat=3):
        exact = _exact_lambda_bound(oracle, torch.tensor(x0), mask_id=3)
        assert abs(exact + math.log(p[x0])) < 1e-12
    x0 = torch.tensor([[2, 0, 1]]).expand(4000, -1)
    gen = torch.Generator().manual_seed(0)
    lam, weight = _stratified(4000, 4, gen)
    estimate = lambda_bound_per_sequence(oracle, Absorbing(3), x0, lam, weight, generator=gen)
    assert estimate.dtype == torch.float64 and estimate.shape == (4000,)
    _within(estimate, -math.log(p[2, 0, 1]))


def test_lambda_bound_against_the_dse_bound_of_the_same_network():
    """A time-independent network, L = 4, V = 7: the lambda-form estimator's mean matches its exact
    value, the DSE-form diffusion part (score entropy over t, the bound's estimator) matches the same
    integral over lambda in [0, 1 - eps] (the log-linear schedule's range), and the two exact
    values differ by the piece over (1 - eps, 1] only."""
    cfg = ModelConfig(hidden_size=16, n_blocks=1, n_heads=2, dropout=0.0, length=4, time_conditioning=False)
    model = SEDD(cfg, V + 1).eval()
    deterministic_init_(model)
    graph, eps = Absorbing(V), 0.05
    noise = LogLinearNoise(eps)
    x0 = torch.tensor([3, 0, 6, 2])
    with torch.no_grad():
        lam_exact = _exact_lambda_bound(model, x0, V)
        dse_exact = _exact_lambda_bound(model, x0, V, upper=1 - eps)
        assert lam_exact - dse_exact > 0  # the piece over lambda in (1 - eps, 1]
        B, K = 3000, 4
        xs = x0[None].expand(B, -1)
        gen = torch.Generator().manual_seed(1)
        lam, weight = _stratified(B, K, gen)
        _within(lambda_bound_per_sequence(model, graph, xs, lam, weight, generator=gen), lam_exact)
        t, weight = _stratified(B, K, gen)
        dse = torch.zeros(B, dtype=torch.float64)
        for k in range(K):
            out = score_entropy_loss(model, graph, noise, xs, t=t[k], generator=gen)
            dse += weight[k] * out.loss.double()
        _within(dse / K, dse_exact)


# --- bad combinations ----------------------------------------------------------------------------


def test_time_independent_model_needs_the_absorbing_graph():
    with pytest.raises(ConfigError, match="needs graph.type=absorb") as err:
        config_from_dict(
            {"model": {"time_conditioning": False, "scale_by_sigma": False}, "graph": {"type": "uniform"}}
        )
    assert "\n" not in str(err.value)
    assert_checked_once("needs graph.type=absorb")


@pytest.mark.parametrize("loss", ["t-dce", "lambda-dce"])
def test_dce_losses_need_a_time_independent_model(loss):
    with pytest.raises(ConfigError, match="needs a time-independent model: set") as err:
        config_from_dict({"train": {"loss": loss}})
    assert "\n" not in str(err.value)
    assert_checked_once("needs a time-independent model: set")
    cfg = config_from_dict({"model": {"time_conditioning": "false"}, "train": {"loss": loss}})
    assert cfg.model.time_conditioning is False and cfg.train.loss == loss


def test_unknown_loss_and_the_conditional_of_a_time_conditioned_model():
    with pytest.raises(ConfigError, match="train.loss must be one of dse, t-dce, lambda-dce"):
        config_from_dict({"train": {"loss": "dce"}})
    model = _tiny(time_conditioning=True)
    assert model.time_conditioned is True and hasattr(model, "sigma_map")
    with pytest.raises(SeddError, match="needs a time-independent model"):
        model.log_condition(torch.zeros(1, L_TINY, dtype=torch.long))
