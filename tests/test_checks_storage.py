"""One check per fact (#15) for the storage stages: `sedd info` / `sedd convert` and the data
and checkpoint libraries. Each row runs the command (or the library call) with one bad value,
expects exit 1 / a SeddError carrying `fragment`, and proves with `assert_checked_once` that the
text has one origin, in the library."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from sedd_cli.cli import app
from sedd_cli.config import Config
from sedd_cli.data import prepare_data, resolve_source
from sedd_cli.errors import SeddError
from sedd_cli.tokenizers import CharTokenizer

from .checks import assert_checked_once


def _layout(tmp: Path) -> dict[str, str]:
    """Paths the rows name: an empty folder (a source that is not a model), a file, a non-empty
    folder, a missing path, a text dataset and a folder where a dataset file is expected."""
    (tmp / "src").mkdir()
    (tmp / "file.txt").write_text("not a folder\n")
    (tmp / "full").mkdir()
    (tmp / "full" / "keep.txt").write_text("mine\n")
    (tmp / "names.txt").write_text("ada\nbob\ncy\n" * 10)
    (tmp / "radd").mkdir()  # RADD's layout: config.json (model.type ddit_wot), weights missing
    (tmp / "radd" / "config.json").write_text('{"tokens": 50257, "model": {"type": "ddit_wot"}}')
    (tmp / "radd2").mkdir()  # ... with weights under another model's names
    (tmp / "radd2" / "config.json").write_text(
        '{"tokens": 256, "model": {"type": "ddit_wot", "n_blocks": 1}}'
    )
    save_file({"x": torch.zeros(2)}, str(tmp / "radd2" / "model.safetensors"))
    return {
        k: str(tmp / v)
        for k, v in {
            "src": "src",
            "file": "file.txt",
            "full": "full",
            "missing": "nope",
            "inside": "src/out",
            "text": "names.txt",
            "folder": "full",
            "badsuffix": "file.tsv",
            "radd": "radd",
            "radd2": "radd2",
        }.items()
    }


CLI_ROWS = [
    # (option, argv with {placeholders}, message fragment)
    ("--weights", ["info", "{src}", "--weights", "best"], "weights must be one of "),
    ("--weights", ["convert", "{src}", "{full}", "--weights", "best"], "weights must be one of "),
    ("OUT", ["convert", "{src}", "{file}"], "exists and is not a folder: choose another OUT"),
    ("OUT", ["convert", "{src}", "{full}"], "is not empty: choose another OUT or pass --force"),
    ("OUT", ["convert", "{src}", "{inside}", "--force"], "would delete what is being converted"),
    ("MODEL", ["info", "{missing}"], "not found: pass a run directory, checkpoint, model folder"),
    ("MODEL", ["info", "{src}"], "is not a model: expected "),
    ("MODEL", ["info", "{radd}"], "but no weights: expected "),
    ("MODEL", ["info", "{radd2}"], "do not fit the model: "),
]


@pytest.mark.parametrize(
    ("option", "argv", "fragment"), CLI_ROWS, ids=[f"{r[1][0]} {r[0]}" for r in CLI_ROWS]
)
def test_cli_value_is_checked_once_in_the_library(tmp_path, option, argv, fragment):
    paths = _layout(tmp_path)
    r = CliRunner().invoke(app, [a.format(**paths) for a in argv])
    assert r.exit_code == 1, (r.exit_code, r.stdout, r.stderr)
    assert fragment in r.stderr and r.stderr.count("\n") == 1, r.stderr  # refused before "loading ..."
    assert_checked_once(fragment)


def _cfg(name: str, **data: object) -> Config:
    cfg = Config()
    cfg.data.name, cfg.model.length = name, 4
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


TOK = CharTokenizer(list("abcdy"))

LIBRARY_ROWS = [
    # (option, call with the paths, message fragment)
    ("split", lambda p: prepare_data(_cfg(p["text"]), TOK, "valid"), "unknown split "),
    (
        "max_blocks",
        lambda p: prepare_data(_cfg(p["text"]), TOK, "train", max_blocks=0),
        "must be at least 1 block",
    ),
    (
        "data.weighting",
        lambda p: prepare_data(_cfg(p["text"], weighting="count"), TOK, "train"),
        "weights one record per row",
    ),
    (
        "data.weighting",
        lambda p: prepare_data(_cfg(p["text"], weighting="count", layout="pad"), TOK, "train"),
        "applies to babynames only",
    ),
    ("--data", lambda p: resolve_source("babynamez"), "unknown dataset "),
    ("--data", lambda p: resolve_source("hf:"), "write hf:NAME or hf:NAME:CONFIG"),
    ("--data", lambda p: resolve_source(p["folder"]), "is a folder: pass one file"),
    ("--data", lambda p: resolve_source(p["badsuffix"]), "dataset files must end in"),
    ("--data", lambda p: resolve_source(p["missing"] + ".txt"), "not found: check the path"),
]


@pytest.mark.parametrize(
    ("option", "call", "fragment"), LIBRARY_ROWS, ids=[f"{r[0]} {r[2]}" for r in LIBRARY_ROWS]
)
def test_library_value_is_checked_once(tmp_path, option, call, fragment):
    paths = _layout(tmp_path)
    with pytest.raises(SeddError) as info:
        call(paths)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert_checked_once(fragment)
