"""The processes of a run: torchrun/DDP when ``WORLD_SIZE > 1``, no-ops otherwise.

Process r of W owns rows [r B/W, (r+1) B/W) of every global batch of B rows, as `accum`
contiguous micro-batches; the gradients are summed with one flat all-reduce per step (gloo on
CPU, nccl on CUDA). Only rank 0 writes files. A SIGINT/SIGTERM sets the stop flag, whose votes
all processes share at the step's one host sync, so that every process stops at the same step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

import torch

from ..errors import SeddError
from ..runtime import dist_info


class Dist:
    """torch.distributed when launched by torchrun, no-ops otherwise."""

    def __init__(self, device_kind: str):
        self.rank, self.local_rank, self.world = dist_info()
        self.owned = False
        self.device = torch.device("cpu")  # where collective tensors live (cuda for nccl)
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
                self.owned = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def agree(self, error: SeddError | None) -> None:
        """Collective check: raise on every rank when any rank failed (a rank's own message first)."""
        if self.world > 1:
            flag = self.all_reduce_sum(torch.tensor([1.0 if error else 0.0], device=self.device))
            if error is not None:
                raise error
            if flag.item() > 0:
                raise SeddError("another training process failed; see rank 0's message")
        elif error is not None:
            raise error

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.barrier()
            dist.destroy_process_group()


def all_reduce_grads(params: list[torch.nn.Parameter], dist: Dist) -> None:
    """Sum the gradients of all processes with one flat all-reduce (missing grads count as 0)."""
    if dist.world <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # [sum of numels]
    dist.all_reduce_sum(flat)
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i : i + n].view_as(p).clone()
        i += n


def processes(nproc: int, world: int) -> int:
    """How many processes will train: torchrun's ``WORLD_SIZE`` (`world`) when launched by it,
    else the requested ``--nproc`` (at least 1)."""
    if nproc < 1:
        raise SeddError(f"--nproc must be at least 1, got {nproc}")
    return nproc if world == 1 else world


def check_batch_split(batch: int, world: int, accum: int) -> None:
    """The global batch must split evenly into `world` processes x `accum` micro-batches."""
    if batch % (world * accum):
        raise SeddError(
            f"train.batch_size {batch} is not divisible by processes x accum = {world} x {accum}: "
            f"choose a batch size that is a multiple of {world * accum}"
        )


def micro_rows(batch: int, world: int, accum: int, rank: int) -> list[slice]:
    """Rows of the global batch this process computes, as `accum` contiguous micro-batches.

    Process r owns rows [r B/W, (r+1) B/W); the union over processes is the whole batch."""
    check_batch_split(batch, world, accum)
    micro = batch // (world * accum)
    start = rank * micro * accum
    return [slice(start + k * micro, start + (k + 1) * micro) for k in range(accum)]


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes the current step, checkpoints and returns."""

    def __init__(self):
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
