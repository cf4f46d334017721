"""Our formats (docs/checkpoints.md): model folders, run directories and their checkpoints.

* **model folder**: ``config.yaml`` (resolved `Config`), ``tokenizer.json``, ``model.safetensors``
  (the weights to use) and optionally ``meta.json`` (step, source, which weights).
* **run directory** ``runs/NAME/``: ``config.yaml``, ``tokenizer.json`` and
  ``checkpoints/step_XXXXXXXX/`` folders, each with ``model.safetensors``, ``ema.safetensors``,
  ``trainer.pt`` (optimizer, RNG and data position) and ``meta.json`` (written last, so a folder
  without it is incomplete and ignored). A checkpoint folder is written under a temporary name
  and renamed into place, so a crash mid-save leaves the previous one intact.

meta.json may record each file's size and sha256 (``files: {name: {bytes, sha256}}``, written by
training and by convert); a file that no longer matches its record is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from ..config import Config, config_from_dict, read_text_file, read_yaml_file
from ..errors import ConfigError, SeddError
from ..runtime import atomic_write_text
from ..tokenizers import TOKENIZER_FILE, Tokenizer
from .formats import Located, load_tokenizer_file, read_json, register_format
from .weights import check_weights, load_weights, save_weights

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "EMA_FILE",
    "META_FILE",
    "TRAINER_FILE",
    "save_model_dir",
    "read_config",
    "list_checkpoints",
    "latest_checkpoint",
    "newest_run",
    "is_checkpoint_dir",
    "read_meta",
    "file_record",
    "check_recorded",
    "locate_ours",
]

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
META_FILE = "meta.json"
TRAINER_FILE = "trainer.pt"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def save_model_dir(
    directory: str | Path,
    state: dict[str, torch.Tensor],
    config: Config,
    tokenizer: Tokenizer,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a model folder (config.yaml, tokenizer.json, model.safetensors, meta.json); a failed
    write is a one-line `runtime.WriteError` naming the file."""
    from ..runtime import write_error

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(directory, exc) from None
    atomic_write_text(directory / CONFIG_FILE, config.to_yaml())
    try:
        tokenizer.save(directory)
    except OSError as exc:
        raise write_error(directory / TOKENIZER_FILE, exc) from None
    save_weights(directory / WEIGHTS_FILE, state)
    atomic_write_text(directory / META_FILE, json.dumps(meta or {}, indent=2, default=str))
    return directory


def read_config(path: str | Path) -> Config:
    """The validated `Config` saved in `path` (a run's or model folder's config.yaml, which
    `Config.to_yaml` writes whole); a one-line SeddError naming the file when it is missing, not
    UTF-8 (with the byte offset), not YAML, not a mapping, incomplete (a section missing, or the
    last line without its newline: a truncated file), or holds an unknown key or a value out of
    range."""
    path = Path(path)
    if not path.is_file():
        raise SeddError(f"{str(path)!r} not found")
    data = read_yaml_file(path, "config")
    # train and convert write every section and end the file with a newline: less was cut short
    missing = [key for key in Config().to_dict() if key not in data]
    if missing or not read_text_file(path).endswith("\n"):
        what = f"it lacks the {', '.join(missing)} section(s)" if missing else "its last line is cut short"
        raise SeddError(
            f"{str(path)!r} is incomplete ({what}): the file was truncated or damaged; restore it from a copy"
        )
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{str(path)!r}: {exc}") from None


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run (those with meta.json), oldest first."""
    root = Path(run_dir) / "checkpoints"
    out = []
    if root.is_dir():
        for child in root.iterdir():
            m = _STEP_DIR.match(child.name)
            if m and child.is_dir() and (child / META_FILE).is_file():
                out.append((int(m.group(1)), child))
    return sorted(out)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def newest_run(root: str | Path = "runs") -> Path:
    """The run under `root` whose newest checkpoint is the most recent."""
    root = Path(root)
    runs = [p for p in root.iterdir() if p.is_dir() and latest_checkpoint(p)] if root.is_dir() else []
    if not runs:
        raise SeddError(
            f"no trained model found under {str(root)!r}: train one with `sedd train`, "
            "or pass a MODEL (run directory, checkpoint or pretrained id)"
        )
    return max(runs, key=lambda p: (latest_checkpoint(p) / META_FILE).stat().st_mtime)


def is_checkpoint_dir(path: Path) -> bool:
    """A checkpoint folder: meta.json with ema.safetensors or model.safetensors."""
    return (path / META_FILE).is_file() and ((path / EMA_FILE).is_file() or (path / WEIGHTS_FILE).is_file())


def read_meta(folder: Path) -> dict[str, Any]:
    """A checkpoint's or model folder's meta.json, checked: a JSON object whose ``step`` (when
    present) is a non-negative integer and whose ``weights`` (when present) is ema or model."""
    path = folder / META_FILE
    if not path.is_file():
        return {}
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise SeddError(
            f"{str(path)!r} holds a JSON {type(meta).__name__}, not an object: the file is damaged"
        )
    step = meta.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise SeddError(f"{str(path)!r}: step must be a non-negative integer, got {step!r}")
    if "weights" in meta:
        check_weights(meta["weights"], f"{str(path)!r}: ")
    return meta


def file_record(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex digest}`` of a file, as meta.json's ``files`` entries hold."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def check_recorded(file: Path, meta: dict[str, Any], meta_path: Path) -> None:
    """When meta.json records `file` (``files: {name: {bytes, sha256}}``, written by training and
    by convert), its size and sha256 must match: a truncated file, or a flipped byte that still
    reads as a finite number, is caught here. Files without a record are not checked."""
    files = meta.get("files")
    info = files.get(file.name) if isinstance(files, dict) else None
    if not isinstance(info, dict) or not file.is_file():
        return
    found = file_record(file) if isinstance(info.get("sha256"), str) else {"bytes": file.stat().st_size}
    for key, what in (("bytes", "its size"), ("sha256", "its sha256")):
        if key in found and key in info and found[key] != info[key]:
            extra = f" ({found['bytes']:,} bytes, {info['bytes']:,} were written)" if key == "bytes" else ""
            raise SeddError(
                f"refusing to load {str(file)!r}: {what} differs from the one recorded in "
                f"{str(meta_path)!r}{extra}: the file is damaged; restore it from a copy or load an "
                "earlier checkpoint"
            )


def _layout(path: Path) -> tuple[Path, Path, str] | None:
    """(run directory or model folder, checkpoint folder, format) of `path`, or None."""
    if (
        (path / CONFIG_FILE).is_file()
        and (path / WEIGHTS_FILE).is_file()
        and not (path / "checkpoints").is_dir()
    ):
        return path, path, "sedd-model"
    if is_checkpoint_dir(path):
        return path.parent.parent, path, "sedd-checkpoint"
    if (path / CONFIG_FILE).is_file() and (path / "checkpoints").is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise SeddError(f"run {str(path)!r} has no complete checkpoint yet")
        return path, latest, "sedd-run"
    return None


@register_format(10, f"a sedd run/checkpoint/model folder ({CONFIG_FILE})")
def locate_ours(path: Path, weights: str) -> Located | None:
    """Our model folder, checkpoint folder or run directory; None when `path` is none of them."""
    layout = _layout(path)
    if layout is None:
        return None
    run_dir, ckpt, fmt = layout
    config = read_config(run_dir / CONFIG_FILE)
    tokenizer = load_tokenizer_file(run_dir)
    meta = read_meta(ckpt)
    if fmt == "sedd-model":
        file, which = ckpt / WEIGHTS_FILE, str(meta.get("weights", "model"))
    else:
        which = "ema" if weights == "ema" and (ckpt / EMA_FILE).is_file() else "model"
        file = ckpt / (EMA_FILE if which == "ema" else WEIGHTS_FILE)
    origin = {"path": str(file)}
    if fmt != "sedd-model":  # a run's checkpoint: its run directory (metrics.jsonl, `sedd info`)
        origin["run_dir"] = str(run_dir)
    if meta.get("source") and fmt == "sedd-model":
        origin["converted_from"] = meta["source"]
        family = (meta.get("origin") or {}).get("family") if isinstance(meta.get("origin"), dict) else None
        if family:  # converted from a peer's layout (RADD): `sedd info` keeps naming it
            origin["family"] = family
    step = meta.get("step")
    check_recorded(file, meta, ckpt / META_FILE)
    return Located(fmt, config, tokenizer, load_weights(file), which, origin, step, meta)
