"""What is given before sampling: infill templates, prefix/suffix slots, and the pad tail.

A ``[MASK:A-B]`` gap (between A and B tokens) is B free slots recorded as a `Gap`; after sampling
the pads inside it are removed (`sampling/gaps.py`), so its fill has 0 to B tokens, at least A by
rejection (`api.infill`). It needs a model trained with ``data.insert_pads``, whose tokenizer
has a pad of its own (`check_variable_gaps`).

A row of slots holds a token id where the text is given and None where the sampler fills in;
`fixed_ids` turns it into the projector's ``[run_length]`` ids (-1 = free). Pad-layout models
(names) always run at their trained length, the positions after the asked length fixed to the
pad id, as in training.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SeddError
from ..pad_law import GapLayout, PadLaw
from .checks import MAX_SAMPLES, check_infill_request, check_length

_MASK_RE = re.compile(r"\[MASK(?::(\d+)(?:-(\d+))?)?\]")
_MASK_LIKE_RE = re.compile(r"\[\s*mask\b[^\[\]]{0,40}\]?", re.IGNORECASE)  # anything that tries to be one


@dataclass(frozen=True)
class Gap:
    """A ``[MASK:A-B]`` gap: the row's positions ``[start, end)`` (B of them), filled with at least
    `least` (A) tokens once its pads are removed; `text` is the mask as written."""

    start: int
    end: int
    least: int
    text: str


def parse_template(template: str, tokenizer: Any, max_tokens: int | None = None) -> list[int | None]:
    """Token ids of a template, None at masked positions (`parse_gaps` also returns the gaps).

    ``[MASK]`` is one masked token, ``[MASK:5]`` five, ``[MASK:2-5]`` five slots of which 2 to 5
    keep a token; the text between masks is tokenized piece by piece and placed exactly (so with
    GPT-2, "The [MASK] sat" keeps " sat" as its own tokens). Anything else that looks like a mask
    (``[MASK:x]``, ``[MASK:]``, ``[mask]``, an unclosed ``[MASK:3``) is refused before
    tokenizing, whatever the tokenizer. `max_tokens` (the model's length) bounds the masked
    positions; without it, at most `MAX_SAMPLES` per mask.
    """
    return parse_gaps(template, tokenizer, max_tokens)[0]


def parse_gaps(
    template: str, tokenizer: Any, max_tokens: int | None = None
) -> tuple[list[int | None], list[Gap]]:
    """(`parse_template`'s row, the ``[MASK:A-B]`` gaps in it)."""
    limit = MAX_SAMPLES if max_tokens is None else max_tokens
    out: list[int | None] = []
    gaps: list[Gap] = []
    pos = 0
    n_masks = 0
    for m in _MASK_RE.finditer(template):
        if m.start() > pos:
            out.extend(_encode_piece(template[pos : m.start()], tokenizer))
        least, k, variable = _mask_count(m, limit)
        n_masks += k
        if n_masks > limit:
            what = "the model's length" if max_tokens is not None else "the limit"
            raise SeddError(
                f"{m.group(0)[:40]} in the template: more masked tokens than {what} {limit:,}; ask for fewer"
            )
        if variable:
            gaps.append(Gap(len(out), len(out) + k, least, m.group(0)))
        out.extend([None] * k)
        pos = m.end()
    if pos < len(template):
        out.extend(_encode_piece(template[pos:], tokenizer))
    if n_masks == 0:
        raise SeddError(
            "the template has no [MASK]: mark the positions to fill with [MASK] (one token) or "
            "[MASK:N] (N tokens), e.g. 'The [MASK:5] sat on the [MASK].'"
        )
    return out, gaps


def _mask_count(m: re.Match, limit: int, where: str = "in the template") -> tuple[int, int, bool]:
    """(least tokens, slots, variable) of one mask: ``[MASK]`` (1, 1), ``[MASK:N]`` (N, N),
    ``[MASK:A-B]`` (A, B, True); a count with too many digits reads as limit + 1."""

    def count(digits: str) -> int:
        return limit + 1 if len(digits.lstrip("0")) > len(str(limit)) else int(digits)

    first, second = m.group(1), m.group(2)
    if first is None:
        return 1, 1, False
    if second is None:
        k = count(first)
        if k < 1:
            raise SeddError(f"{m.group(0)} {where}: a mask needs a count of at least 1")
        return k, k, False
    least, most = count(first), count(second)
    if most < 1:
        raise SeddError(f"{m.group(0)} {where}: a gap of A to B tokens needs B of at least 1")
    if least > most:
        raise SeddError(
            f"{m.group(0)[:40]} {where}: A is more than B in [MASK:A-B]; write the fewest tokens first"
        )
    return least, most, True


def _encode_piece(text: str, tokenizer: Any) -> list[int]:
    """The ids of the text between two masks; a malformed mask in it is refused first."""
    bad = _MASK_LIKE_RE.search(text)
    if bad is not None:
        raise SeddError(
            f"malformed mask {bad.group(0)!r} in the template: write [MASK] for one token, "
            "[MASK:N] for N tokens (N a whole number, at least 1) or [MASK:A-B] for A to B tokens"
        )
    return tokenizer.encode(text)


def is_pad_layout(pre: Any) -> bool:
    return getattr(pre.config.data, "layout", "pack") == "pad" and pre.tokenizer.pad_id is not None


def spans(free: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True in `free` as (start, end) pairs."""
    out, start = [], None
    for i, f in enumerate(list(free) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i))
            start = None
    return out


def slots(
    pre: Any,
    template: str | None,
    prefix: str | None,
    suffix: str | None,
    length: int | None,
    gap: str | None = None,
) -> tuple[list[int | None], int, list[Gap]]:
    """(the row's token ids with None at the positions to fill, the row length, the template's
    ``[MASK:A-B]`` gaps) for a template, a prefix/suffix pair, or a prefix, a gap of `gap` ("A-B")
    tokens and the suffix right after it; checked against the model's length."""
    check_infill_request(template, prefix, suffix, gap)
    if template is not None:
        return _with_tail(pre, *parse_gaps(template, pre.tokenizer, pre.config.model.length), length)
    if gap is not None:
        return _gap_slots(pre, prefix, suffix, gap, length)
    return (*_prefix_suffix_slots(pre, prefix, suffix, length), [])


def parse_gap(spec: str, limit: int) -> tuple[int, int]:
    """(A, B) of ``--gap A-B``, with the template's rules for ``[MASK:A-B]``."""
    m = _MASK_RE.fullmatch(f"[MASK:{spec.strip()}]")
    if m is None or m.group(2) is None:
        raise SeddError(f"--gap {spec!r}: write the gap as A-B (between A and B tokens), e.g. --gap 0-6")
    least, most, _ = _mask_count(m, limit, where="(--gap)")
    if most > limit:
        raise SeddError(f"--gap {spec}: more slots than the model's length {limit:,}; ask for fewer")
    return least, most


def _gap_slots(
    pre: Any, prefix: str | None, suffix: str | None, gap: str, length: int | None
) -> tuple[list[int | None], int, list[Gap]]:
    least, most = parse_gap(gap, pre.config.model.length)
    pre_ids = pre.tokenizer.encode(prefix or "")
    suf_ids = pre.tokenizer.encode(suffix or "")
    row = [*pre_ids, *([None] * most), *suf_ids]
    return _with_tail(pre, row, [Gap(len(pre_ids), len(pre_ids) + most, least, f"--gap {gap}")], length)


def gap_layout(row: Sequence[int | None], gaps: Sequence[Gap], pad_id: int | None) -> GapLayout:
    """The template as `pad_law` sees it: real slots (given tokens and fixed ``[MASK:N]`` slots),
    pad slots (the tail) and the variable gaps."""
    return GapLayout(
        tuple(s is None or s != pad_id for s in row), tuple((g.start, g.end, g.least) for g in gaps)
    )


def has_own_pad(pre: Any) -> bool:
    """Whether the model's tokenizer has a pad id distinct from end-of-text (char models; GPT-2
    models trained with pad insertion, which get id 50257), so a slot can be left empty."""
    tok = pre.tokenizer
    return tok.pad_id is not None and tok.pad_id != tok.eos_id


def check_variable_gaps(pre: Any, gaps: list[Gap], force: bool) -> None:
    """A ``[MASK:A-B]`` gap needs a model with a pad token of its own trained with pad insertion;
    `force` tries anyway (without a pad id nothing is removed: every fill has B tokens)."""
    if not gaps or force:
        return
    what = gaps[0].text
    if not has_own_pad(pre):
        raise SeddError(
            f"{what} needs a model trained with data.insert_pads, which gives it a pad token; this "
            "model has none (published SEDD / RADD checkpoints and GPT-2 models trained without it "
            "cannot leave a slot empty): use [MASK:N], or --force to try anyway"
        )
    if getattr(pre.config.data, "insert_pads", 0.0) <= 0:
        raise SeddError(
            f"{what} needs a model trained with pad insertion (this one has data.insert_pads 0): "
            "train with --set data.insert_pads=0.5, or pass --force to try anyway"
        )


GAP_LAWS = ("data", "model")


def gap_law_for(pre: Any, gaps: list[Gap], gap_law: str | None) -> PadLaw | None:
    """The pad-insertion law to divide out of the fills (`gap_law` "data", the default for a model
    trained with ``data.insert_pads``), or None for the sampler's own law ("model", the default
    otherwise, e.g. a model tried with --force)."""
    trained = has_own_pad(pre) and getattr(pre.config.data, "insert_pads", 0.0) > 0
    if gap_law is not None and gap_law not in GAP_LAWS:
        raise SeddError(f"--gap-law {gap_law!r}: choose data (the data's law) or model (the sampler's own)")
    if not gaps or gap_law == "model" or (gap_law is None and not trained):
        return None
    if not trained:
        raise SeddError(
            "--gap-law data needs a model trained with data.insert_pads (its law is what is divided "
            "out): use --gap-law model, or train with --set data.insert_pads=0.5"
        )
    data = pre.config.data
    pack = getattr(data, "layout", "pack") != "pad"
    return PadLaw(float(data.insert_pads), int(data.insert_pads_max), int(pre.config.model.length), pack)


def _with_tail(
    pre: Any, row: list[int | None], gaps: list[Gap], length: int | None
) -> tuple[list[int | None], int, list[Gap]]:
    """The template's row made `length` long (default: its own length, or the model's for a
    pad-layout model, whose tail is pads as in training)."""
    max_len = pre.config.model.length
    if length is not None:
        check_length(length, max_len)
    if length is None:
        length = len(row) if not is_pad_layout(pre) else max_len
    if len(row) > length:
        raise SeddError(
            f"the template is {len(row)} tokens long, more than the length {length}: "
            "shorten it or raise --length"
        )
    tail_id = pre.tokenizer.pad_id if is_pad_layout(pre) else None
    return row + [tail_id] * (length - len(row)), length, gaps


def _prefix_suffix_slots(
    pre: Any, prefix: str | None, suffix: str | None, length: int | None
) -> tuple[list[int | None], int]:
    max_len = pre.config.model.length
    length = max_len if length is None else length
    check_length(length, max_len)
    pre_ids = pre.tokenizer.encode(prefix or "")
    suf_ids = pre.tokenizer.encode(suffix or "")
    if len(pre_ids) + len(suf_ids) > length:
        raise SeddError(
            f"prefix + suffix are {len(pre_ids) + len(suf_ids)} tokens, more than the length {length}: "
            "shorten them or raise --length"
        )
    row = [*pre_ids, *([None] * (length - len(pre_ids) - len(suf_ids))), *suf_ids]
    if all(s is not None for s in row):
        raise SeddError("prefix + suffix fill the whole length: nothing is left to infill; raise --length")
    return row, length


def pad_tail(pre: Any, length: int) -> tuple[int, torch.Tensor | None]:
    """(run length, fixed ids or None): pad-layout models always run at their trained length with
    the positions from `length` on fixed to the pad id, as in training."""
    L = pre.config.model.length
    if is_pad_layout(pre) and length < L:
        fixed = torch.full((L,), -1, dtype=torch.long)
        fixed[length:] = pre.tokenizer.pad_id
        return L, fixed
    return length, None


def fixed_ids(pre: Any, row: list[int | None], length: int) -> tuple[int, torch.Tensor]:
    """(run length, the projector's ids ``[run_length]``, -1 = free) for a row of slots."""
    run_length, tail = pad_tail(pre, length)
    fixed = torch.full((run_length,), -1, dtype=torch.long)
    fixed[:length] = torch.tensor([-1 if s is None else s for s in row], dtype=torch.long)
    if tail is not None:
        fixed[length:] = tail[length:]
    return run_length, fixed
