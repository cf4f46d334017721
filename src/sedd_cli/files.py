"""File permissions for files written through `tempfile.mkstemp` (no torch).

`mkstemp` creates its file 0600, whatever the umask; a file renamed into place from it would be
private while every other file of a run is 0644 (0666 less a umask of 022). `open_mode_chmod`
gives such a file the mode a plain ``open(path, "w")`` would have given it.
"""

from __future__ import annotations

import os

__all__ = ["open_mode", "open_mode_chmod"]


def open_mode() -> int:
    """0666 less the process umask: the mode ``open(path, "w")`` creates files with."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def open_mode_chmod(fd: int) -> None:
    """Give the open file `fd` the mode of a file made by ``open(path, "w")``."""
    os.fchmod(fd, open_mode())
