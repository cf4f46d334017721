"""Deprecated import path, kept for one release: use `sedd_cli.training` (docs/design.md)."""

import warnings

from .training import *  # noqa: F401,F403
from .training import __all__  # noqa: F401

warnings.warn(
    "sedd_cli.trainer is deprecated and will be removed in the next release: import from sedd_cli.training",
    DeprecationWarning,
    stacklevel=2,
)
