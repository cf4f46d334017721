"""`locate`: find the config, tokenizer and tensors of a MODEL, whatever its format.

A hub id (``owner/name`` that is not a local path) goes to `hub`; a local path is offered to each
registered format in rank order (`formats.FORMATS`: ours, published, reference run), the first
that recognises it wins. ``None`` means the newest run under ``runs/``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SeddError
from .formats import FORMATS, Located
from .hub import is_hub_id, locate_hub
from .ours import newest_run
from .weights import check_weights

__all__ = ["locate"]


def _described() -> str:
    """The registered formats as one phrase: "A, B or C"."""
    names = [f.described for f in FORMATS]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


def _local_path(source: str | Path | None) -> Path:
    """The path `source` names (the newest run when None); a SeddError when it does not exist."""
    if source is None:
        return newest_run()
    path = Path(source).expanduser()
    if not path.exists():
        raise SeddError(
            f"model {str(source)!r} not found: pass a run directory, checkpoint, model folder "
            "or a hub id such as louaaron/sedd-small"
        )
    return path


def locate(source: str | Path | None = None, *, weights: str = "ema") -> Located:
    """Find the config, tokenizer and tensors of `source`, whatever its format (see module doc).

    `source` None means the newest run under ``runs/``; an ``owner/name`` string that is not a
    local path is a Hugging Face hub id.
    """
    check_weights(weights)
    if source is not None and is_hub_id(source):
        found = locate_hub(str(source), weights)
        found.source = str(source)
        return found
    path = _local_path(source)
    for fmt in FORMATS:
        found = fmt.locator(path, weights)
        if found is not None:
            found.source = str(source) if source is not None else str(path)
            return found
    raise SeddError(f"{str(path)!r} is not a model: expected {_described()}")
