"""Which class a ``train.loggers`` name means. The names themselves are `config.LOGGERS` (the
config checks them without importing this package); `tests/test_loggers.py` checks both agree."""

from __future__ import annotations

from .base import Logger
from .tensorboard import TensorBoardLogger
from .wandb import WandbLogger

LOGGER_CLASSES: dict[str, type] = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger}


def make_logger(name: str) -> Logger:
    """A new, unstarted logger of kind `name` (a name `config.check_loggers` accepted)."""
    return LOGGER_CLASSES[name]()
