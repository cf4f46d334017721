"""Deprecated import path, kept for one release: use `sedd_cli.checkpoints` (docs/design.md)."""

import warnings

from .checkpoints import *  # noqa: F401,F403
from .checkpoints import __all__  # noqa: F401

warnings.warn(
    "sedd_cli.checkpoint is deprecated and will be removed in the next release: "
    "import from sedd_cli.checkpoints",
    DeprecationWarning,
    stacklevel=2,
)
