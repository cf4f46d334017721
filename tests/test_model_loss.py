"""The score network and the training objective: structure, closed forms, fast path equivalence."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from sedd_cli.config import PRESETS, load_preset
from sedd_cli.graph import Absorbing, Uniform
from sedd_cli.losses import sample_t, score_entropy_loss
from sedd_cli.model import SEDD
from sedd_cli.noise import GeometricNoise, LogLinearNoise

from .helpers import tiny_model_config


def _randomised(model: SEDD, seed: int = 0) -> SEDD:
    """Give the zero-initialised adaLN and output layers random values so every path matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


def test_batch_independence():
    """Sequence b's output depends on sequence b only (no cross-batch leakage in attention)."""
    model = _randomised(SEDD(tiny_model_config(), 11))
    x = torch.randint(0, 11, (3, 12))
    sigma = torch.tensor([0.2, 1.0, 3.0])
    full = model(x, sigma)
    for b in range(3):
        torch.testing.assert_close(
            model(x[b : b + 1], sigma[b : b + 1]), full[b : b + 1], rtol=1e-5, atol=1e-5
        )
    x2 = x.clone()
    x2[1] = torch.randint(0, 11, (12,))
    changed = model(x2, sigma)
    torch.testing.assert_close(changed[[0, 2]], full[[0, 2]], rtol=1e-5, atol=1e-5)


def test_output_is_zero_at_the_current_token_and_bidirectional():
    model = _randomised(SEDD(tiny_model_config(), 11))
    x = torch.randint(0, 11, (2, 12))
    out = model(x, torch.tensor([0.5, 0.5]))
    assert torch.all(out.gather(-1, x[..., None]) == 0)
    # changing the last token changes the output at the first position (not causal)
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % 10
    assert not torch.allclose(model(x2, torch.tensor([0.5, 0.5]))[:, 0], out[:, 0])


def test_head_logits_are_the_log_score_at_masked_rows():
    """z - offset equals the forward log-score over the V real columns at masked positions."""
    V = 10
    model = _randomised(SEDD(tiny_model_config(), V + 1))
    x = torch.randint(0, V + 1, (2, 12))
    x[:, :3] = V
    sigma = torch.tensor([0.3, 2.5])
    full = model(x, sigma)
    rows = (x == V).nonzero(as_tuple=True)
    z, offset = model.head_logits(model.features(x, sigma)[rows], sigma[rows[0]], columns=V)
    torch.testing.assert_close(z - offset[:, None], full[rows][:, :V])


def test_initial_loss_is_log_V_over_t_per_masked_token():
    """With the zero output layer z = 0, so q_j = 1/V and sigma' * l = (1/t) log V at every masked
    token (sedd-spec §2.5); the per-sequence loss is (#masked / t) log V."""
    V = 50
    cfg = tiny_model_config()
    model = SEDD(cfg, V + 1).eval()
    graph, noise = Absorbing(V), LogLinearNoise(1e-3)
    x0 = torch.randint(0, V, (4, 12))
    t = torch.tensor([0.1, 0.3, 0.6, 0.9])
    out = score_entropy_loss(model, graph, noise, x0, t)
    n_masked = (out.xt == graph.mask_id).sum(-1).double()
    expected = n_masked * math.log(V) / t.double()
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_only_loss_equals_full_loss(seed):
    V = 23
    model = _randomised(SEDD(tiny_model_config(), V + 1), seed)
    graph, noise = Absorbing(V), LogLinearNoise()
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, V, (5, 12), generator=gen)
    t = sample_t(5, generator=gen)
    fast = score_entropy_loss(model, graph, noise, x0, t, generator=torch.Generator().manual_seed(9))
    full = score_entropy_loss(
        model, graph, noise, x0, t, masked_only=False, generator=torch.Generator().manual_seed(9)
    )
    assert torch.equal(fast.xt, full.xt)
    torch.testing.assert_close(fast.loss, full.loss, rtol=1e-5, atol=1e-5)


def test_masked_only_gradients_equal_full_gradients():
    V = 17
    x0 = torch.randint(0, V, (3, 12))
    t = torch.tensor([0.3, 0.5, 0.95])
    grads = []
    for masked_only in (True, False):
        model = _randomised(SEDD(tiny_model_config(), V + 1), 4)
        out = score_entropy_loss(
            model,
            Absorbing(V),
            LogLinearNoise(),
            x0,
            t,
            masked_only=masked_only,
            generator=torch.Generator().manual_seed(3),
        )
        out.loss.mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_loss_gradcheck_float64():
    """End-to-end gradient of the per-sequence loss w.r.t. the final adaLN bias, in float64: the
    gradient flows through the modulated norm, the masked-only head, exp and the score entropy."""
    V = 7
    model = _randomised(SEDD(tiny_model_config(n_blocks=1, hidden_size=16, cond_dim=8), V + 1)).double()
    graph, noise = Absorbing(V), LogLinearNoise()
    x0 = torch.randint(0, V, (2, 6))
    t = torch.tensor([0.4, 0.8], dtype=torch.float64)
    xt = x0.clone()
    xt[:, ::2] = V
    params = dict(model.named_parameters())

    def loss_of(w):
        state = {**params, "output_layer.adaLN_modulation.bias": w}
        # run the model with that parameter replaced by w
        with torch.nn.utils.stateless._reparametrize_module(model, state):
            return score_entropy_loss(model, graph, noise, x0, t, xt=xt).loss

    w = params["output_layer.adaLN_modulation.bias"].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss_of, (w,))


def _uniform_score_entropy_by_definition(log_score, sigma, x, x0, D):
    """The general denoising score entropy (sedd-spec §2.4), computed from its definition:
    sum_{y != x} w (e^{s_y} - rho_y s_y + K(rho_y)), w = Q[y, x] = 1/D, rho_y = p(y|x0) / p(x|x0)
    with p the column of torch.linalg.matrix_exp(sigma Q), K(a) = a (log a - 1). Float64; one
    position at a time (``log_score [N, D]``, ``sigma``, ``x``, ``x0`` ``[N]``)."""
    Q = torch.full((D, D), 1 / D, dtype=torch.float64) - torch.eye(D, dtype=torch.float64)
    out = torch.empty(len(x), dtype=torch.float64)
    for n in range(len(x)):
        P = torch.linalg.matrix_exp(float(sigma[n]) * Q)  # P[y, j] = p(y | j)
        rho = P[:, x0[n]] / P[x[n], x0[n]]
        s = log_score[n].double()
        terms = (s.exp() - rho * s + rho * (rho.log() - 1)) / D
        out[n] = terms.sum() - terms[x[n]]
    return out


def test_uniform_score_entropy_is_zero_at_the_true_ratios_and_matches_its_definition():
    """At the exact ratios s_y = log rho_y the score entropy is exactly 0 (its minimum), for x = x0
    and x != x0, at small and large sigma; for any other score it equals the definition (matrix
    exponential, no closed form shared with graph.py) and is > 0."""
    D = 7
    graph = Uniform(D)
    Q = torch.full((D, D), 1 / D, dtype=torch.float64) - torch.eye(D, dtype=torch.float64)
    x0 = torch.tensor([0, 0, 3, 5, 6, 2])
    x = torch.tensor([0, 4, 3, 1, 6, 2])  # equal, changed, equal, changed, ...
    sigma = torch.tensor([1e-3, 0.05, 0.7, 2.0, 9.0, 0.3], dtype=torch.float64)
    true_log = torch.stack(
        [
            (
                torch.linalg.matrix_exp(float(sg) * Q)[:, j] / torch.linalg.matrix_exp(float(sg) * Q)[i, j]
            ).log()
            for sg, i, j in zip(sigma, x, x0, strict=True)
        ]
    )  # [N, D]
    at_truth = graph.score_entropy(true_log, sigma, x, x0)
    torch.testing.assert_close(at_truth, torch.zeros_like(at_truth), atol=1e-9, rtol=0)
    other = true_log + 0.3 * torch.randn(
        true_log.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    got = graph.score_entropy(other, sigma, x, x0)
    want = _uniform_score_entropy_by_definition(other, sigma, x, x0, D)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    assert torch.all(got > 1e-6)


def test_uniform_graph_model_loss_matches_the_definition():
    """score_entropy_loss on the uniform graph (geometric noise, a model without scale_by_sigma):
    per sequence sum_l dsigma(t) l(model(x_t, sigma)), l from the definition above."""
    D = 9
    cfg = tiny_model_config(scale_by_sigma=False)
    model = _randomised(SEDD(cfg, D))
    noise = GeometricNoise()
    x0 = torch.randint(0, D, (2, 12), generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.35, 0.9])
    out = score_entropy_loss(model, Uniform(D), noise, x0, t, generator=torch.Generator().manual_seed(2))
    assert (out.xt != x0).any()  # at sigma(0.9) = 6.0 most tokens moved
    with torch.no_grad():
        log_score = model(out.xt, out.sigma)
    sigma_tok = out.sigma[:, None].expand_as(x0).reshape(-1)
    per_tok = _uniform_score_entropy_by_definition(
        log_score.reshape(-1, D), sigma_tok, out.xt.reshape(-1), x0.reshape(-1), D
    ).view(2, 12)
    want = (out.dsigma.double()[:, None] * per_tok).sum(-1)
    torch.testing.assert_close(out.loss.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds_a_model(name):
    cfg = load_preset(name)
    V = cfg.model.vocab_size or 28
    with torch.device("meta"):
        model = SEDD(cfg.model, V + 1)
    assert model.output_layer.linear.weight.shape == (V + 1, cfg.model.hidden_size)
    if name == "tiny":
        real = SEDD(cfg.model, V + 1).eval()
        out = real(torch.randint(0, V, (2, cfg.model.length)), torch.tensor([0.5, 1.0]))
        assert out.shape == (2, cfg.model.length, V + 1)


def test_help_does_not_import_torch():
    code = "import sys, sedd_cli.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_optional_absolute_positions():
    """pos_embed adds a [length, d] parameter (absent by default, so the reference names hold)
    and refuses sequences longer than the trained length."""
    from sedd_cli.errors import SeddError

    assert "pos_embed" not in SEDD(tiny_model_config(), 11).state_dict()
    model = _randomised(SEDD(tiny_model_config(pos_embed=True), 11))
    assert model.state_dict()["pos_embed"].shape == (12, 32)
    masks = torch.full((1, 12), 10)
    out = model(masks, torch.tensor([1.0]))
    assert not torch.allclose(out[0, 0], out[0, 5])  # identical inputs, different positions
    assert model(masks[:, :7], torch.tensor([1.0])).shape == (1, 7, 11)
    with pytest.raises(SeddError, match="trained length 12"):
        model(torch.full((1, 13), 10), torch.tensor([1.0]))


def test_cpu_gelu_equals_the_tanh_gelu():
    """The sigmoid form x sigmoid(2u) is tanh-GELU: 0.5 (1 + tanh u) = sigmoid(2u) exactly, so the
    float32 values and gradients differ from torch's kernel by rounding only (|x| up to 12)."""
    from sedd_cli.model import GeluTanh, _GeluTanhCPU

    gelu = GeluTanh()
    x = torch.linspace(-12, 12, 20001)
    torch.testing.assert_close(gelu(x), torch.nn.functional.gelu(x, approximate="tanh"), rtol=2e-6, atol=2e-6)
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    gelu(ours).sum().backward()
    torch.nn.functional.gelu(ref, approximate="tanh").sum().backward()
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-5, atol=1e-5)
    # the analytic backward against finite differences, in float64
    x64 = 3 * torch.randn(40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(_GeluTanhCPU.apply, (x64.requires_grad_(),))


def test_compiled_features_equal_eager_forward_and_backward():
    """`sedd train --compile` compiles `model.features`; the compiled trunk gives the eager values
    and gradients (this broke once: dynamo could not trace the CPU GELU's autograd Function)."""
    model = _randomised(SEDD(tiny_model_config(), 11)).train()
    x = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.5, 1.0])
    eager = model.features(x, sigma)
    eager.square().sum().backward()
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]  # head: None
    model.zero_grad(set_to_none=True)
    compiled = torch.compile(model.features, dynamic=True)(x, sigma)
    compiled.square().sum().backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    for p, g in zip(model.parameters(), grads, strict=True):
        assert (p.grad is None) == (g is None)
        if g is not None:
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)
