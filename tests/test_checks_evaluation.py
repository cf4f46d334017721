"""One check per fact (#15) for `sedd perplexity` and `sedd_cli.evaluation`.

Each row names an option (or an input), a bad value and a fragment of the one-line error. The row
runs the command (or the library function) and asserts exit 1 / SeddError with that fragment, and
asserts the fragment has exactly one origin, in the library (`tests/checks.py`). Rows marked
``before load`` name a model path that does not exist: they pass only if the option is checked
before any model is loaded.

Text that is not UTF-8 (here a samples file) is refused by the core's one message
(`config.not_utf8`), whichever stage reads the file.
"""

from __future__ import annotations

import sys

import pytest
import torch
from typer.testing import CliRunner

from sedd_cli.checkpoints import load_pretrained
from sedd_cli.cli import app
from sedd_cli.errors import SeddError
from sedd_cli.evaluation import (
    SampleScore,
    generative_perplexity,
    perplexity,
    read_samples,
    summarize_samples,
)

from .checks import assert_checked_once
from .helpers import save_tiny_char_model

NO_MODEL = "no/such/model"  # loading it would fail with another message

# (option, argv after `sedd perplexity`, fragment); placeholders are filled by the `files` fixture
CLI_ROWS = [
    # the bound: every option is checked before the model is loaded
    ("--mc", [NO_MODEL, "--data", "TEXT", "--mc", "0"], " must be an integer from 1 to"),
    ("--mc", [NO_MODEL, "--data", "TEXT", "--mc", "10001"], " must be an integer from 1 to"),
    ("--batch-size", [NO_MODEL, "--data", "TEXT", "--batch-size", "0"], "at least 1 (blocks or sequences"),
    (
        "--time-spacing",
        [NO_MODEL, "--data", "TEXT", "--time-spacing", "log"],
        "--time-spacing must be one of",
    ),
    ("--max-blocks", [NO_MODEL, "--data", "TEXT", "--max-blocks", "0"], " must be at least 1 block, got "),
    ("--split", [NO_MODEL, "--data", "TEXT", "--split", "valid"], "--split must be one of"),
    ("--split all", [NO_MODEL, "--data", "wikitext2", "--split", "all"], "--split all is for local files"),
    ("--data", [NO_MODEL, "--data", "wikitxt2"], "unknown protocol or file"),
    # needs the model's tokenizer: checked once the model is loaded
    ("--data (tokens)", ["MODEL", "--data", "wikitext2"], "uses GPT-2 tokens but the model's tokenizer"),
    # generative perplexity: checked before any model is loaded or sampled
    ("--batch-size", ["--generative", "SAMPLES", "--batch-size", "0"], "at least 1 (blocks or sequences"),
    (
        "--mc",
        ["--generative", "SAMPLES", "--eval-model", f"sedd:{NO_MODEL}", "--mc", "0"],
        " must be an integer from 1 to",
    ),
    ("--num-samples", ["--generative", "DIR", "--num-samples", "0"], "--num-samples must be at least 1"),
    ("--generative", ["--generative", "MISSING"], "is neither a samples file nor a model folder"),
    ("--generative", ["--generative", "EMPTY"], "holds no samples"),
    ("--eval-model", ["--generative", "SAMPLES", "--eval-model", "gpt2-large"], "no evaluator: pip install"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random char model saved as a model folder."""
    return save_tiny_char_model(tmp_path_factory.mktemp("checks") / "m")


@pytest.fixture
def files(tmp_path, tiny):
    (tmp_path / "text.txt").write_text("abc\ndef\n")
    (tmp_path / "samples.txt").write_text("abc\ndef\n")
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "dir").mkdir()
    return {
        "TEXT": str(tmp_path / "text.txt"),
        "SAMPLES": str(tmp_path / "samples.txt"),
        "EMPTY": str(tmp_path / "empty.txt"),
        "DIR": str(tmp_path / "dir"),
        "MISSING": str(tmp_path / "missing.txt"),
        "MODEL": str(tiny),
    }


@pytest.mark.parametrize("option, argv, fragment", CLI_ROWS, ids=[f"{r[0]}:{r[2][:24]}" for r in CLI_ROWS])
def test_cli_option_is_checked_once_in_the_library(option, argv, fragment, files, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # no evaluator, even where it is installed
    r = CliRunner().invoke(app, ["perplexity", *[files.get(a, a) for a in argv]])
    assert r.exit_code == 1, r.output
    assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert_checked_once(fragment)


def _out_of_vocabulary(tiny):
    pre = load_pretrained(str(tiny), device="cpu")
    perplexity(pre, data=torch.full((2, pre.config.model.length), pre.tokenizer.vocab_size), mc=1)


def _bad_json(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"text": "abc"}\nnot json\n')
    read_samples(tmp_path / "s.jsonl")


def _not_utf8(tmp_path):
    (tmp_path / "s.txt").write_bytes(b"abc\n\xffdef\n")
    read_samples(tmp_path / "s.txt")


# (input, call, fragment): the library entries' own checks of what they are given
LIBRARY_ROWS = [
    ("data (tensor ids)", lambda tiny, tmp: _out_of_vocabulary(tiny), "but the model's vocabulary has"),
    ("samples (list)", lambda tiny, tmp: generative_perplexity([], eval_model="x"), "no samples to evaluate"),
    ("samples (jsonl)", lambda tiny, tmp: _bad_json(tmp), ": not JSON"),
    ("samples (not UTF-8)", lambda tiny, tmp: _not_utf8(tmp), " is not UTF-8 text ("),
    (
        "scores",
        lambda tiny, tmp: summarize_samples([SampleScore([1], 0.0, 0)]),
        "every sample is too short to score",
    ),
    ("--mc (API)", lambda tiny, tmp: perplexity(NO_MODEL, mc=2.5), " must be an integer from 1 to"),
    ("--split (API)", lambda tiny, tmp: perplexity(NO_MODEL, split="dev"), "--split must be one of"),
]


@pytest.mark.parametrize("what, call, fragment", LIBRARY_ROWS, ids=[r[0] for r in LIBRARY_ROWS])
def test_library_input_is_checked_once(what, call, fragment, tiny, tmp_path):
    with pytest.raises(SeddError) as info:
        call(tiny, tmp_path)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert_checked_once(fragment)


# --- the harness model's model_args (`sedd lm-eval --model sedd --model_args ...`) ----------------

# (key, model_args, the message names, the fragment with one origin in the library); all checked
# by `harness_options` before any model is loaded (the model path does not exist)
HARNESS_ROWS = [
    ("unknown key", {"pretrained": NO_MODEL, "mcc": 8}, "did you mean 'mc'?", "unknown model_args key "),
    ("pretrained", {"mc": 8}, "model_args pretrained is required", "model_args pretrained is required"),
    ("mc", {"pretrained": NO_MODEL, "mc": 0}, "model_args mc must", " must be an integer from 1 to "),
    (
        "batch_size",
        {"pretrained": NO_MODEL, "batch_size": 0},
        "model_args batch_size",
        " must be at least 1 (blocks or",
    ),
    (
        "batch_size",
        {"pretrained": NO_MODEL, "batch_size": "auto"},
        "not supported",
        "batch_size auto is not supported",
    ),
    (
        "seed",
        {"pretrained": NO_MODEL, "seed": -1},
        "model_args seed",
        " must be an integer in [0, 2**63 - 1]",
    ),
    ("weights", {"pretrained": NO_MODEL, "weights": "best"}, "model_args weights", "weights must be one of "),
    (
        "predictor",
        {"pretrained": NO_MODEL, "predictor": "fast"},
        "model_args predictor",
        ": unknown predictor ",
    ),
    ("steps", {"pretrained": NO_MODEL, "steps": 0}, "model_args steps", " reverse-process steps, got "),
    (
        "temperature",
        {"pretrained": NO_MODEL, "temperature": -1},
        "model_args temperature",
        " must be 0 (arg-max) or",
    ),
    ("top_p", {"pretrained": NO_MODEL, "top_p": 0}, "model_args top_p", " must be in (0, 1], got "),
    (
        "greedy",
        {"pretrained": NO_MODEL, "greedy": "maybe"},
        "model_args greedy",
        " must be true or false, got ",
    ),
]


@pytest.mark.parametrize(
    "key, args, names, fragment", HARNESS_ROWS, ids=[f"{r[0]}:{r[3][:20]}" for r in HARNESS_ROWS]
)
def test_harness_model_args_are_checked_once(key, args, names, fragment):
    from sedd_cli.evaluation import harness_options

    with pytest.raises(SeddError) as info:
        harness_options(args)
    message = str(info.value)
    assert names in message and fragment in message and "\n" not in message
    assert_checked_once(fragment)
