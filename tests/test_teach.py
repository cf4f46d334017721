"""The teaching commands and their library functions (sedd_cli.demos, sedd_cli.cli.teach).

Facts checked: the LogLinear closed forms sigma(t) = -log(1 - (1 - eps) t) and move chance
(1 - eps) t; the coupled draw equals the graph's own sampler; frames are nested; the Caesar shift
of GPT-2 ids; the untrained model's loss (1/t) log V per masked token (sedd-spec §2.5); and the
identity dsigma l = (1/t)(sum_j q_j - 1 - log q_x0) for a model with a random output head.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from sedd_cli.checkpoints import build_components, load_pretrained, save_model_dir
from sedd_cli.cli import app
from sedd_cli.config import load_preset
from sedd_cli.demos import (
    MASK_GLYPH,
    cipher_text,
    coupled_draw,
    demo_graph,
    loss_text,
    noise_text,
    resolve_tokenizer,
    tokenize_text,
)
from sedd_cli.errors import SeddError
from sedd_cli.graph import Absorbing, Uniform
from sedd_cli.losses import score_entropy_loss
from sedd_cli.tokenizers import get_tokenizer

from .conftest import requires_gpt2

EPS = 1e-3
SEED_TEXT = "Applying diffusion to text is kind of crazy"
HELLO = "hello world"
LONG = "the quick brown fox jumps over the lazy dog " * 40  # 1760 characters


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input, prog_name="sedd")


def _model_dir(path, graph: str = "absorb", texts=(HELLO,), head_seed: int | None = None):
    """A tiny random model folder with a char tokenizer; `head_seed` makes the zero-initialised
    output layer random so the model's predictions are not uniform."""
    cfg = load_preset("tiny")
    tok = get_tokenizer("char", list(texts))
    cfg.model.vocab_size = tok.vocab_size
    cfg.model.length = 16
    if graph == "uniform":
        cfg.graph.type = "uniform"
        cfg.noise.type = "geometric"
        cfg.model.scale_by_sigma = False
    torch.manual_seed(0)
    model, _, _ = build_components(cfg, tok.vocab_size)
    if head_seed is not None:
        gen = torch.Generator().manual_seed(head_seed)
        with torch.no_grad():
            for p in model.output_layer.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return save_model_dir(path, model.state_dict(), cfg, tok, {"step": 0})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _model_dir(tmp_path_factory.mktemp("teach") / "m")


@pytest.fixture(scope="module")
def trained_like_dir(tmp_path_factory):
    return _model_dir(tmp_path_factory.mktemp("teach") / "r", head_seed=1)


# --- library: tokenize --------------------------------------------------------------------------


def test_tokenize_char_built_from_the_text():
    r = tokenize_text(HELLO, "char")
    # vocabulary: <pad>, <eos>, then the sorted distinct characters " dehlorw"
    assert r.vocab_size == 2 + 8
    assert r.ids == [5, 4, 6, 6, 7, 2, 9, 7, 8, 6, 3]
    assert r.pieces == list(HELLO)
    assert (r.n_tokens, r.n_chars, r.n_bytes) == (11, 11, 11)


def test_tokenize_byte_escapes_partial_utf8():
    r = tokenize_text("é!", "byte")
    assert r.ids == [0xC3, 0xA9, 0x21]
    assert r.pieces == ["\\xc3", "\\xa9", "!"]
    assert (r.n_chars, r.n_bytes) == (2, 3)


@requires_gpt2
def test_tokenize_gpt2_hello_world():
    r = tokenize_text("Hello world", "gpt2")
    assert r.ids == [15496, 995]
    assert r.pieces == ["Hello", " world"]


def test_resolve_tokenizer_from_model_and_checkpoint_dirs(model_dir, tmp_path):
    assert resolve_tokenizer(str(model_dir)).vocab_size == 10
    step = tmp_path / "run" / "checkpoints" / "step_00000010"
    step.mkdir(parents=True)
    get_tokenizer("char", ["ab"]).save(tmp_path / "run")
    assert resolve_tokenizer(str(step)).vocab_size == 4  # the run's tokenizer, two levels up


# --- library: noise -----------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.0, 0.01, 0.35, 0.5, 1.0])
def test_noise_schedule_closed_forms(t):
    r = noise_text(HELLO, t, tokenizer="char")
    assert r.move_chance == pytest.approx((1 - EPS) * t, abs=1e-12)
    assert r.sigma == pytest.approx(-math.log(1 - (1 - EPS) * t), rel=1e-12, abs=1e-15)
    assert r.dsigma == pytest.approx((1 - EPS) / (1 - (1 - EPS) * t), rel=1e-12)
    assert r.schedule == "LogLinearNoise(eps=0.001)"


def test_noise_t0_changes_nothing_and_t1_masks_nearly_all():
    assert noise_text(LONG, 0.0, tokenizer="char").hamming == 0
    r = noise_text(LONG, 1.0, tokenizer="char")
    # at t = 1 each token survives with probability eps = 1e-3: expected 1.76 of 1760 survive;
    # P(more than 15 survive) < 1e-9 (Poisson(1.76) tail)
    assert len(r.ids) - r.hamming <= 15


@pytest.mark.parametrize("graph", ["absorb", "uniform"])
def test_coupled_draw_equals_the_graph_sampler(graph):
    """A single-t corruption is exactly graph.sample_transition with the same seeded generator."""
    r = noise_text(LONG, 0.8, graph=graph, tokenizer="char", seed=7)
    g, _ = demo_graph(graph, r.vocab_size)
    x0 = torch.tensor(r.ids)[None]  # [1, L]
    expected = g.sample_transition(x0, torch.tensor([[r.sigma]]), generator=torch.Generator().manual_seed(7))
    assert r.noisy_ids == expected[0].tolist()
    assert r.hamming > 0


def test_noise_fraction_matches_move_chance():
    """L = 1760 Bernoulli(p) flips with p = 0.34965: std of the fraction is
    sqrt(p(1-p)/L) = 0.0114, so 5 std = 0.057 (a false failure has probability < 1e-6)."""
    r = noise_text(LONG, 0.35, tokenizer="char", seed=3)
    assert abs(r.hamming / len(r.ids) - r.move_chance) < 0.057


def test_noise_absorbing_output():
    r = noise_text(HELLO, 0.5, tokenizer="char", seed=0)
    assert r.mask_id == r.vocab_size == 10
    assert r.flipped == [i for i, (a, b) in enumerate(zip(r.ids, r.noisy_ids, strict=True)) if a != b]
    assert all(r.noisy_ids[i] == r.mask_id for i in r.flipped)
    assert r.hamming == len(r.flipped) > 0
    kept = "".join(c for i, c in enumerate(HELLO) if i not in r.flipped)
    assert r.noisy_text == kept  # masks absorbed as ""
    assert r.noisy_text_shown == "".join(MASK_GLYPH if i in r.flipped else c for i, c in enumerate(HELLO))


def test_noise_same_seed_same_positions_other_seed_differs():
    a = noise_text(LONG, 0.35, tokenizer="char", seed=11)
    b = noise_text(LONG, 0.35, tokenizer="char", seed=11)
    c = noise_text(LONG, 0.35, tokenizer="char", seed=12)
    assert a.flipped == b.flipped
    assert a.flipped != c.flipped  # two independent draws of 1760 flips coincide with prob ~ 0


@pytest.mark.parametrize("graph", ["absorb", "uniform"])
def test_frames_grow_monotonically(graph):
    r = noise_text(LONG, 0.25, graph=graph, tokenizer="char", seed=5, frames=5)
    ts = [f.t for f in r.frames]
    assert ts == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert r.frames[0].hamming == 0
    for early, late in zip(r.frames, r.frames[1:], strict=False):
        assert set(early.flipped) <= set(late.flipped)
        # a changed token keeps its coupled replacement: the corruption only grows
        assert all(late.noisy_ids[i] == early.noisy_ids[i] for i in early.flipped)
    assert r.frames[-1].hamming > r.frames[1].hamming
    # the frame at t = 0.25 is the single corruption at t = 0.25
    assert r.frames[1].noisy_ids == r.noisy_ids


def test_uniform_graph_pairs_with_geometric_schedule():
    r = noise_text(LONG, 0.9, graph="uniform", tokenizer="char", seed=0)
    sigma = 1e-4 ** (1 - 0.9) * 20.0**0.9
    assert r.sigma == pytest.approx(sigma, rel=1e-9)
    assert r.move_chance == pytest.approx(1 - math.exp(-sigma), rel=1e-9)
    assert r.mask_id is None and r.schedule.startswith("GeometricNoise")
    assert all(0 <= i < r.vocab_size for i in r.noisy_ids)  # no mask id on the uniform graph


# --- library: cipher ----------------------------------------------------------------------------


def test_cipher_char_shift_and_same_hamming_row():
    r = cipher_text(HELLO, 3, "char", seed=2, t=0.5)
    V = r.vocab_size
    assert r.shifted_ids == [(i + 3) % V for i in r.ids]
    assert r.shifted_hamming == len(r.ids)
    assert r.diffused_hamming == len(r.diffused_positions) > 0
    assert r.partial_hamming == r.diffused_hamming
    for i in range(len(r.ids)):
        expected = r.shifted_ids[i] if i in r.diffused_positions else r.ids[i]
        assert r.partial_ids[i] == expected
    assert r.diffused_text.count(MASK_GLYPH) == r.diffused_hamming
    assert r.move_chance == pytest.approx((1 - EPS) * 0.5)


def test_cipher_shift_by_vocab_size_is_identity():
    r = cipher_text(HELLO, 10, "char")
    assert r.vocab_size == 10 and r.shifted_ids == r.ids and r.shifted_hamming == 0


@requires_gpt2
def test_cipher_gpt2_hello_world():
    r = cipher_text("Hello world", 1, "gpt2")
    assert r.shifted_ids == [15497, 996]
    r = cipher_text("Hello world", -15496, "gpt2")  # wraps modulo V = 50257
    assert r.shifted_ids == [0, (995 - 15496) % 50257]


# --- library: loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.3, 0.5, 1.0])
def test_loss_untrained_model_costs_log_v_over_t_per_mask(model_dir, t):
    """Zero output layer: q_j = 1/V, so dsigma l = (1/t) log V at each masked token (spec §2.5)."""
    pre = load_pretrained(str(model_dir), "cpu")
    r = loss_text(HELLO, pre, t, seed=4)
    V = 10
    assert r.log_score_shape == [1, 11, V + 1]
    assert r.move_chance == pytest.approx((1 - EPS) * t)
    assert r.corrupted and all(r.noisy_ids[i] == V for i in r.corrupted)
    for p in r.positions:
        assert p.weighted == pytest.approx(math.log(V) / t, rel=1e-5)
        assert p.true_prob == pytest.approx(1 / V, rel=1e-6)
        assert [c.prob for c in p.top] == pytest.approx([1 / V] * 5, rel=1e-6)
    assert r.mass == pytest.approx([1.0] * len(r.corrupted), rel=1e-5)
    assert all(r.per_token[i] == 0.0 for i in range(11) if i not in r.corrupted)
    assert r.loss == pytest.approx(len(r.corrupted) * math.log(V) / t, rel=1e-5)
    assert r.loss_per_token == pytest.approx(r.loss / 11)


def test_loss_random_head_matches_closed_form_and_library_loss(trained_like_dir):
    """dsigma l = (1/t)(sum_j q_j - 1 - log q_x0) with q_j = e(sigma) e^{s_j} (LogLinear,
    absorbing), and the total equals losses.score_entropy_loss on the same x_t."""
    pre = load_pretrained(str(trained_like_dir), "cpu")
    t = 0.6
    r = loss_text(HELLO, pre, t, seed=1, top_k=3)
    assert r.positions
    for p, mass in zip(r.positions, r.mass, strict=True):
        q_true = p.true_prob * mass
        assert p.weighted == pytest.approx((mass - 1 - math.log(q_true)) / t, rel=1e-4)
        assert [c.prob for c in p.top] == sorted((c.prob for c in p.top), reverse=True)
        assert min(p.true_rank, 4) == 1 + sum(c.prob > p.true_prob for c in p.top)
    assert len({round(c.prob, 6) for c in r.positions[0].top}) > 1  # not uniform any more
    with torch.no_grad():
        out = score_entropy_loss(
            *(pre.model, pre.graph, pre.noise),
            torch.tensor([r.ids]),
            torch.tensor([t]),
            xt=torch.tensor([r.noisy_ids]),
        )
    assert float(out.loss[0]) == pytest.approx(r.loss, rel=1e-5)


def test_loss_uniform_graph_model(tmp_path):
    pre = load_pretrained(str(_model_dir(tmp_path / "u", "uniform", (LONG,), head_seed=2)), "cpu")
    assert isinstance(pre.graph, Uniform)
    r = loss_text(LONG[:44], pre, 0.95, seed=0)
    assert r.graph == "uniform" and r.log_score_shape == [1, 44, pre.tokenizer.vocab_size]
    assert r.corrupted and all(m is None for m in r.mass)
    with torch.no_grad():
        out = score_entropy_loss(
            *(pre.model, pre.graph, pre.noise),
            torch.tensor([r.ids]),
            torch.tensor([0.95]),
            xt=torch.tensor([r.noisy_ids]),
        )
    assert float(out.loss[0]) == pytest.approx(r.loss, rel=1e-5)


def test_loss_absorbing_graph_is_what_the_model_uses(model_dir):
    assert isinstance(load_pretrained(str(model_dir), "cpu").graph, Absorbing)


# --- library: bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: tokenize_text("", "char"),
        lambda: noise_text(HELLO, -0.1, tokenizer="char"),
        lambda: noise_text(HELLO, 1.5, tokenizer="char"),
        lambda: noise_text(HELLO, float("nan"), tokenizer="char"),
        lambda: noise_text(HELLO, 0.5, tokenizer="char", frames=1),
        lambda: noise_text(HELLO, 0.5, tokenizer="char", graph="ring"),
        lambda: cipher_text(HELLO, 1, "gtp2"),
    ],
)
def test_library_bad_input_raises_sedd_error(call):
    with pytest.raises(SeddError):
        call()


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_tokenize_table_and_json():
    r = invoke("tokenize", HELLO, "--tokenizer", "char")
    assert r.exit_code == 0, r.output
    assert '"w"' in r.stdout and "11 tokens, 11 characters" in r.stdout
    r = invoke("tokenize", "-", "--tokenizer", "byte", "--json", input="hé\n")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["command"] == "tokenize" and doc["ids"] == [104, 0xC3, 0xA9] and doc["n_chars"] == 2


def test_cli_noise_human_frames_and_json():
    r = invoke("noise", HELLO, "-t", "0.5", "--tokenizer", "char", "--seed", "0")
    assert r.exit_code == 0, r.output
    lib = noise_text(HELLO, 0.5, tokenizer="char", seed=0)
    assert f"Hamming distance {lib.hamming}" in r.stdout
    assert MASK_GLYPH in lib.noisy_text_shown  # seed 0 masks something at t = 0.5
    assert f"noisy text  {lib.noisy_text_shown}\n" in r.stdout  # masks shown by default
    assert "move chance 1 - e^-sigma = 0.4995" in r.stdout
    r = invoke("noise", HELLO, "-t", "0.5", "--tokenizer", "char", "--seed", "0", "--drop-mask")
    assert f"noisy text  {lib.noisy_text}\n" in r.stdout and MASK_GLYPH not in r.stdout  # the seed's view
    r = invoke("noise", HELLO, "-t", "0.5", "--tokenizer", "char", "--show-mask", "--frames", "3")
    assert r.exit_code == 0, r.output
    assert lib.noisy_text_shown in r.stdout and "0.500" in r.stdout and MASK_GLYPH * 11 in r.stdout
    r = invoke("noise", HELLO, "-t", "0.5", "--tokenizer", "char", "--graph", "uniform", "--json")
    doc = json.loads(r.stdout)
    assert doc["command"] == "noise" and doc["graph"] == "uniform" and doc["mask_id"] is None


def test_cli_cipher_demo():
    r = invoke("cipher-demo", HELLO, "-n", "2", "--tokenizer", "char", "-t", "0.5")
    assert r.exit_code == 0, r.output
    lib = cipher_text(HELLO, 2, "char", t=0.5)
    assert lib.shifted_text in r.stdout and "11/11" in r.stdout
    r = invoke("cipher-demo", HELLO, "--tokenizer", "char", "--json")
    doc = json.loads(r.stdout)
    assert doc["shift"] == 1 and doc["shifted_ids"] == [(i + 1) % 10 for i in doc["ids"]]


@requires_gpt2
def test_cli_cipher_demo_gpt2():
    r = invoke("cipher-demo", "Hello world", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["shifted_ids"] == [15497, 996]


@requires_gpt2
def test_readme_cipher_example_shows_a_diffusion_corruption():
    """The README's `sedd cipher-demo ... -n 1` must mask something with the default seed, or
    its diffusion row teaches nothing ("Hello world" masked neither of its 2 tokens)."""
    import re

    from .conftest import REPO

    line = next(
        x for x in (REPO / "README.md").read_text().splitlines() if x.startswith("$ sedd cipher-demo")
    )
    text, shift = re.fullmatch(r'\$ sedd cipher-demo "(.+)" -n (\d+)', line).groups()
    r = invoke("cipher-demo", text, "-n", shift, "--json")
    doc = json.loads(r.stdout)
    assert doc["diffused_hamming"] >= 1 and MASK_GLYPH in doc["diffused_text"]


def test_cipher_shift_of_any_size_is_exact_modulo_v():
    """A shift of 10**30 (beyond int64) is the shift 10**30 mod V: no overflow traceback."""
    big = cipher_text(HELLO, 10**30, "char")
    small = cipher_text(HELLO, 10**30 % big.vocab_size, "char")
    assert big.shifted_ids == small.shifted_ids and big.shift == 10**30
    r = invoke("cipher-demo", HELLO, "-n", str(10**30), "--tokenizer", "char", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["shifted_ids"] == small.shifted_ids


def test_cli_loss(model_dir):
    r = invoke("loss", HELLO, "-m", str(model_dir), "-t", "0.5", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "shape [1, 11, 11]" in r.stdout and "4.6052" in r.stdout  # (1/0.5) ln 10
    r = invoke("loss", HELLO, "-m", str(model_dir), "-t", "0.5", "--device", "cpu", "--json", "--top-k", "2")
    doc = json.loads(r.stdout)
    assert doc["command"] == "loss" and all(len(p["top"]) == 2 for p in doc["positions"])
    assert doc["loss"] == pytest.approx(len(doc["corrupted"]) * 2 * math.log(10), rel=1e-5)


def test_cli_help_has_examples():
    for cmd in ("tokenize", "noise", "cipher-demo", "loss"):
        r = invoke(cmd, "--help")
        assert r.exit_code == 0 and "Examples" in r.stdout and f"sedd {cmd}" in r.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["tokenize", "", "--tokenizer", "char"], "empty"),
        (["noise", "", "--tokenizer", "char"], "empty"),
        (["cipher-demo", "", "--tokenizer", "char"], "empty"),
        (["loss", "", "-m", "MODEL"], "empty"),
        (["tokenize", "-", "--tokenizer", "char"], "empty"),  # empty stdin
        (["noise", HELLO, "-t", "1.5", "--tokenizer", "char"], "between 0 and 1"),
        (["noise", HELLO, "-t", "-0.1", "--tokenizer", "char"], "between 0 and 1"),
        (["cipher-demo", HELLO, "-t", "2", "--tokenizer", "char"], "between 0 and 1"),
        (["loss", HELLO, "-m", "MODEL", "-t", "1.01"], "between 0 and 1"),
        (["tokenize", HELLO, "--tokenizer", "gtp2"], "did you mean 'gpt2'"),
        (["noise", HELLO, "--tokenizer", "bogus"], "unknown tokenizer"),
        (["cipher-demo", HELLO, "--tokenizer", "chr"], "unknown tokenizer"),
        (["tokenize", "hello xyz", "--tokenizer", "MODEL"], "lacks the character"),
        (["noise", "hex", "--tokenizer", "MODEL"], "lacks the character"),
        (["loss", "hex", "-m", "MODEL"], "lacks the character"),
        (["loss", HELLO, "-m", "MISSING"], "not found"),
        (["noise", HELLO, "--tokenizer", "char", "--frames", "1"], "--frames"),
        (["noise", HELLO, "--tokenizer", "char", "--frames", str(10**9)], "from 2 to 1000"),
        (
            ["noise", HELLO, "--tokenizer", "char", "--seed", str(2**70)],
            "--seed must be an integer in [0, 2**63 - 1]",
        ),
        (["cipher-demo", HELLO, "--tokenizer", "char", "--seed", "-1"], "--seed must be an integer"),
        (
            ["tokenize", "-", "--tokenizer", "char"],
            "standard input is not UTF-8 text (invalid start byte at byte 2)",
        ),
        (["noise", HELLO, "--tokenizer", "char", "--graph", "ring"], "unknown graph"),
        (["loss", HELLO, "-m", "MODEL", "--top-k", "0"], "--top-k"),
    ],
)
def test_cli_errors_are_one_line_exit_1(args, needle, model_dir, tmp_path):
    args = [str(model_dir) if a == "MODEL" else str(tmp_path / "nope") if a == "MISSING" else a for a in args]
    stdin = b"ab\xff\xfe" if "UTF-8" in needle else ""
    r = invoke(*args, input=stdin)
    assert r.exit_code == 1, r.output
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr


def test_coupled_draw_replacements_are_fixed_per_position():
    g, _ = demo_graph("uniform", 50)
    draw = coupled_draw(g, 100, seed=9)
    x0 = torch.zeros(100, dtype=torch.long)
    a, b = draw.corrupt(x0, 0.3), draw.corrupt(x0, 0.9)
    moved = a != x0
    assert torch.equal(b[moved], a[moved])
