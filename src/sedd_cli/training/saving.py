"""Writing a run to disk (rank 0 only): its settings and tokenizer, and crash-safe checkpoints.

A checkpoint is ``checkpoints/step_XXXXXXXX/``: ``model.safetensors`` (live weights),
``ema.safetensors`` (EMA weights), ``trainer.pt`` (optimizer, step, RNG states, data position,
EMA count) and ``meta.json`` (written last, with the size and sha256 of every file). It is
written under a ``.tmp`` name and renamed, so a folder without meta.json is never complete. A
write that fails (a full disk) becomes one line saying what failed and what state the run is in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import (
    CONFIG_FILE,
    EMA_FILE,
    META_FILE,
    TRAINER_FILE,
    WEIGHTS_FILE,
    list_checkpoints,
    save_weights,
)
from ..config import Config
from ..errors import SeddError
from ..runtime import WriteError, atomic_torch_save, atomic_write_text, write_error
from .metrics import rewrite_metrics
from .run_dir import CHECKPOINTS_DIR, METRICS_FILE, SAMPLES_DIR
from .state import TrainState

TRAINER_FORMAT = 1


def run_state(last_ckpt: str | None, run_dir: Path) -> str:
    """What state a run stopped by a failure is in, and how to go on."""
    if last_ckpt:
        return (
            f"the last good checkpoint {Path(last_ckpt).name} is kept; then continue with --resume {run_dir}"
        )
    if (run_dir / CONFIG_FILE).is_file():
        return f"no checkpoint was written yet; then start it again with --resume {run_dir}"
    return f"nothing was trained yet; then run the same command again (--run-dir {run_dir})"


def write_failed(exc: WriteError, last_ckpt: str | None, run_dir: Path) -> SeddError:
    """The one line for a write that failed mid-run: what failed, and what state the run is in."""
    state = run_state(last_ckpt, run_dir)
    return SeddError(f"{str(exc).removesuffix('; free some space and retry')}; free some space: {state}")


def write_run_files(run_dir: Path, config: Config, tokenizer, kept_metrics: list | None) -> None:
    """config.yaml, tokenizer.json, samples/ and checkpoints/; on resume, metrics.jsonl cut back
    to the lines up to the checkpoint (dropping those written after it, and a cut last line)."""
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
        rewrite_metrics(run_dir / METRICS_FILE, kept_metrics)


def _trainer_state(state: TrainState, elapsed: float) -> dict[str, Any]:
    """trainer.pt: what exact resume needs besides the weights."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": state.gen.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state()
    return {
        "format": TRAINER_FORMAT,
        "step": state.step,
        "optimizer": state.optimizer.state_dict(),
        "ema_num_updates": state.ema.num_updates,
        "rng": rng,
        "data": state.order.state(),
        "elapsed": float(elapsed),
    }


def _write_files(tmp: Path, state: TrainState, elapsed: float, loss, val) -> None:
    """The four files of a checkpoint into folder `tmp`, meta.json last."""
    files = {}

    def record(name: str, digest: str) -> None:
        files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": digest}

    record(WEIGHTS_FILE, save_weights(tmp / WEIGHTS_FILE, state.model.state_dict()))
    record(EMA_FILE, save_weights(tmp / EMA_FILE, state.ema.state_dict(state.model)))
    record(TRAINER_FILE, atomic_torch_save(_trainer_state(state, elapsed), tmp / TRAINER_FILE))
    meta = {
        "step": state.step,
        "loss": loss,
        "val_loss": val,
        "elapsed": float(elapsed),
        "time": time.time(),
        "files": files,
    }
    atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=2))


def _publish(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`; a same-step folder saved before (e.g. re-run after a crash) is
    replaced via an ``.old`` copy."""
    try:
        if final.exists():
            old = final.with_name(final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except OSError as exc:
        raise write_error(final, exc) from None


def _prune(run_dir: Path, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints (each pruned one is renamed to ``.del`` before
    it is deleted, so no half-deleted folder ever looks complete)."""
    if keep > 0:
        for _, path in list_checkpoints(run_dir)[:-keep]:
            doomed = path.with_name(path.name + ".del")
            with contextlib.suppress(OSError):
                os.rename(path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)


def save_checkpoint(run_dir: Path, state: TrainState, elapsed: float, loss, val) -> Path:
    """checkpoints/step_XXXXXXXX/ written under a .tmp name, meta.json last (with the size and
    sha256 of every file, checked on resume), then renamed; only the newest `keep_checkpoints`
    complete checkpoints are kept. A failed write removes the .tmp folder."""
    root = run_dir / CHECKPOINTS_DIR
    final = root / f"step_{state.step:08d}"
    tmp = root / f"step_{state.step:08d}.tmp"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise write_error(tmp, exc) from None
    try:
        _write_files(tmp, state, elapsed, loss, val)
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(run_dir, state.config.train.keep_checkpoints)
    return final
