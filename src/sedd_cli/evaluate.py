"""Deprecated import path, kept for one release: use `sedd_cli.evaluation`."""

from .evaluation import *  # noqa: F401,F403
from .evaluation import __all__  # noqa: F401
