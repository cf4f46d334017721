"""The training loop: AdamW, warm-up, clipping, EMA, exact resume, crash-safe checkpoints, DDP.

One optimizer step (sedd-spec §4.2), counted from 1 for the first update:

    lr(step)   = train.lr * min(step / train.warmup, 1)        (no decay; warmup 0 = constant)
    loss       = (1 / B) sum_{b < B} loss_b                      (nats per sequence, B = global batch)
    grad       = d loss / d theta, summed over `accum` micro-batches and all processes
    theta     <- AdamW(theta, clip(grad, train.grad_clip))
    ema       <- ema - (1 - d_n) (ema - theta),   d_n = min(train.ema, (1 + n) / (10 + n))

where loss_b is `score_entropy_loss` of sequence b and n counts EMA updates (incremented first).

Randomness is split so that a run is a pure function of (config, seed):

* data order: a permutation of the training rows per epoch, drawn from a generator seeded with
  (seed, epoch) (a seeded `torch.multinomial` draw when the data carries sampling weights); the
  position (epoch, offset) is saved in each checkpoint;
* the draws of t and of the corruption x_t use one dedicated CPU generator for the whole *global*
  batch, so every process draws the same numbers and keeps its own rows: a run on W processes
  computes the same per-sequence losses as one process on the same global batch;
* dropout uses torch's global generator (state saved too).

A run stopped at step N and resumed therefore reaches exactly the same loss at step M > N as an
uninterrupted run (on the same device and thread count). Under torchrun (``WORLD_SIZE > 1``) the
gradients are summed with one flat all-reduce per step (gloo on CPU, nccl on CUDA); only rank 0
writes files. Library code: it never prints; progress goes to ``on_step(TrainEvent)``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (
    CONFIG_FILE,
    EMA_FILE,
    META_FILE,
    TRAINER_FILE,
    WEIGHTS_FILE,
    build_components,
    list_checkpoints,
    load_state_strict,
    load_weights,
    save_weights,
)
from .config import Config, config_from_dict, drop_none
from .errors import SeddError
from .losses import sample_t, score_entropy_loss
from .runtime import (
    FileLock,
    WriteError,
    append_bytes,
    atomic_torch_save,
    atomic_write_text,
    dist_info,
    pick_device,
    write_error,
)

__all__ = [
    "TrainEvent",
    "TrainResult",
    "DataOrder",
    "EMA",
    "train",
    "lr_at",
    "default_run_dir",
    "check_run_dir",
    "claim_run_dir",
    "RunClaim",
    "resume_config",
    "model_config_diff",
    "read_metrics",
]

METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".sedd.lock"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
TRAINER_FORMAT = 1


# --- results and events -----------------------------------------------------------------------


@dataclass
class TrainEvent:
    """Progress report. `kind`: start | step | eval | sample | checkpoint | end.

    ``step`` events come after every optimizer step; ``logged`` is True on the steps whose line
    was written to metrics.jsonl (every ``train.log_every`` steps and the last).
    """

    kind: str
    step: int
    max_steps: int
    loss: float | None = None  # nats per sequence, batch mean
    loss_per_token: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    elapsed: float = 0.0  # seconds of training in this run (all sessions)
    val_loss: float | None = None
    path: str | None = None
    samples: list[str] = field(default_factory=list)
    logged: bool = False
    message: str = ""


@dataclass
class TrainResult:
    """What a finished (or stopped) training run produced."""

    run_dir: str
    steps: int  # optimizer steps done in all (the step of the last checkpoint)
    loss: float | None  # last step's training loss, nats per sequence
    loss_per_token: float | None
    val_loss: float | None  # EMA-weights validation loss at the end, nats per sequence
    tokens_per_s: float  # over this session's steps
    elapsed: float  # seconds of training in this session
    checkpoint: str | None
    stopped_reason: str  # max_steps | max_time | interrupted
    resumed_from: int | None = None  # step of the checkpoint this session started from
    world_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


# --- pieces -----------------------------------------------------------------------------------


def make_optimizer(params: list[torch.nn.Parameter], tc: Any) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the device (CPU and CUDA: about 5x
    faster than the per-op loop for GPT-2-sized embeddings on a 2-core CPU), else foreach."""
    kw = dict(lr=tc.lr, betas=(tc.beta1, tc.beta2), eps=tc.adam_eps, weight_decay=tc.weight_decay)
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, foreach=True, **kw)


def lr_at(
    step: int, lr: float, warmup: int, decay: str = "none", max_steps: int = 0, floor: float = 0.1
) -> float:
    """Learning rate of update number `step` (1 for the first update).

    Warm-up: ``lr * step / warmup`` for step < warmup. Then ``decay``: ``none`` keeps `lr` (the
    reference); ``linear`` and ``cosine`` go from `lr` at the end of warm-up to ``floor * lr`` at
    `max_steps` (``p`` = progress in [0, 1]: linear ``1 - (1 - floor) p``, cosine
    ``floor + (1 - floor)(1 + cos(pi p)) / 2``, both times `lr`).
    """
    if warmup > 0 and step < warmup:
        return lr * step / warmup
    if decay == "none" or max_steps <= warmup:
        return lr
    p = min(max((step - warmup) / (max_steps - warmup), 0.0), 1.0)
    if decay == "linear":
        return lr * (1 - (1 - floor) * p)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


class DataOrder:
    """Deterministic stream of training-row indices: epoch e is a permutation of range(n) drawn
    from a generator seeded with (seed, e) (or n weighted draws with replacement when `weights`
    is given). A batch that crosses an epoch end continues into the next epoch's order."""

    def __init__(
        self, n: int, seed: int, weights: torch.Tensor | None = None, epoch: int = 0, offset: int = 0
    ):
        if n < 1:
            raise SeddError("the training data is empty: check --data and --text-field")
        self.n = n
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = epoch
        self.offset = min(offset, n)
        self._cache: tuple[int, torch.Tensor] | None = None

    def order(self, epoch: int) -> torch.Tensor:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch * 7_919 + 17) % (2**63))
        if self.weights is not None:
            perm = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            perm = torch.randperm(self.n, generator=g)
        self._cache = (epoch, perm)
        return perm

    def next(self, count: int) -> torch.Tensor:
        """The next `count` row indices ``[count]``."""
        parts = []
        need = count
        while need > 0:
            if self.offset >= self.n:
                self.epoch += 1
                self.offset = 0
            take = min(need, self.n - self.offset)
            parts.append(self.order(self.epoch)[self.offset : self.offset + take])
            self.offset += take
            need -= take
        return torch.cat(parts)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}


class EMA:
    """Exponential moving average of the trainable parameters (REF ``model/ema.py``).

    Update n (counted from 1) uses decay d = min(decay, (1 + n) / (10 + n)):
    shadow <- shadow - (1 - d) (shadow - param).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        n = self.num_updates
        d = min(self.decay, (1 + n) / (10 + n))
        params = dict(model.named_parameters())
        names = list(self.shadow)
        # shadow + (1 - d)(param - shadow), the same update as shadow - (1 - d)(shadow - param),
        # in one fused call over all tensors
        torch._foreach_lerp_([self.shadow[k] for k in names], [params[k].detach() for k in names], 1 - d)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict with the EMA values in place of the parameters."""
        out = dict(model.state_dict())
        out.update(self.shadow)
        return out

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.shadow:
            self.shadow[name].copy_(state[name])

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Temporarily put the EMA weights into `model` (store, copy, restore)."""
        params = dict(model.named_parameters())
        saved = {n: params[n].detach().clone() for n in self.shadow}
        with torch.no_grad():
            for n, v in self.shadow.items():
                params[n].copy_(v)
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, v in saved.items():
                    params[n].copy_(v)


def default_run_dir(config: Config, root: str | Path = "runs") -> Path:
    """``runs/<config name>-<YYYYmmdd-HHMMSS>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{config.name}-{stamp}"


# What a run directory holds before its first checkpoint: a run that failed (or was killed) that
# early may be started again in place. Anything else in the folder makes it someone's data.
_RUN_FILES = {CONFIG_FILE, "tokenizer.json", METRICS_FILE, LOCK_FILE}
_RUN_DIRS = {SAMPLES_DIR, CHECKPOINTS_DIR}
_TEMP_NAME = re.compile(r"(\.tmp\d+$)|(^\.tokenizer\..*\.json\.tmp$)")
_STALE_CKPT = re.compile(r"^step_\d+\.(tmp|old|del)$")
_STEP_NAME = re.compile(r"^step_(\d+)$")


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system at `folder` (or its nearest parent) allows."""
    probe = folder
    while True:
        try:
            return int(os.pathconf(probe, "PC_NAME_MAX"))
        except (OSError, ValueError):
            if probe.parent == probe:
                return 255
            probe = probe.parent


def _check_name_lengths(run_dir: Path) -> None:
    limit = _name_max(run_dir.parent if str(run_dir.parent) else Path("."))
    # room for the longest name sedd puts in a run directory's path (temporary suffixes included)
    for part in run_dir.parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise SeddError(
                f"the run name {part[:40]!r}... is {size} bytes long, but the file system allows at "
                f"most {limit} bytes per name: choose a shorter --name/--run-dir"
            )


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
            if not (p.is_dir() and (_STALE_CKPT.match(p.name) or _STEP_NAME.match(p.name))):
                return False
            if (p / META_FILE).is_file() and _STEP_NAME.match(p.name):
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


def check_run_dir(run_dir: str | Path) -> Path:
    """Refuse, before any work, a run directory that is a file, too long a name, or a folder
    holding anything but a sedd run that stopped before its first checkpoint (which is started
    again in place). Changes nothing on disk: `train` claims the folder itself (`claim_run_dir`)."""
    run_dir = Path(run_dir)
    _check_name_lengths(run_dir)
    try:
        if run_dir.exists():
            if not run_dir.is_dir():
                raise SeddError(
                    f"run directory {str(run_dir)!r} is a file: choose another --run-dir or --name"
                )
            if any(run_dir.iterdir()) and not _restartable(run_dir):
                raise _refusal(run_dir)
    except OSError as exc:
        raise SeddError(f"cannot use the run directory {str(run_dir)!r}: {exc.strerror or exc}") from None
    return run_dir


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


def claim_run_dir(run_dir: str | Path, *, resume: bool = False) -> RunClaim:
    """Take the run directory for this process before any work, or raise a one-line SeddError.

    A new run creates the folder with an exclusive mkdir (an existing one is accepted only when
    empty or a run that stopped before its first checkpoint, which is then cleared) and locks
    ``.sedd.lock``; ``resume=True`` locks an existing run. A second process, while the first holds
    the lock, is refused with the holder's pid. Under the lock, leftovers of a crash (temporary
    files, ``*.tmp`` checkpoint folders) are removed."""
    run_dir = Path(run_dir)
    if not resume:
        _check_name_lengths(run_dir)
    created: list[Path] = []
    try:
        if resume:
            if not run_dir.is_dir():
                raise SeddError(f"--resume {str(run_dir)!r}: not a sedd run (no such folder)")
        else:
            probe = run_dir.parent
            missing = []
            while not probe.exists() and probe != probe.parent:
                missing.append(probe)
                probe = probe.parent
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            created = missing
            try:
                run_dir.mkdir()
                created = [run_dir, *missing]
            except FileExistsError:
                if not run_dir.is_dir():
                    raise SeddError(
                        f"run directory {str(run_dir)!r} is a file: choose another --run-dir or --name"
                    ) from None
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


_ARCH_SECTIONS = ("model", "graph", "noise")


def model_config_diff(run: Config, given: Config) -> list[str]:
    """``section.key (run X, given Y)`` for each model/graph/noise setting that differs
    (a None vocab_size in `given` means "take the run's")."""
    out = []
    for section in _ARCH_SECTIONS:
        a, b = getattr(run, section).__dict__, getattr(given, section).__dict__
        for key in a:
            if section == "model" and key == "vocab_size" and b[key] is None:
                continue
            if a[key] != b[key]:
                out.append(f"{section}.{key} (run {a[key]!r}, given {b[key]!r})")
    return out


def _read_text(path: Path, what: str) -> str:
    """The UTF-8 text of `path`, or a one-line SeddError naming it (and the byte offset)."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise SeddError(f"{what} {str(path)!r} is a folder, not a file") from None
    except OSError as exc:
        raise SeddError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SeddError(
            f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start}: "
            f"{data[exc.start : exc.start + 1]!r}); the file is damaged"
        ) from None


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The saved config of `run_dir` updated with nested `overrides` (None values ignored); a
    damaged config.yaml (not UTF-8, not YAML, bad values) is a one-line error naming it."""
    from .config import yaml_load
    from .errors import ConfigError

    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not (run_dir / CONFIG_FILE).exists():
        raise SeddError(f"--resume {str(run_dir)!r}: not a sedd run (no {CONFIG_FILE})")
    text = _read_text(path, "the run's config")
    try:
        data = yaml_load(text) or {}
        if not isinstance(data, dict):
            raise ConfigError("it must hold a mapping of sections")
        # train writes every section, the file ending in a newline: anything less was cut short
        missing = [key for key in Config().to_dict() if key not in data]
        if missing or not text.endswith("\n"):
            raise ConfigError(
                f"it is incomplete (missing {', '.join(missing)})"
                if missing
                else "its last line is cut short"
            )
        base = config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"the run's config {str(path)!r} is damaged: {exc}") from None
    return config_from_dict(drop_none(overrides or {}), base)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl as dicts (each has an integer ``step``).

    A last line cut short (no final newline and not a whole JSON record: a crash or a full disk in
    the middle of a write) is ignored; any other line that is not a record is a SeddError naming
    the file and the line."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    text = _read_text(path, "the metrics file")
    lines = text.split("\n")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            step = row.get("step")
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ValueError(f"step {step!r} is not a whole number")
        except ValueError as exc:
            if n == len(lines):  # the unterminated last line: a write cut short
                break
            raise SeddError(
                f"the metrics file {str(path)!r} line {n} is not a metrics record ({str(exc)[:80]}): "
                "delete that line (metrics are not needed to resume) and retry"
            ) from None
        out.append(row)
    return out


# --- distributed helpers ----------------------------------------------------------------------


class _Dist:
    """torch.distributed when launched by torchrun, no-ops otherwise."""

    def __init__(self, device_kind: str):
        self.rank, self.local_rank, self.world = dist_info()
        self.owned = False
        self.device = torch.device("cpu")  # where collective tensors live (cuda for nccl)
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
                self.owned = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def agree(self, error: SeddError | None) -> None:
        """Collective check: raise on every rank when any rank failed (a rank's own message first)."""
        if self.world > 1:
            flag = self.all_reduce_sum(torch.tensor([1.0 if error else 0.0], device=self.device))
            if error is not None:
                raise error
            if flag.item() > 0:
                raise SeddError("another training process failed; see rank 0's message")
        elif error is not None:
            raise error

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.barrier()
            dist.destroy_process_group()


def _all_reduce_grads(params: list[torch.nn.Parameter], dist: _Dist) -> None:
    """Sum the gradients of all processes with one flat all-reduce (missing grads count as 0)."""
    if dist.world <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # [sum of numels]
    dist.all_reduce_sum(flat)
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i : i + n].view_as(p).clone()
        i += n


# --- the loop ---------------------------------------------------------------------------------


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes the current step, checkpoints and returns."""

    def __init__(self):
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _load_data(config: Config, tokenizer, dist: _Dist):
    """(tokenizer, train blocks, validation blocks or None). Rank 0 fills the cache first."""
    from .data import build_tokenizer, prepare_data

    def load():
        tok = tokenizer if tokenizer is not None else build_tokenizer(config)
        train_blocks = prepare_data(config, tok, "train")
        val_blocks = None
        if config.train.eval_every > 0 and config.train.eval_batches > 0 and config.data.valid_fraction > 0:
            try:  # a small dataset may hold out no record: then train without validation
                val_blocks = prepare_data(
                    config, tok, "validation", max_blocks=config.train.eval_batches * config.train.batch_size
                )
            except SeddError:
                val_blocks = None
            if val_blocks is not None and len(val_blocks) == 0:
                val_blocks = None
        return tok, train_blocks, val_blocks

    error = None
    out = None
    if dist.main:
        try:
            out = load()
        except SeddError as exc:
            error = exc
    dist.agree(error)
    if not dist.main:
        out = load()
    return out


def _micro_rows(batch: int, world: int, accum: int, rank: int) -> list[slice]:
    """Rows of the global batch this process computes, as `accum` contiguous micro-batches.

    Process r owns rows [r B/W, (r+1) B/W); the union over processes is the whole batch."""
    if batch % (world * accum):
        raise SeddError(
            f"train.batch_size {batch} is not divisible by processes x accum = {world} x {accum}: "
            f"choose a batch size that is a multiple of {world * accum}"
        )
    micro = batch // (world * accum)
    start = rank * micro * accum
    return [slice(start + k * micro, start + (k + 1) * micro) for k in range(accum)]


def _draw(graph, noise, x0: torch.Tensor, eps: float, gen: torch.Generator, stratified: bool = False):
    """t ``[B]`` and x_t ``[B, L]`` for the whole global batch, on CPU from `gen` (stratified:
    one t in each of B equal strata of [eps, 1], see `losses.sample_t`)."""
    t = sample_t(x0.shape[0], eps, None, gen, stratified)  # [B]
    sigma, _ = noise(t)
    xt = graph.sample_transition(x0, sigma[:, None], generator=gen)  # [B, L]
    return t, xt


def train(
    config: Config | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "auto",
    on_step: Callable[[TrainEvent], None] | None = None,
    compile: bool = False,
) -> TrainResult:
    """Train a SEDD model from `config`, writing a run directory; see the module docstring.

    `run_dir` defaults to ``runs/<config.name>-<timestamp>``; it must be empty, absent, or a run
    that stopped before its first checkpoint (started again in place). `resume` continues a run
    directory from its newest checkpoint (a run with none is started again from step 0 with its
    saved settings); then `config` (optional) may change training settings (max_steps, lr, ...)
    but not the model, graph or noise. The run directory is locked (`claim_run_dir`) for the whole
    call: a second `train` of the same run is refused with the holder's pid.
    """
    emit = on_step or (lambda event: None)
    dev = pick_device(device)
    dist = _Dist(dev.type)
    claims: list[RunClaim] = []
    try:
        if dist.world > 1 and dev.type == "cuda":
            dev = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(dev)
            dist.device = dev
        return _train(config, run_dir, resume, dev, emit, compile, dist, claims)
    finally:
        for claim in claims:
            claim.release()
        dist.close()


def _write_failed(exc: WriteError, last_ckpt: str | None, run_dir: Path) -> SeddError:
    """The one line for a write that failed mid-run: what failed, and what state the run is in."""
    if last_ckpt:
        state = (
            f"the last good checkpoint {Path(last_ckpt).name} is kept; then continue with --resume {run_dir}"
        )
    elif (run_dir / CONFIG_FILE).is_file():
        state = f"no checkpoint was written yet; then start it again with --resume {run_dir}"
    else:
        state = f"nothing was trained yet; then run the same command again (--run-dir {run_dir})"
    return SeddError(f"{str(exc).removesuffix('; free some space and retry')}; free some space: {state}")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _older_hint(ckpt: Path) -> str:
    older = [p for _, p in list_checkpoints(ckpt.parent.parent) if p != ckpt]
    if older:
        return f"; delete {ckpt.name} to resume from {older[-1].name}"
    return "; delete that checkpoint folder and start the run again with --resume"


def _read_meta_checked(ckpt: Path, dir_step: int) -> dict[str, Any]:
    """meta.json of a checkpoint, validated: a JSON object whose ``step`` is the folder's step, and
    whose recorded files (``files``: bytes and sha256 per file) are intact."""
    path = ckpt / META_FILE
    hint = _older_hint(ckpt)

    def bad(what: str) -> SeddError:
        return SeddError(f"the checkpoint file {str(path)!r} is damaged: {what}{hint}")

    try:
        text = _read_text(path, "the checkpoint file")
    except SeddError as exc:
        raise SeddError(f"{exc}{hint}") from None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise bad(f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(meta, dict):
        raise bad(f"it holds a JSON {type(meta).__name__}, not an object")
    if not _whole(meta.get("step")):
        raise bad(f"step {meta.get('step')!r} is not a whole number")
    if meta["step"] != dir_step:
        raise bad(f"it says step {meta['step']} but the folder is {ckpt.name}")
    files = meta.get("files", {})
    if not isinstance(files, dict):
        raise bad("'files' is not an object")
    for name, info in files.items():
        target = ckpt / str(name)
        if not isinstance(info, dict) or "/" in str(name):
            raise bad(f"the entry for {name!r} is not an object")
        try:
            size = target.stat().st_size
        except OSError:
            raise SeddError(f"the checkpoint file {str(target)!r} is missing{hint}") from None
        if size != info.get("bytes"):
            raise SeddError(
                f"the checkpoint file {str(target)!r} is damaged: {size} bytes, {info.get('bytes')} were "
                f"written{hint}"
            )
        digest = hashlib.sha256()
        with open(target, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != info.get("sha256"):
            raise SeddError(
                f"the checkpoint file {str(target)!r} is damaged: its sha256 differs from the one "
                f"recorded in {META_FILE}{hint}"
            )
    return meta


def _read_trainer_state(ckpt: Path, dir_step: int) -> dict[str, Any]:
    """trainer.pt of a checkpoint, read with ``weights_only`` and checked field by field."""
    _read_meta_checked(ckpt, dir_step)
    path = ckpt / TRAINER_FILE
    hint = _older_hint(ckpt)

    def bad(what: str) -> SeddError:
        return SeddError(f"the trainer state {str(path)!r} is damaged: {what}{hint}")

    if not path.is_file():
        raise SeddError(f"the trainer state {str(path)!r} is missing{hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ...
        first = (re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines() or [type(exc).__name__])[0]
        raise bad(f"it cannot be read ({first[:120]})") from None
    if not isinstance(state, dict):
        raise bad(f"it holds a {type(state).__name__}, not a dict")
    for key in ("step", "optimizer", "ema_num_updates", "rng", "data"):
        if key not in state:
            raise bad(f"it has no {key!r} entry")
    if not _whole(state["step"]):
        raise bad(f"step {state['step']!r} is not a whole number")
    if state["step"] != dir_step:
        raise bad(f"it says step {state['step']} but the folder is {ckpt.name}")
    opt = state["optimizer"]
    if not (
        isinstance(opt, dict)
        and isinstance(opt.get("state"), dict)
        and isinstance(opt.get("param_groups"), list)
    ):
        raise bad("'optimizer' is not an optimizer state (a dict with 'state' and 'param_groups')")
    if not _whole(state["ema_num_updates"]):
        raise bad(f"ema_num_updates {state['ema_num_updates']!r} is not a whole number")
    rng = state["rng"]
    if not isinstance(rng, dict):
        raise bad("'rng' is not a dict of generator states")
    for key, like in (("generator", torch.Generator().get_state()), ("torch", torch.get_rng_state())):
        value = rng.get(key)
        if not (isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.shape == like.shape):
            raise bad(f"the {key} RNG state is not a uint8 tensor of {like.numel()} bytes")
        try:
            torch.Generator().set_state(value)
        except RuntimeError as exc:
            raise bad(f"the {key} RNG state is invalid ({str(exc).splitlines()[0][:80]})") from None
    data = state["data"]
    if not (isinstance(data, dict) and _whole(data.get("epoch")) and _whole(data.get("offset"))):
        raise bad("'data' is not a position {'epoch', 'offset'} of whole numbers")
    elapsed = state.get("elapsed", 0.0)
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed):
        raise bad(f"elapsed {elapsed!r} is not a number of seconds")
    return state


def _load_optimizer(optimizer, trainer_state: dict[str, Any], params, path: Path) -> None:
    """Load the optimizer state and check each moment has its parameter's shape."""
    try:
        optimizer.load_state_dict(trainer_state["optimizer"])
        for p in params:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise ValueError(f"{name} has shape {list(value.shape)}, its parameter {list(p.shape)}")
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise SeddError(
            f"the trainer state {str(path)!r} does not fit the model's optimizer "
            f"({str(exc).splitlines()[0][:120]}){_older_hint(path.parent)}"
        ) from None


def _train(config, run_dir, resume, dev, emit, compile_model, dist: _Dist, claims: list) -> TrainResult:
    from .tokenizers import load_tokenizer

    # -- resolve the config and claim the run directory; check everything before any work -------
    error: SeddError | None = None
    tokenizer = None
    trainer_state = None
    ckpt_path = None
    kept_metrics: list[dict[str, Any]] | None = None  # resume: the metric lines to keep
    note = ""
    try:
        if resume is not None:
            run = Path(resume)
            if run_dir is not None and Path(run_dir).resolve() != run.resolve():
                raise SeddError("give either --resume RUN or --run-dir, not both")
            if not (run / CONFIG_FILE).exists():
                raise SeddError(f"--resume {str(run)!r}: not a sedd run (no {CONFIG_FILE})")
            if dist.main:
                claims.append(claim_run_dir(run, resume=True))
            run_cfg = resume_config(run)
            if config is None:
                config = run_cfg
            else:
                diff = model_config_diff(run_cfg, config)
                if diff:
                    raise SeddError(
                        f"--resume {str(run)!r}: the run was trained with a different model config: "
                        + "; ".join(diff)
                        + " (drop those options, or start a new run)"
                    )
                config = config_from_dict({"model": {"vocab_size": run_cfg.model.vocab_size}}, config)
            config.validate()
            ckpts = list_checkpoints(run)
            newest = ckpts[-1][0] if ckpts else -1
            broken = sorted(
                (int(m.group(1)), p)
                for p in (run / CHECKPOINTS_DIR).glob("step_*")
                if (m := _STEP_NAME.match(p.name)) and int(m.group(1)) > newest
            )
            if broken:  # our own crashes leave .tmp/.del folders only: this one was damaged
                after = f"resume from {ckpts[-1][1].name}" if ckpts else "start the run again"
                raise SeddError(
                    f"the checkpoint {str(broken[-1][1])!r} is incomplete (no {META_FILE}): the run "
                    f"directory was damaged; delete that folder to {after}"
                )
            if ckpts:
                ckpt_step, ckpt_path = ckpts[-1]
                trainer_state = _read_trainer_state(ckpt_path, ckpt_step)
                if config.train.max_steps < ckpt_step:
                    raise SeddError(
                        f"--resume {str(run)!r}: the run is already at step {ckpt_step}, beyond "
                        f"train.max_steps (--max-steps) {config.train.max_steps}: give a larger --max-steps"
                    )
                tokenizer = load_tokenizer(run)
                if dist.main:
                    kept = read_metrics(run)  # validated; a cut last line is dropped
                    kept_metrics = [m for m in kept if m["step"] <= ckpt_step]
            else:  # stopped before its first checkpoint: start it again in place
                note = "; no checkpoint yet: started again from step 0"
                if dist.main:
                    kept_metrics = []
            run_dir = run
        else:
            if config is None:
                raise SeddError("train() needs a Config (or resume=RUN)")
            config.validate()
            run_dir = default_run_dir(config) if run_dir is None else run_dir
            if dist.rank == 0:  # only rank 0 writes; the others never touch the folder
                claims.append(claim_run_dir(run_dir))
        tc = config.train
        rows = _micro_rows(tc.batch_size, dist.world, tc.accum, dist.rank)
    except SeddError as exc:
        error = exc
    dist.agree(error)
    run_dir = Path(run_dir)
    tc = config.train

    torch.manual_seed(tc.seed)
    tokenizer, train_blocks, val_blocks = _load_data(config, tokenizer, dist)
    L = int(train_blocks.tokens.shape[1])
    if L != config.model.length:
        raise SeddError(f"data blocks have length {L} but model.length is {config.model.length}")
    config = config_from_dict({"model": {"vocab_size": tokenizer.vocab_size}}, config)

    torch.manual_seed(tc.seed)  # the same initial weights on every process
    model, graph, noise = build_components(config, tokenizer.vocab_size)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, tc)
    ema = EMA(model, tc.ema)
    gen = torch.Generator().manual_seed(tc.seed + 1)  # t and corruption draws
    order = DataOrder(len(train_blocks), tc.seed, getattr(train_blocks, "weights", None))
    step = 0
    elapsed_before = 0.0
    resumed_from = None

    if ckpt_path is not None:
        load_state_strict(model, load_weights(ckpt_path / WEIGHTS_FILE), str(ckpt_path))
        ema_state = load_weights(ckpt_path / EMA_FILE)
        missing = [k for k in ema.shadow if k not in ema_state or ema_state[k].shape != ema.shadow[k].shape]
        if missing:
            raise SeddError(
                f"{str(ckpt_path / EMA_FILE)!r} does not fit the model (missing or mis-shaped: "
                f"{', '.join(missing[:5])}){_older_hint(ckpt_path)}"
            )
        ema.load(ema_state)
        _load_optimizer(optimizer, trainer_state, params, ckpt_path / TRAINER_FILE)
        for group in optimizer.param_groups:  # settings come from the config, state from the file
            group.update(betas=(tc.beta1, tc.beta2), eps=tc.adam_eps, weight_decay=tc.weight_decay)
        step = int(trainer_state["step"])
        resumed_from = step
        ema.num_updates = int(trainer_state["ema_num_updates"])
        ema.decay = tc.ema
        gen.set_state(trainer_state["rng"]["generator"])
        torch.set_rng_state(trainer_state["rng"]["torch"])
        if dev.type == "cuda" and "cuda" in trainer_state["rng"]:
            with contextlib.suppress(Exception):
                torch.cuda.set_rng_state(trainer_state["rng"]["cuda"], dev)
        order = DataOrder(
            len(train_blocks),
            tc.seed,
            getattr(train_blocks, "weights", None),
            epoch=int(trainer_state["data"]["epoch"]),
            offset=int(trainer_state["data"]["offset"]),
        )
        elapsed_before = float(trainer_state.get("elapsed", 0.0))

    # -- run directory (rank 0): settings, tokenizer, the metric lines up to the checkpoint -------
    metrics_path = run_dir / METRICS_FILE
    if dist.main:
        try:
            atomic_write_text(run_dir / CONFIG_FILE, config.to_yaml())
            try:
                tokenizer.save(run_dir)
            except OSError as exc:
                raise write_error(run_dir / "tokenizer.json", exc) from None
            try:
                (run_dir / SAMPLES_DIR).mkdir(exist_ok=True)
                (run_dir / CHECKPOINTS_DIR).mkdir(exist_ok=True)
            except OSError as exc:
                raise write_error(run_dir / CHECKPOINTS_DIR, exc) from None
            if kept_metrics is not None:  # drop lines written after the checkpoint (and a cut one)
                atomic_write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in kept_metrics))
        except WriteError as exc:
            raise _write_failed(exc, str(ckpt_path) if ckpt_path else None, run_dir) from None

    if compile_model:  # the loss calls model.features (the trunk); compile that
        model.features = torch.compile(model.features, dynamic=True)

    max_steps = tc.max_steps
    tokens_per_step = tc.batch_size * L
    emit(
        TrainEvent(
            "start", step, max_steps, path=str(run_dir), message=_describe(config, model, dist, dev) + note
        )
    )

    try:
        metrics_f = open(metrics_path, "ab", buffering=0) if dist.main else None  # noqa: SIM115
    except OSError as exc:
        raise SeddError(f"cannot open {str(metrics_path)!r}: {exc.strerror or exc}") from None
    last_loss = last_lpt = last_val = None
    last_ckpt = str(ckpt_path) if ckpt_path is not None else None
    stopped = "max_steps"
    t0 = time.perf_counter()
    log_t, log_step = t0, step
    session_tokens = 0
    lr = lr_at(step, tc.lr, tc.warmup, tc.decay, max_steps, tc.decay_floor)

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def checkpoint() -> None:
        nonlocal last_ckpt
        if dist.main:
            last_ckpt = str(
                _save_checkpoint(
                    run_dir, step, model, ema, optimizer, gen, order, elapsed(), last_loss, last_val, tc
                )
            )
            emit(TrainEvent("checkpoint", step, max_steps, path=last_ckpt, elapsed=elapsed()))

    try:
        with _StopFlag() as stop:
            model.train()
            while step < max_steps:
                # ---- one optimizer step over the global batch --------------------------------
                idx = order.next(tc.batch_size)  # [B]
                x0_all = train_blocks.batch(idx).long()  # [B, L]
                t_all, xt_all = _draw(
                    graph, noise, x0_all, tc.sampling_eps, gen, tc.t_sampling == "stratified"
                )
                lr = lr_at(step + 1, tc.lr, tc.warmup, tc.decay, max_steps, tc.decay_floor)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = torch.zeros((), device=dev)
                for sl in rows:
                    x0 = x0_all[sl].to(dev, non_blocking=True)
                    out = score_entropy_loss(
                        model,
                        graph,
                        noise,
                        x0,
                        t_all[sl].to(dev),
                        xt=xt_all[sl].to(dev),
                        sampling_eps=tc.sampling_eps,
                    )
                    (out.loss.sum() / tc.batch_size).backward()
                    loss_sum += out.loss.detach().sum().float()
                _all_reduce_grads(params, dist)
                clip = tc.grad_clip if tc.grad_clip > 0 else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
                too_long = tc.max_time is not None and time.perf_counter() - t0 >= tc.max_time
                # one host sync per step: the loss and grad norm (logs, non-finite guard) and every process's
                # stop votes (signal, time budget), so that all processes stop at the same step
                flags = torch.stack(
                    [
                        loss_sum.float(),
                        torch.tensor(float(stop.set), device=dev),
                        torch.tensor(float(too_long), device=dev),
                        grad_norm.float() / dist.world,  # equal on every rank: the sum is the norm
                    ]
                )
                dist.all_reduce_sum(flags)
                loss_value, interrupt_votes, time_votes, gn = flags.tolist()
                loss_value /= tc.batch_size
                if not (math.isfinite(loss_value) and math.isfinite(gn)):
                    optimizer.zero_grad(set_to_none=True)
                    kept = f"; the last good checkpoint {last_ckpt} is kept" if last_ckpt else ""
                    raise SeddError(
                        f"non-finite loss at step {step + 1} (loss {loss_value}, grad norm {gn}){kept}; "
                        "try a lower --lr or a longer warm-up"
                    )
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                ema.update(model)
                step += 1
                session_tokens += tokens_per_step
                last_loss, last_lpt = loss_value, loss_value / L

                # ---- logging, validation, samples, checkpoints -----------------------------
                logged = step % max(tc.log_every, 1) == 0 or step == max_steps
                now = time.perf_counter()
                tps = (step - log_step) * tokens_per_step / max(now - log_t, 1e-9)
                event = TrainEvent(
                    "step",
                    step,
                    max_steps,
                    loss=loss_value,
                    loss_per_token=loss_value / L,
                    lr=lr,
                    grad_norm=gn,
                    tokens_per_s=tps,
                    elapsed=elapsed(),
                    logged=logged,
                )
                if logged:
                    log_t, log_step = now, step
                    _write_metrics(
                        metrics_f,
                        metrics_path,
                        {
                            "step": step,
                            "loss": loss_value,
                            "loss_per_token": loss_value / L,
                            "lr": lr,
                            "grad_norm": gn,
                            "tokens_per_s": tps,
                            "elapsed": event.elapsed,
                        },
                    )
                emit(event)
                if val_blocks is not None and tc.eval_every > 0 and step % tc.eval_every == 0:
                    last_val = _validate(model, graph, noise, ema, val_blocks, config, dev, dist)
                    _write_metrics(
                        metrics_f, metrics_path, {"step": step, "val_loss": last_val, "elapsed": elapsed()}
                    )
                    emit(TrainEvent("eval", step, max_steps, val_loss=last_val, elapsed=elapsed()))
                    model.train()
                if tc.sample_every > 0 and step % tc.sample_every == 0 and dist.main:
                    _snapshot(
                        model, graph, noise, ema, tokenizer, config, dev, run_dir, step, emit, max_steps
                    )
                    model.train()
                if dist.world == 1:  # a signal that came while this step was reported counts now
                    interrupt_votes += float(stop.set)
                if interrupt_votes > 0 or time_votes > 0:
                    stopped = "interrupted" if interrupt_votes > 0 else "max_time"
                    break
                if tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0 and step < max_steps:
                    checkpoint()
            # ---- the end: a final validation and checkpoint ----------------------------------
            if val_blocks is not None and (last_val is None or tc.eval_every <= 0 or step % tc.eval_every):
                last_val = _validate(model, graph, noise, ema, val_blocks, config, dev, dist)
                _write_metrics(
                    metrics_f, metrics_path, {"step": step, "val_loss": last_val, "elapsed": elapsed()}
                )
                emit(TrainEvent("eval", step, max_steps, val_loss=last_val, elapsed=elapsed()))
            if resumed_from is None or step != resumed_from:
                checkpoint()
    except WriteError as exc:
        raise _write_failed(exc, last_ckpt, run_dir) from None
    finally:
        if metrics_f is not None:
            metrics_f.close()

    session = time.perf_counter() - t0
    result = TrainResult(
        run_dir=str(run_dir),
        steps=step,
        loss=last_loss,
        loss_per_token=last_lpt,
        val_loss=last_val,
        tokens_per_s=session_tokens / max(session, 1e-9),
        elapsed=session,
        checkpoint=last_ckpt,
        stopped_reason=stopped,
        resumed_from=resumed_from,
        world_size=dist.world,
    )
    emit(
        TrainEvent("end", step, max_steps, loss=last_loss, val_loss=last_val, path=last_ckpt, message=stopped)
    )
    return result


def _describe(config: Config, model, dist: _Dist, dev: torch.device) -> str:
    n = sum(p.numel() for p in model.parameters())
    micro = config.train.batch_size // (dist.world * config.train.accum)
    return (
        f"{config.name}: {n / 1e6:.2f}M parameters, vocab {config.model.vocab_size}, length "
        f"{config.model.length}, batch {config.train.batch_size} ({dist.world} process(es) x "
        f"{config.train.accum} micro-batch(es) of {micro}) on {dev}"
    )


def _write_metrics(f, path: Path, row: dict[str, Any]) -> None:
    """One JSON line appended to metrics.jsonl; a failed write leaves no half line behind."""
    if f is not None:
        append_bytes(f, path, (json.dumps(row) + "\n").encode("utf-8"))


@torch.no_grad()
def _validate(model, graph, noise, ema: EMA, val_blocks, config: Config, dev, dist: _Dist) -> float:
    """Mean loss (nats per sequence) of the EMA weights over the first eval_batches x batch_size
    validation rows (cycled if fewer), with a fixed generator so values compare across steps."""
    tc = config.train
    n = len(val_blocks)
    gen = torch.Generator().manual_seed(tc.seed + 10_007)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    count = 0
    rows = _micro_rows(tc.batch_size, dist.world, tc.accum, dist.rank)
    model.eval()
    with ema.applied(model):
        for b in range(tc.eval_batches):
            idx = torch.arange(b * tc.batch_size, (b + 1) * tc.batch_size) % n  # [B]
            x0_all = val_blocks.batch(idx).long()  # [B, L]
            t_all, xt_all = _draw(graph, noise, x0_all, tc.sampling_eps, gen, tc.t_sampling == "stratified")
            for sl in rows:
                out = score_entropy_loss(
                    model, graph, noise, x0_all[sl].to(dev), t_all[sl].to(dev), xt=xt_all[sl].to(dev)
                )
                total += out.loss.double().sum()
            count += tc.batch_size
    dist.all_reduce_sum(total)
    return float(total) / count


def _snapshot(model, graph, noise, ema, tokenizer, config, dev, run_dir: Path, step, emit, max_steps) -> None:
    """Sample `sample.num_samples` sequences with the EMA weights into samples/step_XXXXXXXX.txt."""
    try:
        from .samplers import generate
    except ImportError:
        return
    sc = config.sample
    gen = torch.Generator(device=dev).manual_seed(config.train.seed + 20_011)
    model.eval()
    with ema.applied(model):
        ids = generate(
            model,
            graph,
            noise,
            batch_size=sc.num_samples,
            length=config.model.length,
            steps=sc.steps,
            predictor=sc.predictor if sc.predictor != "none" else "analytic",
            eps=sc.eps,
            denoise=sc.denoise,
            precision=sc.precision,
            device=dev,
            generator=gen,
            temperature=sc.temperature,
            top_p=sc.top_p,
        )
    texts = [tokenizer.decode(row.tolist(), skip_special=True) for row in ids.cpu()]
    if config.data.layout == "pad":
        body = "".join(t.replace("\n", " ") + "\n" for t in texts)
    else:
        body = "".join(t + "\n" + "=" * 80 + "\n" for t in texts)
    path = run_dir / SAMPLES_DIR / f"step_{step:08d}.txt"
    atomic_write_text(path, body)
    emit(TrainEvent("sample", step, max_steps, path=str(path), samples=texts))


def _save_checkpoint(
    run_dir: Path, step, model, ema: EMA, optimizer, gen, order: DataOrder, elapsed, loss, val, tc
):
    """checkpoints/step_XXXXXXXX/ written under a .tmp name, meta.json last (with the size and
    sha256 of every file, checked on resume), then renamed; only the newest `keep_checkpoints`
    complete checkpoints are kept (each pruned one is renamed to ``.del`` before it is deleted, so
    no half-deleted folder ever looks complete). A failed write removes the .tmp folder."""
    root = run_dir / CHECKPOINTS_DIR
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise write_error(tmp, exc) from None
    try:
        files = {}

        def record(name: str, digest: str) -> None:
            files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": digest}

        record(WEIGHTS_FILE, save_weights(tmp / WEIGHTS_FILE, model.state_dict()))
        record(EMA_FILE, save_weights(tmp / EMA_FILE, ema.state_dict(model)))
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": gen.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state()
        state = {
            "format": TRAINER_FORMAT,
            "step": step,
            "optimizer": optimizer.state_dict(),
            "ema_num_updates": ema.num_updates,
            "rng": rng,
            "data": order.state(),
            "elapsed": float(elapsed),
        }
        record(TRAINER_FILE, atomic_torch_save(state, tmp / TRAINER_FILE))
        meta = {
            "step": step,
            "loss": loss,
            "val_loss": val,
            "elapsed": float(elapsed),
            "time": time.time(),
            "files": files,
        }
        atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=2))
        try:
            if final.exists():  # same step saved before (e.g. re-run after a crash): replace it
                old = root / f"step_{step:08d}.old"
                shutil.rmtree(old, ignore_errors=True)
                os.rename(final, old)
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
        except OSError as exc:
            raise write_error(final, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if tc.keep_checkpoints > 0:
        for _, path in list_checkpoints(run_dir)[: -tc.keep_checkpoints]:
            doomed = path.with_name(path.name + ".del")
            with contextlib.suppress(OSError):
                os.rename(path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
    return final
