"""Deprecated import path, kept for one release: use `sedd_cli.evaluation` (docs/design.md)."""

import warnings

from .evaluation import *  # noqa: F401,F403
from .evaluation import __all__  # noqa: F401

warnings.warn(
    "sedd_cli.evaluate is deprecated and will be removed in the next release: "
    "import from sedd_cli.evaluation",
    DeprecationWarning,
    stacklevel=2,
)
