"""Samplers against an oracle: exact scores of a known distribution over 27 sequences
(`tests/oracle.py`: the oracle, its network-interface twin `OracleNet`, and `chain_law`, the exact
law of the discretised reverse chain by enumeration).

Chi-square arithmetic. With n samples and an exact sampler the statistic sum (O - E)^2 / E over
the 27 cells is chi-square with 26 degrees of freedom: critical value 54.05 at alpha = 1e-3. A
sampler whose law q differs from p shifts it by lambda = n sum (q - p)^2 / p (noncentral
chi-square). The tau-leaping steps draw positions in parallel, a discretisation bias; the exact
law q of each discretised chain was computed by enumerating its Markov chain (`chain_law`):
absorbing + LogLinear, 128 steps: TV(q, p) = 0.0012, lambda = 0.40 at n = 20000 (both predictors
have the same law here, unmask probability dt/t); uniform + Geometric(1e-4, 20), 256 steps:
analytic TV 0.0015, lambda 0.46; Euler TV 0.0008, lambda 0.08; 128 steps: analytic TV 0.0031,
lambda 1.84; Euler TV 0.0016, lambda 0.32. A shift below 0.5 in a statistic with mean 26 and sd
7.2 keeps the false-alarm rate near 1e-3, and the seeds are fixed; the tests that compare with
q itself (`chain_law`) have no shift at all. A wrong predictor (e.g. independent per-position
marginals) gives lambda in the thousands.
Infill (position 0 fixed): 9 cells, 8 degrees of freedom, critical value 26.12 at alpha = 1e-3;
only one pair of free positions, so the bias is below the three-pair figure above.
"""

from __future__ import annotations

import pytest
import torch

from sedd_cli.errors import SeddError
from sedd_cli.graph import Absorbing, Uniform
from sedd_cli.noise import GeometricNoise, LogLinearNoise
from sedd_cli.sampling import (
    PREDICTORS,
    AbsorbingAnalyticPredictor,
    AbsorbingEulerPredictor,
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

from .oracle import L, Oracle, OracleNet, V, chain_law, chi2_critical, counts, joint_table, lam, tv
from .oracle import chi2 as chi2_pooled

CHI2_26_999 = 54.05
CHI2_8_999 = 26.12
CHI2_7_999 = 24.32


pytestmark = pytest.mark.usefixtures("one_thread")


def chi2(obs: torch.Tensor, p: torch.Tensor) -> float:
    n = obs.sum()
    return float(((obs - n * p) ** 2 / (n * p)).sum())


def run(
    absorb: bool, predictor: str, steps: int, n: int = 20000, seed: int = 0, oracle=None, **kw
) -> torch.Tensor:
    graph = Absorbing(V) if absorb else Uniform(V)
    noise = LogLinearNoise(1e-3) if absorb else GeometricNoise(1e-4, 20.0)
    oracle = Oracle(joint_table(), absorb) if oracle is None else oracle
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


@pytest.mark.parametrize("absorb", [True, False], ids=["absorbing-fast-path", "uniform"])
def test_float32_draws_follow_the_law(absorb):
    """``precision="float32"`` (the reference's Gumbel-max with truncated noise) samples the
    chain's law q (`chain_law`, exact, 128 steps): 20000 samples, chi-square over the 27 cells
    below 54.05 (26 df, alpha 1e-3). The truncation of the Exp(1) noise at -log(2^-24) = 16.6
    (float32 uniforms) moves each probability by about 1e-7 here, lambda ~ 1e-9. Absorbing runs
    through the network interface (`OracleNet`: features + head_logits, the fast path), uniform
    through the general formulas. A draw that ignored the weights (uniform over the cells) would
    give lambda = n sum (1/27 - q)^2 / q, about 8800 for the absorbing law."""
    noise = LogLinearNoise(1e-3) if absorb else GeometricNoise(1e-4, 20.0)
    oracle = OracleNet(joint_table()) if absorb else Oracle(joint_table(), False)
    q = chain_law(oracle, absorb, noise, 128, "euler")
    x = run(absorb, "euler", 128, oracle=oracle, precision="float32", seed=4)
    assert x.dtype == torch.long
    assert chi2(counts(x), q) < CHI2_26_999
    if absorb:
        assert oracle.head_rows > 0


@pytest.mark.parametrize("predictor", ["analytic", "euler"])
def test_uniform_default_steps_matches_chain_law(predictor):
    """Uniform graph at the default 128 steps: 20000 samples against the exact law q of the
    discretised chain (`chain_law`, negative weights counted as 0), chi-square below 54.05 (26
    df); q itself is within TV 0.0031 (analytic) / 0.0016 (Euler) of p. With the exact score the
    weights are negative only for Euler at the first 3 steps (t > 0.97, sigma > 14, where p_t is
    uniform to 1e-6, so the old unclamped draw left no trace here); the analytic weights of the
    exact score are transition probabilities, never negative. The clamp is caught by the
    few-step test below."""
    x = run(False, predictor, 128, seed=5)
    q = chain_law(Oracle(joint_table(), False), False, GeometricNoise(1e-4, 20.0), 128, predictor)
    assert tv(q, joint_table()) < 0.005
    assert chi2(counts(x), q) < CHI2_26_999


def _overconfident() -> torch.Tensor:
    """A stand-in for a learned score: log-scores 3 +- 0.3 above the exact ones (scores ~20 times
    too large) at every state, position and token y != x."""
    s = torch.arange(V**L, dtype=torch.float64)[:, None, None]
    pos = torch.arange(L, dtype=torch.float64)[None, :, None]
    y = torch.arange(V, dtype=torch.float64)[None, None, :]
    return 3.0 + 0.3 * torch.sin(1.3 * s + 2.1 * pos + 0.7 * y)


@pytest.mark.parametrize("predictor, distorted", [("euler", False), ("euler", True), ("analytic", True)])
def test_negative_weights_in_the_chain_count_as_zero(predictor, distorted):
    """Uniform graph, 16 steps: the stay weight (Euler ``1 - dt dsigma sum_y Q[x, y] s_y``,
    analytic ``(expm(-Delta Q) s)_x``) is negative at many rows, for Euler with the exact score and
    for both with an overconfident (learned-like) score. 20000 samples against the exact law q of
    the chain with negative weights counted as 0 (`chain_law`): chi-square below 54.05 (26 df,
    alpha 1e-3). The unclamped inverse CDF (the code before the fix) gave 268 (Euler, exact),
    176 (Euler, distorted) and 313 (analytic, distorted) at these seeds."""
    oracle = Oracle(joint_table(), False, _overconfident() if distorted else None)
    q = chain_law(oracle, False, GeometricNoise(1e-4, 20.0), 16, predictor)
    x = run(False, predictor, 16, oracle=oracle, seed=0)
    assert chi2(counts(x), q) < CHI2_26_999


@pytest.mark.parametrize("predictor", ["analytic", "euler"])
def test_fast_path_through_head_logits_matches_chain_law(predictor):
    """The sampling path of a trained model: `OracleNet` has ``features`` + ``head_logits`` (raw
    logits z over the V real columns and the per-row offset log(e^sigma - 1) + log V, log-score
    = z - offset), so `generate` runs the masked-rows fast path exactly as for `SEDD`. 20000
    samples at 128 steps against the chain's exact law q (`chain_law`, computed from the full
    log-scores): chi-square below 54.05 (26 df). A fast path that dropped the offset would leave
    the mask e^offset (about 3 e^sigma) times too fast: most positions unmask in the first step,
    i.e. near the independent marginals: statistic 7155 (measured)."""
    oracle = OracleNet(joint_table())
    q = chain_law(oracle, True, LogLinearNoise(1e-3), 128, predictor)
    x = run(True, predictor, 128, oracle=oracle, seed=6)
    assert oracle.feature_calls == 129 and oracle.head_rows >= 20000 * L  # every row through the head
    assert chi2(counts(x), q) < CHI2_26_999


def _tiny_sedd():
    from sedd_cli.model import SEDD

    from .helpers import tiny_model_config

    model = SEDD(tiny_model_config(length=L, hidden_size=16, cond_dim=16, n_blocks=1, n_heads=1), V + 1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(0.2 * torch.randn(prm.shape, generator=gen))
    return model.eval()


class _NoOffset:
    """`model` read as if the head's logits were the log-scores (the offset forgotten)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, sigma):
        out = self.model(x, sigma)
        return (out + self.model._offset(sigma, out.dtype)[:, None, None]).scatter(-1, x[..., None], 0.0)


def test_real_sedd_fast_path_matches_enumerated_law():
    """A real (random, tiny) `SEDD` network at V = L = 3: the exact law q of its 32-step
    analytic chain by enumeration over the 64 states, with the network's full forward
    ``model(x, sigma)``; 10000 samples through the fast path (``features`` + ``head_logits`` on the
    masked rows, real columns only) must follow it: chi-square with cells of expected count below
    5 pooled (20 df here; critical value 45.3 at alpha = 1e-3, Wilson-Hilferty). Power: the same
    chain with the head's offset forgotten has lambda = 2900 against q at this n."""
    model = _tiny_sedd()
    noise = LogLinearNoise(1e-3)
    q = chain_law(model, True, noise, 32, "analytic")
    assert lam(chain_law(_NoOffset(model), True, noise, 32, "analytic"), q, 10000) > 1000
    gen = torch.Generator().manual_seed(0)
    x = generate(model, Absorbing(V), noise, batch_size=10000, length=L, steps=32, generator=gen)
    stat, df = chi2_pooled(counts(x), q)
    assert df >= 15
    assert stat < chi2_critical(df), (stat, df)


def test_negative_weights_count_as_zero():
    """Rows (0.3, 0.3, 0.3, 0.3, -0.9) and (0.5, -0.4, 0.2, 0.3), 20000 draws each, both
    precisions: the negative entries are never drawn and the rest follow the clamped law
    (1/4 each; 0.5, 0.2, 0.3): chi-square below 16.27 (3 df) and 13.82 (2 df) at alpha = 1e-3.
    Before the fix the inverse CDF returned 0 for every draw of the first row (statistic 60000)."""
    gen = torch.Generator().manual_seed(3)
    rows = [
        (torch.tensor([0.3, 0.3, 0.3, 0.3, -0.9]), torch.tensor([0.25] * 4 + [0.0]), 16.27),
        (torch.tensor([0.5, -0.4, 0.2, 0.3]), torch.tensor([0.5, 0.0, 0.2, 0.3]), 13.82),
    ]
    for precision in ("float64", "float32"):
        for w, law, crit in rows:
            c = torch.bincount(sample_categorical(w.expand(20000, -1), gen, precision), minlength=len(w))
            c = c.double()
            assert torch.all(c[law == 0] == 0), (precision, c)
            e = 20000 * law[law > 0].double()
            assert float(((c[law > 0] - e) ** 2 / e).sum()) < crit, (precision, c)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize(
    "row", [[-1.0, 0.0, -2.0], [0.0, 0.0, 0.0], [float("nan"), 1.0, 1.0], [float("inf"), 1.0, 0.0]]
)
def test_row_without_positive_finite_weight_is_refused(row, precision):
    w = torch.tensor([[0.2, 0.8, 0.0], row])
    with pytest.raises(SeddError, match="no positive finite weight"):
        sample_categorical(w, torch.Generator().manual_seed(0), precision)


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
    # the time grid: linspace(1, eps, steps + 1); the start is at t_0 = 1 and step k is labelled
    # with the time t_k it reached (it was labelled t_(k-1), so step 1 read "t=1.000" like step 0)
    grid = torch.linspace(1, 1e-5, 5, dtype=torch.float64).tolist()
    assert all(abs(e.t - g) < 1e-12 for e, g in zip(events, grid, strict=True))
    assert events[1].t < events[0].t == 1.0


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
    for cls in (AbsorbingAnalyticPredictor, AbsorbingEulerPredictor):  # both formulas on one class
        pred = cls(graph, noise)
        full = pred.weights(score[None], x[None], 0.6, 0.05)[0]  # [7, 6]
        c, stay = pred.masked_weights(score[:, :5].sum(-1), 0.6, 0.05)
        assert torch.allclose(full[:, :5], c * score[:, :5], rtol=1e-12)
        assert torch.allclose(full[:, 5], stay, rtol=1e-12)
    # analytic weights of a masked row sum to 1 when score_M = 1 (sedd-spec §10.5)
    c, stay = AbsorbingAnalyticPredictor(graph, noise).masked_weights(score[:, :5].sum(-1), 0.6, 0.05)
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


@pytest.mark.parametrize("kind", ["char", "byte", "char-unk"])
@pytest.mark.parametrize(
    "bad", ["[MASK:x]", "[MASK:]", "[MASK:-2]", "[mask]", "[Mask:3]", "[MASK:3", "[ MASK ]"]
)
def test_malformed_mask_is_refused_for_every_tokenizer(kind, bad):
    """A malformed mask is named as one before tokenizing: the byte tokenizer (and a char
    tokenizer with unknown=unk) would otherwise encode it silently as text."""
    from sedd_cli.tokenizers import get_tokenizer

    tok = (
        get_tokenizer("byte")
        if kind == "byte"
        else get_tokenizer("char", ["abc"], unknown="unk" if kind == "char-unk" else "error")
    )
    with pytest.raises(SeddError, match="malformed mask"):
        parse_template(f"ab{bad}c[MASK]", tok)
    assert parse_template("ab[MASK:2]c", tok) == [*tok.encode("ab"), None, None, *tok.encode("c")]


def test_mask_count_is_bounded_before_allocating():
    """[MASK:10**30] (and a 5000-digit count, which int() refuses to parse) is refused by the
    bound, not by building a list of 10**30 entries."""
    from sedd_cli.tokenizers import get_tokenizer

    tok = get_tokenizer("byte")
    for n in (str(10**30), "9" * 5000):
        with pytest.raises(SeddError, match="more masked tokens than the model's length 16"):
            parse_template(f"a[MASK:{n}]", tok, max_tokens=16)
    with pytest.raises(SeddError, match="more masked tokens than the limit 1,000,000"):
        parse_template(f"a[MASK:{10**30}]", tok)
    assert parse_template("a[MASK:0016]", tok, max_tokens=17).count(None) == 16
