"""Samplers against an oracle: exact scores of a known distribution over 27 sequences.

The oracle knows p, a joint table over {0,1,2}^3 with strong dependence between positions. Its
log-score at x_t is the exact log p_t(y) / p_t(x_t) (y = x_t with one position changed), where
p_t = (K_sigma ⊗ K_sigma ⊗ K_sigma) p and K_sigma is the per-token forward kernel of the graph
(absorbing: keep with e^-sigma, mask otherwise; uniform: (1 - e^-sigma)/V + e^-sigma delta). For a
masked position of the absorbing graph this is p(x0_l = j | unmasked tokens) / (e^sigma - 1).

Chi-square arithmetic. With n samples and an exact sampler the statistic sum (O - E)^2 / E over
the 27 cells is chi-square with 26 degrees of freedom: critical value 54.05 at alpha = 1e-3. A
sampler whose law q differs from p shifts it by lambda = n sum (q - p)^2 / p (noncentral
chi-square). The tau-leaping steps draw positions in parallel, a discretisation bias; the exact
law q of each discretised chain was computed by enumerating its Markov chain (64 states):
absorbing + LogLinear, 128 steps: TV(q, p) = 0.0012, lambda = 0.40 at n = 20000 (both predictors
have the same law here, unmask probability dt/t); uniform + Geometric(1e-4, 20), 256 steps:
analytic TV 0.0015, lambda 0.46; Euler TV 0.0008, lambda 0.08. A shift below 0.5 in a statistic
with mean 26 and sd 7.2 keeps the false-alarm rate near 1e-3, and the seeds are fixed. A wrong
predictor (e.g. independent per-position marginals) gives lambda in the thousands.
Infill (position 0 fixed): 9 cells, 8 degrees of freedom, critical value 26.12 at alpha = 1e-3;
only one pair of free positions, so the bias is below the three-pair figure above.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sedd_cli.errors import SeddError
from sedd_cli.graph import Absorbing, Uniform
from sedd_cli.noise import GeometricNoise, LogLinearNoise
from sedd_cli.samplers import (
    PREDICTORS,
    AnalyticPredictor,
    EulerPredictor,
    Predictor,
    StepEvent,
    generate,
    nucleus,
    parse_template,
    register_predictor,
    sample_categorical,
)

V, L = 3, 3
CHI2_26_999 = 54.05
CHI2_8_999 = 26.12
CHI2_7_999 = 24.32


pytestmark = pytest.mark.usefixtures("one_thread")


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
    """``oracle(x [B, L], sigma [B]) -> exact log-score [B, L, D]`` (float32, as a network's)."""

    def __init__(self, p: torch.Tensor, absorb: bool):
        self.p = p
        self.absorb = absorb
        self.D = V + 1 if absorb else V
        self.strides = torch.tensor([self.D ** (L - 1 - l) for l in range(L)])
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

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert torch.all(sigma == sigma[0]), "generate feeds one noise level per step"
        log_pt = self.pt(float(sigma[0])).clamp_min(1e-300).log()
        idx = (x * self.strides).sum(-1)  # [B]
        j = torch.arange(self.D)
        y = idx[:, None, None] + (j[None, None, :] - x[:, :, None]) * self.strides[None, :, None]  # [B, L, D]
        return (log_pt[y] - log_pt[idx][:, None, None]).float()


def counts(x: torch.Tensor) -> torch.Tensor:
    """Histogram of sequences over the 27 cells, shaped [V, V, V]."""
    assert x.min() >= 0 and x.max() < V, "ids outside the base vocabulary"
    flat = x[:, 0] * V * V + x[:, 1] * V + x[:, 2]
    return torch.bincount(flat, minlength=V**L).double().view(V, V, V)


def chi2(obs: torch.Tensor, p: torch.Tensor) -> float:
    n = obs.sum()
    return float(((obs - n * p) ** 2 / (n * p)).sum())


def run(absorb: bool, predictor: str, steps: int, n: int = 20000, seed: int = 0, **kw) -> torch.Tensor:
    graph = Absorbing(V) if absorb else Uniform(V)
    noise = LogLinearNoise(1e-3) if absorb else GeometricNoise(1e-4, 20.0)
    oracle = Oracle(joint_table(), absorb)
    gen = torch.Generator().manual_seed(seed)
    return generate(
        oracle, graph, noise, batch_size=n, length=L, steps=steps, predictor=predictor, generator=gen, **kw
    )


@pytest.mark.parametrize("predictor", ["analytic", "euler"])
def test_absorbing_matches_distribution(predictor):
    x = run(True, predictor, 128)
    stat = chi2(counts(x), joint_table())
    assert stat < CHI2_26_999, stat


def test_absorbing_general_path_matches_distribution():
    """The full-vocabulary formulas on every position (fast=False) sample the same law."""
    x = run(True, "analytic", 128, fast=False, seed=1)
    assert chi2(counts(x), joint_table()) < CHI2_26_999


@pytest.mark.parametrize("predictor", ["analytic", "euler"])
def test_uniform_matches_distribution(predictor):
    x = run(False, predictor, 256, seed=2)
    assert chi2(counts(x), joint_table()) < CHI2_26_999


def test_independent_marginals_fail_the_test():
    """Sanity of the test's power: sampling each position from its marginal is rejected."""
    p = joint_table()
    gen = torch.Generator().manual_seed(0)
    cols = [
        sample_categorical(p.sum(dim=[d for d in range(3) if d != k]).expand(20000, V), gen) for k in range(3)
    ]
    assert chi2(counts(torch.stack(cols, 1)), p) > 10 * CHI2_26_999


def test_infill_matches_exact_conditional():
    """Position 0 fixed to a = 2: samples of (x1, x2) follow p(x1, x2 | x0 = 2)."""
    a = 2
    seen: list[StepEvent] = []

    def projector(x):
        return torch.cat([torch.full_like(x[:, :1], a), x[:, 1:]], dim=1)

    x = run(True, "analytic", 128, projector=projector, on_step=seen.append, seed=3)
    assert torch.all(x[:, 0] == a)
    for ev in seen:  # the given token never changes at any step
        assert torch.all(ev.x[:, 0] == a), ev.step
    cond = joint_table()[a] / joint_table()[a].sum()
    obs = counts(x)[a]
    assert chi2(obs, cond) < CHI2_8_999


def test_same_seed_same_samples_and_no_masks():
    x1 = run(True, "analytic", 16, n=500, seed=7)
    x2 = run(True, "analytic", 16, n=500, seed=7)
    x3 = run(True, "analytic", 16, n=500, seed=8)
    assert torch.equal(x1, x2)
    assert not torch.equal(x1, x3)
    assert x1.max() < V  # no mask id after denoising


def test_float32_draws_work():
    x = run(True, "euler", 16, n=500, precision="float32")
    assert x.dtype == torch.long and x.max() < V


def test_step_events():
    """Events: steps 0..4 with the time grid linspace(1, eps, 5); `changed` is exactly x != the
    previous state; unmasked tokens never change between events (absorbing graph)."""
    events: list[StepEvent] = []
    x = run(True, "analytic", 4, n=2000, denoise=False, on_step=events.append)
    assert [e.step for e in events] == [0, 1, 2, 3, 4]
    assert events[0].phase == "start" and torch.all(events[0].x == V)
    # changed marks exactly the positions that differ from the previous state
    prev = events[0].x
    for e in events[1:]:
        assert torch.equal(e.changed, e.x != prev)
        assert torch.all(e.x[prev != V] == prev[prev != V])
        prev = e.x
    assert torch.equal(events[-1].x, x)
    # the time grid: linspace(1, eps, steps + 1), events at t_0 .. t_3
    grid = torch.linspace(1, 1e-5, 5, dtype=torch.float64)[:4].tolist()
    assert all(abs(e.t - g) < 1e-12 for e, g in zip(events[1:], grid, strict=True))


def test_nfe_and_fast_path_calls():
    """One network call per step plus one for the denoiser."""
    oracle = Oracle(joint_table(), True)
    generate(oracle, Absorbing(V), LogLinearNoise(1e-3), batch_size=50, length=L, steps=10, fast=False)
    assert oracle.calls == 11


def test_masked_weights_equal_full_formula():
    """The rows formula (c * score_j, stay) equals staggered_score * transp_transition (analytic)
    and onehot + dt dsigma reverse_rate (Euler) at masked positions, for random scores."""
    graph, noise = Absorbing(5), LogLinearNoise(1e-3)
    gen = torch.Generator().manual_seed(0)
    score = torch.rand(7, 6, generator=gen, dtype=torch.float64) * 0.3
    score[:, 5] = 1.0  # the current (mask) entry: log-score 0
    x = torch.full((7,), 5)
    for cls in (AnalyticPredictor, EulerPredictor):
        pred = cls(graph, noise)
        full = pred.weights(score[None], x[None], 0.6, 0.05)[0]  # [7, 6]
        c, stay = pred.masked_weights(score[:, :5].sum(-1), 0.6, 0.05)
        assert torch.allclose(full[:, :5], c * score[:, :5], rtol=1e-12)
        assert torch.allclose(full[:, 5], stay, rtol=1e-12)
    # analytic weights of a masked row sum to 1 when score_M = 1 (sedd-spec §10.5)
    c, stay = AnalyticPredictor(graph, noise).masked_weights(score[:, :5].sum(-1), 0.6, 0.05)
    assert torch.allclose(c * score[:, :5].sum(-1) + stay, torch.ones(7, dtype=torch.float64))


def test_unmasked_rows_keep_their_token():
    """Full formula at unmasked positions: all weight on the current token (both predictors)."""
    graph, noise = Absorbing(5), LogLinearNoise(1e-3)
    score = torch.rand(1, 4, 6, dtype=torch.float64)
    x = torch.tensor([[0, 3, 4, 2]])
    for cls in (AnalyticPredictor, EulerPredictor):
        w = cls(graph, noise).weights(score, x, 0.5, 0.1)
        off = w.scatter(-1, x[..., None], 0.0)
        assert torch.all(off == 0) and torch.all(w.gather(-1, x[..., None]) > 0)


def test_sample_categorical_frequencies():
    """20000 draws from w = (1, 2, 7): counts within 5 sd of n w / sum w (binomial sd <= 71)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.tensor([1.0, 2.0, 7.0]).expand(20000, 3)
    for precision in ("float64", "float32"):
        c = torch.bincount(sample_categorical(w, gen, precision), minlength=3).double()
        assert torch.all((c - torch.tensor([2000.0, 4000.0, 14000.0])).abs() < 5 * 65), c


def test_inverse_cdf_draws_skip_zero_weights_and_keep_batch_shape():
    """float64 draws (inverse CDF) over ``[2, 5000, 5]`` weights with zeros at the ends and in the
    middle: a zero weight is never drawn, and the counts of w = (0, 1, 0, 3, 0) over 10000 draws are
    within 5 sd of (2500, 7500) (binomial sd = sqrt(10000 * 0.25 * 0.75) = 43)."""
    gen = torch.Generator().manual_seed(1)
    w = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0]).expand(2, 5000, 5)
    k = sample_categorical(w, gen)
    assert k.shape == (2, 5000)
    c = torch.bincount(k.flatten(), minlength=5).double()
    assert c[0] == c[2] == c[4] == 0, c
    assert abs(c[1] - 2500) < 5 * 43, c


def test_registry_and_new_predictor():
    assert {"euler", "analytic", "none"} <= set(PREDICTORS)

    @register_predictor("keep-test")
    class Keep(Predictor):
        def weights(self, score, x, t, dt):
            return torch.nn.functional.one_hot(x, score.shape[-1]).to(score.dtype)

    try:
        x = run(True, "keep-test", 3, n=10, denoise=False)
        assert torch.all(x == V)  # never unmasks
    finally:
        PREDICTORS.pop("keep-test")


def test_parse_template_char():
    from sedd_cli.tokenizers import get_tokenizer

    tok = get_tokenizer("char", ["abcdefgh"])
    slots = parse_template("ab[MASK:3]c[MASK]", tok)
    assert slots == [*tok.encode("ab"), None, None, None, *tok.encode("c"), None]
    from sedd_cli.errors import SeddError

    with pytest.raises(SeddError, match="no \\[MASK\\]"):
        parse_template("abc", tok)
    with pytest.raises(SeddError, match="lacks"):
        parse_template("xyz[MASK]", tok)


def test_nucleus_keeps_smallest_set_reaching_p():
    """Weights (sorted 0.5, 0.3, 0.15, 0.05): the mass before each is 0, 0.5, 0.8, 0.95, so top-p
    keeps the entries whose mass before is below p (the largest always)."""
    w = torch.tensor([[0.15, 0.5, 0.05, 0.3]], dtype=torch.float64) * 2  # unnormalised
    kept = lambda p: (nucleus(w, p) > 0).squeeze(0).tolist()  # noqa: E731
    assert kept(1.0) == [True] * 4
    assert kept(0.8) == [False, True, False, True]
    assert kept(0.81) == [True, True, False, True]
    assert kept(1e-6) == [False, True, False, False]
    assert torch.equal(nucleus(w, 0.8)[0, [1, 3]], w[0, [1, 3]])  # kept weights unchanged


def _product_run(n: int, **kw) -> torch.Tensor:
    """Absorbing samples from the oracle of a product law: every position ~ m = (0.6, 0.3, 0.1)
    independently, so each conditional is m and a shaped draw has the shaped m as its law."""
    m = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    p = torch.einsum("a,b,c->abc", m, m, m)
    oracle = Oracle(p, absorb=True)
    gen = torch.Generator().manual_seed(5)
    return generate(
        oracle, Absorbing(V), LogLinearNoise(1e-3), batch_size=n, length=L, steps=32, generator=gen, **kw
    )


def test_temperature_reshapes_token_draws():
    """Temperature 0.5 on the product law: each position ~ m^2 / sum m^2 = (36, 9, 1) / 46, jointly
    independent; chi-square over the 27 cells of 20000 samples below 54.05 (26 df, alpha 1e-3;
    no discretisation bias: the conditionals do not depend on the order of unmasking). Temperature
    1 would give a statistic near 33000 (lambda = n sum (p - q)^2 / q over the cells)."""
    x = _product_run(20000, temperature=0.5)
    q = torch.tensor([36.0, 9.0, 1.0], dtype=torch.float64) / 46
    stat = chi2(counts(x), torch.einsum("a,b,c->abc", q, q, q))
    assert stat < CHI2_26_999, stat
    assert torch.all(_product_run(50, temperature=0) == 0)  # arg-max everywhere


def test_top_p_drops_the_tail():
    """top-p 0.8 on m = (0.6, 0.3, 0.1): the kept set is {0, 1} (mass before token 2 is 0.9), so
    token 2 never appears and each position ~ (2/3, 1/3); chi-square over the 8 cells of {0,1}^3
    below 24.32 (7 df, alpha 1e-3)."""
    x = _product_run(20000, top_p=0.8)
    assert x.max() == 1
    q = torch.tensor([2 / 3, 1 / 3], dtype=torch.float64)
    flat = x[:, 0] * 4 + x[:, 1] * 2 + x[:, 2]
    obs = torch.bincount(flat, minlength=8).double()
    exp = 20000 * torch.einsum("a,b,c->abc", q, q, q).reshape(-1)
    assert float(((obs - exp) ** 2 / exp).sum()) < CHI2_7_999


@pytest.mark.parametrize("kw", [{"temperature": 0.5}, {"top_p": 0.9}])
def test_shaping_needs_the_absorbing_fast_path(kw):
    with pytest.raises(SeddError, match="absorbing"):
        run(False, "analytic", 4, n=4, **kw)
    with pytest.raises(SeddError, match="absorbing"):
        run(True, "analytic", 4, n=4, fast=False, **kw)
    with pytest.raises(SeddError, match="--temperature"):
        run(True, "analytic", 4, n=4, temperature=-0.1)
