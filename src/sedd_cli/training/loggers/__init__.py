"""Dashboards beside metrics.jsonl: TensorBoard and Weights & Biases (``train.loggers``).

* `base`         the `Logger` protocol, the scalar names (`TAGS`), the missing-extra line;
* `tensorboard`  event files in RUN/tensorboard/ (extra ``[tensorboard]``);
* `wandb`        a W&B run, online or offline, its id kept in RUN/wandb_id (extra ``[wandb]``);
* `registry`     name -> class;  `fanout`  `LoggerSet`: rank 0's loggers and their failures.

Neither extra is imported until a run asks for its logger.
"""

from .base import TAGS, Logger, scalars_of
from .fanout import LoggerFailed, LoggerSet, check_available
from .registry import LOGGER_CLASSES, make_logger

__all__ = [
    "TAGS",
    "Logger",
    "scalars_of",
    "LoggerFailed",
    "LoggerSet",
    "check_available",
    "LOGGER_CLASSES",
    "make_logger",
]
