"""`sedd perplexity` and `sedd_cli.evaluate`: the likelihood bound against an oracle, its
standard error, the token rules, generative-perplexity arithmetic and the CLI."""

from __future__ import annotations

import itertools
import json
import math
import sys

import pytest
import torch
from typer.testing import CliRunner

from sedd_cli.checkpoint import Pretrained, build_components, load_pretrained, save_model_dir
from sedd_cli.cli import app
from sedd_cli.config import load_preset
from sedd_cli.errors import SeddError
from sedd_cli.evaluate import (
    SampleScore,
    bound_per_sequence,
    perplexity,
    prior_kl_per_position,
    read_samples,
    summarize_bounds,
    summarize_samples,
    unigram_entropy,
)
from sedd_cli.graph import Absorbing, Uniform, esigm1
from sedd_cli.losses import score_entropy_loss
from sedd_cli.noise import GeometricNoise, LogLinearNoise
from sedd_cli.tokenizers import get_tokenizer

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


# --- the real model: training-loss equality, token rules ------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random char model (pad layout, pad id 0) saved as a model folder."""
    torch.manual_seed(0)
    cfg = load_preset("tiny")
    tok = get_tokenizer("char", ["abc def"])
    cfg.model.vocab_size = tok.vocab_size
    model, _, _ = build_components(cfg, tok.vocab_size)
    folder = tmp_path_factory.mktemp("evalm") / "m"
    save_model_dir(folder, model.state_dict(), cfg, tok, {"step": 0})
    return folder


def _blocks(pre: Pretrained, n: int = 6, seed: int = 0) -> torch.Tensor:
    """Random names right-padded with the pad id (0): [n, L]."""
    g = torch.Generator().manual_seed(seed)
    Lm = pre.config.model.length
    x = torch.randint(1, pre.tokenizer.vocab_size, (n, Lm), generator=g)
    lengths = torch.randint(2, Lm, (n,), generator=g)
    return torch.where(torch.arange(Lm)[None] < lengths[:, None], x, 0)


def test_fixed_times_equal_training_loss(tiny):
    """Same t, same generator => same x_t => the bound is the training loss: with given t [K, B] the
    estimator is the mean of K successive `score_entropy_loss` calls (masked-only path), and the
    command with K = 1, uniform spacing and seed s equals the training loss at t = max(u, 1e-6)
    with u the generator's first float64 draw, plus the prior, over the token count."""
    pre = load_pretrained(str(tiny), device="cpu")
    x0 = _blocks(pre)
    B = x0.shape[0]
    t = torch.rand(3, B, generator=torch.Generator().manual_seed(5)) * 0.9 + 0.05
    got = bound_per_sequence(pre.model, pre.graph, pre.noise, x0, 3, torch.Generator().manual_seed(9), t=t)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        want = sum(
            score_entropy_loss(pre.model, pre.graph, pre.noise, x0, t=t[k], generator=g).loss
            for k in range(3)
        )
    torch.testing.assert_close(got.float(), want / 3, rtol=1e-6, atol=1e-6)

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


def test_pads_are_scored_but_not_counted(tiny):
    """Pad layout: every position enters the bound, only non-pad ids count; the same blocks under
    pack layout (same seed => same draws) give the same total over all positions."""
    pre = load_pretrained(str(tiny), device="cpu")
    x0 = _blocks(pre)
    pad = perplexity(pre, data=x0, mc=2, seed=3)
    assert pad.layout == "pad" and "non-pad" in pad.token_rule
    assert pad.n_tokens == int((x0 != 0).sum()) < x0.numel() == pad.n_positions
    pre.config.data.layout = "pack"
    pack = perplexity(pre, data=x0, mc=2, seed=3)
    assert pack.n_tokens == x0.numel() and "EOS" in pack.token_rule
    assert pad.nll * pad.n_tokens == pytest.approx(pack.nll * pack.n_tokens, rel=1e-9)
    assert pad.perplexity == pytest.approx(math.exp(pad.nll))
    assert pad.bits == pytest.approx(pad.nll / math.log(2)) and pad.unit == "character"


def test_ratio_standard_error():
    """Equal counts: the ratio SE is std(b_i / n) / sqrt(N) exactly."""
    b = torch.tensor([10.0, 12.0, 9.0, 15.0, 11.0], dtype=torch.float64)
    n = torch.full((5,), 4)
    s = summarize_bounds(b, n)
    assert s.nll == pytest.approx(57 / 20)
    assert s.stderr == pytest.approx(float((b / 4).std()) / math.sqrt(5))
    assert summarize_bounds(b[:1], n[:1]).stderr is None


def test_k_below_one_is_an_error(tiny):
    pre = load_pretrained(str(tiny), device="cpu")
    with pytest.raises(SeddError, match="--mc"):
        perplexity(pre, data=_blocks(pre), mc=0)


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
    # the same computation through the Python API gives the same number
    api = perplexity(str(tiny), data=str(text_file), mc=2, device="cpu")
    assert api.nll == pytest.approx(doc["nll"], rel=1e-9)
    r = runner.invoke(app, ["perplexity", str(tiny), "--data", str(text_file), "--mc", "1"])
    assert r.exit_code == 0, r.output
    assert "perplexity" in r.stdout and "bits/char" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "wikitext2"], "model/tokenizer mismatch"),
        (["--data", "wikitxt2"], "unknown protocol"),
        (["--data", "TEXT", "--mc", "0"], "--mc must be at least 1"),
        (["--data", "TEXT", "--split", "validation"], "holds no text"),
        (["--generative", "SAMPLES", "--eval-model", "gpt2-large"], "no evaluator"),
    ],
)
def test_cli_errors_are_one_line(tiny, text_file, tmp_path, monkeypatch, args, message):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails even where it is installed
    samples = tmp_path / "s.txt"
    samples.write_text("abc\ndef\n")
    args = [str(text_file) if a == "TEXT" else str(samples) if a == "SAMPLES" else a for a in args]
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
    import sedd_cli.samplers as samplers
    from sedd_cli.checkpoint import load_pretrained
    from sedd_cli.evaluate import _generate_texts

    pre = load_pretrained(str(tiny), device="cpu")
    pre.config.sample.temperature, pre.config.sample.top_p = 0.5, 0.9
    seen = []
    real = samplers.generate

    def spy(*args, **kw):
        seen.append((kw["temperature"], kw["top_p"]))
        return real(*args, **kw)

    monkeypatch.setattr(samplers, "generate", spy)
    texts, _ = _generate_texts(pre, num_samples=3, steps=2, batch_size=2, seed=0, device="cpu")
    assert len(texts) == 3 and seen == [(1.0, 1.0), (1.0, 1.0)]
