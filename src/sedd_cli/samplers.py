"""Deprecated import path, kept for one release: use `sedd_cli.sampling` (docs/design.md)."""

import warnings

from .sampling import *  # noqa: F401,F403
from .sampling import __all__  # noqa: F401

warnings.warn(
    "sedd_cli.samplers is deprecated and will be removed in the next release: import from sedd_cli.sampling",
    DeprecationWarning,
    stacklevel=2,
)
