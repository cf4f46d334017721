"""Fault injection for training runs (issue #14): nothing lost, nothing half-written.

- two processes claiming one run directory (the lock), and a lock left by a killed process;
- disk full (ENOSPC injected where every byte is written, `runtime._write_all`) at each write site
  of a run: one line naming the file and the free space, no temporary file left, the last good
  checkpoint loads, and after the space "returns" the run resumes (or starts again) to the very
  losses of an uninterrupted run;
- corrupted artefacts of a run directory (truncated, byte-flipped, wrong types, missing keys): one
  line naming the file, exit 1, no traceback, the folder unchanged (a hash before and after);
- slow: kill -9 at random points of a run that checkpoints every step, Ctrl-C (exit 130), and
  two `sedd train` processes racing for one name.

The oracle for "resumes exactly" is an uninterrupted run of the same config and seed on one
thread: on the same device and thread count, resume is bit-exact (docs/training.md), so every
logged loss must be *equal*, not close.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import sedd_cli.runtime as runtime
import sedd_cli.tokenizers as tokenizers
from sedd_cli.checkpoints import load_pretrained
from sedd_cli.cli import app
from sedd_cli.config import load_config
from sedd_cli.errors import SeddError
from sedd_cli.runtime import FileLock
from sedd_cli.training import LOCK_FILE, claim_run_dir, read_metrics, train

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")

# A run that writes every kind of file: metrics every step, validation at 3, samples at 2 and 4,
# checkpoints at 2 and 4.
SETS = (
    "data.valid_fraction=0.1",
    "train.max_steps=4",
    "train.log_every=1",
    "train.eval_every=3",
    "train.eval_batches=1",
    "train.checkpoint_every=2",
    "train.keep_checkpoints=2",
    "train.sample_every=2",
    "sample.steps=4",
    "sample.num_samples=2",
)


def tiny_args(names_file: Path, *sets: str) -> list[str]:
    out = ["--model", "tiny", "--data", str(names_file), "--device", "cpu"]
    for item in (*SETS, *sets):
        out += ["--set", item]
    return out


def losses(run) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in read_metrics(run) if "loss" in m}


@pytest.fixture(scope="module")
def reference(names_file, tmp_path_factory) -> dict[int, float]:
    """The uninterrupted run's loss at every step (the oracle of every recovery below)."""
    run = tmp_path_factory.mktemp("ref") / "run"
    cfg = load_config("tiny", sets=[f"data.name={names_file}", *SETS])
    torch.set_num_threads(1)
    train(cfg, run_dir=run, device="cpu")
    out = losses(run)
    assert sorted(out) == [1, 2, 3, 4]
    return out


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(r, *needles: str, progress: bool = False) -> str:
    """Exit 1, one line ``error: ...`` on stderr holding every needle, no traceback; with
    `progress` the run's progress lines may come before it (it is then the last line)."""
    assert r.exit_code == 1, (r.exit_code, r.output, r.exception)
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), r.exception
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.output
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert progress or len(lines) == 1, lines
    err = errors[0]
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def leftovers(run: Path) -> list[str]:
    """Temporary files or folders of interrupted writes anywhere in the run directory."""
    return sorted(
        str(p.relative_to(run))
        for p in run.rglob("*")
        if ".tmp" in p.name or p.name.endswith((".old", ".del"))
    )


def folder_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode() + (b"/" if p.is_dir() else b""))
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


# --- the lock -----------------------------------------------------------------------------------


def test_a_held_run_directory_is_refused_with_the_holders_pid(names_file, tmp_path):
    """While one claim holds runs/x, a training into it (new or --resume) is refused naming the
    holder, and the folder stays as it was; after release, training goes ahead."""
    run = tmp_path / "x"
    claim = claim_run_dir(run)
    try:
        assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())
        r = invoke("train", *tiny_args(names_file), "--run-dir", str(run))
        one_line_error(r, str(run), f"in use by process {os.getpid()}")
        with pytest.raises(SeddError, match=f"in use by process {os.getpid()}"):
            claim_run_dir(run, resume=True)
        assert [p.name for p in run.iterdir()] == [LOCK_FILE]
    finally:
        claim.release()
    r = invoke("train", *tiny_args(names_file, "train.max_steps=1"), "--run-dir", str(run))
    assert r.exit_code == 0, r.output
    # the lock is free again after the run, and a --resume of a held run is refused too
    claim = claim_run_dir(run, resume=True)
    try:
        r = invoke("train", "--resume", str(run), "--max-steps", "2")
        one_line_error(r, "in use by process")
    finally:
        claim.release()


def test_a_lock_left_by_a_killed_process_is_stale(tmp_path):
    """flock belongs to the open file: after kill -9 of the holder the lock file (with its dead
    pid) is still there, and the next claim takes it."""
    run = tmp_path / "run"
    code = (
        "import sys, time; from sedd_cli.runtime import FileLock; l = FileLock(sys.argv[1]); "
        "assert l.acquire() is None; print('held', flush=True); time.sleep(60)"
    )
    run.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(run / LOCK_FILE)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        assert FileLock(run / LOCK_FILE).acquire() == proc.pid  # held: the holder's pid
    finally:
        proc.kill()
        proc.wait()
    assert (run / LOCK_FILE).read_text().strip() == str(proc.pid)  # the stale file is still there
    lock = FileLock(run / LOCK_FILE)
    assert lock.acquire() is None
    lock.release()


# --- disk full -------------------------------------------------------------------------------------


def enospc(monkeypatch, site: str, nth: int) -> dict:
    """Make writes into the `nth` file whose name contains `site` fail with ENOSPC (and into every
    later one, as a full disk would; appends to one file count once per write). Returns the record."""
    real = runtime._write_all
    seen = {"files": [], "failed": False}

    def faulty(f, data):
        name = str(getattr(f, "name", ""))
        if site in name:
            if name not in seen["files"] or site == "metrics.jsonl":
                seen["files"].append(name)
            if len(seen["files"]) >= nth:
                seen["failed"] = True
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, data)

    monkeypatch.setattr(runtime, "_write_all", faulty)
    return seen


def tokenizer_enospc(monkeypatch) -> dict:
    seen = {"failed": False}

    def faulty(tok, directory):
        seen["failed"] = True
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(directory) / "tokenizer.json"))

    monkeypatch.setattr(tokenizers, "_save", faulty)
    return seen


# site, which write fails, the step of the checkpoint that must survive (None: no checkpoint yet)
DISK_FULL = [
    ("model.safetensors", 2, 2),  # the second checkpoint's weights
    ("ema.safetensors", 2, 2),
    ("trainer.pt", 2, 2),
    ("meta.json", 2, 2),
    ("metrics.jsonl", 3, 2),  # step 3's line
    ("samples", 2, 2),  # the step-4 samples
    ("trainer.pt", 1, None),  # the first checkpoint: nothing to keep; restart with --resume
    ("tokenizer.json", 1, None),
    ("config.yaml", 1, None),  # before anything: run the same command again
]


@pytest.mark.parametrize("site, nth, kept", DISK_FULL, ids=[f"{s}-{n}" for s, n, _ in DISK_FULL])
def test_disk_full_at_each_write_site(site, nth, kept, names_file, reference, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        seen = tokenizer_enospc(m) if site == "tokenizer.json" else enospc(m, site, nth)
        r = invoke("train", *tiny_args(names_file), "--run-dir", str(run))
        assert seen["failed"]
    err = one_line_error(r, "the disk is full", "free there", site, progress=True)
    assert "needs about" in err or site == "tokenizer.json"
    assert leftovers(run) == [] if run.exists() else True
    if kept is not None:
        assert f"checkpoint step_{kept:08d} is kept" in err and f"--resume {run}" in err
        pre = load_pretrained(run, device="cpu")
        assert pre.step == kept
        r = invoke("train", "--resume", str(run))
    elif site != "config.yaml":
        assert "no checkpoint was written yet" in err and f"--resume {run}" in err
        assert not list(run.glob("checkpoints/*"))
        r = invoke("train", "--resume", str(run))  # a run with no checkpoint starts again
    else:
        assert "run the same command again" in err
        r = invoke("train", *tiny_args(names_file), "--run-dir", str(run))
    assert r.exit_code == 0, r.output
    assert losses(run) == reference  # resumed or restarted: the uninterrupted run's losses, exactly
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    assert leftovers(run) == []


def test_atomic_helpers_turn_write_failures_into_one_line(tmp_path, monkeypatch):
    """ENOSPC in the middle of atomic_write_bytes and atomic_torch_save (whose zip writer turns it
    into a RuntimeError): a WriteError with the path, the bytes needed and free; the old file is
    untouched and no temporary file is left."""
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    enospc(monkeypatch, "f.bin", 1)
    with pytest.raises(runtime.WriteError, match=r"f\.bin.*disk is full \(needs about 5\.0 KB, ") as info:
        runtime.atomic_write_bytes(target, b"x" * 5000)
    assert info.value.need == 5000 and info.value.free is not None
    with pytest.raises(runtime.WriteError, match="disk is full") as info:
        runtime.atomic_torch_save({"w": torch.zeros(1000)}, target)
    assert info.value.need >= 4000
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    # an append that fails is cut back: no half line
    monkeypatch.undo()
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"step": 1}\n')
    calls = {"n": 0}

    def half(f, data):  # writes half the line, then the disk is full
        calls["n"] += 1
        os.write(f.fileno(), data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runtime, "_write_all", half)
    with open(log, "ab", buffering=0) as f, pytest.raises(runtime.WriteError, match="log.jsonl"):
        runtime.append_bytes(f, log, b'{"step": 2, "loss": 1.0}\n')
    assert calls["n"] == 1 and log.read_bytes() == b'{"step": 1}\n'


# --- corrupted artefacts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(names_file, tmp_path_factory) -> Path:
    """A run stopped at step 2 (checkpoint step_00000002), to be copied and damaged."""
    run = tmp_path_factory.mktemp("trained") / "run"
    cfg = load_config("tiny", sets=[f"data.name={names_file}", *SETS, "train.max_steps=2"])
    torch.set_num_threads(1)
    train(cfg, run_dir=run, device="cpu")
    return run


CKPT = "checkpoints/step_00000002"


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _trainer_state(run: Path, change) -> None:
    """Rewrite trainer.pt with `change(state)` and drop the recorded file hashes from meta.json
    (as a checkpoint written without them), so that the field checks themselves are tested."""
    path = run / CKPT / "trainer.pt"
    state = torch.load(path, weights_only=True)
    torch.save(change(state), path)
    meta_path = run / CKPT / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("files")
    meta_path.write_text(json.dumps(meta))


def _without(key):
    return lambda s: {k: v for k, v in s.items() if k != key}


def _with(key, value):
    return lambda s: {**s, key: value}


def _meta(change):
    def apply(run: Path) -> None:
        path = run / CKPT / "meta.json"
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return apply


def _metrics_junk(run: Path) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines.insert(1, "not json\n")
    (run / "metrics.jsonl").write_text("".join(lines))


def _metrics_folder(run: Path) -> None:
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()


CORRUPT = {
    # trainer.pt
    "trainer-truncated": (lambda r: _truncate(r / CKPT / "trainer.pt"), ["trainer.pt", "damaged"]),
    "trainer-byte-flipped": (lambda r: _flip(r / CKPT / "trainer.pt"), ["trainer.pt", "sha256"]),
    "trainer-no-optimizer": (
        lambda r: _trainer_state(r, _without("optimizer")),
        ["trainer.pt", "'optimizer'"],
    ),
    "trainer-a-list": (lambda r: _trainer_state(r, lambda s: [s]), ["trainer.pt", "holds a list"]),
    "trainer-step-abc": (lambda r: _trainer_state(r, _with("step", "abc")), ["trainer.pt", "'abc'"]),
    "trainer-bad-rng": (
        lambda r: _trainer_state(r, _with("rng", {"torch": torch.zeros(7, dtype=torch.uint8)})),
        ["trainer.pt", "RNG state"],
    ),
    "trainer-bad-optimizer": (
        lambda r: _trainer_state(r, _with("optimizer", {"state": {}, "param_groups": [{"params": [0]}]})),
        ["trainer.pt", "optimizer"],
    ),
    "trainer-missing": (lambda r: (r / CKPT / "trainer.pt").unlink(), ["trainer.pt", "missing"]),
    # weights (the recorded sha256 catches what a loader might not)
    "weights-byte-flipped": (lambda r: _flip(r / CKPT / "model.safetensors", 0.9), ["model.safetensors"]),
    "ema-truncated": (lambda r: _truncate(r / CKPT / "ema.safetensors"), ["ema.safetensors"]),
    # meta.json
    "meta-truncated": (lambda r: _truncate(r / CKPT / "meta.json"), ["meta.json", "not JSON"]),
    "meta-not-utf8": (lambda r: _flip(r / CKPT / "meta.json", 0.0), ["meta.json", "not UTF-8", "byte 0"]),
    "meta-step-abc": (lambda r: _meta(_with("step", "abc"))(r), ["meta.json", "'abc'"]),
    "meta-wrong-step": (lambda r: _meta(_with("step", 3))(r), ["meta.json", "step 3"]),
    "meta-a-list": (lambda r: _meta(lambda m: [m])(r), ["meta.json", "list"]),
    "meta-missing": (lambda r: (r / CKPT / "meta.json").unlink(), ["step_00000002", "incomplete"]),
    # config.yaml
    "config-truncated": (lambda r: _truncate(r / "config.yaml"), ["config.yaml"]),
    "config-not-utf8": (lambda r: _flip(r / "config.yaml", 0.3), ["config.yaml", "not UTF-8"]),
    "config-bad-value": (
        lambda r: (r / "config.yaml").write_text(
            (r / "config.yaml").read_text().replace("max_steps: 2", "max_steps: abc")
        ),
        ["config.yaml", "max_steps"],
    ),
    "config-not-yaml": (lambda r: (r / "config.yaml").write_text("model: [unclosed\n"), ["config.yaml"]),
    # metrics.jsonl
    "metrics-junk-line": (_metrics_junk, ["metrics.jsonl", "line 2"]),
    "metrics-a-folder": (_metrics_folder, ["metrics.jsonl", "folder"]),
    "metrics-not-utf8": (lambda r: _flip(r / "metrics.jsonl", 0.2), ["metrics.jsonl", "not UTF-8"]),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_damaged_run_is_one_line_and_left_unchanged(case, trained, tmp_path):
    damage, needles = CORRUPT[case]
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    damage(run)
    before = folder_hash(run)
    r = invoke("train", "--resume", str(run), "--max-steps", "4")
    one_line_error(r, *needles)
    assert folder_hash(run) == before


def test_resume_repairs_a_cut_last_metrics_line(trained, reference, tmp_path):
    """A metrics line cut mid-way (a crash or a full disk) is ignored and removed by --resume;
    the resumed run then has the uninterrupted run's losses."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"st')
    assert losses(run) == {1: reference[1], 2: reference[2]}  # the cut line is not a record
    r = invoke("train", "--resume", str(run), "--max-steps", "4")
    assert r.exit_code == 0, r.output
    assert losses(run) == reference
    assert (run / "metrics.jsonl").read_text().endswith("}\n")


def test_max_steps_below_the_resumed_step_and_negative(trained, names_file, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = folder_hash(run)
    one_line_error(
        invoke("train", "--resume", str(run), "--max-steps", "1"), "already at step 2", "--max-steps"
    )
    one_line_error(invoke("train", "--resume", str(run), "--max-steps", "-5"), "train.max_steps", "-5")
    assert folder_hash(run) == before
    one_line_error(
        invoke("train", *tiny_args(names_file), "--max-steps", "-5", "--run-dir", str(tmp_path / "new")),
        "train.max_steps must be at least 1",
    )
    assert not (tmp_path / "new").exists()


def test_a_name_longer_than_the_file_system_allows(names_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(invoke("train", *tiny_args(names_file), "--name", "n" * 300), "300 bytes", "--name")
    one_line_error(
        invoke("train", *tiny_args(names_file), "--run-dir", str(tmp_path / ("d" * 300) / "run")), "300 bytes"
    )
    assert sorted(os.listdir(tmp_path)) == []


def test_a_run_that_stopped_before_its_first_checkpoint_is_started_again(trained, names_file, tmp_path):
    """A run folder with config, tokenizer, metrics and the lock but no checkpoint (killed early)
    is accepted by a new `train` into it, and `--resume` starts it again from step 0; a folder
    holding anything else is still refused."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints" / "step_00000001.tmp").mkdir(parents=True)  # a save cut short
    r = invoke("train", "--resume", str(run), "--max-steps", "2")
    assert r.exit_code == 0, r.output
    assert sorted(losses(run)) == [1, 2] and load_pretrained(run, device="cpu").step == 2
    assert leftovers(run) == []

    again = tmp_path / "again"
    shutil.copytree(trained, again)
    shutil.rmtree(again / "checkpoints")
    r = invoke("train", *tiny_args(names_file, "train.max_steps=1"), "--run-dir", str(again))
    assert r.exit_code == 0, r.output
    assert sorted(losses(again)) == [1]

    mine = tmp_path / "mine"
    shutil.copytree(trained, mine)
    shutil.rmtree(mine / "checkpoints")
    (mine / "notes.txt").write_text("mine")
    before = folder_hash(mine)
    one_line_error(invoke("train", *tiny_args(names_file), "--run-dir", str(mine)), "already holds files")
    assert folder_hash(mine) == before
    one_line_error(
        invoke("train", *tiny_args(names_file), "--run-dir", str(trained)), "already holds a trained run"
    )


# --- processes: kill -9, Ctrl-C, a race -------------------------------------------------------------


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1")


def _sedd(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sedd_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=cwd,
    )


def _metric_lines(run: Path) -> int:
    try:
        return (run / "metrics.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_reaches_the_uninterrupted_losses(names_file, tmp_path):
    """A 30-step run checkpointing every step is killed with SIGKILL five times at random points
    (the first as soon as its first metrics line appears, so before or during the first save);
    after each kill the newest checkpoint loads in `sedd info` and `sedd sample`, and `--resume`
    goes on (a run killed before its first checkpoint starts again). At the end the losses of
    every step and the final EMA weights equal an uninterrupted run's."""
    from safetensors.torch import load_file

    from sedd_cli.checkpoints import latest_checkpoint

    sets = ("train.max_steps=30", "train.checkpoint_every=1", "train.eval_every=5", "train.sample_every=7")
    cfg = load_config("tiny", sets=[f"data.name={names_file}", *SETS, *sets])
    torch.set_num_threads(1)
    full = train(cfg, run_dir=tmp_path / "full", device="cpu")
    expected = losses(tmp_path / "full")
    assert sorted(expected) == list(range(1, 31))

    run = tmp_path / "run"
    rng = random.Random(20261202)
    args = ["train", *tiny_args(names_file, *sets), "--run-dir", str(run)]
    kills = 0
    while kills < 5:
        target = _metric_lines(run) + (1 if kills == 0 else rng.randint(1, 4))
        proc = _sedd(*args, cwd=tmp_path)
        deadline = time.monotonic() + 60
        while _metric_lines(run) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if kills:
            time.sleep(rng.uniform(0.0, 0.08))  # somewhere in a step, its logging or its save
        if proc.poll() is not None:  # it finished first
            assert proc.wait() == 0, proc.stderr.read()[-2000:]
            break
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err[-2000:]
        kills += 1
        newest = latest_checkpoint(run)
        if newest is not None:  # every kill leaves a loadable newest checkpoint
            r = invoke("info", str(run), "--json")
            assert r.exit_code == 0, r.output
            assert json.loads(r.stdout)["step"] == int(newest.name.split("_")[1])
            r = invoke("sample", str(run), "--steps", "4", "-n", "2", "--device", "cpu")
            assert r.exit_code == 0, r.output
        args = ["train", "--resume", str(run)]
    assert kills >= 4
    done = subprocess.run(
        [sys.executable, "-m", "sedd_cli", "train", "--resume", str(run)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert losses(run) == expected
    a = load_file(str(Path(full.checkpoint) / "ema.safetensors"))
    b = load_file(str(run / "checkpoints/step_00000030/ema.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert leftovers(run) == []


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130(names_file, tmp_path):
    run = tmp_path / "run"
    proc = _sedd(
        "train",
        *tiny_args(names_file, "train.max_steps=100000", "train.checkpoint_every=0", "train.sample_every=0"),
        "--run-dir",
        str(run),
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while _metric_lines(run) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in out and "Traceback" not in err
    pre = load_pretrained(run, device="cpu")
    assert pre.step == max(losses(run)) >= 3  # the checkpoint is of the last step trained


@pytest.mark.slow
def test_two_trainings_racing_for_one_name(names_file, tmp_path):
    """Two `sedd train --name race` started together, with different widths: exactly one runs,
    the other exits 1 with one line naming the run; the survivor's config is its own and its
    weights load strictly under it, and its metrics have each step once."""
    widths = {"a": "64", "b": "32"}
    procs = {
        key: _sedd(
            "train",
            *tiny_args(names_file, "train.max_steps=30", f"model.hidden_size={w}"),
            "--name",
            "race",
            "--json",
            cwd=tmp_path,
        )
        for key, w in widths.items()
    }
    results = {key: (p.communicate(timeout=180), p.returncode) for key, p in procs.items()}
    codes = sorted(code for _, code in results.values())
    assert codes == [0, 1], {k: (c, e[-500:]) for k, ((o, e), c) in results.items()}
    winner = next(k for k, (_, c) in results.items() if c == 0)
    loser = next(k for k, (_, c) in results.items() if c == 1)
    err = results[loser][0][1].strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "runs/race" in err, err
    assert "in use by process" in err or "already holds" in err
    run = tmp_path / "runs" / "race"
    pre = load_pretrained(run, device="cpu")  # strict: the config matches the weights
    assert pre.config.model.hidden_size == int(widths[winner])
    steps = [m["step"] for m in read_metrics(run) if "loss" in m]
    assert steps == list(range(1, 31))
