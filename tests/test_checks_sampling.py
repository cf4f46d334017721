"""One check per fact for sampling (#15 item 4): each validated option of `sedd sample` / `sedd
infill` / `generate` fails with its one-line message, and that message has exactly one origin in the
library (`tests/checks.py`). Rows run the CLI (exit 1, the fragment on stderr) or, for options
only the library has, the library function (`SeddError` with the fragment)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from sedd_cli.cli import app
from sedd_cli.errors import SeddError

from .checks import assert_checked_once
from .helpers import save_tiny_char_model

ALPHABET = "abcdefgh"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_char_model(tmp_path_factory.mktemp("m") / "m", ALPHABET, seed=None)


# (option, command line with {m} = the model, {f} = an existing file, {d} = a folder, fragment)
CLI_ROWS = [
    ("--steps", ["sample", "{m}", "--steps", "0"], " reverse-process steps, got "),
    ("--num-samples", ["sample", "{m}", "-n", "0"], "run several calls with different --seed for more"),
    ("--batch-size", ["sample", "{m}", "--batch-size", "0"], "(sequences per sampling batch) must be"),
    ("--length", ["sample", "{m}", "--length", "0"], "--length must be at least 1"),
    ("--length", ["sample", "{m}", "--length", "17"], "is longer than the model's trained length"),
    ("--eps", ["sample", "{m}", "--eps", "1.5"], "(the end of the time grid) must be in (0, 1)"),
    ("--precision", ["sample", "{m}", "--precision", "float16"], " must be float64 or float32, got "),
    ("--predictor", ["sample", "{m}", "--predictor", "heun"], "unknown predictor"),
    ("--temperature", ["sample", "{m}", "--temperature", "-1"], "must be 0 (arg-max) or positive"),
    ("--top-p", ["infill", "a[MASK]", "-m", "{m}", "--top-p", "1.5"], "must be in (0, 1], got"),
    ("--every", ["sample", "{m}", "--every", "0"], "--every must be at least 1"),
    ("--out", ["sample", "{m}", "--out", "{f}"], "exists: pass --force"),
    ("--out", ["sample", "{m}", "--out", "{d}"], "is a folder: give a file name"),
    ("--save-frames", ["sample", "{m}", "--out", "{d}/x", "--save-frames", "{d}/x"], "name the same file"),
    ("TEMPLATE", ["infill", "-m", "{m}"], "nothing to infill: give a TEMPLATE"),
    ("TEMPLATE", ["infill", "a[MASK]", "-m", "{m}", "--prefix", "a"], "give either a TEMPLATE or --prefix"),
    ("TEMPLATE", ["infill", "abc", "-m", "{m}"], "the template has no [MASK]"),
    ("TEMPLATE", ["infill", "a[MASK:x]", "-m", "{m}"], "in the template: write [MASK] for one token"),
    ("TEMPLATE", ["infill", "a[MASK:30]", "-m", "{m}"], "more masked tokens than"),
    ("TEMPLATE", ["infill", "abcdefgh[MASK]abcdefgh", "-m", "{m}"], "tokens long, more than the length"),
    ("TEMPLATE", ["infill", "a[MASK:3-2]", "-m", "{m}"], "A is more than B in [MASK:A-B]"),
    ("TEMPLATE", ["infill", "a[MASK:0-0]", "-m", "{m}"], "a gap of A to B tokens needs B of at least 1"),
    ("TEMPLATE", ["infill", "a[MASK:0-30]", "-m", "{m}"], "more masked tokens than"),
    ("TEMPLATE", ["infill", "a[MASK:0-3]", "-m", "{m}"], "needs a model trained with pad insertion"),
    ("--force", ["infill", "a[MASK:1-3]", "-m", "{m}", "--force"], None),  # tries anyway
    ("--gap", ["infill", "-m", "{m}", "--gap", "0-3"], "--gap A-B goes with --prefix and/or --suffix"),
    ("--gap", ["infill", "-m", "{m}", "--suffix", "a", "--gap", "3"], "write the gap as A-B"),
    ("--gap", ["infill", "-m", "{m}", "--suffix", "a", "--gap", "3-2"], "A is more than B in [MASK:A-B]"),
    (
        "--gap",
        ["infill", "-m", "{m}", "--suffix", "a", "--gap", "0-30"],
        "more slots than the model's length",
    ),
    ("--gap", ["infill", "-m", "{m}", "--suffix", "a", "--gap", "0-3"], "needs a model trained with pad"),
    ("--gap", ["infill", "-m", "{m}", "--suffix", "a", "--gap", "1-3", "--force"], None),
    (
        "--gap-law",
        ["infill", "a[MASK:0-3]", "-m", "{m}", "--gap-law", "x", "--force"],
        "choose data (the data's law) or model",
    ),
    (
        "--gap-law",
        ["infill", "a[MASK:0-3]", "-m", "{m}", "--gap-law", "data", "--force"],
        "--gap-law data needs",
    ),
    ("--prefix", ["infill", "-m", "{m}", "--prefix", "abcdef", "--length", "4"], "prefix + suffix are"),
    ("--prefix", ["infill", "-m", "{m}", "--prefix", "abcd", "--length", "4"], "fill the whole length"),
    (
        "--temperature",
        ["sample", "{m}", "--temperature", "0.5", "--predictor", "none", "--no-denoise"],
        None,  # allowed: the none predictor on the absorbing graph shapes the (skipped) denoiser
    ),
    ("--tokens-per-step", ["sample", "{m}", "--tokens-per-step", "0"], "must be at least 1 (positions"),
    (
        "--tokens-per-step",
        ["sample", "{m}", "--predictor", "first-hitting", "--tokens-per-step", "17"],
        "positions of a sample: use 1 to",
    ),
    ("--tokens-per-step", ["sample", "{m}", "--tokens-per-step", "2"], "first-hitting only"),
    ("--tokens-per-step", ["sample", "{m}", "--predictor", "first-hitting", "--tokens-per-step", "16"], None),
    ("--no-cache", ["infill", "a[MASK]", "-m", "{m}", "--predictor", "first-hitting", "--no-cache"], None),
]


@pytest.mark.parametrize("option, args, fragment", CLI_ROWS, ids=[f"{r[0]}:{r[2]}" for r in CLI_ROWS])
def test_cli_option_checked_once(model_dir, tmp_path, option, args, fragment):
    existing = tmp_path / "old.txt"
    existing.write_text("keep\n")
    args = [a.format(m=model_dir, f=existing, d=tmp_path) for a in args]
    r = CliRunner().invoke(
        app, [*args, "--steps" if "--steps" not in args else "--seed", "2"], prog_name="sedd"
    )
    if fragment is None:
        assert r.exit_code == 0, r.stderr
        return
    assert r.exit_code == 1, (option, r.stdout, r.stderr)
    assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert_checked_once(fragment)


def _tiny():
    from sedd_cli.graph import Absorbing, Uniform
    from sedd_cli.noise import LogLinearNoise

    class Flat(torch.nn.Module):  # uniform log-scores: enough to reach the checks and a draw
        def forward(self, x, sigma):
            return torch.zeros(*x.shape, 4)

    return Flat(), Absorbing(3), Uniform(4), LogLinearNoise(1e-3)


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"steps": 0}, " reverse-process steps, got "),
        ({"length": 0}, "--length must be at least 1"),
        ({"eps": 0.0}, "(the end of the time grid) must be in (0, 1)"),
        ({"precision": "float16"}, " must be float64 or float32, got "),
        ({"predictor": "heun"}, "unknown predictor"),
        ({"temperature": -1.0}, "must be 0 (arg-max) or positive"),
        ({"top_p": 0.0}, "must be in (0, 1], got"),
        ({"top_p": 0.5, "fast": False}, "apply to absorbing (mask) models"),
        ({"temperature": 0.5, "uniform": True}, "apply to absorbing (mask) models"),
        ({"predictor": "first-hitting", "uniform": True}, "needs an absorbing (mask) model"),
        ({"tokens_per_step": 0}, "must be at least 1 (positions"),
        ({"tokens_per_step": 4, "predictor": "first-hitting"}, "positions of a sample: use 1 to"),
        ({"tokens_per_step": 2}, "first-hitting only"),
    ],
)
def test_generate_option_checked_once(kw, fragment):
    """`generate` (the library's entry below `sample`) refuses the same values with the same text."""
    model, absorbing, uniform, noise = _tiny()
    graph = uniform if kw.pop("uniform", False) else absorbing
    args = dict(batch_size=2, length=3, steps=2) | kw
    with pytest.raises(SeddError) as info:
        from sedd_cli.sampling import generate

        generate(model, graph, noise, **args)
    assert fragment in str(info.value)
    assert_checked_once(fragment)


def test_shaping_refused_for_a_general_instance_too():
    """A user's `Predictor` instance without shaping support is refused by the same check."""
    from sedd_cli.sampling import AbsorbingAnalyticPredictor, AnalyticPredictor, generate

    model, graph, _, noise = _tiny()
    with pytest.raises(SeddError, match="apply to absorbing"):
        generate(
            model,
            graph,
            noise,
            batch_size=2,
            length=3,
            steps=2,
            predictor=AnalyticPredictor(graph, noise),
            top_p=0.5,
        )
    pred = AbsorbingAnalyticPredictor(graph, noise, top_p=0.5)
    x = generate(model, graph, noise, batch_size=2, length=3, steps=2, predictor=pred, top_p=0.5)
    assert x.shape == (2, 3) and int(x.max()) < 3


def test_sample_section_tokens_per_step_checked_by_the_same_function():
    """A config's ``sample.tokens_per_step`` is refused by the option's check, naming the key."""
    from sedd_cli.config import SampleConfig
    from sedd_cli.sampling import check_sample_settings

    with pytest.raises(SeddError, match=r"^sample\.tokens_per_step must be at least 1 \(positions"):
        check_sample_settings(SampleConfig(tokens_per_step=0))
    check_sample_settings(SampleConfig(predictor="first-hitting", tokens_per_step=4))
