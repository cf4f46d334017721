"""Device choice, seeding, distributed-process facts and crash-safe file writes shared by every
command.

Every file sedd writes goes through `atomic_write_bytes` / `atomic_torch_save` (written to a
temporary file beside the target, fsynced, renamed over it) or `append_bytes` (metrics lines): a
failed write (disk full, quota, permissions, name too long; also torch's zip-writer RuntimeError)
becomes a `WriteError`, one line naming the path and, for a full disk, the free space needed and
left; the temporary file is removed and the old file, if any, is untouched. All bytes pass through
`_write_all`, the single place the fault-injection tests replace (tests/test_faults_train.py).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
from collections.abc import Callable
from typing import Any

import torch

from .errors import SeddError

__all__ = [
    "pick_device",
    "seed_everything",
    "dist_info",
    "WriteError",
    "write_error",
    "free_bytes",
    "human_bytes",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_torch_save",
    "append_bytes",
    "FileLock",
]


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


# --- crash-safe writes ----------------------------------------------------------------------------


class WriteError(SeddError):
    """A file could not be written. `path`, `need` (bytes the write needed, when known) and `free`
    (bytes free on that file system, when known) say where and how much."""

    def __init__(self, message: str, path: str, need: int | None = None, free: int | None = None):
        super().__init__(message)
        self.path = path
        self.need = need
        self.free = free


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KB`` (powers of 1000, as `df -H`)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system holding `path` (its nearest existing parent); None if unknown."""
    probe = os.path.abspath(os.fspath(path))
    while True:
        try:
            return shutil.disk_usage(probe).free
        except OSError:
            parent = os.path.dirname(probe)
            if parent == probe:
                return None
            probe = parent


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


def write_error(path: str | os.PathLike, exc: BaseException, need: int | None = None) -> WriteError:
    """The one-line `WriteError` for a failed write of `path` (`need`: bytes it needed)."""
    path = os.fspath(path)
    code = getattr(exc, "errno", None)
    free = free_bytes(path)
    if code in _DISK_FULL or code is None:  # None: torch's zip writer, which hides the errno
        space = f"{human_bytes(free)} free there" if free is not None else "free space unknown"
        needs = f"needs about {human_bytes(need)}, " if need is not None else ""
        if code is None:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            reason = f"the write failed ({first})"
        else:
            reason = "the disk is full"
        return WriteError(
            f"cannot write {path!r}: {reason} ({needs}{space}); free some space and retry", path, need, free
        )
    if code == errno.ENAMETOOLONG:
        return WriteError(
            f"cannot write {path!r}: a name in the path is too long for the file system; "
            "choose a shorter one",
            path,
            need,
            free,
        )
    return WriteError(f"cannot write {path!r}: {getattr(exc, 'strerror', None) or exc}", path, need, free)


def _write_all(f: Any, data: bytes | memoryview) -> None:
    """Write all of `data` to the open binary file `f` (looping over short writes).

    Every byte sedd writes into a file passes through here; the fault-injection tests replace this
    function (monkeypatch ``sedd_cli.runtime._write_all``) to make chosen writes fail with ENOSPC.
    """
    view = memoryview(data).cast("B")
    while len(view):
        n = f.write(view)
        if n is None:  # a buffered writer wrote it all
            return
        view = view[n:]


def _fsync_dir(folder: str) -> None:
    """Make a rename in `folder` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: str | os.PathLike, fill: Callable[[Any], None], need: int | None) -> None:
    """Write `path` via ``path.tmp<pid>`` beside it: ``fill(file)``, fsync, rename; a failure
    removes the temporary file, leaves `path` as it was and raises `WriteError`."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path))
    except WriteError:
        raise
    except OSError as exc:
        raise write_error(path, exc, need) from None
    finally:
        if os.path.lexists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write `data` to `path` atomically (temp file, fsync, rename); return its sha256 (hex).
    A failure raises `WriteError` (one line: the path, the bytes needed and free)."""
    digest = hashlib.sha256(data).hexdigest()
    _atomic(path, lambda f: _write_all(f, data), len(data))
    return digest


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """`atomic_write_bytes` of the UTF-8 encoding of `text`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors held in nested dicts/lists/tuples (an estimate of a torch.save size)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


class _HashingSink:
    """A write-only file for torch.save: bytes go through `_write_all` into `f` and a sha256; the
    first OSError is kept, since torch's zip writer turns it into a bare RuntimeError."""

    def __init__(self, f: Any):
        self.f = f
        self.hash = hashlib.sha256()
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            _write_all(self.f, data)
        except OSError as exc:
            self.error = exc
            raise
        self.hash.update(data)
        return len(memoryview(data).cast("B"))

    def flush(self) -> None:
        self.f.flush()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> str:
    """``torch.save(obj)`` into `path` atomically; return the file's sha256 (hex). A failed write,
    including the RuntimeError torch's zip writer raises for one, is a `WriteError`."""
    need = _tensor_bytes(obj) + 4096
    digest: list[str] = []

    def fill(f: Any) -> None:
        sink = _HashingSink(f)
        try:
            torch.save(obj, sink)
        except RuntimeError as exc:
            if sink.error is not None:
                raise sink.error from None
            raise write_error(path, exc, need) from None
        digest.append(sink.hash.hexdigest())

    _atomic(path, fill, need)
    return digest[0]


def append_bytes(f: Any, path: str | os.PathLike, data: bytes) -> None:
    """Append `data` to the open unbuffered binary file `f` (opened on `path` with mode ``ab``).
    On failure the file is cut back to its length before the write (no half line is left) and a
    `WriteError` is raised."""
    try:
        start = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise write_error(path, exc, len(data)) from None
    try:
        _write_all(f, data)
        f.flush()
    except OSError as exc:
        try:
            os.ftruncate(f.fileno(), start)
        except OSError:
            pass
        raise write_error(path, exc, len(data)) from None


# --- an advisory lock ---------------------------------------------------------------------------


class FileLock:
    """An exclusive advisory lock (``fcntl.flock``) on `path`, held until `release`.

    The lock belongs to the open file, so the kernel drops it when the holder exits, however it
    exits (a crash or kill -9 included): a lock file left behind is stale by construction and the
    next `acquire` takes it. The file holds the holder's pid (informative only). `acquire` returns
    None when it got the lock, else the holder's pid as the file says it (0 if unknown)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> int | None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            return None
        for _ in range(20):  # retried only when the file was replaced under us
            existed = os.path.exists(self.path)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                return holder
            except OSError:  # a file system without flock (some network mounts): go on unlocked
                os.close(fd)
                return None
            try:  # the file we locked must still be the one at the path
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
            self.created = not existed
            return None
        return 0  # pragma: no cover

    def release(self, remove: bool = False) -> None:
        """Drop the lock; empty the file (or remove it with `remove`)."""
        if self.fd is None:
            return
        try:
            if remove:
                os.unlink(self.path)
            else:
                os.ftruncate(self.fd, 0)
        except OSError:
            pass
        os.close(self.fd)  # closing releases the flock
        self.fd = None


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else 0
    except OSError:
        return 0
