"""The first-hitting sampler against exact laws (tests/oracle.py: `AbsorbingOracle`, the exact
score with a total noise per sequence; `ConditionOracle`, the exact conditional of a
time-independent model; the law p over V^L = 27 sequences).

Chi-square arithmetic (as tests/test_samplers.py). First-hitting with the exact score draws
exactly from p, so with n = 20000 samples the statistic over the 27 cells is chi-square with 26
degrees of freedom: critical value 54.05 at alpha = 1e-3, no discretisation shift at all (the
Euler / analytic chains at 128 steps have lambda = 0.40). Power: drawing each token from its
marginal, ignoring the tokens already unmasked (the classic bug), has lambda = n sum (q - p)^2 / p
in the thousands at this n (computed below), so the test cannot pass by accident. Infill with
position 0 fixed: 9 cells, 8 degrees of freedom, critical value 26.12.

Event times: with n masked positions at masking probability m, the next event has
``(m' / m)^n ~ U(0, 1)`` (module docstring of `first_hitting.py`); the sigma the network sees is
checked through that: 10 equal bins, 9 degrees of freedom, critical value 27.88 at alpha = 1e-3.
"""

from __future__ import annotations

import pytest
import torch

from sedd_cli.errors import SeddError
from sedd_cli.graph import Absorbing, Uniform
from sedd_cli.noise import GeometricNoise, LogLinearNoise, Noise
from sedd_cli.sampling import NetworkCalls, StepEvent, generate

from .oracle import AbsorbingOracle, ConditionOracle, L, V, conditional_law, counts, joint_table, lam

CHI2_26_999 = 54.05
CHI2_8_999 = 26.12
CHI2_9_999 = 27.88
N = 20000

pytestmark = pytest.mark.usefixtures("one_thread")


def chi2(obs: torch.Tensor, p: torch.Tensor) -> float:
    n = obs.sum()
    keep = p > 0
    return float(((obs[keep] - n * p[keep]) ** 2 / (n * p[keep])).sum())


def fh(model, n: int = N, seed: int = 0, noise: Noise | None = None, calls=None, **kw) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return generate(
        model, Absorbing(V), noise or LogLinearNoise(1e-3), batch_size=n, length=L, steps=7,
        predictor="first-hitting", generator=gen, calls=calls, **kw,
    )  # fmt: skip


def test_marginal_sampler_would_fail():
    """Power: the product of the marginals of p is far from p at n = 20000."""
    p = joint_table()
    q = torch.einsum("a,b,c->abc", p.sum((1, 2)), p.sum((0, 2)), p.sum((0, 1)))
    assert lam(q, p, N) > 500


@pytest.mark.parametrize("kind", ["time-conditioned", "time-independent"])
def test_first_hitting_draws_exactly_from_p(kind):
    """Exact score (per-sequence sigma) or exact conditional: samples from p, in L calls."""
    model = AbsorbingOracle(joint_table()) if kind == "time-conditioned" else ConditionOracle(joint_table())
    calls = NetworkCalls()
    x = fh(model, calls=calls)
    assert chi2(counts(x), joint_table()) < CHI2_26_999
    assert (calls.nfe, calls.rows) == (L, L * N)  # one call per token, no denoiser call
    assert model.head_rows == L * N  # the head ran on one row per sequence per call


def test_geometric_schedule_is_exact_too():
    """The general-schedule form (sigma^-1 of the geometric schedule) with the exact score."""
    x = fh(AbsorbingOracle(joint_table()), noise=GeometricNoise(1e-4, 20.0), seed=3)
    assert chi2(counts(x), joint_table()) < CHI2_26_999


def test_event_times_follow_the_law():
    """(m_i / m_(i-1))^n ~ U(0, 1) for the i-th event with n masked positions, m = 1 - e^-sigma
    (m_0 = m(1) = 1 - eps): 3 x 20000 values in 10 bins; and sigma differs between sequences."""
    model = AbsorbingOracle(joint_table())
    fh(model)
    m = [torch.full((N,), 1 - 1e-3, dtype=torch.float64)]
    m += [-torch.expm1(-s.double()) for s in model.sigmas]  # float32 sigma: ~1e-7 relative
    u = torch.cat([(m[i] / m[i - 1]).clamp(max=1) ** (L - i + 1) for i in range(1, L + 1)])
    obs = torch.bincount((u * 10).long().clamp(max=9), minlength=10).double()
    assert chi2(obs, torch.full((10,), 0.1, dtype=torch.float64)) < CHI2_9_999
    assert model.sigmas[0].unique().numel() > N // 2


@pytest.mark.parametrize("kind", ["time-conditioned", "time-independent"])
def test_infill_follows_the_exact_conditional(kind):
    """Position 0 fixed to token 1 by the projector: (x1, x2) ~ p(. | x0 = 1), in 2 calls."""
    model = AbsorbingOracle(joint_table()) if kind == "time-conditioned" else ConditionOracle(joint_table())
    calls = NetworkCalls()
    x = fh(model, projector=lambda x: torch.where(torch.arange(L) == 0, 1, x), calls=calls, seed=5)
    assert torch.all(x[:, 0] == 1)
    assert chi2(counts(x), conditional_law(joint_table(), {0: 1})) < CHI2_8_999
    assert calls.nfe == L - 1


@pytest.mark.parametrize("k, nfe", [(2, 2), (3, 1)])
def test_tokens_per_step_invariants(k, nfe):
    """K > 1 is approximate (tokens of one call ignore each other): only the invariants, i.e.
    ceil(L / K) calls, no mask left, given tokens kept."""
    calls = NetworkCalls()
    x = fh(ConditionOracle(joint_table()), n=500, tokens_per_step=k, calls=calls)
    assert calls.nfe == nfe and int(x.max()) < V
    x = fh(
        AbsorbingOracle(joint_table()),
        n=500,
        tokens_per_step=k,
        projector=lambda x: x.index_fill(1, torch.tensor([2]), 0),
    )
    assert torch.all(x[:, 2] == 0) and int(x.max()) < V


def test_one_event_per_network_call():
    """The live view's events: start, then one per call (``steps`` = L), each unmasking exactly
    one position of every sequence, at non-increasing times; then the (empty) denoise event."""
    events: list[StepEvent] = []
    fh(AbsorbingOracle(joint_table()), n=50, on_step=events.append)
    assert [e.phase for e in events] == ["start"] + ["step"] * L + ["denoise"]
    assert all(e.steps == L for e in events)
    for e in events[1:-1]:
        assert torch.all(e.changed.sum(dim=1) == 1)
    assert not events[-1].changed.any()
    ts = [e.t for e in events[:-1]]
    assert all(a >= b for a, b in zip(ts, ts[1:], strict=False))


def test_shaping_reaches_the_draw():
    """Temperature 0 with the exact conditional: each unmasked token is the arg-max of its
    conditional, so the first token drawn (position chosen uniformly) is deterministic."""
    events: list[StepEvent] = []
    fh(ConditionOracle(joint_table()), n=200, temperature=0.0, on_step=events.append)
    e = events[1]
    first = e.x[e.changed]  # [200] the first token of every sequence
    p = joint_table()
    pos = e.changed.nonzero()[:, 1]
    argmax = torch.stack([p.sum(dims).argmax() for dims in ((1, 2), (0, 2), (0, 1))])
    assert torch.equal(first, argmax[pos])


def test_steps_are_ignored():
    """--steps does not apply: the same samples and L calls whatever it says."""
    a = fh(ConditionOracle(joint_table()), n=300)
    gen = torch.Generator().manual_seed(0)
    b = generate(ConditionOracle(joint_table()), Absorbing(V), LogLinearNoise(1e-3), batch_size=300,
                 length=L, steps=1000, predictor="first-hitting", generator=gen)  # fmt: skip
    assert torch.equal(a, b)


def test_real_sedd_models_take_L_calls():
    """A tiny real SEDD, time-conditioned and time-independent: L calls, no mask left."""
    from sedd_cli.model import SEDD

    from .helpers import tiny_model_config

    for tc in (True, False):
        model = SEDD(tiny_model_config(length=8, time_conditioning=tc), V + 1).eval()
        calls = NetworkCalls()
        gen = torch.Generator().manual_seed(0)
        x = generate(model, Absorbing(V), LogLinearNoise(1e-3), batch_size=6, length=8, steps=3,
                     predictor="first-hitting", generator=gen, calls=calls)  # fmt: skip
        assert calls.nfe == 8 and int(x.max()) < V


def test_noise_inverse():
    t = torch.linspace(0.01, 1, 50, dtype=torch.float64)
    for noise in (LogLinearNoise(1e-3), GeometricNoise(1e-4, 20.0)):
        assert torch.allclose(noise.inverse(noise.total(t)), t, rtol=1e-12)


class _NoInverse(Noise):
    def total(self, t):
        return t * 5

    def rate(self, t):
        return torch.full_like(t, 5.0)


@pytest.mark.parametrize(
    "graph, noise, kw, fragment",
    [
        (Uniform(V), LogLinearNoise(1e-3), {}, "needs an absorbing (mask) model"),
        (Absorbing(V), _NoInverse(), {}, "needs a noise schedule with an inverse"),
        (Absorbing(V), LogLinearNoise(1e-3), {"tokens_per_step": 0}, "must be at least 1 (positions"),
        (Absorbing(V), LogLinearNoise(1e-3), {"tokens_per_step": 4}, "positions of a sample: use 1 to"),
        (
            Absorbing(V),
            LogLinearNoise(1e-3),
            {"tokens_per_step": 2, "predictor": "analytic"},
            "first-hitting only",
        ),
    ],
)
def test_bad_input_is_one_line(graph, noise, kw, fragment):
    from .checks import assert_checked_once

    args = dict(batch_size=2, length=L, steps=2, predictor="first-hitting") | kw
    with pytest.raises(SeddError) as info:
        generate(AbsorbingOracle(joint_table()), graph, noise, **args)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert_checked_once(fragment)
