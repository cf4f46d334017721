"""The opt-in glibc allocator setting: applied with the values its docstring states, by the CLI only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")

# In a fresh process: tune (or not), then grow the heap by 2.6 GiB of *untouched* memory (three
# blocks under the 1 GiB mmap threshold; malloc writes only chunk headers, so no page is faulted
# in) and free it. With the trim threshold at 2 GiB - 1 the 2.6 GiB free top chunk exceeds it and
# glibc gives it back (the arena shrinks); with trimming switched off (the old bug: 1 << 31 passed
# as a C int became INT_MIN, read as a huge size_t) it stays. Blocks of 64 MiB land in the heap
# (no mmap) only when the mmap threshold was raised.
_PROBE = r"""
import ctypes, sys
from sedd_cli.allocator import tune_cpu_allocator
tuned = tune_cpu_allocator() if sys.argv[1] == "tune" else False
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
small = libc.malloc(64 << 20)
in_heap = libc.mallinfo2().hblkhd < (64 << 20)
libc.free(small)
blocks = [libc.malloc(900 << 20) for _ in range(3)]
grown = libc.mallinfo2().arena
for p in reversed(blocks):
    libc.free(p)
kept = libc.mallinfo2().arena
print(tuned, in_heap, grown >> 20, kept >> 20)
"""


def _probe(mode: str, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != "SEDD_MALLOC"}
    base.update(env)
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=base, check=True
    )
    return run.stdout.split()


def test_tuned_allocator_keeps_large_blocks_in_the_heap_and_still_trims_above_2_gib():
    tuned, in_heap, grown, kept = _probe("tune")
    assert (tuned, in_heap) == ("True", "True")
    assert int(grown) >= 2700  # the three blocks came from the heap (arena), not from mmap
    assert int(kept) < 1024, "the 2.6 GiB free top chunk was not trimmed: the trim threshold is not 2 GiB - 1"


def test_default_allocator_mmaps_large_blocks_and_opt_out_leaves_it_alone():
    assert _probe("plain")[:2] == ["False", "False"]
    assert _probe("tune", SEDD_MALLOC="default")[:2] == ["False", "False"]


def test_the_setting_is_applied_by_the_cli_not_by_importing_or_using_the_library():
    from sedd_cli.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

    assert max(MMAP_THRESHOLD, TRIM_THRESHOLD) <= 2**31 - 1  # mallopt takes a C int
    code = (
        "import sedd_cli.allocator as a, sedd_cli.checkpoints, sedd_cli.training, sedd_cli.evaluation, sys;"
        "print(a._TUNED);"
        "from sedd_cli.cli import main; sys.argv = ['sedd', 'tokenize', '--tokenizer', 'char', 'ab'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nprint(a._TUNED)"
    )
    env = {k: v for k, v in os.environ.items() if k != "SEDD_MALLOC"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    lines = run.stdout.strip().splitlines()
    assert lines[0] == "False" and lines[-1] == "True", run.stdout
