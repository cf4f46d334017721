"""The TensorBoard logger: event files in ``RUN/tensorboard/`` (``tensorboard --logdir runs``).

Through ``torch.utils.tensorboard.SummaryWriter`` (extra ``[tensorboard]``). At the start it writes
the resolved config as hyper-parameters (the HParams tab, one ``section.key`` each, plus
``run_dir``) and as text (``config``, ``run_dir``); then every metrics row as scalars
(`base.TAGS`) and the periodic samples as text (``samples``). A resumed run writes to the same
folder with ``purge_step`` = the checkpoint's step + 1, so the points a crashed session logged
after its checkpoint are hidden and the curve goes on from the checkpoint without duplicates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .base import flat_config, scalars_of

LOG_DIR = "tensorboard"
FLUSH_SECS = 10  # how stale the dashboard may be (SummaryWriter's default is 120 s)


def _code_block(text: str) -> str:
    """`text` as a Markdown code block (TensorBoard renders text summaries as Markdown)."""
    return "\n".join("    " + line for line in text.split("\n"))


class TensorBoardLogger:
    name = "tensorboard"
    extra = "tensorboard"
    module = "torch.utils.tensorboard"

    def __init__(self) -> None:
        self.writer = None

    def start(self, config: dict[str, Any], run_dir: Path, resumed_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        purge = None if resumed_step is None else resumed_step + 1
        self.writer = SummaryWriter(log_dir=str(run_dir / LOG_DIR), purge_step=purge, flush_secs=FLUSH_SECS)
        step = resumed_step or 0
        params = {**flat_config(config), "run_dir": str(run_dir)}
        for summary in hparams(params, {"train/loss": 0.0, "val/loss": 0.0}):
            self.writer.file_writer.add_summary(summary, step)
        self.writer.add_text("run_dir", str(run_dir), step)
        self.writer.add_text("config", _code_block(yaml.safe_dump(config, sort_keys=False)), step)

    def scalars(self, step: int, row: dict[str, Any]) -> None:
        for tag, value in scalars_of(row).items():
            self.writer.add_scalar(tag, value, step)

    def samples(self, step: int, texts: list[str]) -> None:
        self.writer.add_text("samples", "\n\n".join(_code_block(t) for t in texts), step)

    def finish(self, ok: bool = True) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
