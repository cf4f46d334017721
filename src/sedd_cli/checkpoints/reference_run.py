"""The reference implementation's training runs (sedd-spec §3.9).

A run directory holds ``.hydra/config.yaml`` and ``checkpoints-meta/checkpoint.pth`` (else the
newest ``checkpoints/checkpoint_N.pth``): a dict ``model``, ``ema`` = {decay, num_updates,
shadow_params}, ``optimizer``, ``step``. The EMA shadow parameters follow ``model.parameters()``
order and are used by default, as the reference samples with them; they are put on the parameter
names once the network is built (`pretrained`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..config import read_text_file, yaml_load
from ..errors import SeddError
from .formats import Located, register_format
from .reference import reference_parts
from .weights import OPTIONAL_KEYS, check_tensors, tensor_dict, torch_load_safe

__all__ = ["HYDRA_CONFIG", "REF_META_CHECKPOINT", "reference_run_root", "locate_reference_run"]

HYDRA_CONFIG = Path(".hydra") / "config.yaml"
REF_META_CHECKPOINT = Path("checkpoints-meta") / "checkpoint.pth"
_REF_CHECKPOINT = re.compile(r"^checkpoint_(\d+)\.pth$")


def reference_run_root(path: Path) -> tuple[Path, Path] | None:
    """(run root, checkpoint file) of a reference run directory or one of its .pth files."""
    if path.is_file() and path.suffix == ".pth":
        for root in (path.parent.parent, path.parent):
            if (root / HYDRA_CONFIG).is_file():
                return root, path
        return None
    if not (path / HYDRA_CONFIG).is_file():
        return None
    if (path / REF_META_CHECKPOINT).is_file():
        return path, path / REF_META_CHECKPOINT
    numbered = []
    if (path / "checkpoints").is_dir():
        for child in (path / "checkpoints").iterdir():
            m = _REF_CHECKPOINT.match(child.name)
            if m and child.is_file():
                numbered.append((int(m.group(1)), child))
    if not numbered:
        raise SeddError(
            f"reference run {str(path)!r} has no {REF_META_CHECKPOINT} nor checkpoints/checkpoint_N.pth"
        )
    return path, max(numbered)[1]


def _step(ckpt: dict[str, Any]) -> int | None:
    """The checkpoint's ``step``: an int or a one-element integer tensor, else unknown (None)."""
    step = ckpt.get("step")
    if isinstance(step, torch.Tensor):  # a one-element integer tensor, else unknown
        step = int(step.item()) if step.numel() == 1 and not step.is_floating_point() else None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def _shadow(
    ema: Any, state: dict[str, torch.Tensor], where: str, meta: dict[str, Any]
) -> list[torch.Tensor] | None:
    """The EMA shadow tensors (checked, with the kept buffers of `state`), recording the EMA's
    decay and update count in `meta`; None when the checkpoint has none (then `state` is checked)."""
    if isinstance(ema, dict) and ema.get("shadow_params") is not None:
        shadow = ema["shadow_params"]
        if not isinstance(shadow, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in shadow):
            raise SeddError(f"{where}['ema']['shadow_params'] is not a list of tensors")
        shadow = list(shadow)
        check_tensors(shadow, f"{where} (ema.shadow_params)")
        check_tensors({k: v for k, v in state.items() if k in OPTIONAL_KEYS}, where)  # kept buffers
        meta.update(ema_decay=ema.get("decay"), ema_num_updates=ema.get("num_updates"))
        return shadow
    check_tensors(state, where)
    return None


@register_format(30, f"a reference run ({HYDRA_CONFIG})")
def locate_reference_run(path: Path, weights: str) -> Located | None:
    """A reference run directory or one of its .pth files; None when `path` is neither."""
    found = reference_run_root(path)
    if found is None:
        return None
    root, file = found
    cfg_path = root / HYDRA_CONFIG
    data = yaml_load(read_text_file(cfg_path), where=repr(str(cfg_path)))
    config, tokenizer = reference_parts(data, root, repr(str(cfg_path)))
    ckpt = torch_load_safe(file)
    where = repr(str(file))
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise SeddError(f"{where} is not a reference training checkpoint (a dict with model, ema, step)")
    state = tensor_dict(ckpt["model"], f"{where}['model']")
    step = _step(ckpt)
    meta: dict[str, Any] = {"step": step}
    shadow = _shadow(ckpt.get("ema") if weights == "ema" else None, state, where, meta)
    which = "ema" if shadow is not None else "model"
    origin = {"path": str(file), "file": file.name}
    return Located("reference-run", config, tokenizer, state, which, origin, step, meta, shadow)
