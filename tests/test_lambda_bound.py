"""`sedd perplexity` on time-independent absorbing models (RADD, issue #16 item 2): the evaluation
path runs the lambda-form estimator (stratified masking probabilities, no prior term, no
reconstruction term) and says so.

The estimator's own maths (its expectation for the exact conditional, against the DSE form of
the same network) is tests/test_radd.py's; here: `evaluate_blocks` / `perplexity` pick it, its
mean over many copies of one block matches the exact value by enumeration (5 standard errors: a
false alarm ~6e-7), the per-block SE as today, and the result, `--json` and the human view name it.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from sedd_cli.checkpoints import build_components, load_pretrained, save_model_dir
from sedd_cli.cli import app
from sedd_cli.config import ModelConfig, load_preset
from sedd_cli.evaluation import ESTIMATORS, estimator_for, evaluate_blocks, perplexity
from sedd_cli.graph import Absorbing
from sedd_cli.model import SEDD
from sedd_cli.noise import LogLinearNoise
from sedd_cli.tokenizers import get_tokenizer

from .helpers import deterministic_init_
from .test_radd import ConditionalOracle, _exact_lambda_bound, _joint

pytestmark = pytest.mark.usefixtures("one_thread")


def _within(samples: torch.Tensor, exact: float, z: float = 5.0) -> None:
    mean, se = float(samples.mean()), float(samples.std() / math.sqrt(len(samples)))
    assert abs(mean - exact) < z * se, f"mean {mean:.5f} vs exact {exact:.5f} (SE {se:.5f})"


def test_evaluate_blocks_is_exact_for_the_true_conditional():
    """The exact conditional of a known law p over {0,1,2}^3: every block's bound has mean
    -log p(x0) (the lambda-form bound of the true conditional is tight), with prior and
    reconstruction terms exactly 0; a time-conditioned model keeps the DWDSE estimator."""
    p = _joint()
    oracle = ConditionalOracle(p)
    graph = Absorbing(3)
    assert estimator_for(oracle, graph) == "lambda-dce"
    for row in [(2, 0, 1), (0, 0, 0)]:
        x0 = torch.tensor([row]).expand(3000, -1)
        res = evaluate_blocks(oracle, graph, LogLinearNoise(1e-3), x0, mc=4, batch_size=1000, seed=sum(row))
        assert res.estimator == "lambda-dce" and res.prior == 0.0
        assert torch.equal(res.reconstruction, torch.zeros(3000, dtype=torch.float64))
        _within(res.bounds, -math.log(p[row]))


def _network(length: int = 4, vocab: int = 7) -> SEDD:
    cfg = ModelConfig(
        hidden_size=16, n_blocks=1, n_heads=2, dropout=0.0, length=length, time_conditioning=False
    )
    model = SEDD(cfg, vocab + 1).eval()
    deterministic_init_(model)
    return model


def test_evaluate_blocks_matches_the_exact_lambda_bound_of_a_network():
    """A time-independent network (L = 4, V = 7, not a true conditional): the per-block mean of
    `evaluate_blocks` equals int_0^1 E[-sum_masked log c[x0]] d lambda / lambda by enumerating
    the 2^4 mask sets, for both spacings; the DSE-form estimator of the same network lands
    elsewhere (it lacks the lambda in (1 - eps, 1] piece and adds a prior term)."""
    model, graph, V = _network(), Absorbing(7), 7
    x0 = torch.tensor([3, 0, 6, 2])
    with torch.no_grad():
        exact = _exact_lambda_bound(model, x0, V)
    xs = x0[None].expand(2000, -1)
    for spacing in ("sqrt", "uniform"):
        res = evaluate_blocks(
            model, graph, LogLinearNoise(0.05), xs, mc=4, batch_size=2000, seed=5, spacing=spacing
        )
        assert res.estimator == "lambda-dce"
        _within(res.bounds, exact)


def _save_time_independent(folder, alphabet: str = "abc def"):
    """A tiny random time-independent char model (tiny preset, pad layout) saved as a model folder."""
    torch.manual_seed(0)
    cfg = load_preset("tiny")
    tok = get_tokenizer("char", [alphabet])
    cfg.model.vocab_size = tok.vocab_size
    cfg.model.time_conditioning = False
    cfg.train.loss = "lambda-dce"
    model, _, _ = build_components(cfg, tok.vocab_size)
    save_model_dir(folder, model.state_dict(), cfg, tok, {"step": 0})
    return folder


@pytest.fixture(scope="module")
def radd_tiny(tmp_path_factory):
    return _save_time_independent(tmp_path_factory.mktemp("lam") / "m")


def _names(pre, n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    Lm = pre.config.model.length
    x = torch.randint(1, pre.tokenizer.vocab_size, (n, Lm), generator=g)
    lengths = torch.randint(2, Lm, (n,), generator=g)
    return torch.where(torch.arange(Lm)[None] < lengths[:, None], x, 0)


def test_perplexity_reports_the_lambda_estimator(radd_tiny):
    """`perplexity()` on a saved time-independent model: the estimator's words, no prior term, the
    bound on the all-mask start (no gap), and the standard errors as today (per record: the
    spread of the per-block bounds over sqrt(n))."""
    pre = load_pretrained(str(radd_tiny), device="cpu")
    x0 = _names(pre)
    r = perplexity(pre, data=x0, mc=3, seed=2)
    assert r.estimator == ESTIMATORS["lambda-dce"] and r.estimator_name == "lambda-dce"
    assert r.nll_prior == 0.0 and r.prior_per_position == 0.0 and r.nll_reconstruction == 0.0
    assert r.nll_diffusion == r.nll and r.all_mask_gap is None and "all-mask start" in r.bound_on
    res = evaluate_blocks(pre.model, pre.graph, pre.noise, x0, layout="pad", pad_id=0, mc=3, seed=2)
    assert r.nll_per_record == pytest.approx(float(res.bounds.mean()), rel=1e-12)
    assert r.stderr_per_record == pytest.approx(float(res.bounds.std()) / math.sqrt(len(x0)), rel=1e-9)


def test_cli_names_the_estimator(radd_tiny, tmp_path):
    text = tmp_path / "names.txt"
    text.write_text("\n".join(["abc", "def fed", "cab bad", "ace"] * 2) + "\n")
    runner = CliRunner()
    r = runner.invoke(app, ["perplexity", str(radd_tiny), "--data", str(text), "--mc", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["estimator"] == ESTIMATORS["lambda-dce"] and doc["nll_prior"] == 0.0
    assert doc["stderr_nll"] > 0 and doc["all_mask_gap"] is None
    r = runner.invoke(app, ["perplexity", str(radd_tiny), "--data", str(text), "--mc", "2"])
    assert r.exit_code == 0, r.output
    assert (
        "lambda-dce" in r.stdout and "masking probabilities K" in r.stdout and "nats/position" not in r.stdout
    )
