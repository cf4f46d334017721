"""Noise schedules and graphs against closed forms and matrix exponentials."""

from __future__ import annotations

import math

import pytest
import torch

from sedd_cli.graph import Absorbing, Uniform
from sedd_cli.noise import GeometricNoise, LogLinearNoise

torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("noise", [LogLinearNoise(1e-3), GeometricNoise(1e-4, 20.0)])
def test_dsigma_is_the_derivative_of_sigma(noise):
    t = torch.linspace(0.0, 1.0, 41, dtype=torch.float64, requires_grad=True)
    sigma, dsigma = noise(t)
    (grad,) = torch.autograd.grad(sigma.sum(), t)
    torch.testing.assert_close(dsigma, grad, rtol=1e-12, atol=1e-12)


def test_loglinear_reference_values():
    noise = LogLinearNoise(1e-3)
    t = torch.tensor([0.01, 0.5, 1.0], dtype=torch.float64)
    sigma, dsigma = noise(t)
    torch.testing.assert_close(
        sigma, torch.tensor([0.0100402, 0.692148, 6.907755], dtype=torch.float64), rtol=5e-6, atol=0
    )
    torch.testing.assert_close(
        dsigma, torch.tensor([1.00908, 1.996004, 999.0], dtype=torch.float64), rtol=1e-6, atol=0
    )
    # masking probability 1 - e^-sigma equals (1 - eps) t, and dsigma / (e^sigma - 1) = 1 / t
    torch.testing.assert_close(-torch.expm1(-sigma), 0.999 * t)
    torch.testing.assert_close(dsigma / torch.expm1(sigma), 1 / t)


def _Q(graph) -> torch.Tensor:
    """Generator matrix in the column = from-state convention, built from graph.rate."""
    states = torch.arange(graph.dim)
    return graph.rate(states).double().T  # column i = rate(i)


@pytest.mark.parametrize("graph", [Absorbing(5), Uniform(5)])
def test_rate_and_transp_rate_are_columns_and_rows_of_Q(graph):
    Q = _Q(graph)
    torch.testing.assert_close(Q.sum(dim=0), torch.zeros(graph.dim, dtype=torch.float64))  # columns sum to 0
    states = torch.arange(graph.dim)
    torch.testing.assert_close(graph.transp_rate(states).double(), Q)  # row i of Q


@pytest.mark.parametrize("graph", [Absorbing(5), Uniform(5)])
@pytest.mark.parametrize("sigma", [0.05, 0.7, 3.0])
def test_transitions_match_the_matrix_exponential(graph, sigma):
    P = torch.linalg.matrix_exp(sigma * _Q(graph))  # P[y, x] = p(x_sigma = y | x0 = x)
    states = torch.arange(graph.dim)
    sig = torch.tensor(sigma, dtype=torch.float64)
    rows = graph.transp_transition(states, sig).double()  # row i: p(x_sigma = i | x0 = y)
    torch.testing.assert_close(rows, P, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(P.sum(dim=0), torch.ones(graph.dim, dtype=torch.float64))
    if isinstance(graph, Uniform):
        cols = graph.transition(states, sig).double()  # column i as a row
        torch.testing.assert_close(cols.sum(-1), torch.ones(graph.dim, dtype=torch.float64))
        torch.testing.assert_close(cols, P.T, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("graph", [Absorbing(6), Uniform(6)])
def test_staggered_score_is_exp_of_minus_dsigma_Q(graph):
    dsig = 0.3
    score = torch.rand(4, graph.dim, dtype=torch.float64) + 0.1
    expected = (torch.linalg.matrix_exp(-dsig * _Q(graph)) @ score.T).T
    torch.testing.assert_close(
        graph.staggered_score(score, torch.tensor(dsig, dtype=torch.float64)), expected
    )


def test_reverse_rate_rows_sum_to_zero_and_unmasked_never_move():
    graph = Absorbing(5)
    x = torch.tensor([0, 3, 5, 5])
    score = torch.rand(4, 6) + 0.1
    R = graph.reverse_rate(x, score)
    torch.testing.assert_close(R.sum(-1), torch.zeros(4))
    assert torch.all(R[:2] == 0)  # unmasked positions have no reverse rate
    torch.testing.assert_close(R[2, :5], score[2, :5])


@pytest.mark.parametrize("graph", [Absorbing(7), Uniform(7)])
def test_corruption_frequency_within_binomial_bounds(graph):
    """n = 200,000 tokens at sigma = 0.5. Absorbing: P(masked) = 1 - e^-0.5 = 0.39347;
    uniform: P(changed) = (1 - e^-0.5)(D - 1)/D (a uniform redraw may hit the same id).
    The binomial standard deviation is sqrt(p (1 - p) / n) <= 0.00112; we allow 5 sd (false
    alarm probability < 1e-6)."""
    n = 200_000
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 7, (n,), generator=gen)
    xt = graph.sample_transition(x0, torch.tensor(0.5), generator=gen)
    p = 1 - math.exp(-0.5)
    if isinstance(graph, Uniform):
        p *= (graph.dim - 1) / graph.dim
        observed = (xt != x0).double().mean().item()
    else:
        observed = (xt == graph.mask_id).double().mean().item()
        assert torch.all((xt == x0) | (xt == graph.mask_id))
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(observed - p) < 5 * sd


def test_absorbing_score_entropy_zero_at_true_ratio_positive_elsewhere():
    graph = Absorbing(5)
    sigma = torch.tensor([[0.4]])
    x0 = torch.tensor([[2, 4]])
    xt = torch.tensor([[5, 5]])
    r = 1 / math.expm1(0.4)  # p(x0 | x0) / p(M | x0) = e^-sigma / (1 - e^-sigma)
    true = torch.full((1, 2, 6), -1e4)
    true[0, 0, 2] = math.log(r)
    true[0, 1, 4] = math.log(r)
    true[..., 5] = 0.0
    torch.testing.assert_close(graph.score_entropy(true, sigma, xt, x0), torch.zeros(1, 2), atol=1e-5, rtol=0)
    other = true + torch.randn(1, 2, 6)
    assert torch.all(graph.score_entropy(other, sigma, xt, x0) > 0)


def test_uniform_score_entropy_zero_at_true_ratios():
    """rho_y = p(x_sigma = y | x0) / p(x_sigma = x | x0) from exp(sigma Q); the loss vanishes there."""
    graph = Uniform(6)
    sigma = 0.8
    P = torch.linalg.matrix_exp(sigma * _Q(graph))  # P[y, x0]
    for x0_id, x_id in [(1, 1), (1, 3)]:
        ratio = P[:, x0_id] / P[x_id, x0_id]
        s = ratio.log().float()[None, None]
        s[..., x_id] = 0.0
        out = graph.score_entropy(s, torch.tensor([[sigma]]), torch.tensor([[x_id]]), torch.tensor([[x0_id]]))
        assert abs(out.item()) < 1e-5
        noisy = s + 0.3 * torch.randn_like(s)
        noisy[..., x_id] = 0.0
        assert (
            graph.score_entropy(
                noisy, torch.tensor([[sigma]]), torch.tensor([[x_id]]), torch.tensor([[x0_id]])
            ).item()
            > 0
        )


@pytest.mark.parametrize("graph", [Absorbing(4), Uniform(4)])
def test_score_entropy_gradcheck_float64(graph):
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, 4, (2, 3), generator=gen)
    xt = graph.sample_transition(x0, torch.tensor(1.0), generator=gen)
    if isinstance(graph, Absorbing):
        xt[0, 0] = graph.mask_id  # at least one masked position
    s = torch.randn(2, 3, graph.dim, dtype=torch.float64, generator=gen, requires_grad=True)
    sigma = torch.tensor([[0.3], [1.2]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: graph.score_entropy(v, sigma, xt, x0).double(), (s,))
