"""The Weights & Biases logger (extra ``[wandb]``); ``WANDB_MODE=offline`` works without a network.

Where the run goes, first found wins:

    project   train.wandb_project, $WANDB_PROJECT, "sedd"
    entity    train.wandb_entity, $WANDB_ENTITY, your default entity
    name      train.wandb_name, $WANDB_NAME, the run directory's name
    run id    RUN/wandb_id (written at the first start), $WANDB_RUN_ID, a new id

W&B's local files go to ``RUN/wandb/`` unless ``$WANDB_DIR`` says otherwise. The resolved config
(plus ``run_dir``) is the run's config; every metrics row is one ``log`` at its global step
(`base.TAGS`); the periodic samples are a table ``samples`` (columns step, sample). A resumed run
opens the same id with ``resume="allow"``, so the dashboard run goes on; W&B keeps the points it
already holds and drops points at steps it has passed (after a crash between checkpoints).
Console capture is off: W&B does not wrap sedd's stdout (the ``--json`` document) or stderr.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path
from typing import Any

from ...runtime import atomic_write_text
from .base import scalars_of

ID_FILE = "wandb_id"
_ID_CHARS = string.ascii_lowercase + string.digits  # W&B's own ids: 8 of these


def new_id() -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(8))


def run_id(run_dir: Path) -> str:
    """The W&B run id of `run_dir`: the one stored in RUN/wandb_id, else $WANDB_RUN_ID or a new
    one, stored (atomically) so that a resume continues the same W&B run."""
    path = run_dir / ID_FILE
    if path.is_file():
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return stored
    rid = os.environ.get("WANDB_RUN_ID") or new_id()
    atomic_write_text(path, rid + "\n")
    return rid


class WandbLogger:
    name = "wandb"
    extra = "wandb"
    module = "wandb"

    def __init__(self) -> None:
        self.run = None

    def start(self, config: dict[str, Any], run_dir: Path, resumed_step: int | None) -> None:
        import wandb

        tc = config.get("train", {})
        self.run = wandb.init(
            project=tc.get("wandb_project") or os.environ.get("WANDB_PROJECT") or "sedd",
            entity=tc.get("wandb_entity") or None,
            name=tc.get("wandb_name") or os.environ.get("WANDB_NAME") or run_dir.name,
            id=run_id(run_dir),
            resume="allow",
            dir=None if os.environ.get("WANDB_DIR") else str(run_dir),
            config={**config, "run_dir": str(run_dir)},
            settings=wandb.Settings(console="off"),
        )

    def scalars(self, step: int, row: dict[str, Any]) -> None:
        self.run.log(scalars_of(row), step=step)

    def samples(self, step: int, texts: list[str]) -> None:
        import wandb

        table = wandb.Table(columns=["step", "sample"], data=[[step, t] for t in texts])
        self.run.log({"samples": table}, step=step)

    def finish(self, ok: bool = True) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=0 if ok else 1)
