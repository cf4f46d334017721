"""What a dashboard logger is: the `Logger` protocol, the scalar names it logs, the missing-extra line.

A logger receives exactly what the loop writes to ``metrics.jsonl`` (the same rows), the periodic
samples, and the resolved config once at the start. Each row becomes scalars named by `TAGS`:

    training rows   loss, loss_per_token, lr, grad_norm, tokens_per_s  ->  train/<key>
    validation rows val_loss                                             ->  val/loss

at the row's global ``step``. ``elapsed`` is not logged: both dashboards keep their own wall time
(TensorBoard's relative axis, W&B's ``_runtime``). A key outside `TAGS` is logged under its own
name. Loggers are used by rank 0 only, through `fanout.LoggerSet`, which turns their failures into
one line (or a stop, with ``train.logger_required``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

# metrics.jsonl key -> dashboard scalar name
TAGS: dict[str, str] = {
    "loss": "train/loss",
    "loss_per_token": "train/loss_per_token",
    "lr": "train/lr",
    "grad_norm": "train/grad_norm",
    "tokens_per_s": "train/tokens_per_s",
    "val_loss": "val/loss",
}
NOT_LOGGED = {"step", "elapsed"}


class Logger(Protocol):
    """A dashboard beside metrics.jsonl. `name` is its ``train.loggers`` name; `extra` the pip
    extra that installs it; `module` the import that needs the extra."""

    name: str
    extra: str
    module: str

    def start(self, config: dict[str, Any], run_dir: Path, resumed_step: int | None) -> None:
        """Open the dashboard run: `config` (the resolved settings) as hyper-parameters, the run
        directory path; `resumed_step` (the checkpoint's step; 0 for a run started again in place)
        continues the same dashboard run, None starts a new one."""

    def scalars(self, step: int, row: dict[str, Any]) -> None:
        """One metrics.jsonl row, at global step `step`."""

    def samples(self, step: int, texts: list[str]) -> None:
        """The periodic samples drawn at `step`."""

    def finish(self, ok: bool = True) -> None:
        """Flush and close (`ok` False: the run stopped on an error)."""


def scalars_of(row: dict[str, Any]) -> dict[str, float]:
    """The dashboard scalars of one metrics.jsonl row: ``{tag: value}`` (see `TAGS`)."""
    return {TAGS.get(k, k): float(v) for k, v in row.items() if k not in NOT_LOGGED}


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"section.key": value}``; lists become comma-joined strings and None
    the string "none" (TensorBoard's hyper-parameters take numbers, strings and booleans)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        elif isinstance(value, (list, tuple)):
            out[f"{prefix}{key}"] = ",".join(str(v) for v in value)
        else:
            out[f"{prefix}{key}"] = "none" if value is None else value
    return out


def missing_extra(logger: Logger) -> str | None:
    """None when `logger.module` imports, else the one line naming the pip command."""
    try:
        importlib.import_module(logger.module)
    except ImportError:
        return (
            f"the {logger.name} logger needs the {logger.extra} package: "
            f'pip install -e ".[{logger.extra}]" (or pip install {logger.extra})'
        )
    return None
