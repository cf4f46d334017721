"""Samples files: the text files ``sedd sample --out`` writes, read back as a list of samples."""

from __future__ import annotations

import re
from pathlib import Path

from ..config import read_text_file
from ..errors import SeddError

__all__ = ["read_samples"]

_SEPARATOR = re.compile(r"^\s*={3,}\s*$")


def read_samples(path: str | Path) -> list[str]:
    """Samples from a text file written by ``sedd sample --out``.

    If the file has separator lines made only of ``=`` (three or more), the samples are the
    blocks between them (newlines inside kept, outer blank lines stripped); otherwise one sample
    per non-empty line. ``.jsonl``/``.json`` files: one JSON object per line with a "text" field."""
    path = Path(path)
    if not path.is_file():
        raise SeddError(f"samples file {str(path)!r} not found")
    text = read_text_file(path)
    out = _json_samples(path, text) if path.suffix in (".jsonl", ".json") else _text_samples(text)
    if not out:
        raise SeddError(f"samples file {str(path)!r} holds no samples")
    return out


def _json_samples(path: Path, text: str) -> list[str]:
    """One JSON object per non-empty line: its "text" field (or the object as a string)."""
    import json

    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise SeddError(f"{path}:{n}: not JSON") from None
            out.append(obj["text"] if isinstance(obj, dict) and "text" in obj else str(obj))
    return out


def _text_samples(text: str) -> list[str]:
    """The blocks between ``===`` separator lines (outer blank lines stripped), or one sample per
    non-empty line when there is no separator."""
    lines = text.splitlines()
    if not any(_SEPARATOR.match(line) for line in lines):
        return [line for line in lines if line.strip()]
    out, cur = [], []
    for line in lines:
        if _SEPARATOR.match(line):
            out.append("\n".join(cur).strip("\n"))
            cur = []
        else:
            cur.append(line)
    out.append("\n".join(cur).strip("\n"))
    return [s for s in out if s.strip()]
