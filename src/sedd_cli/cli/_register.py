"""Imports the command modules, which register their commands on the app."""

from . import eval_cmd, model_cmd, sample_cmd, teach, train_cmd  # noqa: F401
