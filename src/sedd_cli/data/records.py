"""The documents of one split of a source: `load_texts`, and the tokenizer built from them.

`iter_records` is the one reader behind both and behind `prepare_data`: it resolves the source,
reads its batches (babynames, a local file, or the hub), keeps the requested side of the hash
split where the source has no split of its own (`in_validation`), and applies the source's
detokenizer when asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain

import numpy as np

from ..config import Config, DataConfig
from ..errors import SeddError
from ..tokenizers import Tokenizer, get_tokenizer
from .detokenizers import DETOKENIZERS
from .files import babynames_records, file_batches
from .hub import hub_batches
from .sources import Source, check_split, in_validation, resolve_source

__all__ = ["iter_records", "empty_split_error", "load_texts", "build_tokenizer"]


def _babynames_split(
    source: Source, cfg: DataConfig, hold_out: bool
) -> Iterator[tuple[list[str], np.ndarray | None]]:
    """The names on the requested side of the split, with their births when weighting by count."""
    names, births = babynames_records(source, cfg)
    keep = np.fromiter((in_validation(s, cfg.valid_fraction) == hold_out for s in names), bool, len(names))
    kept = [s for s, k in zip(names, keep, strict=True) if k]
    yield kept, (births[keep] if cfg.weighting == "count" else None)


def iter_records(
    cfg: DataConfig, split: str, detokenize: bool = False
) -> Iterator[tuple[list[str], np.ndarray | None]]:
    """Batches of (documents, weights or None) of one split, detokenized when asked."""
    check_split(split)
    source = resolve_source(cfg.name)
    if cfg.weighting == "count" and source.kind != "babynames":
        raise SeddError("data.weighting=count applies to babynames only: set data.weighting=distinct")
    detok = DETOKENIZERS.get(source.detokenizer or "") if detokenize else None
    hold_out = split != "train"
    if source.kind == "babynames":
        yield from _babynames_split(source, cfg, hold_out)
        return
    if source.kind == "file":
        batches, hash_split = file_batches(source, cfg), True
    else:
        batches, hash_split = hub_batches(source, cfg, split)
    for batch in batches:
        if hash_split:
            batch = [
                t
                for t in batch
                if in_validation(t.lower() if cfg.lowercase else t, cfg.valid_fraction) == hold_out
            ]
        if detok is not None:
            batch = [detok(t) for t in batch]
        if batch:
            yield batch, None


def empty_split_error(cfg: DataConfig, split: str) -> SeddError:
    """The error for a split without text (a hint to raise valid_fraction where it applies)."""
    hint = (
        f"; raise data.valid_fraction (now {cfg.valid_fraction})"
        if split != "train" and resolve_source(cfg.name).splits is None
        else ""
    )
    return SeddError(f"the {split} split of dataset {cfg.name!r} holds no text{hint}")


def load_texts(cfg: DataConfig, split: str, detokenize: bool = False) -> list[str]:
    """All documents of `split` ("train" | "validation" | "test") of the source `cfg.name`.

    `detokenize` applies the source's detokenizer (wikitext, ptb, lm1b, lambada; the perplexity
    protocols use it). An empty split is a SeddError.
    """
    texts: list[str] = []
    for batch, _ in iter_records(cfg, split, detokenize):
        texts.extend(batch)
    if not texts:
        raise empty_split_error(cfg, split)
    return texts


def build_tokenizer(cfg: Config) -> Tokenizer:
    """The tokenizer `cfg.data.tokenizer` names. ``char`` builds its vocabulary from the TRAIN split
    (with `cfg.data.lowercase` and `cfg.data.unknown`); gpt2 and byte need no data. A pack-layout
    gpt2 model trained with pad insertion gets a pad id after the real tokens (50257)."""
    d = cfg.data
    if d.tokenizer != "char":
        pad = d.layout == "pack" and d.insert_pads > 0  # gpt2 then gets a pad id of its own
        return get_tokenizer(d.tokenizer, lowercase=d.lowercase, unknown=d.unknown, gpt2_pad=pad)
    texts = chain.from_iterable(batch for batch, _ in iter_records(d, "train"))
    return get_tokenizer("char", texts, lowercase=d.lowercase, unknown=d.unknown)
