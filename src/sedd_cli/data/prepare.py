"""`prepare_data`: one split of a source -> `TokenBlocks` ``[N, L]``, through the cache.

The steps, each a function below: check the request; return the cached entry when there is one;
otherwise stream the tokenized documents to a raw file (`_tokenize_to`), count the rows that fit
(`_row_count`), copy them into the entry's ``.npy`` and write its weights and its JSON last
(`_write_entry`), then read the entry back as the result. Layouts: `blocks`; the cache: `cache`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import SeddError
from ..tokenizers import Tokenizer
from .blocks import TokenBlocks, encode_batch, pack_ids, pad_rows
from .cache import cache_key, cache_root, fsync_replace, load_cached, storage_dtype, write_npy
from .records import empty_split_error, iter_records
from .sources import check_split

__all__ = ["prepare_data", "check_max_blocks"]

OnStep = Callable[[dict[str, Any]], None]


@dataclass
class _Stream:
    """What `_tokenize_to` wrote: ids in all, documents, truncated documents, real ids."""

    n_ids: int = 0
    n_docs: int = 0
    n_truncated: int = 0
    n_real: int = 0
    weight_parts: list[np.ndarray] = field(default_factory=list)


def check_max_blocks(max_blocks: int | None, name: str = "max_blocks") -> None:
    """A SeddError unless `max_blocks` (rows to read at most; `name` is the option) is None or >= 1."""
    if max_blocks is not None and max_blocks < 1:
        raise SeddError(f"{name} must be at least 1 block, got {max_blocks}")


def _check_request(cfg: Config, tokenizer: Tokenizer, split: str, max_blocks: int | None) -> int:
    """The row length ``L``, once split, length, layout, `max_blocks` and weighting are usable."""
    check_split(split)
    d = cfg.validate().data  # model.length >= 2, data.layout in (pack, pad): the config's own checks
    check_max_blocks(max_blocks)
    if d.layout == "pack" and tokenizer.eos_id is None:
        raise SeddError(f"the {tokenizer.kind} tokenizer has no end-of-text id, which data.layout=pack needs")
    if d.layout == "pad" and tokenizer.pad_id is None:
        raise SeddError(f"the {tokenizer.kind} tokenizer has no pad id, which data.layout=pad needs")
    if d.weighting == "count" and d.layout != "pad":
        raise SeddError("data.weighting=count weights one record per row: it needs data.layout=pad")
    return int(cfg.model.length)


def _tokenize_to(
    raw: Path,
    cfg: Config,
    tokenizer: Tokenizer,
    split: str,
    detokenize: bool,
    max_blocks: int | None,
    dtype: np.dtype,
    on_step: OnStep | None,
) -> _Stream:
    """Write the ids of the split's documents to `raw` (flat, `dtype`) in the layout's order,
    stopping once `max_blocks` rows' worth of ids exist."""
    d, length, s = cfg.data, int(cfg.model.length), _Stream()
    limit = None if max_blocks is None else max_blocks * length  # ids to collect
    with open(raw, "wb") as out:
        for texts, weights in iter_records(d, split, detokenize):
            if limit is not None and d.layout == "pad":
                texts = texts[: max_blocks - s.n_docs]  # type: ignore[operator]
                weights = None if weights is None else weights[: len(texts)]
            ids = encode_batch(tokenizer, texts)
            if d.layout == "pack":
                flat = pack_ids(ids, tokenizer.eos_id, dtype)  # type: ignore[arg-type]
                s.n_real += flat.size
            else:
                rows, n_real, n_truncated = pad_rows(ids, length, tokenizer.pad_id, dtype)  # type: ignore[arg-type]
                s.n_real += n_real
                s.n_truncated += n_truncated
                flat = rows.reshape(-1)
                if weights is not None:
                    s.weight_parts.append(np.asarray(weights, dtype=np.float64))
            out.write(flat.tobytes())
            s.n_ids += flat.size
            s.n_docs += len(ids)
            if on_step is not None:
                on_step({"event": "tokenize", "documents": s.n_docs, "tokens": s.n_ids})
            if limit is not None and s.n_ids >= limit:
                break
    return s


def _row_count(s: _Stream, cfg: Config, split: str, max_blocks: int | None) -> int:
    """Rows of ``L`` ids in the stream (at most `max_blocks`); a SeddError when there are none."""
    d, length = cfg.data, int(cfg.model.length)
    if s.n_docs == 0:
        raise empty_split_error(d, split)
    n_rows = s.n_ids // length
    if max_blocks is not None:
        n_rows = min(n_rows, max_blocks)
    if n_rows == 0:
        raise SeddError(
            f"the {split} split of {d.name!r} holds {s.n_ids} tokens, fewer than one block of "
            f"model.length={length}: use more text or a shorter model.length"
        )
    return n_rows


def _write_rows(raw: Path, stem: Path, dtype: np.dtype, n_ids: int, n_rows: int, length: int) -> None:
    """Copy the first ``n_rows * L`` ids of `raw` into ``stem.npy`` as ``[n_rows, L]``."""
    stream = np.memmap(raw, dtype=dtype, mode="r", shape=(n_ids,))
    tmp_npy = stem.with_name(f"{stem.name}.npy.tmp{os.getpid()}")
    block = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=dtype, shape=(n_rows, length))
    step = max(1, (1 << 24) // length)  # copy ~16M ids at a time
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        block[start:stop] = stream[start * length : stop * length].reshape(-1, length)
    block.flush()
    del block, stream
    fsync_replace(tmp_npy, stem.with_suffix(".npy"))


def _write_entry(
    raw: Path, stem: Path, s: _Stream, n_rows: int, cfg: Config, tokenizer: Tokenizer, split: str
) -> None:
    """The cache entry: rows, weights (when any), and the JSON of counts, written last."""
    d, length = cfg.data, int(cfg.model.length)
    dtype = storage_dtype(tokenizer.vocab_size)
    n_real = n_rows * length if d.layout == "pack" else s.n_real
    _write_rows(raw, stem, dtype, s.n_ids, n_rows, length)
    has_weights = bool(s.weight_parts)
    if has_weights:
        write_npy(stem.with_suffix(".weights.npy"), np.concatenate(s.weight_parts)[:n_rows])
    meta = {
        "n_tokens": int(n_real),
        "n_documents": int(s.n_docs),
        "n_truncated": int(s.n_truncated),
        "pad_id": tokenizer.pad_id if d.layout == "pad" else None,
        "layout": d.layout,
        "weights": has_weights,
        "source": d.name,
        "split": split,
        "length": length,
    }
    meta_tmp = stem.with_name(f"{stem.name}.json.tmp{os.getpid()}")
    meta_tmp.write_text(json.dumps(meta))
    fsync_replace(meta_tmp, stem.with_suffix(".json"))  # written last: marks the entry complete


def prepare_data(
    cfg: Config,
    tokenizer: Tokenizer,
    split: str,
    *,
    detokenize: bool = False,
    max_blocks: int | None = None,
    on_step: OnStep | None = None,
) -> TokenBlocks:
    """Tokenize `split` of `cfg.data.name` into rows of ``L = cfg.model.length`` ids.

    Layout ``pack``: ids of each document + eos, concatenated, cut into ``floor(total / L)`` rows.
    Layout ``pad``: one record per row, cut to L ids, right-padded with ``tokenizer.pad_id``.
    `max_blocks` stops reading once that many rows exist. The result is cached (see `cache`);
    `on_step` receives ``{"event": "tokenize", "documents", "tokens"}`` per batch and
    ``{"event": "cached", "path"}`` on a cache hit.
    """
    _check_request(cfg, tokenizer, split, max_blocks)
    folder = cache_root(cfg.data) / "data"
    stem = folder / cache_key(cfg, tokenizer, split, detokenize, max_blocks)
    cached = load_cached(stem)
    if cached is not None:
        if on_step is not None:
            on_step({"event": "cached", "path": str(stem.with_suffix(".npy"))})
        return cached

    folder.mkdir(parents=True, exist_ok=True)
    dtype = storage_dtype(tokenizer.vocab_size)
    raw = stem.with_name(f"{stem.name}.raw.tmp{os.getpid()}")
    try:
        stream = _tokenize_to(raw, cfg, tokenizer, split, detokenize, max_blocks, dtype, on_step)
        n_rows = _row_count(stream, cfg, split, max_blocks)
        _write_entry(raw, stem, stream, n_rows, cfg, tokenizer, split)
    finally:
        for p in folder.glob(f"{stem.name}.*tmp{os.getpid()}"):
            p.unlink(missing_ok=True)
    result = load_cached(stem)
    assert result is not None
    return result
