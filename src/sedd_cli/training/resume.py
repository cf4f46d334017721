"""Continuing a run: its saved config, the model it must keep, and its newest checkpoint checked
field by field before any of it is loaded.

A resumed run may change training settings (max_steps, lr, ...) but not the model, graph or
noise. Its checkpoint's ``meta.json`` records the size and sha256 of every file; ``trainer.pt``
(optimizer, step, RNG states, data position, EMA count) is read with ``weights_only``. Loading
it restores the exact state, so the resumed run reaches the uninterrupted run's losses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
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
    load_state_strict,
    load_weights,
)
from ..config import Config, config_from_dict, drop_none
from ..errors import SeddError
from .data_order import DataOrder
from .run_dir import CHECKPOINTS_DIR, STEP_NAME, check_is_run, read_text
from .state import TrainState

_ARCH_SECTIONS = ("model", "graph", "noise")


# --- the config ----------------------------------------------------------------------------------


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


def check_same_model(run_dir: str | Path, run: Config, given: Config, what: str = "the given config") -> None:
    """A resumed run keeps its model, graph and noise: refuse `given` (described as `what`, e.g.
    ``--model tiny``) when any of those settings differs from the run's config `run`."""
    diff = model_config_diff(run, given)
    if diff:
        raise SeddError(
            f"--resume {str(run_dir)!r}: {what} differs from the run's model config: "
            + "; ".join(diff)
            + " (drop those options, or start a new run)"
        )


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The saved config of `run_dir` updated with nested `overrides` (None values ignored); a
    damaged config.yaml (not UTF-8, not YAML, bad values) is a one-line error naming it."""
    from ..config import yaml_load
    from ..errors import ConfigError

    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    check_is_run(run_dir)
    text = read_text(path, "the run's config")
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


def resumed_config(run_dir: Path, config: Config | None) -> Config:
    """The config a resumed run trains with: the saved one, or `config` (same model checked) with
    the run's vocabulary size."""
    run_cfg = resume_config(run_dir)
    if config is None:
        return run_cfg
    check_same_model(run_dir, run_cfg, config)
    return config_from_dict({"model": {"vocab_size": run_cfg.model.vocab_size}}, config)


# --- the newest checkpoint ---------------------------------------------------------------------


def newest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest complete checkpoint, or None when there is none yet. A
    ``step_N`` folder newer than it without meta.json (damage: our own crashes leave only
    ``.tmp``/``.del`` folders) is refused."""
    ckpts = list_checkpoints(run_dir)
    newest = ckpts[-1][0] if ckpts else -1
    broken = sorted(
        (int(m.group(1)), p)
        for p in (run_dir / CHECKPOINTS_DIR).glob("step_*")
        if (m := STEP_NAME.match(p.name)) and int(m.group(1)) > newest
    )
    if broken:  # our own crashes leave .tmp/.del folders only: this one was damaged
        after = f"resume from {ckpts[-1][1].name}" if ckpts else "start the run again"
        raise SeddError(
            f"the checkpoint {str(broken[-1][1])!r} is incomplete (no {META_FILE}): the run "
            f"directory was damaged; delete that folder to {after}"
        )
    return ckpts[-1] if ckpts else None


def check_within_budget(run_dir: Path, ckpt_step: int, max_steps: int) -> None:
    if max_steps < ckpt_step:
        raise SeddError(
            f"--resume {str(run_dir)!r}: the run is already at step {ckpt_step}, beyond "
            f"train.max_steps (--max-steps) {max_steps}: give a larger --max-steps"
        )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def older_hint(ckpt: Path) -> str:
    """What to do about a damaged checkpoint: resume from the one before, or start again."""
    older = [p for _, p in list_checkpoints(ckpt.parent.parent) if p != ckpt]
    if older:
        return f"; delete {ckpt.name} to resume from {older[-1].name}"
    return "; delete that checkpoint folder and start the run again with --resume"


def _check_file(ckpt: Path, name: str, info: Any, bad, hint: str) -> None:
    """One file recorded in meta.json: its size and sha256 as written."""
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


def read_meta_checked(ckpt: Path, dir_step: int) -> dict[str, Any]:
    """meta.json of a checkpoint, validated: a JSON object whose ``step`` is the folder's step, and
    whose recorded files (``files``: bytes and sha256 per file) are intact."""
    path = ckpt / META_FILE
    hint = older_hint(ckpt)

    def bad(what: str) -> SeddError:
        return SeddError(f"the checkpoint file {str(path)!r} is damaged: {what}{hint}")

    try:
        text = read_text(path, "the checkpoint file")
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
        _check_file(ckpt, name, info, bad, hint)
    return meta


def _load_trainer_file(path: Path, bad, hint: str) -> dict[str, Any]:
    if not path.is_file():
        raise SeddError(f"the trainer state {str(path)!r} is missing{hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ...
        first = (re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines() or [type(exc).__name__])[0]
        raise bad(f"it cannot be read ({first[:120]})") from None
    if not isinstance(state, dict):
        raise bad(f"it holds a {type(state).__name__}, not a dict")
    return state


def _check_rng(rng: Any, bad) -> None:
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


def read_trainer_state(ckpt: Path, dir_step: int) -> dict[str, Any]:
    """trainer.pt of a checkpoint, read with ``weights_only`` and checked field by field."""
    read_meta_checked(ckpt, dir_step)
    path = ckpt / TRAINER_FILE
    hint = older_hint(ckpt)

    def bad(what: str) -> SeddError:
        return SeddError(f"the trainer state {str(path)!r} is damaged: {what}{hint}")

    state = _load_trainer_file(path, bad, hint)
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
    _check_rng(state["rng"], bad)
    data = state["data"]
    if not (isinstance(data, dict) and _whole(data.get("epoch")) and _whole(data.get("offset"))):
        raise bad("'data' is not a position {'epoch', 'offset'} of whole numbers")
    elapsed = state.get("elapsed", 0.0)
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed):
        raise bad(f"elapsed {elapsed!r} is not a number of seconds")
    return state


# --- loading it --------------------------------------------------------------------------------


def load_optimizer(optimizer, trainer_state: dict[str, Any], params, path: Path) -> None:
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
            f"({str(exc).splitlines()[0][:120]}){older_hint(path.parent)}"
        ) from None


def _load_weights(state: TrainState, ckpt: Path) -> None:
    """The live and the EMA weights of checkpoint `ckpt` into `state` (shapes checked)."""
    load_state_strict(state.model, load_weights(ckpt / WEIGHTS_FILE), str(ckpt))
    ema = state.ema
    ema_state = load_weights(ckpt / EMA_FILE)
    missing = [k for k in ema.shadow if k not in ema_state or ema_state[k].shape != ema.shadow[k].shape]
    if missing:
        raise SeddError(
            f"{str(ckpt / EMA_FILE)!r} does not fit the model (missing or mis-shaped: "
            f"{', '.join(missing[:5])}){older_hint(ckpt)}"
        )
    ema.load(ema_state)


def restore(state: TrainState, ckpt: Path, trainer_state: dict[str, Any], train_blocks, dev) -> None:
    """Put checkpoint `ckpt` into `state`: weights, EMA, optimizer (its settings from the config,
    its moments from the file), the step, the generators and the data position."""
    tc = state.config.train
    _load_weights(state, ckpt)
    optimizer = state.optimizer
    load_optimizer(optimizer, trainer_state, state.params, ckpt / TRAINER_FILE)
    for group in optimizer.param_groups:  # settings come from the config, state from the file
        group.update(betas=(tc.beta1, tc.beta2), eps=tc.adam_eps, weight_decay=tc.weight_decay)
    state.step = int(trainer_state["step"])
    state.resumed_from = state.step
    state.ema.num_updates = int(trainer_state["ema_num_updates"])
    state.ema.decay = tc.ema
    state.gen.set_state(trainer_state["rng"]["generator"])
    torch.set_rng_state(trainer_state["rng"]["torch"])
    if dev.type == "cuda" and "cuda" in trainer_state["rng"]:
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state(trainer_state["rng"]["cuda"], dev)
    state.order = DataOrder(
        len(train_blocks),
        tc.seed,
        getattr(train_blocks, "weights", None),
        epoch=int(trainer_state["data"]["epoch"]),
        offset=int(trainer_state["data"]["offset"]),
    )
    state.elapsed_before = float(trainer_state.get("elapsed", 0.0))
