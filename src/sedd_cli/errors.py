"""Error types a user can cause. Imports nothing heavy.

A `SeddError` carries a one-line message that says what went wrong and how to fix it. The CLI
prints it on stderr and exits with status 1 (no traceback unless `SEDD_DEBUG=1`). Library
functions raise it; they never print or exit.
"""

from __future__ import annotations


class SeddError(Exception):
    """A problem the user can fix (bad input, missing file, mismatched checkpoint)."""


class ConfigError(SeddError):
    """A bad preset name, configuration key or value."""
