"""`convert_model`: any supported MODEL -> our model folder, written atomically.

The OUT checks (`check_convert_out`) come before anything is loaded: OUT must not be, lie inside
or contain the source (links resolved; for a checkpoint folder its run directory, for a reference
``.pth`` its run), whatever ``--force`` says, since replacing it would delete what is being
converted; it must be a folder or absent, and empty unless ``force``. The folder is written under
a temporary name beside OUT and renamed into place, so a failure leaves whatever was there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SeddError
from ..runtime import atomic_write_text
from .hub import is_hub_id
from .ours import META_FILE, WEIGHTS_FILE, file_record, is_checkpoint_dir, save_model_dir
from .pretrained import Pretrained, load_pretrained
from .reference_run import reference_run_root
from .weights import check_weights

__all__ = ["ConvertResult", "check_convert_out", "convert_model"]


@dataclass
class ConvertResult:
    out: Path
    source: str
    format: str
    weights: str
    step: int | None
    parameters: int
    files: list[str]


def _source_folders(source: str | Path) -> list[Path]:
    """The local folders a conversion of `source` reads: the source itself and, for a checkpoint
    folder or a reference ``.pth`` file, the run directory around it (its config and tokenizer).
    Each is given as written and with its links resolved; [] for a hub id."""
    if is_hub_id(source):
        return []
    path = Path(source).expanduser()
    if not path.exists():
        return []
    found: list[Path] = []
    for p in (path.absolute(), path.resolve()):
        found.append(p)
        if p.is_dir() and is_checkpoint_dir(p) and p.parent.name == "checkpoints":
            found.append(p.parent.parent)  # RUN/checkpoints/step_N: the run (a model folder has none)
        ref = reference_run_root(p) if p.suffix == ".pth" else None
        if ref is not None:
            found.append(ref[0])
    return [q for f in found for q in (f, f.resolve())]


def _refuse_overlap(out: Path, folders: list[Path]) -> None:
    """SeddError when `out` (links resolved) is, lies inside or contains one of `folders`:
    replacing it would delete the source (or, for a parent such as ``runs``, every run)."""
    target = out.expanduser().resolve()
    for folder in folders:
        if target == folder:
            how = "is"
        elif folder in target.parents:
            how = "lies inside"
        elif target in folder.parents:
            how = "contains"
        else:
            continue
        raise SeddError(
            f"refusing to write {str(out)!r}: it {how} the source {str(folder)!r}, and writing there "
            "would delete what is being converted (--force does not change this): choose an OUT "
            "outside the source"
        )


def check_convert_out(source: str | Path, out: str | Path, *, force: bool = False) -> Path:
    """The checks `convert_model` makes on `out` before loading anything: `out` must not be, lie
    inside or contain the source (links resolved), whatever `force` says; it must be a folder or
    absent, and empty unless `force`."""
    out = Path(out).expanduser()
    _refuse_overlap(out, _source_folders(source))
    if out.exists() and not out.is_dir():
        raise SeddError(f"{str(out)!r} exists and is not a folder: choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SeddError(f"{str(out)!r} is not empty: choose another OUT or pass --force to replace it")
    return out


def _write_folder(out: Path, pre: Pretrained, meta: dict) -> None:
    """Write the model folder under a temporary name beside `out`, then swap it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        save_model_dir(tmp, pre.model.state_dict(), pre.config, pre.tokenizer, meta)
        # record the weights' size and sha256, as training does, so a damaged copy is recognised
        meta["files"] = {WEIGHTS_FILE: file_record(tmp / WEIGHTS_FILE)}
        atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=2, default=str))
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old", dir=out.parent))
            os.replace(out, trash / "old")
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def convert_model(
    source: str | Path,
    out: str | Path,
    *,
    weights: str = "ema",
    force: bool = False,
    on_loading: Callable[[], None] | None = None,
) -> ConvertResult:
    """Write `source` (any supported format) as our model folder `out`: model.safetensors,
    config.yaml, tokenizer.json and meta.json (source, format, step, weights, origin).

    `weights` and `out` are checked first (`check_convert_out`); `on_loading` is then called once,
    before the model is loaded (a command reports its progress there, after any refusal). An
    `out` inside the folder the weights really come from (a hub snapshot, a run's checkpoint) is
    refused too, once that is known.
    """
    check_weights(weights)
    out = check_convert_out(source, out, force=force)
    if on_loading is not None:
        on_loading()
    pre = load_pretrained(source, device="cpu", weights=weights)
    weights_file = Path(pre.origin.get("path", ""))
    if pre.origin.get("path"):  # where the weights really were (a hub snapshot, a run's checkpoint)
        _refuse_overlap(out, [weights_file.absolute().parent, weights_file.resolve().parent])
    meta = {
        "source": str(source),
        "format": pre.format,
        "step": pre.step,
        "weights": pre.weights,
        "origin": pre.origin,
        "parameters": pre.num_parameters,
    }
    _write_folder(out, pre, meta)
    return ConvertResult(
        out=out,
        source=str(source),
        format=pre.format,
        weights=pre.weights,
        step=pre.step,
        parameters=pre.num_parameters,
        files=sorted(p.name for p in out.iterdir()),
    )
