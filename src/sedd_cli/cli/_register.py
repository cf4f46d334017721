"""Imports the command modules, which register their commands on the app (in this order)."""

# isort: off
from . import teach  # tokenize, noise, cipher-demo, loss
from . import train_cmd  # train
from . import sample_cmd  # sample, infill
from . import eval_cmd  # perplexity
from . import harness_cmd  # lm-eval
from . import model_cmd  # info, convert

# isort: on

__all__ = ["teach", "train_cmd", "sample_cmd", "eval_cmd", "harness_cmd", "model_cmd"]
