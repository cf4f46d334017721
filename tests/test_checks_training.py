"""One check per fact for training (#15): every validated `sedd train` option or value is refused
with exit 1 and a one-line message, and that message has exactly one origin, in the library.

Each row runs the command (or the library function) on a bad value and asserts the fragment,
then `assert_checked_once(fragment)`. All of these fail before any data, model or run folder is
built, so the rows are quick.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sedd_cli.cli import app
from sedd_cli.config import load_preset
from sedd_cli.errors import SeddError

from .checks import assert_checked_once


def _path(token: str, tmp: Path) -> str:
    """The argument for `token`: RUN a folder holding only a complete config.yaml (enough for
    the checks made before training), MINE a folder of someone's files, FILE a file, NEW a path
    that does not exist, LONG a path with a 300-byte part; other tokens are passed as they are."""
    if token == "RUN":
        (tmp / "run").mkdir()
        (tmp / "run" / "config.yaml").write_text(load_preset("tiny").to_yaml())
        return str(tmp / "run")
    if token == "MINE":
        (tmp / "mine").mkdir()
        (tmp / "mine" / "notes.txt").write_text("mine")
        return str(tmp / "mine")
    if token == "FILE":
        (tmp / "file").write_text("not a folder")
        return str(tmp / "file")
    if token == "NEW":
        return str(tmp / "new")
    if token == "LONG":
        return str(tmp / ("d" * 300) / "r")
    return token


DIVISIBLE = " is not divisible by processes x accum = "
IN_PLACE = "--resume continues a run in place: drop --run-dir/--name"
TOO_LONG = "bytes per name: choose a shorter --name/--run-dir"
OTHER_MODEL = " differs from the run's model config: "

# (what, arguments after `sedd train`, expected fragment)
CLI_ROWS = [
    (
        "--run-dir with --name",
        ["--run-dir", "NEW", "--name", "r"],
        "give either --run-dir or --name, not both",
    ),
    ("--resume with --name", ["--resume", "RUN", "--name", "r"], IN_PLACE),
    ("--resume with another --run-dir", ["--resume", "RUN", "--run-dir", "NEW"], IN_PLACE),
    ("--name a path", ["--name", "a/b"], "must be a plain folder name; use --run-dir for a path"),
    ("--name too long", ["--name", "n" * 300], TOO_LONG),
    ("--run-dir a part too long", ["--run-dir", "LONG"], TOO_LONG),
    ("--nproc 0", ["--nproc", "0"], "--nproc must be at least 1, got "),
    ("--logger unknown", ["--logger", "tensorbord"], "; valid names: "),
    (
        "--logger unknown under --set",
        ["--logger", "wandb", "--set", "train.loggers=[x]"],
        ": unknown logger ",
    ),
    ("--max-steps 0", ["--max-steps", "0"], "(valid: "),  # config.py's one range check of every count
    ("--batch-size 7 --nproc 2", ["--model", "tiny", "--batch-size", "7", "--nproc", "2"], DIVISIBLE),
    ("--set train.accum=3", ["--model", "tiny", "--set", "train.accum=3"], DIVISIBLE),
    ("--resume a different --model", ["--resume", "RUN", "--model", "names"], OTHER_MODEL),
    ("--resume a different model.*", ["--resume", "RUN", "--set", "model.n_blocks=3"], OTHER_MODEL),
    ("--resume no config.yaml", ["--resume", "MINE"], ": not a sedd run ("),
    ("--resume no folder", ["--resume", "NEW"], ": not a sedd run ("),
    ("--run-dir a file", ["--run-dir", "FILE"], " is a file: choose another --run-dir or --name"),
    ("--run-dir someone's folder", ["--run-dir", "MINE"], " already holds files: continue it with --resume "),
]


@pytest.mark.parametrize("what, args, fragment", CLI_ROWS, ids=[row[0] for row in CLI_ROWS])
def test_cli_refuses_with_one_line_from_one_library_check(what, args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --name runs would go under ./runs
    argv = [_path(a, tmp_path) for a in args]
    made = sorted(p.name for p in tmp_path.iterdir())
    r = CliRunner().invoke(app, ["train", *argv])
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: ") and fragment in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == made  # nothing new on disk
    assert_checked_once(fragment)


def _train_without_config():
    from sedd_cli.training import train

    train(None)


def _empty_data_order():
    from sedd_cli.training import DataOrder

    DataOrder(0, seed=1)


def _resume_below_the_checkpoint():
    from sedd_cli.training.resume import check_within_budget

    check_within_budget(Path("runs/x"), 5, 3)


LIBRARY_ROWS = [
    ("train(config=None)", _train_without_config, "train() needs a Config (or resume=RUN)"),
    ("empty training data", _empty_data_order, "the training data is empty: check --data and --text-field"),
    ("--max-steps below the checkpoint", _resume_below_the_checkpoint, "beyond train.max_steps "),
]


@pytest.mark.parametrize("what, call, fragment", LIBRARY_ROWS, ids=[row[0] for row in LIBRARY_ROWS])
def test_library_refuses_from_one_check(what, call, fragment):
    with pytest.raises(SeddError) as info:
        call()
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert_checked_once(fragment)
