"""Deprecated import path, kept for one release: use `sedd_cli.checkpoints`."""

from .checkpoints import *  # noqa: F401,F403
from .checkpoints import __all__  # noqa: F401
