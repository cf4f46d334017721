"""Reading text columns of a `datasets` table, quietly, and its errors as one line.

Local json/csv/parquet files and hub corpora are both read through the ``datasets`` library;
this module owns what the two share: silencing the library (a library never prints), reading a
column in batches through pyarrow, checking that the text column exists, and getting the one
line that explains an error the library wrapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import SeddError

__all__ = ["CHUNK", "column_batches", "text_column", "root_cause", "first_line", "quiet_datasets"]

CHUNK = 4096  # documents tokenized per batch


def first_line(exc: BaseException) -> str:
    """The first non-blank line of `exc`'s message (its type name when there is none)."""
    lines = [s for s in str(exc).splitlines() if s.strip()]
    return lines[0] if lines else type(exc).__name__


def root_cause(exc: BaseException) -> BaseException:
    """The innermost cause of `exc` (datasets wraps parse errors in DatasetGenerationError)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def column_batches(ds: Any, column: str, size: int = CHUNK) -> Iterator[list[Any]]:
    """Python lists of `size` values of `column`, read through pyarrow (never the slow Column)."""
    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    for chunk in ds.data.column(column).chunks:
        for start in range(0, len(chunk), size):
            yield chunk.slice(start, size).to_pylist()


def text_column(ds: Any, field_name: str, where: str) -> str:
    """`field_name` when `ds` has that column, else a SeddError listing the columns it has."""
    if field_name not in ds.column_names:
        raise SeddError(
            f"{where} has no column {field_name!r}; its columns are {', '.join(ds.column_names)}: "
            "set data.text_field to the one holding the text"
        )
    return field_name


def quiet_datasets() -> int:
    """Silence the datasets library's own logging and bars (a library never prints); return the
    previous verbosity."""
    import datasets

    previous = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    datasets.disable_progress_bars()
    return previous
