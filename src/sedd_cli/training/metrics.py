"""``metrics.jsonl``: one JSON record per line, each with an integer ``step``.

Training lines hold ``loss`` (nats per sequence), ``loss_per_token``, ``lr``, ``grad_norm``,
``tokens_per_s`` and ``elapsed``; validation lines hold ``val_loss`` (EMA weights). A line is
appended whole or not at all; on resume the lines after the checkpoint are dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import SeddError
from ..runtime import append_bytes, atomic_write_text
from .run_dir import METRICS_FILE, read_text


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl as dicts (each has an integer ``step``).

    A last line cut short (no final newline and not a whole JSON record: a crash or a full disk in
    the middle of a write) is ignored; any other line that is not a record is a SeddError naming
    the file and the line."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    text = read_text(path, "the metrics file")
    lines = text.split("\n")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            step = row.get("step")
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ValueError(f"step {step!r} is not a whole number")
        except ValueError as exc:
            if n == len(lines):  # the unterminated last line: a write cut short
                break
            raise SeddError(
                f"the metrics file {str(path)!r} line {n} is not a metrics record ({str(exc)[:80]}): "
                "delete that line (metrics are not needed to resume) and retry"
            ) from None
        out.append(row)
    return out


def curves(rows: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """The run's curves from its metrics records: ``{"loss": (steps, values), "val_loss": (steps,
    values)}`` (training loss and validation loss, nats per sequence), each in file order."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for key in ("loss", "val_loss"):
        pts = [(m["step"], m[key]) for m in rows if isinstance(m.get(key), (int, float))]
        out[key] = ([p[0] for p in pts], [float(p[1]) for p in pts])
    return out


def write_metrics(f, path: Path, row: dict[str, Any]) -> None:
    """One JSON line appended to metrics.jsonl; a failed write leaves no half line behind."""
    if f is not None:
        append_bytes(f, path, (json.dumps(row) + "\n").encode("utf-8"))


def rewrite_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace metrics.jsonl by `rows` (atomically): on resume, the lines up to the checkpoint."""
    atomic_write_text(path, "".join(json.dumps(m) + "\n" for m in rows))
