"""glibc's malloc thresholds for large CPU tensors: an opt-in, process-wide setting (no torch).

The ``sedd`` command line applies it at start-up; the library never does, because it changes the
allocator of the whole process. Library users opt in with ``sedd_cli.tune_cpu_allocator()``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["tune_cpu_allocator", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

# mallopt(int param, int value) takes a C int: both values must stay <= INT_MAX (2**31 - 1).
MMAP_THRESHOLD = 1 << 30  # 1 GiB: allocations below it come from the heap, not a fresh mmap
TRIM_THRESHOLD = (1 << 31) - 1  # 2 GiB - 1: free heap at the top is returned to the OS above it
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>

_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep large CPU buffers in the malloc heap instead of fresh mmaps (glibc only; idempotent).

    glibc serves every allocation above its mmap threshold (128 KiB, rising to at most 32 MiB as
    freed mmaps teach it) with a new mmap and unmaps it on free, so a tensor like the ``[N, V]``
    GPT-2 head output (100+ MB), made and freed every step, page-faults on every first touch
    (`benchmarks/cpu_kernels.py` measures it). Raising the mmap threshold to 1 GiB and the trim
    threshold to 2 GiB - 1 (``mallopt``) lets freed buffers be reused; free heap above 2 GiB at
    the top is still given back. Cost: the process keeps up to 2 GiB of its peak heap after the
    peak has passed. ``SEDD_MALLOC=default`` opts out. Returns True when the settings were
    applied (now or earlier).
    """
    global _TUNED
    if _TUNED:
        return True
    if os.environ.get("SEDD_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        ok = (
            mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        )
    except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
        return False
    _TUNED = ok
    return ok
