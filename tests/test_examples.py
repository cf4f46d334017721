"""The examples in examples/ run end to end at the tiny preset (as the README promises)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

EXAMPLES = REPO / "examples"


def _run(args: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    """Run an example in `cwd` with this venv's `sedd` first on PATH; fail with its stderr."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra_env)
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.slow
def test_babynames_example(tmp_path):
    r = _run(["bash", str(EXAMPLES / "babynames.sh")], tmp_path, PRESET="tiny", MAX_STEPS="6")
    out = r.stdout.splitlines()
    # the infill step prints 5 names that keep the given "ma" prefix and final "a" (plain
    # brackets mark the filled span in a pipe: "ma[xyz]a")
    infills = [line for line in out if line.startswith("ma[") and line.rstrip().endswith("]a")]
    assert len(infills) == 5, r.stdout
    assert "perplexity" in r.stdout.lower()
    assert (tmp_path / "runs" / "babynames-example" / "checkpoints").is_dir()


@pytest.mark.slow
def test_own_data_example(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["the cat sat", "a dog ran", "my hat is red", "we sing"] * 30) + "\n")
    r = _run(["bash", str(EXAMPLES / "own_data.sh"), str(corpus)], tmp_path, PRESET="tiny", MAX_STEPS="6")
    assert (tmp_path / "runs" / "own-data-example" / "samples.txt").is_file()
    assert '"perplexity"' in r.stdout  # the final --json document


@pytest.mark.slow
def test_infill_python_example(tmp_path):
    r = _run(
        [sys.executable, str(EXAMPLES / "infill.py")],
        tmp_path,
        SEDD_EXAMPLE_PRESET="tiny",
        SEDD_EXAMPLE_STEPS="6",
    )
    lines = r.stdout.splitlines()
    filled = [line for line in lines if "filled positions" in line]
    assert len(filled) == 4 and all(line.startswith("'ma") for line in filled), r.stdout
