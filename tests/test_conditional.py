"""The conditional bound (`evaluation.conditional`) and the greedy fill (`evaluation.greedy`) on
oracles whose law is known, and their independence of batching on real networks.

The toy law p over {0,1,2}^3 (test_evaluate's `toy`: random positive table). A row holds a
context (fixed positions) and a region R (the continuation) to score. Facts checked:

* DWDSE with the exact score (`Oracle`, full output; `AbsorbingOracle`, the head on masked rows):
  the mean over n independently seeded copies equals the closed form of the region's diffusion
  part (`exact_conditional_part`), 4 SE, and closed form + prior is within |R| eps log(1/p_min) of
  the exact -log p(x_R | x_ctx);
* drawn from the conditional law, the mean bound is >= the conditional entropy (3 SE) and within
  4 SE + the prior gap of it;
* the lambda form with the exact conditional (`ConditionOracle`) equals -log p(x_R | x_ctx) (4 SE);
* the per-request standard error is honest: its mean over copies matches the spread of the
  estimates across copies;
* the uniform graph with the geometric schedule (reconstruction term): region = the whole row
  estimates the unconditional bound's closed form (test_evaluate's `_uniform_exact`);
* the greedy fill equals an independent enumeration of the most-confident-first decode;
* rows batched 1, 4 or 40 to a pass give bit-identical bounds and greedy answers.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sedd_cli.config import ModelConfig
from sedd_cli.evaluation import conditional_bound, greedy_matches, prior_kl_per_position, request_seed
from sedd_cli.graph import Absorbing
from sedd_cli.model import SEDD
from sedd_cli.noise import GeometricNoise, LogLinearNoise

from .helpers import deterministic_init_
from .oracle import AbsorbingOracle, ConditionOracle
from .test_evaluate import EPS, L, Oracle, UniformOracle, V, _uniform_exact

pytestmark = pytest.mark.usefixtures("one_thread")

N = 2000  # independently seeded copies of one request


def _toy_probs() -> torch.Tensor:
    """test_evaluate's toy law: a random positive table over {0,1,2}^3 (seed 1)."""
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(V**L, generator=g, dtype=torch.float64) + 0.2
    return probs / probs.sum()


@pytest.fixture(scope="module")
def toy():
    probs = _toy_probs()
    return Oracle(probs, V, L), probs


@pytest.fixture(scope="module")
def uniform_toy():
    return UniformOracle(_toy_probs(), V, L)


def _agree(configs: torch.Tensor, x0: torch.Tensor, positions) -> torch.Tensor:
    ok = torch.ones(len(configs), dtype=torch.bool)
    for pos in positions:
        ok &= configs[:, pos] == x0[pos]
    return ok


def exact_conditional_part(configs, probs, idx: int, s: int, e: int) -> tuple[float, float]:
    """(-log p(x_R | x_ctx), the region's DWDSE integral for the exact score) for x0 = configs[idx]
    and R = [s, e), by enumeration. With the context clean the region's forward process is that of
    the conditional law q = p(. | x_ctx), so (`test_evaluate.exact_diffusion_part`, with q)
    D_R = -log q(x_R) + sum_{S subset R} P(S kept at t = 1) log q(x0' agrees with x0 on S)."""
    x0 = configs[idx]
    ctx = [p for p in range(L) if not s <= p < e]
    in_ctx = _agree(configs, x0, ctx)
    p_ctx = float(probs[in_ctx].sum())
    nll = -math.log(float(probs[idx]) / p_ctx)
    value = nll
    region = list(range(s, e))
    for keep in itertools.product([0, 1], repeat=len(region)):
        p_keep = math.prod(EPS if k else 1 - EPS for k in keep)
        agree = in_ctx & _agree(configs, x0, [pos for pos, k in zip(region, keep, strict=True) if k])
        value += p_keep * math.log(float(probs[agree].sum()) / p_ctx)
    return nll, value


def _copies(model, graph, noise, row, s, e, mc=8, n=N, seed0=0):
    x0 = torch.tensor([row]).expand(n, -1)
    seeds = list(range(seed0, seed0 + n))
    return conditional_bound(model, graph, noise, x0, [s] * n, [e] * n, mc, seeds, batch_size=1024)


def _mean_se(b: torch.Tensor) -> tuple[float, float]:
    return float(b.mean()), float(b.std()) / math.sqrt(len(b))


@pytest.mark.parametrize("idx, s, e", [(13, 1, 3), (5, 2, 3), (7, 0, 3)])
def test_dwdse_conditional_bound_matches_the_closed_form(toy, idx, s, e):
    """Mean of n = 2000 seeded copies (K = 8) within 4 SE (two-sided false alarm 6e-5) of the
    closed form; the SE below 0.03 nats, so a mis-weighted term (a context position corrupted or
    scored: O(1) nats) would be far off. Closed form + |R| eps log V is within |R| eps log(1/p_min)
    of the exact conditional NLL (the prior-definition gap, as for the unconditional bound)."""
    oracle, probs = toy
    graph, noise = Absorbing(V), LogLinearNoise(EPS)
    row = oracle.configs[idx].tolist()
    nll, exact = exact_conditional_part(oracle.configs, probs, idx, s, e)
    res = _copies(oracle, graph, noise, row, s, e)
    prior = (e - s) * prior_kl_per_position(graph, noise)
    assert torch.allclose(res.prior, torch.full((N,), prior, dtype=torch.float64))
    mean, se = _mean_se(res.bound - res.prior)
    assert se < 0.03
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    assert abs(exact + prior - nll) < (e - s) * EPS * math.log(1 / float(probs.min())) + 1e-9


def test_head_on_masked_rows_gives_the_same_bound(toy):
    """The network-interface oracle (features + head on masked rows, per-row sigma) and the
    full-output oracle give the same numbers for the same seeds, up to float32 rounding."""
    oracle, probs = toy
    graph, noise = Absorbing(V), LogLinearNoise(EPS)
    row = oracle.configs[13].tolist()
    full = _copies(oracle, graph, noise, row, 1, 3, n=200)
    fast = _copies(AbsorbingOracle(probs.view(V, V, V)), graph, noise, row, 1, 3, n=200)
    assert torch.allclose(full.bound, fast.bound, atol=1e-4)


def test_bound_is_at_least_the_conditional_entropy(toy):
    """x_R drawn from p(. | x_ctx) for the context x0 = (2, ., .), R = [1, 3): E[bound] =
    H(X_R | x_ctx) + KL(p_1 || pi) >= H. Checks mean >= H - 3 SE and |mean - H| < 4 SE + the
    prior gap |R| eps log V."""
    oracle, probs = toy
    graph, noise = Absorbing(V), LogLinearNoise(EPS)
    in_ctx = oracle.configs[:, 0] == 2
    q = torch.where(in_ctx, probs, 0.0)
    q = q / q.sum()
    H = -float((q[in_ctx] * q[in_ctx].log()).sum())
    idx = torch.multinomial(q, N, replacement=True, generator=torch.Generator().manual_seed(3))
    x0 = oracle.configs[idx]
    res = conditional_bound(oracle, graph, noise, x0, [1] * N, [3] * N, 8, list(range(N)))
    mean, se = _mean_se(res.bound)
    assert mean >= H - 3 * se
    assert abs(mean - H) < 4 * se + 2 * EPS * math.log(V)


@pytest.mark.parametrize("row, s, e", [((2, 0, 1), 1, 3), ((0, 1, 2), 0, 3), ((1, 1, 0), 2, 3)])
def test_lambda_form_is_exact_for_the_true_conditional(row, s, e):
    """A time-independent oracle (the exact conditional c of the joint table): the lambda-form
    bound restricted to R averages to exactly -log p(x_R | x_ctx) (unmasking orders of an exact
    autoregressive factorisation); no prior and no reconstruction term. 4 SE."""
    g = torch.Generator().manual_seed(1)
    p = (torch.rand(V**L, generator=g, dtype=torch.float64) + 0.2).view(V, V, V)
    p = p / p.sum()
    oracle = ConditionOracle(p)
    configs = torch.tensor(list(itertools.product(range(V), repeat=L)))
    idx = int(torch.nonzero((configs == torch.tensor(row)).all(-1)))
    nll, _ = exact_conditional_part(configs, p.reshape(-1), idx, s, e)
    res = _copies(oracle, Absorbing(V), LogLinearNoise(EPS), list(row), s, e, mc=4)
    assert res.estimator == "lambda-dce"
    assert torch.equal(res.prior, torch.zeros(N, dtype=torch.float64))
    mean, se = _mean_se(res.bound)
    assert abs(mean - nll) < 4 * se, (mean, nll, se)


def test_reported_standard_error_matches_the_spread_across_seeds(toy):
    """One request, n = 2000 seeds, K = 8 and 32: the mean reported SE (sd of the K weighted
    samples / sqrt K) against the actual spread of the estimates across seeds. Stratification can
    only make the estimate better than K independent samples, and the sample sd is biased low by
    ~3 % at K = 8; the ratio reported / actual must lie in [0.85, 1.5] (the spread of 2000 copies
    is known to a few %), and the reported SE must shrink by ~2 from K = 8 to 32 ([1.7, 2.4])."""
    oracle, _ = toy
    graph, noise = Absorbing(V), LogLinearNoise(EPS)
    row = oracle.configs[13].tolist()
    reported = {}
    for K in (8, 32):
        res = _copies(oracle, graph, noise, row, 0, 3, mc=K)
        reported[K] = float(res.stderr.mean())
        actual = float(res.bound.std())
        assert 0.85 < reported[K] / actual < 1.5, (K, reported[K], actual)
    assert 1.7 < reported[8] / reported[32] < 2.4


@pytest.mark.parametrize("idx", [0, 13])
def test_uniform_graph_full_region_estimates_the_unconditional_bound(uniform_toy, idx):
    """Uniform graph, geometric schedule (sigma_min = 0.05: the reconstruction term is ~0.6 nats):
    with the region the whole row, the estimate (diffusion + prior + reconstruction) has the
    closed form R + D + prior of the unconditional bound (n = 2000, K = 8, 4 SE)."""
    oracle = uniform_toy
    noise = GeometricNoise(0.05, 5.0)
    ex = _uniform_exact(oracle, noise, idx)
    res = _copies(oracle, oracle.graph, noise, oracle.configs[idx].tolist(), 0, L)
    assert float(res.reconstruction.mean()) > 0.3
    mean, se = _mean_se(res.bound)
    assert abs(mean - (ex["R"] + ex["D"] + ex["prior"])) < 4 * se, (mean, ex, se)


# --- the greedy fill ---------------------------------------------------------------------------------


def _exact_greedy(p: torch.Tensor, row, s: int, e: int) -> bool:
    """The most-confident-first decode from the joint table itself: at each step the conditional
    marginal p(x_l = j | the known tokens) of every unknown region position, the largest (ties:
    lower position, then lower token) fixed; False at the first token that differs from `row`."""
    configs = list(itertools.product(range(V), repeat=L))
    known = {pos: row[pos] for pos in range(L) if not s <= pos < e}
    while len(known) < L:
        best = None
        for pos in sorted(set(range(L)) - set(known)):
            w = [0.0] * V
            for c in configs:
                if all(c[k] == v for k, v in known.items()):
                    w[c[pos]] += float(p[c])
            total = sum(w)
            for j in range(V):
                cand = (w[j] / total, -pos, -j)
                best = cand if best is None or cand > best else best
        pos, tok = -best[1], -best[2]
        if tok != row[pos]:
            return False
        known[pos] = tok
    return True


def test_greedy_fill_matches_the_enumerated_decode():
    """All 27 rows x 4 regions, for the time-independent oracle and the time-conditioned exact
    score (whose softmax is the same conditional at any sigma): the same verdicts as the
    enumeration, and some of each (the test would catch an always-True or always-False)."""
    g = torch.Generator().manual_seed(1)
    p = (torch.rand(V**L, generator=g, dtype=torch.float64) + 0.2).view(V, V, V)
    p = p / p.sum()
    rows = [list(c) for c in itertools.product(range(V), repeat=L)]
    regions = [(0, 3), (1, 3), (2, 3), (0, 1)]
    x0 = torch.tensor([r for r in rows for _ in regions])
    starts = [s for _ in rows for s, _ in regions]
    ends = [e for _ in rows for _, e in regions]
    want = torch.tensor([_exact_greedy(p, r, s, e) for r in rows for s, e in regions])
    assert 0 < int(want.sum()) < len(want)
    noise = LogLinearNoise(EPS)
    for model in (ConditionOracle(p), AbsorbingOracle(p)):
        got = greedy_matches(model, Absorbing(V), noise, x0, starts, ends)
        assert torch.equal(got, want), type(model).__name__


# --- batching changes nothing ---------------------------------------------------------------------------


def _network(time_conditioning: bool, length: int = 12, vocab: int = 9) -> SEDD:
    cfg = ModelConfig(
        hidden_size=32, cond_dim=16, n_blocks=2, n_heads=4, dropout=0.0, length=length,
        time_conditioning=time_conditioning,
    )  # fmt: skip
    model = SEDD(cfg, vocab + 1).eval()
    deterministic_init_(model)
    return model


@pytest.mark.parametrize("time_conditioning", [True, False])
def test_bounds_and_greedy_do_not_depend_on_the_batch(time_conditioning):
    """40 rows of a real network (L = 12, regions of 1 to 12 positions), bounded all together in
    passes of 16, 48 or 64 rows and one row at a time: bit-identical bounds, errors and greedy
    verdicts (each row draws from its own generator, every pass runs whole tiles of 16 rows)."""
    model, graph, noise = _network(time_conditioning), Absorbing(9), LogLinearNoise(EPS)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 9, (40, 12), generator=g)
    starts = torch.randint(0, 12, (40,), generator=g).tolist()
    ends = [12] * 40
    seeds = [request_seed(7, row) for row in x0.tolist()]
    together = [
        conditional_bound(model, graph, noise, x0, starts, ends, 4, seeds, batch_size=b) for b in (1, 48, 64)
    ]
    alone = [
        conditional_bound(
            model, graph, noise, x0[i : i + 1], starts[i : i + 1], ends[i : i + 1], 4, seeds[i : i + 1]
        )
        for i in range(40)
    ]
    for res in together[1:]:
        assert torch.equal(res.bound, together[0].bound) and torch.equal(res.stderr, together[0].stderr)
    assert torch.equal(torch.cat([r.bound for r in alone]), together[0].bound)
    greedy = greedy_matches(model, graph, noise, x0, starts, ends, batch_size=64)
    one = torch.cat(
        [
            greedy_matches(model, graph, noise, x0[i : i + 1], starts[i : i + 1], ends[i : i + 1])
            for i in range(40)
        ]
    )
    assert torch.equal(greedy, one)


def test_request_seed_is_a_pure_function_of_its_inputs():
    """The same (seed, tokens) give the same seed in any order of calls; any change gives another."""
    a = request_seed(0, [1, 2, 3])
    assert a == request_seed(0, [1, 2, 3]) and 0 <= a < 2**63
    assert len({a, request_seed(1, [1, 2, 3]), request_seed(0, [1, 2]), request_seed(0, [1, 2], [3])}) == 4
