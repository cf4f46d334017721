"""What training reports: `TrainEvent` (progress, to ``on_step``) and `TrainResult` (the end).

Library code never prints: the CLI renders these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainEvent:
    """Progress report. `kind`: start | step | eval | sample | checkpoint | warning | end.

    ``step`` events come after every optimizer step; ``logged`` is True on the steps whose line
    was written to metrics.jsonl (every ``train.log_every`` steps and the last). ``warning``
    events carry one line in `message` (a dashboard logger that failed; the run goes on).
    """

    kind: str
    step: int
    max_steps: int
    loss: float | None = None  # nats per sequence, batch mean
    loss_per_token: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    elapsed: float = 0.0  # seconds of training in this run (all sessions)
    val_loss: float | None = None
    path: str | None = None
    samples: list[str] = field(default_factory=list)
    logged: bool = False
    message: str = ""


@dataclass
class TrainResult:
    """What a finished (or stopped) training run produced."""

    run_dir: str
    steps: int  # optimizer steps done in all (the step of the last checkpoint)
    loss: float | None  # last step's training loss, nats per sequence
    loss_per_token: float | None
    val_loss: float | None  # EMA-weights validation loss at the end, nats per sequence
    tokens_per_s: float  # over this session's steps
    elapsed: float  # seconds of training in this session
    checkpoint: str | None
    stopped_reason: str  # max_steps | max_time | interrupted
    resumed_from: int | None = None  # step of the checkpoint this session started from
    world_size: int = 1
    loggers: list[str] = field(default_factory=list)  # dashboards that logged to the end

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
