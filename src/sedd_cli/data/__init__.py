"""Datasets -> token blocks (the data stage).

A *source* is where text comes from: a short name (``babynames``, the embedded default, or one of
the Hugging Face hub corpora of the paper), ``hf:NAME[:CONFIG]``, or a local file (``.txt``,
``.jsonl``, ``.json``, ``.csv``, ``.parquet``). `load_texts` reads one split of it as a list of
documents; `prepare_data` tokenizes a split into a `TokenBlocks` tensor ``[N, L]`` with
``L = model.length`` in one of two layouts, ``pack`` (the paper) or ``pad`` (names).

Modules, in the order data flows through them:

- `sources`: `Source`, `resolve_source`, `DATASETS`, and the hash split `in_validation`;
- `detokenizers`: the WikiText / PTB / lm1b / LAMBADA rule sets;
- `columns`, `files`, `hub`: reading local files (and the babynames parquet) and hub corpora;
- `records`: the documents of one split (`load_texts`) and the tokenizer built from them;
- `blocks`: `TokenBlocks` and the two layouts;
- `cache`: the cache root, its keys and crash-safe writes;
- `prepare`: `prepare_data`, the steps from documents to a cached entry.
"""

from __future__ import annotations

from .blocks import TokenBlocks
from .cache import cache_root
from .detokenizers import detokenize, lambada_detokenize, lm1b_detokenize, ptb_detokenize, wikitext_detokenize
from .prepare import check_max_blocks, prepare_data
from .records import build_tokenizer, load_texts
from .sources import DATASETS, FILE_FORMATS, SPLITS, Source, in_validation, resolve_source

__all__ = [
    "DATASETS",
    "SPLITS",
    "FILE_FORMATS",
    "Source",
    "TokenBlocks",
    "resolve_source",
    "load_texts",
    "build_tokenizer",
    "prepare_data",
    "detokenize",
    "wikitext_detokenize",
    "ptb_detokenize",
    "lm1b_detokenize",
    "lambada_detokenize",
    "cache_root",
    "in_validation",
    "check_max_blocks",
]
