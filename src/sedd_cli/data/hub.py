"""Datasets on the Hugging Face hub: loading one (offline rules first) and choosing its split.

The offline switches and the reachability probe are core `sedd_cli.hub`'s (one reader for
datasets and hub models): with ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, or a hub that does
not answer the short probe, loading fails at once with a one-line error instead of the hub
library's retries. A source without its own validation/test split (``hf:NAME`` with train only,
owt) is hash-split by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import hub as hub_probe
from ..config import DataConfig
from ..errors import SeddError
from .columns import column_batches, first_line, quiet_datasets, root_cause, text_column
from .sources import Source

__all__ = ["hub_batches"]


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


def _load_hub(source: Source, hub_split: str | None) -> Any:
    if hub_probe.offline_flag():
        raise _offline_error(source.name)
    if not hub_probe.reachable():
        raise _offline_error(source.name, f"the hub ({hub_probe.endpoint()}) does not answer")
    import datasets

    previous = quiet_datasets()
    try:
        return datasets.load_dataset(
            source.hub_id, source.hub_config, revision=source.revision, split=hub_split
        )
    except Exception as exc:
        if _is_connection_error(exc) or _is_connection_error(root_cause(exc)):
            raise _offline_error(source.name) from None
        raise SeddError(
            f"cannot load dataset {source.name!r} from the hub: {first_line(root_cause(exc))}"
        ) from None
    finally:
        datasets.logging.set_verbosity(previous)


def _pick_split(source: Source, split: str) -> tuple[Any, bool]:
    """(dataset, whether the caller must hash-split it) of `split` of a source without a split
    map: the split itself, validation <-> test standing in for each other, else train."""
    dd = _load_hub(source, None)
    names = list(dd.keys()) if hasattr(dd, "keys") else ["train"]
    if split in names:
        return dd[split], False
    if split == "validation" and "test" in names:
        return dd["test"], False
    if split == "test" and "validation" in names:
        return dd["validation"], False
    if "train" in names:
        return dd["train"], True
    raise SeddError(f"dataset {source.name!r} has splits {', '.join(names)}, none usable for {split}")


def hub_batches(source: Source, cfg: DataConfig, split: str) -> tuple[Iterator[list[str]], bool]:
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
        ds, hash_split = _pick_split(source, split)
    column = text_column(ds, source.text_field or cfg.text_field, f"dataset {source.name!r}")

    def gen() -> Iterator[list[str]]:
        for values in column_batches(ds, column):
            yield ["" if v is None else str(v) for v in values]

    return gen(), hash_split
