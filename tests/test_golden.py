"""Equivalence with the reference implementation's own outputs (tests/fixtures/reference).

golden-tiny.json holds the reference's log-score, per-token score entropy and per-sequence loss
for a tiny deterministically initialised model (absorbing + log-linear, uniform + geometric).
We rebuild the model under the same names, apply the same init and require agreement within
1e-4 relative or absolute (float32 on CPU; observed differences are ~5e-7).
"""

from __future__ import annotations

import json

import pytest
import torch

from sedd_cli.config import ModelConfig, load_preset
from sedd_cli.graph import Absorbing, Uniform
from sedd_cli.losses import score_entropy_loss
from sedd_cli.model import SEDD, count_parameters
from sedd_cli.noise import GeometricNoise, LogLinearNoise

from .conftest import REFERENCE
from .helpers import deterministic_init_, golden

GOLDEN = golden()


def _close(actual: torch.Tensor, expected, tol: float = 1e-4) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


def _build(case: str):
    c = GOLDEN["config"]
    g = GOLDEN["cases"][case]
    cfg = ModelConfig(
        hidden_size=c["hidden_size"],
        cond_dim=c["cond_dim"],
        n_blocks=c["n_blocks"],
        n_heads=c["n_heads"],
        dropout=c["dropout"],
        length=c["length"],
        scale_by_sigma=case == "absorb",
    )
    model = SEDD(cfg, g["graph_dim"]).eval()
    names = deterministic_init_(model)
    assert names == g["parameter_names_sorted"]
    if case == "absorb":
        return model, Absorbing(c["tokens"]), LogLinearNoise(1e-3), g
    return model, Uniform(c["tokens"]), GeometricNoise(1e-4, 20.0), g


@pytest.mark.parametrize("case", ["absorb", "uniform"])
def test_golden_schedule(case):
    _, _, noise, g = _build(case)
    sigma, dsigma = noise(torch.tensor(g["t"]))
    _close(sigma, g["sigma"])
    _close(dsigma, g["dsigma"])


@pytest.mark.parametrize("case", ["absorb", "uniform"])
def test_golden_log_score_entropy_and_loss(case):
    model, graph, noise, g = _build(case)
    x0, xt = torch.tensor(g["x0"]), torch.tensor(g["xt"])
    t = torch.tensor(g["t"])
    sigma, dsigma = noise(t)
    with torch.no_grad():
        log_score = model(xt, sigma)
    _close(log_score, g["log_score"])
    entropy = graph.score_entropy(log_score, sigma[:, None], xt, x0)
    _close(entropy, g["score_entropy_per_token"])
    _close((dsigma[:, None] * entropy).sum(-1), g["loss_per_sequence"])
    # the training objective (masked-only head for absorb) gives the same per-sequence loss
    with torch.no_grad():
        out = score_entropy_loss(model, graph, noise, x0, t, xt=xt)
    _close(out.loss, g["loss_per_sequence"])


@pytest.mark.parametrize("preset", ["small", "medium"])
def test_state_dict_matches_reference(preset):
    ref = json.loads((REFERENCE / "sedd-state-dict.json").read_text())[preset]
    cfg = load_preset(preset)
    with torch.device("meta"):
        model = SEDD(cfg.model, cfg.model.vocab_size + 1)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(ref["state_dict"])  # same names, same registration order
    assert ours == ref["state_dict"]
    assert count_parameters(model) == ref["parameters"]
