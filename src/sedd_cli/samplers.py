"""Deprecated import path, kept for one release: use `sedd_cli.sampling`."""

from .sampling import *  # noqa: F401,F403
from .sampling import __all__  # noqa: F401
