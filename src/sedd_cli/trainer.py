"""Deprecated import path, kept for one release: use `sedd_cli.training`."""

from .training import *  # noqa: F401,F403
from .training import __all__  # noqa: F401
