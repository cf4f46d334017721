"""Model folders, run checkpoints and the one loader behind every command that takes a MODEL.

Our formats (docs/checkpoints.md):

* **model folder**: ``config.yaml`` (resolved `Config`), ``tokenizer.json``, ``model.safetensors``
  (the weights to use) and optionally ``meta.json`` (step, source).
* **run directory** ``runs/NAME/``: ``config.yaml``, ``tokenizer.json`` and
  ``checkpoints/step_XXXXXXXX/`` folders, each with ``model.safetensors``, ``ema.safetensors``,
  ``trainer.pt`` (optimizer, RNG and data position) and ``meta.json`` (written last, so a folder
  without it is incomplete and ignored). A checkpoint folder is written under a temporary name
  and renamed into place, so a crash mid-save leaves the previous one intact.

Loading is strict: every expected tensor must be present with its shape, or a SeddError names the
missing, unexpected and mis-shaped keys (``rotary_emb.inv_freq`` may be absent: it is recomputed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import Config, config_from_dict, yaml_load
from .errors import SeddError
from .graph import Graph, get_graph
from .model import SEDD
from .noise import Noise, get_noise
from .runtime import atomic_write_bytes, atomic_write_text, pick_device
from .tokenizers import Tokenizer, load_tokenizer

__all__ = [
    "Pretrained",
    "build_components",
    "save_weights",
    "load_weights",
    "load_state_strict",
    "save_model_dir",
    "list_checkpoints",
    "latest_checkpoint",
    "newest_run",
    "load_pretrained",
    "read_config",
]

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
META_FILE = "meta.json"
TRAINER_FILE = "trainer.pt"
OPTIONAL_KEYS = frozenset({"rotary_emb.inv_freq"})
_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class Pretrained:
    """A loaded model with everything needed to use it. ``model(x, sigma)`` -> log-score."""

    model: SEDD
    graph: Graph
    noise: Noise
    tokenizer: Tokenizer
    config: Config
    source: str
    step: int | None = None
    weights: str = "model"  # which weights were loaded: ema | model
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def graph_dim(config: Config, vocab_size: int) -> int:
    return vocab_size + 1 if config.graph.type == "absorb" else vocab_size


def build_components(config: Config, vocab_size: int | None = None) -> tuple[SEDD, Graph, Noise]:
    """A fresh model, its graph and noise schedule for `config` (vocab from config if None)."""
    V = vocab_size if vocab_size is not None else config.model.vocab_size
    if V is None:
        raise SeddError("model.vocab_size is not set: pass the tokenizer's vocabulary size")
    graph = get_graph(config.graph, V)
    return SEDD(config.model, graph.dim), graph, get_noise(config.noise)


def save_weights(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    """Write tensors as safetensors atomically (contiguous CPU copies, no shared storage)."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file (or a weights-only torch pickle for .bin/.pth/.pt)."""
    path = Path(path)
    if not path.is_file():
        raise SeddError(f"weights file {str(path)!r} not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise SeddError(f"cannot read {str(path)!r}: {str(exc).splitlines()[0]}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or corrupt file
        raise SeddError(
            f"refusing to load {str(path)!r}: it is not a plain tensor checkpoint "
            f"({str(exc).splitlines()[0][:120]})"
        ) from None
    if not isinstance(obj, dict):
        raise SeddError(f"{str(path)!r} does not hold a state dict")
    return obj


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, or raise naming every missing, unexpected and mis-shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k not in OPTIONAL_KEYS]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {list(state[k].shape)} (expected {list(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or misshaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")
                parts.append(f"{label}: {shown}")
        raise SeddError(f"weights in {source} do not fit the model: " + "; ".join(parts))
    filled = {k: state.get(k, expected[k]) for k in expected}
    model.load_state_dict(filled, strict=True)


def save_model_dir(
    directory: str | Path,
    state: dict[str, torch.Tensor],
    config: Config,
    tokenizer: Tokenizer,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a model folder (config.yaml, tokenizer.json, model.safetensors, meta.json)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / CONFIG_FILE, config.to_yaml())
    tokenizer.save(directory)
    save_weights(directory / WEIGHTS_FILE, state)
    atomic_write_text(directory / META_FILE, json.dumps(meta or {}, indent=2))
    return directory


def read_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise SeddError(f"{str(path)!r} not found")
    data = yaml_load(path.read_text()) or {}
    return config_from_dict(data)


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


def _is_checkpoint_dir(path: Path) -> bool:
    return (path / META_FILE).is_file() and ((path / EMA_FILE).is_file() or (path / WEIGHTS_FILE).is_file())


def load_pretrained(source: str | Path | None = None, device: str | torch.device = "auto", *, weights: str = "ema") -> Pretrained:
    """Load a model from a run directory, a checkpoint folder or a model folder.

    `source` None means the newest run under ``runs/``. `weights` chooses the EMA weights (the
    default, as the reference samples with them) or the raw ``model`` weights of a checkpoint.
    The model is returned in eval mode on `device`.
    """
    path = newest_run() if source is None else Path(source)
    if not path.exists():
        raise SeddError(f"model {str(source)!r} not found: pass a run directory, checkpoint or model folder")
    run_dir: Path
    ckpt: Path
    if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file() and not (path / "checkpoints").is_dir():
        run_dir, ckpt = path, path  # a model folder
    elif _is_checkpoint_dir(path):
        run_dir, ckpt = path.parent.parent, path
    elif (path / CONFIG_FILE).is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise SeddError(f"run {str(path)!r} has no complete checkpoint yet")
        run_dir, ckpt = path, latest
    else:
        raise SeddError(f"{str(path)!r} is not a sedd run, checkpoint or model folder (no config.yaml)")

    config = read_config(run_dir / CONFIG_FILE)
    tokenizer = load_tokenizer(run_dir)
    meta = json.loads((ckpt / META_FILE).read_text()) if (ckpt / META_FILE).is_file() else {}
    which = "ema" if weights == "ema" and (ckpt / EMA_FILE).is_file() else "model"
    state = load_weights(ckpt / (EMA_FILE if which == "ema" else WEIGHTS_FILE))
    model, graph, noise = build_components(config, tokenizer.vocab_size)
    load_state_strict(model, state, str(ckpt))
    dev = pick_device(device) if isinstance(device, str) else device
    model.to(dev).eval()
    return Pretrained(
        model=model,
        graph=graph,
        noise=noise,
        tokenizer=tokenizer,
        config=config,
        source=str(path),
        step=meta.get("step"),
        weights=which,
        meta=meta,
    )
