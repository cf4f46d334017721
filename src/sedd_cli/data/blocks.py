"""`TokenBlocks`: a split as rows of ``L`` token ids, and how one batch of documents becomes rows.

Two layouts (``L = model.length``):

- ``pack`` (the paper, sedd-spec §7.1): every document is tokenized and followed by the
  tokenizer's end-of-text id, all documents are concatenated, and the stream is cut into rows of
  ``L`` tokens; rows cross document boundaries. Only the global tail (fewer than ``L`` tokens) is
  dropped; the reference drops the tail of every 1000-document map batch instead.
- ``pad`` (names): one record per row, truncated to ``L`` ids (truncations are counted) and
  right-padded with the tokenizer's pad id. No end-of-text id is added: the pad run after a record
  tells the model where it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import torch

from ..tokenizers import Tokenizer

__all__ = ["TokenBlocks", "encode_batch", "pack_ids", "pad_rows"]


@dataclass
class TokenBlocks:
    """A split as rows of token ids.

    `tokens` is ``[N, L]``: int64 in memory for ordinary sizes; above 2**28 ids it stays a
    memory-mapped uint16/int32 array, so always read rows through `batch`, which returns int64.
    `n_tokens` counts real tokens (pads excluded; eos included), `n_documents` the records used,
    `n_truncated` the records cut to ``L`` (pad layout). `weights` (``[N]`` float64, or None) are
    per-row sampling weights: babynames with ``data.weighting=count`` gives each distinct name its
    total number of births; a training loop then draws rows with ``torch.multinomial(weights, B,
    replacement=True)`` instead of uniformly.
    """

    tokens: torch.Tensor
    n_tokens: int
    n_documents: int
    pad_id: int | None
    layout: str
    weights: torch.Tensor | None = None
    n_truncated: int = 0
    _array: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def length(self) -> int:
        """L, the row length."""
        return int(self.tokens.shape[1])

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows `indices` as an int64 tensor ``[B, L]`` (on the CPU)."""
        if self._array is not None:
            idx = np.asarray(indices.detach().cpu().numpy(), dtype=np.int64)
            return torch.from_numpy(np.asarray(self._array[idx], dtype=np.int64))
        return self.tokens[indices.to(self.tokens.device)].long()


def encode_batch(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """The ids of each text (GPT-2: tiktoken's batch encoder, which skips special tokens)."""
    encoding = getattr(tokenizer, "encoding", None) if tokenizer.kind == "gpt2" else None
    if encoding is not None and hasattr(encoding, "encode_ordinary_batch"):
        return encoding.encode_ordinary_batch(texts)
    return [tokenizer.encode(t) for t in texts]


def pack_ids(ids: list[list[int]], eos: int, dtype: np.dtype) -> np.ndarray:
    """Layout ``pack``: the ids of each document followed by `eos`, concatenated (flat)."""
    total = sum(len(x) for x in ids) + len(ids)
    return np.fromiter(chain.from_iterable(chain(x, (eos,)) for x in ids), dtype, total)


def pad_rows(ids: list[list[int]], length: int, pad_id: int, dtype: np.dtype) -> tuple[np.ndarray, int, int]:
    """Layout ``pad``: one row ``[L]`` per document, cut to `length` and right-padded with
    `pad_id`. Returns (rows ``[len(ids), L]``, real ids kept, documents truncated)."""
    rows = np.full((len(ids), length), pad_id, dtype=dtype)
    n_real = n_truncated = 0
    for r, x in enumerate(ids):
        if len(x) > length:
            n_truncated += 1
            x = x[:length]
        rows[r, : len(x)] = x
        n_real += len(x)
    return rows, n_real, n_truncated
