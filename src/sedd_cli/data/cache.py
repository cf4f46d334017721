"""The token-block cache: its root, its keys, crash-safe writes, and reading an entry back.

Tokenized blocks are cached under ``$SEDD_CACHE_DIR/data`` (default ``~/.cache/sedd/data``), keyed
by a sha1 of everything that changes them (source identity, split, tokenizer, layout, length, ...),
stored as ``uint16`` when the vocabulary fits, written atomically. An entry is ``KEY.npy`` (the
rows), ``KEY.weights.npy`` (per-row weights, when any) and ``KEY.json`` (counts), the JSON written
last so that it marks the entry complete. A cached hub dataset loads without the network.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, DataConfig
from ..tokenizers import Tokenizer
from .blocks import TokenBlocks
from .sources import resolve_source

__all__ = ["cache_root", "cache_key", "storage_dtype", "fsync_replace", "write_npy", "load_cached"]

_CACHE_VERSION = 1
_IN_MEMORY_MAX = 1 << 28  # token arrays above this many ids stay memory-mapped (2 GiB as int64)


def cache_root(cfg: DataConfig | None = None) -> Path:
    """``data.cache_dir``, else ``$SEDD_CACHE_DIR``, else ``~/.cache/sedd``."""
    if cfg is not None and cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    env = os.environ.get("SEDD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sedd"


def storage_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def _source_identity(cfg: DataConfig) -> dict[str, Any]:
    source = resolve_source(cfg.name)
    ident: dict[str, Any] = {"kind": source.kind, "name": source.name}
    if source.path is not None:
        st = source.path.stat()
        ident.update(path=str(source.path), size=st.st_size, mtime_ns=st.st_mtime_ns)
    if source.kind == "hub":
        ident.update(hub_id=source.hub_id, config=source.hub_config, revision=source.revision)
    return ident


def cache_key(cfg: Config, tokenizer: Tokenizer, split: str, detokenize: bool, max_blocks: int | None) -> str:
    """sha1 of everything that changes the blocks (a local file by path, size and mtime)."""
    d = cfg.data
    material = {
        "version": _CACHE_VERSION,
        "source": _source_identity(d),
        "split": split,
        "tokenizer": tokenizer.to_dict(),
        "layout": d.layout,
        "length": cfg.model.length,
        "lowercase": d.lowercase,
        "detokenize": detokenize,
        "valid_fraction": d.valid_fraction,
        "weighting": d.weighting,
        "document": d.document,
        "text_field": d.text_field,
        "max_blocks": max_blocks,
    }
    return hashlib.sha1(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def fsync_replace(tmp: Path, final: Path) -> None:
    """Flush `tmp` to disk, then rename it to `final` (atomic on one file system)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def write_npy(path: Path, array: np.ndarray) -> None:
    """`array` as a .npy file at `path`, written under a temporary name and renamed into place."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        fsync_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_cached(stem: Path) -> TokenBlocks | None:
    """The entry `stem` (``KEY`` without suffix) as `TokenBlocks`; None when it is absent or
    damaged (then it is rebuilt). Arrays above `_IN_MEMORY_MAX` ids stay memory-mapped."""
    meta_path = stem.with_suffix(".json")
    tokens_path = stem.with_suffix(".npy")
    if not (meta_path.is_file() and tokens_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        array = np.load(tokens_path, mmap_mode="c", allow_pickle=False)
        weights = None
        if meta.get("weights"):
            weights = torch.from_numpy(np.load(stem.with_suffix(".weights.npy"), allow_pickle=False))
    except (OSError, ValueError, json.JSONDecodeError):
        return None  # a damaged cache entry is rebuilt
    if array.size <= _IN_MEMORY_MAX:
        tokens, mapped = torch.from_numpy(np.asarray(array, dtype=np.int64)), None
    else:
        tokens, mapped = torch.from_numpy(array), array
    return TokenBlocks(
        tokens=tokens,
        n_tokens=int(meta["n_tokens"]),
        n_documents=int(meta["n_documents"]),
        pad_id=meta["pad_id"],
        layout=meta["layout"],
        weights=weights,
        n_truncated=int(meta.get("n_truncated", 0)),
        _array=mapped,
    )
