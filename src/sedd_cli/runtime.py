"""Device choice, seeding and distributed-process facts shared by every command."""

from __future__ import annotations

import os
import random
import sys

import torch

from .errors import SeddError

__all__ = [
    "tune_cpu_allocator",
    "pick_device",
    "seed_everything",
    "dist_info",
    "atomic_write_bytes",
    "atomic_write_text",
]


_MALLOC_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep large CPU buffers in the malloc heap instead of fresh mmaps (glibc only; idempotent).

    glibc serves every allocation above its mmap threshold (128 KiB, rising to at most 32 MiB as
    freed mmaps teach it) with a new mmap and unmaps it on free, so a tensor like the ``[N, V]``
    GPT-2 head output (100+ MB), made and freed every step, page-faults on every first touch
    (`benchmarks/cpu_kernels.py` measures it). Raising the mmap threshold to 1 GiB and the trim
    threshold to 2 GiB (``mallopt``) lets freed buffers be reused. Cost: the process keeps its
    peak heap after the peak has passed. ``SEDD_MALLOC=default`` opts out.
    Returns True when the settings were applied (now or earlier).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if os.environ.get("SEDD_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, 1 << 31) == 1
    except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
        return False
    _MALLOC_TUNED = ok
    return ok


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit device is a SeddError."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SeddError("--device cuda: no CUDA GPU is visible here; use --device cpu or auto")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise SeddError("--device mps: Apple MPS is not available here; use --device cpu or auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise SeddError(f"unknown device {name!r}: use auto, cpu, cuda or mps")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python and torch (all devices); return a CPU generator seeded with `seed`."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) when not launched."""
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    return rank, local_rank, world


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync and rename."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
