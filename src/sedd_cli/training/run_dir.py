"""The run directory: its layout, its name, claiming it (the lock) and cleaning it.

A run directory holds ``config.yaml``, ``tokenizer.json``, ``metrics.jsonl``, ``samples/``,
``checkpoints/step_XXXXXXXX/`` and the advisory lock ``.sedd.lock``. A new run takes an empty or
absent folder, or a run that stopped before its first checkpoint (started again in place);
anything else is someone's data and is refused. The lock is held for the whole run; under it,
leftovers of a crash (temporary files, ``.tmp``/``.del`` checkpoint folders) are removed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import shutil
from pathlib import Path

from ..checkpoints import CONFIG_FILE, META_FILE, list_checkpoints
from ..config import Config, read_text_file
from ..errors import SeddError
from ..runtime import FileLock

METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".sedd.lock"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
RUNS_ROOT = "runs"  # where --name NAME puts a run

# What a run directory holds before its first checkpoint: a run that failed (or was killed) that
# early may be started again in place. Anything else in the folder makes it someone's data.
# (tensorboard/, wandb/ and wandb_id are the dashboard loggers': training/loggers/)
_RUN_FILES = {CONFIG_FILE, "tokenizer.json", METRICS_FILE, LOCK_FILE, "wandb_id"}
_RUN_DIRS = {SAMPLES_DIR, CHECKPOINTS_DIR, "tensorboard", "wandb"}
_TEMP_NAME = re.compile(r"(\.tmp\d+$)|(^\.tokenizer\..*\.json\.tmp$)")
_STALE_CKPT = re.compile(r"^step_\d+\.(tmp|old|del)$")
STEP_NAME = re.compile(r"^step_(\d+)$")


# --- naming ------------------------------------------------------------------------------------


def default_run_dir(config: Config, root: str | Path = RUNS_ROOT) -> Path:
    """``runs/<config name>-<YYYYmmdd-HHMMSS>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{config.name}-{stamp}"


def check_resume_in_place(resume: str | Path | None, run_dir: str | Path | None, name: str | None = None):
    """`--resume RUN` continues RUN in place: no --name, and no --run-dir other than RUN."""
    if resume is None:
        return
    if name is not None or (run_dir is not None and Path(run_dir).resolve() != Path(resume).resolve()):
        raise SeddError("--resume continues a run in place: drop --run-dir/--name")


def resolve_run_dir(
    run_dir: str | Path | None, name: str | None, resume: str | Path | None = None
) -> Path | None:
    """The run directory asked for by ``--run-dir`` or ``--name`` (``runs/NAME``), checked before
    any work: not both, not with ``--resume`` (unless the same folder), and a plain folder name
    that the file system allows. None: the default (`default_run_dir`) or the resumed run."""
    if run_dir is not None and name is not None:
        raise SeddError("give either --run-dir or --name, not both")
    check_resume_in_place(resume, run_dir, name)
    if name is None:
        return None if run_dir is None else Path(run_dir)
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise SeddError(f"--name {name!r} must be a plain folder name; use --run-dir for a path")
    run_dir = Path(RUNS_ROOT) / name
    check_name_lengths(run_dir)
    return run_dir


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system at `folder` (or its nearest parent) allows."""
    probe = folder
    while True:
        try:
            return int(os.pathconf(probe, "PC_NAME_MAX"))
        except (OSError, ValueError):
            if probe.parent == probe:
                return 255
            probe = probe.parent


def check_name_lengths(run_dir: Path) -> None:
    """Each part of `run_dir`'s path fits the file system's limit on a name's bytes."""
    limit = name_max(run_dir.parent if str(run_dir.parent) else Path("."))
    # room for the longest name sedd puts in a run directory's path (temporary suffixes included)
    for part in run_dir.parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise SeddError(
                f"the run name {part[:40]!r}... is {size} bytes long, but the file system allows at "
                f"most {limit} bytes per name: choose a shorter --name/--run-dir"
            )


def _not_a_run(run_dir: Path, why: str) -> SeddError:
    return SeddError(f"--resume {str(run_dir)!r}: not a sedd run ({why})")


def check_is_run(run_dir: Path) -> None:
    """`run_dir` holds a run's config.yaml (checked before the folder is claimed)."""
    if not (run_dir / CONFIG_FILE).exists():
        raise _not_a_run(run_dir, f"no {CONFIG_FILE}")


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a run file `path` (`config.read_text_file`: one line naming it)."""
    return read_text_file(path, what, damaged=True)


# --- what the folder holds -----------------------------------------------------------------------


def _complete_checkpoint(run_dir: Path) -> Path | None:
    with contextlib.suppress(OSError):
        ckpts = list_checkpoints(run_dir)
        if ckpts:
            return ckpts[-1][1]
    return None


def _restartable(run_dir: Path) -> bool:
    """True when `run_dir` is a sedd run that stopped before its first checkpoint: it holds the
    lock file, nothing but the files a run writes, and no complete checkpoint."""
    names = {p.name: p for p in run_dir.iterdir()}
    if LOCK_FILE not in names:
        return False
    for name, path in names.items():
        if name in _RUN_FILES:
            if not path.is_file() or path.is_symlink():
                return False
        elif name in _RUN_DIRS:
            if not path.is_dir() or path.is_symlink():
                return False
        elif not _TEMP_NAME.search(name):
            return False
    samples = run_dir / SAMPLES_DIR
    if samples.is_dir() and any(not p.is_file() or p.is_symlink() for p in samples.iterdir()):
        return False
    ckpts = run_dir / CHECKPOINTS_DIR
    if ckpts.is_dir():
        for p in ckpts.iterdir():
            if not (p.is_dir() and (_STALE_CKPT.match(p.name) or STEP_NAME.match(p.name))):
                return False
            if (p / META_FILE).is_file() and STEP_NAME.match(p.name):
                return False  # a complete checkpoint: resume it instead
    return True


def _refusal(run_dir: Path) -> SeddError:
    ckpt = _complete_checkpoint(run_dir)
    if ckpt is not None:
        return SeddError(
            f"run directory {str(run_dir)!r} already holds a trained run (newest checkpoint {ckpt.name}): "
            f"continue it with --resume {run_dir}, or choose another --run-dir/--name"
        )
    return SeddError(
        f"run directory {str(run_dir)!r} already holds files: continue it with --resume "
        f"{run_dir}, or choose another --run-dir/--name"
    )


def _is_a_file(run_dir: Path) -> SeddError:
    return SeddError(f"run directory {str(run_dir)!r} is a file: choose another --run-dir or --name")


def check_run_dir(run_dir: str | Path) -> Path:
    """Refuse, before any work, a run directory that is a file, too long a name, or a folder
    holding anything but a sedd run that stopped before its first checkpoint (which is started
    again in place). Changes nothing on disk: `train` claims the folder itself (`claim_run_dir`)."""
    run_dir = Path(run_dir)
    check_name_lengths(run_dir)
    try:
        if run_dir.exists():
            if not run_dir.is_dir():
                raise _is_a_file(run_dir)
            if any(run_dir.iterdir()) and not _restartable(run_dir):
                raise _refusal(run_dir)
    except OSError as exc:
        raise SeddError(f"cannot use the run directory {str(run_dir)!r}: {exc.strerror or exc}") from None
    return run_dir


# --- claiming it -------------------------------------------------------------------------------


class RunClaim:
    """A run directory held by this process: the advisory lock ``.sedd.lock`` inside it (see
    `runtime.FileLock`), taken before any work and held for the whole run. `release` drops it and,
    when this claim created the folder and nothing else was written, removes the folder again."""

    def __init__(self, run_dir: Path, lock: FileLock, created: list[Path]):
        self.run_dir = run_dir
        self.lock = lock
        self.created = created  # folders this claim made, deepest first

    def release(self) -> None:
        if self.lock.fd is None:
            return
        only_lock = False
        with contextlib.suppress(OSError):
            only_lock = [p.name for p in self.run_dir.iterdir()] == [LOCK_FILE]
        if only_lock and self.created:
            self.lock.release(remove=True)
            for folder in self.created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        else:
            self.lock.release()


def _make_folder(run_dir: Path, created: list[Path]) -> None:
    """Create `run_dir` (and missing parents) with an exclusive mkdir of the folder itself,
    recording in `created` the folders made, deepest first (an existing folder is accepted)."""
    probe = run_dir.parent
    missing = []
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    created.extend(missing)
    try:
        run_dir.mkdir()
        created.insert(0, run_dir)
    except FileExistsError:
        if not run_dir.is_dir():
            raise _is_a_file(run_dir) from None


def _lock(run_dir: Path, resume: bool) -> tuple[FileLock, list[Path]]:
    """Create (new run) or find (resume) the folder and take its lock; the lock and the folders
    made. A second holder is refused with its pid."""
    created: list[Path] = []
    try:
        if resume:
            if not run_dir.is_dir():
                raise _not_a_run(run_dir, "no such folder")
        else:
            _make_folder(run_dir, created)
        lock = FileLock(run_dir / LOCK_FILE)
        holder = lock.acquire()
    except OSError as exc:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        what = "use" if resume else "create"
        raise SeddError(
            f"cannot {what} the run directory {str(run_dir)!r}: {exc.strerror or exc}; "
            "choose another --run-dir"
        ) from None
    if holder is not None:
        who = f"process {holder}" if holder else "another process"
        raise SeddError(
            f"run directory {str(run_dir)!r} is in use by {who} (another `sedd train`): wait for it to "
            "finish or stop it, or choose another --run-dir/--name"
        )
    return lock, created


def claim_run_dir(run_dir: str | Path, *, resume: bool = False) -> RunClaim:
    """Take the run directory for this process before any work, or raise a one-line SeddError.

    A new run creates the folder with an exclusive mkdir (an existing one is accepted only when
    empty or a run that stopped before its first checkpoint, which is then cleared) and locks
    ``.sedd.lock``; ``resume=True`` locks an existing run. A second process, while the first holds
    the lock, is refused with the holder's pid. Under the lock, leftovers of a crash (temporary
    files, ``*.tmp`` checkpoint folders) are removed."""
    run_dir = Path(run_dir)
    if not resume:
        check_name_lengths(run_dir)
    lock, created = _lock(run_dir, resume)
    claim = RunClaim(run_dir, lock, created)
    try:
        if not resume:
            others = [p for p in run_dir.iterdir() if p.name != LOCK_FILE]
            if others:
                if not (lock.created is False and _restartable(run_dir)):
                    raise _refusal(run_dir)
                _clear_unfinished(run_dir)
        _clean_stale(run_dir)
    except BaseException:
        claim.release()
        raise
    return claim


# --- cleaning it -------------------------------------------------------------------------------


def _clear_unfinished(run_dir: Path) -> None:
    """Remove what a run that stopped before its first checkpoint wrote (all but the lock)."""
    for p in run_dir.iterdir():
        if p.name == LOCK_FILE:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _clean_stale(run_dir: Path) -> None:
    """Leftovers of a crash, removed under the lock: temporary files of atomic writes, checkpoint
    folders being written (``.tmp``) or pruned (``.del``); an ``.old`` copy of a checkpoint whose
    replacement never arrived is put back."""
    for folder in (run_dir, run_dir / SAMPLES_DIR):
        if folder.is_dir():
            for p in folder.iterdir():
                if _TEMP_NAME.search(p.name) and p.is_file():
                    p.unlink()
    root = run_dir / CHECKPOINTS_DIR
    if root.is_dir():
        for p in root.iterdir():
            m = _STALE_CKPT.match(p.name)
            if not m:
                continue
            final = root / p.name.rsplit(".", 1)[0]
            if m.group(1) == "old" and not final.exists():
                os.rename(p, final)
            else:
                shutil.rmtree(p, ignore_errors=True)
