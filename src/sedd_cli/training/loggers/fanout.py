"""The run's loggers together (`LoggerSet`), and what happens when one fails.

Only rank 0 has loggers; the other processes hold an empty set, whose calls do nothing. A logger
that fails (its extra not installed, no network, a full disk, any exception inside a call) is
one ``warning`` TrainEvent naming it and the reason, and is dropped: the run goes on with
metrics.jsonl, which is always written. With ``train.logger_required`` (``--logger-required``)
the failure is a `LoggerFailed` instead, which stops the run (the loop adds which checkpoint is
kept); a missing extra is then refused by `check_available` before the run folder is made.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import SeddError
from ..events import TrainEvent
from .base import Logger, missing_extra
from .registry import make_logger


class LoggerFailed(SeddError):
    """A logger failed and ``train.logger_required`` is set."""


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def check_available(names: list[str], required: bool) -> None:
    """With `required`, a logger whose extra is not installed is a SeddError naming the pip
    command (before any work); without it, the failure comes later as one warning line."""
    if not required:
        return
    for name in _unique(names):
        why = missing_extra(make_logger(name))
        if why is not None:
            raise SeddError(f"{why} (--logger-required)")


def _reason(exc: BaseException) -> str:
    """One line: the exception's type and the first line of its message (at most 200 chars)."""
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class LoggerSet:
    """The loggers `names` (rank 0; `main` False: none). Warnings go to `emit` as TrainEvents."""

    def __init__(
        self, names: list[str], *, required: bool, main: bool, emit: Callable[[TrainEvent], None],
        max_steps: int,
    ):  # fmt: skip
        self.loggers: list[Logger] = [make_logger(n) for n in _unique(names)] if main else []
        self.required = required
        self.emit = emit
        self.max_steps = max_steps
        self.closed: list[str] = []  # the loggers that ran to the end and closed cleanly

    def _fail(self, logger: Logger, step: int, why: str) -> None:
        """Drop `logger` (closed, errors ignored); the line `why` as a warning, or LoggerFailed
        if required."""
        self.loggers.remove(logger)
        with contextlib.suppress(Exception):
            logger.finish(ok=False)
        if self.required:
            raise LoggerFailed(f"{why}; --logger-required stops the run")
        self.emit(
            TrainEvent("warning", step, self.max_steps, message=f"{why}; training goes on with metrics.jsonl")
        )

    def _each(self, step: int, call: Callable[[Logger], Any]) -> None:
        for logger in list(self.loggers):
            try:
                call(logger)
            except Exception as exc:
                self._fail(logger, step, f"the {logger.name} logger failed at step {step} ({_reason(exc)})")

    def start(self, config: dict[str, Any], run_dir: Path, step: int, resumed: bool) -> None:
        """Open every logger (a missing extra is a failure naming the pip command)."""
        for logger in list(self.loggers):
            why = missing_extra(logger)
            if why is not None:
                self._fail(logger, step, why)
        self._each(step, lambda lg: lg.start(config, run_dir, step if resumed else None))

    def scalars(self, step: int, row: dict[str, Any]) -> None:
        self._each(step, lambda lg: lg.scalars(step, row))

    def samples(self, step: int, texts: list[str]) -> None:
        self._each(step, lambda lg: lg.samples(step, texts))

    def finish(self, step: int, ok: bool = True) -> None:
        """Close every logger; a failure to close is a warning (never a stop: the run is over)."""
        for logger in list(self.loggers):
            self.loggers.remove(logger)
            try:
                logger.finish(ok)
                self.closed.append(logger.name)
            except Exception as exc:
                if ok:
                    message = f"the {logger.name} logger failed to close ({_reason(exc)})"
                    self.emit(TrainEvent("warning", step, self.max_steps, message=message))
