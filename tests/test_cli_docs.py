"""docs/cli.md is generated from --help; it must match the current code."""

from __future__ import annotations

import importlib.util

from .conftest import REPO


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_md", REPO / "scripts" / "gen_cli_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_md_matches_help():
    gen = _generator()
    expected = gen.render()
    actual = (REPO / "docs" / "cli.md").read_text()
    assert actual == expected, "docs/cli.md is out of date: run python scripts/gen_cli_md.py"


def test_every_command_is_documented_with_examples():
    gen = _generator()
    names = gen.commands()
    assert names == [
        "tokenize",
        "noise",
        "cipher-demo",
        "loss",
        "train",
        "sample",
        "infill",
        "perplexity",
        "lm-eval",
        "info",
        "convert",
    ]
    for name in names:
        assert "Examples" in gen.help_text([name]), f"sedd {name} --help has no examples"
