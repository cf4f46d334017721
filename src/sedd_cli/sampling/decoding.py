"""Ids back to text: whole samples (`decode_samples`) and the given / filled pieces of an infill."""

from __future__ import annotations

from typing import Any

import torch


def decode_samples(ids: torch.Tensor, tokenizer: Any, *, pad_layout: bool, keep_eos: bool) -> list[str]:
    """Texts of the rows of `ids`. Pad-layout models: pads (and, unless `keep_eos`, everything from
    the first end-of-text id) are dropped. Other models: unless `keep_eos`, leading end-of-text ids
    are skipped and the text is cut at the next one. Remaining masks (``--no-denoise``) show as
    ``[MASK]``."""
    out = []
    eos = tokenizer.eos_id
    for row in ids.tolist():
        if not keep_eos and eos is not None:
            if not pad_layout:
                while row and row[0] == eos:
                    row = row[1:]
            if eos in row:
                row = row[: row.index(eos)]
        out.append(tokenizer.decode(row, mask="[MASK]", skip_special=pad_layout))
    return out


def decode_piece(tok: Any, ids: list[int], pad_layout: bool, keep_eos: bool) -> str:
    """A span of an infilled sample: end-of-text ids are dropped (not cut: the given text after
    them must stay) unless `keep_eos`; pads are dropped for pad-layout models."""
    if not keep_eos and tok.eos_id is not None:
        ids = [i for i in ids if i != tok.eos_id]
    return tok.decode(ids, mask="[MASK]", skip_special=pad_layout or not keep_eos)


def infill_segments(
    ids: torch.Tensor,
    tok: Any,
    spans: list[tuple[int, int]],
    *,
    pad_layout: bool,
    keep_eos: bool,
    row_spans: list[list[tuple[int, int]]] | None = None,
) -> list[list[tuple[str, bool]]]:
    """Each row of `ids` ``[N, length]`` as ``(text, filled)`` pieces: the given text between the
    filled `spans` (`row_spans[k]` for row k when the spans differ per row), and the spans
    themselves (an empty span, a ``[MASK:0-B]`` gap filled with nothing, is an empty piece)."""
    length = ids.shape[1]
    segments = []
    for k, row in enumerate(ids.tolist()):
        segs = []
        pos = 0
        for a, b in spans if row_spans is None else row_spans[k]:
            if a > pos:
                segs.append((decode_piece(tok, row[pos:a], pad_layout, keep_eos), False))
            segs.append((decode_piece(tok, row[a:b], pad_layout, keep_eos), True))
            pos = b
        if length > pos:
            segs.append((decode_piece(tok, row[pos:length], pad_layout, keep_eos), False))
        segments.append(segs)
    return segments
