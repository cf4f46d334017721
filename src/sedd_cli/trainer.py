"""The training loop: AdamW, warm-up, clipping, EMA, exact resume, crash-safe checkpoints, DDP.

One optimizer step (sedd-spec §4.2), counted from 1 for the first update:

    lr(step)   = train.lr * min(step / train.warmup, 1)        (no decay; warmup 0 = constant)
    loss       = (1 / B) sum_{b < B} loss_b                      (nats per sequence, B = global batch)
    grad       = d loss / d theta, summed over `accum` micro-batches and all processes
    theta     <- AdamW(theta, clip(grad, train.grad_clip))
    ema       <- ema - (1 - d_n) (ema - theta),   d_n = min(train.ema, (1 + n) / (10 + n))

where loss_b is `score_entropy_loss` of sequence b and n counts EMA updates (incremented first).

Randomness is split so that a run is a pure function of (config, seed):

* data order: a permutation of the training rows per epoch, drawn from a generator seeded with
  (seed, epoch) (a seeded `torch.multinomial` draw when the data carries sampling weights); the
  position (epoch, offset) is saved in each checkpoint;
* the draws of t and of the corruption x_t use one dedicated CPU generator for the whole *global*
  batch, so every process draws the same numbers and keeps its own rows: a run on W processes
  computes the same per-sequence losses as one process on the same global batch;
* dropout uses torch's global generator (state saved too).

A run stopped at step N and resumed therefore reaches exactly the same loss at step M > N as an
uninterrupted run (on the same device and thread count). Under torchrun (``WORLD_SIZE > 1``) the
gradients are summed with one flat all-reduce per step (gloo on CPU, nccl on CUDA); only rank 0
writes files. Library code: it never prints; progress goes to ``on_step(TrainEvent)``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (
    CONFIG_FILE,
    EMA_FILE,
    META_FILE,
    TRAINER_FILE,
    WEIGHTS_FILE,
    build_components,
    list_checkpoints,
    load_state_strict,
    load_weights,
    read_config,
    save_weights,
)
from .config import Config, config_from_dict, drop_none
from .errors import SeddError
from .losses import sample_t, score_entropy_loss
from .runtime import atomic_write_text, dist_info, pick_device, tune_cpu_allocator

__all__ = [
    "TrainEvent",
    "TrainResult",
    "DataOrder",
    "EMA",
    "train",
    "lr_at",
    "default_run_dir",
    "check_run_dir",
    "resume_config",
    "model_config_diff",
    "read_metrics",
]

METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
TRAINER_FORMAT = 1


# --- results and events -----------------------------------------------------------------------


@dataclass
class TrainEvent:
    """Progress report. `kind`: start | step | eval | sample | checkpoint | end.

    ``step`` events come after every optimizer step; ``logged`` is True on the steps whose line
    was written to metrics.jsonl (every ``train.log_every`` steps and the last).
    """

    kind: str
    step: int
    max_steps: int
    loss: float | None = None  # nats per sequence, batch mean
    loss_per_token: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    elapsed: float = 0.0  # seconds of training in this run (all sessions)
    val_loss: float | None = None
    path: str | None = None
    samples: list[str] = field(default_factory=list)
    logged: bool = False
    message: str = ""


@dataclass
class TrainResult:
    """What a finished (or stopped) training run produced."""

    run_dir: str
    steps: int  # optimizer steps done in all (the step of the last checkpoint)
    loss: float | None  # last step's training loss, nats per sequence
    loss_per_token: float | None
    val_loss: float | None  # EMA-weights validation loss at the end, nats per sequence
    tokens_per_s: float  # over this session's steps
    elapsed: float  # seconds of training in this session
    checkpoint: str | None
    stopped_reason: str  # max_steps | max_time | interrupted
    resumed_from: int | None = None  # step of the checkpoint this session started from
    world_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


# --- pieces -----------------------------------------------------------------------------------


def make_optimizer(params: list[torch.nn.Parameter], tc: Any) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the device (CPU and CUDA: about 5x
    faster than the per-op loop for GPT-2-sized embeddings on a 2-core CPU), else foreach."""
    kw = dict(lr=tc.lr, betas=(tc.beta1, tc.beta2), eps=tc.adam_eps, weight_decay=tc.weight_decay)
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, foreach=True, **kw)


def lr_at(
    step: int, lr: float, warmup: int, decay: str = "none", max_steps: int = 0, floor: float = 0.1
) -> float:
    """Learning rate of update number `step` (1 for the first update).

    Warm-up: ``lr * step / warmup`` for step < warmup. Then ``decay``: ``none`` keeps `lr` (the
    reference); ``linear`` and ``cosine`` go from `lr` at the end of warm-up to ``floor * lr`` at
    `max_steps` (``p`` = progress in [0, 1]: linear ``1 - (1 - floor) p``, cosine
    ``floor + (1 - floor)(1 + cos(pi p)) / 2``, both times `lr`).
    """
    if warmup > 0 and step < warmup:
        return lr * step / warmup
    if decay == "none" or max_steps <= warmup:
        return lr
    p = min(max((step - warmup) / (max_steps - warmup), 0.0), 1.0)
    if decay == "linear":
        return lr * (1 - (1 - floor) * p)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


class DataOrder:
    """Deterministic stream of training-row indices: epoch e is a permutation of range(n) drawn
    from a generator seeded with (seed, e) (or n weighted draws with replacement when `weights`
    is given). A batch that crosses an epoch end continues into the next epoch's order."""

    def __init__(
        self, n: int, seed: int, weights: torch.Tensor | None = None, epoch: int = 0, offset: int = 0
    ):
        if n < 1:
            raise SeddError("the training data is empty: check --data and --text-field")
        self.n = n
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = epoch
        self.offset = min(offset, n)
        self._cache: tuple[int, torch.Tensor] | None = None

    def order(self, epoch: int) -> torch.Tensor:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch * 7_919 + 17) % (2**63))
        if self.weights is not None:
            perm = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            perm = torch.randperm(self.n, generator=g)
        self._cache = (epoch, perm)
        return perm

    def next(self, count: int) -> torch.Tensor:
        """The next `count` row indices ``[count]``."""
        parts = []
        need = count
        while need > 0:
            if self.offset >= self.n:
                self.epoch += 1
                self.offset = 0
            take = min(need, self.n - self.offset)
            parts.append(self.order(self.epoch)[self.offset : self.offset + take])
            self.offset += take
            need -= take
        return torch.cat(parts)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}


class EMA:
    """Exponential moving average of the trainable parameters (REF ``model/ema.py``).

    Update n (counted from 1) uses decay d = min(decay, (1 + n) / (10 + n)):
    shadow <- shadow - (1 - d) (shadow - param).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        n = self.num_updates
        d = min(self.decay, (1 + n) / (10 + n))
        params = dict(model.named_parameters())
        names = list(self.shadow)
        # shadow + (1 - d)(param - shadow), the same update as shadow - (1 - d)(shadow - param),
        # in one fused call over all tensors
        torch._foreach_lerp_([self.shadow[k] for k in names], [params[k].detach() for k in names], 1 - d)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict with the EMA values in place of the parameters."""
        out = dict(model.state_dict())
        out.update(self.shadow)
        return out

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.shadow:
            self.shadow[name].copy_(state[name])

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Temporarily put the EMA weights into `model` (store, copy, restore)."""
        params = dict(model.named_parameters())
        saved = {n: params[n].detach().clone() for n in self.shadow}
        with torch.no_grad():
            for n, v in self.shadow.items():
                params[n].copy_(v)
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, v in saved.items():
                    params[n].copy_(v)


def default_run_dir(config: Config, root: str | Path = "runs") -> Path:
    """``runs/<config name>-<YYYYmmdd-HHMMSS>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{config.name}-{stamp}"


def check_run_dir(run_dir: str | Path) -> Path:
    """Refuse a run directory that is not empty or cannot be created/written (before any work)."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        if not run_dir.is_dir():
            raise SeddError(f"run directory {str(run_dir)!r} is a file: choose another --run-dir or --name")
        if any(run_dir.iterdir()):
            raise SeddError(
                f"run directory {str(run_dir)!r} already holds files: continue it with --resume "
                f"{run_dir}, or choose another --run-dir/--name"
            )
    # try it: create the folder and a file in it, then remove what this check created
    created = []
    probe = run_dir
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        test = run_dir / f".write-test-{os.getpid()}"
        test.write_bytes(b"")
        test.unlink()
    except OSError as exc:
        raise SeddError(
            f"cannot write the run directory {str(run_dir)!r} ({exc.strerror or exc}); "
            "choose another --run-dir"
        ) from None
    finally:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
    return run_dir


_ARCH_SECTIONS = ("model", "graph", "noise")


def model_config_diff(run: Config, given: Config) -> list[str]:
    """``section.key (run X, given Y)`` for each model/graph/noise setting that differs
    (a None vocab_size in `given` means "take the run's")."""
    out = []
    for section in _ARCH_SECTIONS:
        a, b = getattr(run, section).__dict__, getattr(given, section).__dict__
        for key in a:
            if section == "model" and key == "vocab_size" and b[key] is None:
                continue
            if a[key] != b[key]:
                out.append(f"{section}.{key} (run {a[key]!r}, given {b[key]!r})")
    return out


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The saved config of `run_dir` updated with nested `overrides` (None values ignored)."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise SeddError(f"--resume {str(run_dir)!r}: not a sedd run (no {CONFIG_FILE})")
    base = read_config(path)
    return config_from_dict(drop_none(overrides or {}), base)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The lines of a run's metrics.jsonl as dicts."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- distributed helpers ----------------------------------------------------------------------


class _Dist:
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


def _all_reduce_grads(params: list[torch.nn.Parameter], dist: _Dist) -> None:
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


# --- the loop ---------------------------------------------------------------------------------


class _StopFlag:
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


def _load_data(config: Config, tokenizer, dist: _Dist):
    """(tokenizer, train blocks, validation blocks or None). Rank 0 fills the cache first."""
    from .data import build_tokenizer, prepare_data

    def load():
        tok = tokenizer if tokenizer is not None else build_tokenizer(config)
        train_blocks = prepare_data(config, tok, "train")
        val_blocks = None
        if config.train.eval_every > 0 and config.train.eval_batches > 0 and config.data.valid_fraction > 0:
            try:  # a small dataset may hold out no record: then train without validation
                val_blocks = prepare_data(
                    config, tok, "validation", max_blocks=config.train.eval_batches * config.train.batch_size
                )
            except SeddError:
                val_blocks = None
            if val_blocks is not None and len(val_blocks) == 0:
                val_blocks = None
        return tok, train_blocks, val_blocks

    error = None
    out = None
    if dist.main:
        try:
            out = load()
        except SeddError as exc:
            error = exc
    dist.agree(error)
    if not dist.main:
        out = load()
    return out


def _micro_rows(batch: int, world: int, accum: int, rank: int) -> list[slice]:
    """Rows of the global batch this process computes, as `accum` contiguous micro-batches.

    Process r owns rows [r B/W, (r+1) B/W); the union over processes is the whole batch."""
    if batch % (world * accum):
        raise SeddError(
            f"train.batch_size {batch} is not divisible by processes x accum = {world} x {accum}: "
            f"choose a batch size that is a multiple of {world * accum}"
        )
    micro = batch // (world * accum)
    start = rank * micro * accum
    return [slice(start + k * micro, start + (k + 1) * micro) for k in range(accum)]


def _draw(graph, noise, x0: torch.Tensor, eps: float, gen: torch.Generator, stratified: bool = False):
    """t ``[B]`` and x_t ``[B, L]`` for the whole global batch, on CPU from `gen` (stratified:
    one t in each of B equal strata of [eps, 1], see `losses.sample_t`)."""
    t = sample_t(x0.shape[0], eps, None, gen, stratified)  # [B]
    sigma, _ = noise(t)
    xt = graph.sample_transition(x0, sigma[:, None], generator=gen)  # [B, L]
    return t, xt


def train(
    config: Config | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "auto",
    on_step: Callable[[TrainEvent], None] | None = None,
    compile: bool = False,
) -> TrainResult:
    """Train a SEDD model from `config`, writing a run directory; see the module docstring.

    `run_dir` defaults to ``runs/<config.name>-<timestamp>``; it must be empty or absent.
    `resume` continues a run directory from its newest checkpoint; then `config` (optional)
    may change training settings (max_steps, lr, ...) but not the model, graph or noise.
    """
    emit = on_step or (lambda event: None)
    dev = pick_device(device)
    tune_cpu_allocator()
    dist = _Dist(dev.type)
    try:
        if dist.world > 1 and dev.type == "cuda":
            dev = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(dev)
            dist.device = dev
        return _train(config, run_dir, resume, dev, emit, compile, dist)
    finally:
        dist.close()


def _train(config, run_dir, resume, dev, emit, compile_model, dist: _Dist) -> TrainResult:
    from .tokenizers import load_tokenizer

    # -- resolve the config and the run directory; check everything before any work --------------
    error: SeddError | None = None
    tokenizer = None
    trainer_state = None
    ckpt_path = None
    try:
        if resume is not None:
            run = Path(resume)
            run_cfg = resume_config(run)
            if config is None:
                config = run_cfg
            else:
                diff = model_config_diff(run_cfg, config)
                if diff:
                    raise SeddError(
                        f"--resume {str(run)!r}: the run was trained with a different model config: "
                        + "; ".join(diff)
                        + " (drop those options, or start a new run)"
                    )
                config = config_from_dict({"model": {"vocab_size": run_cfg.model.vocab_size}}, config)
            ckpts = list_checkpoints(run)
            if not ckpts:
                raise SeddError(f"--resume {str(run)!r}: the run has no complete checkpoint to continue from")
            ckpt_path = ckpts[-1][1]
            tokenizer = load_tokenizer(run)
            if run_dir is not None and Path(run_dir).resolve() != run.resolve():
                raise SeddError("give either --resume RUN or --run-dir, not both")
            run_dir = run
        else:
            if config is None:
                raise SeddError("train() needs a Config (or resume=RUN)")
            run_dir = default_run_dir(config) if run_dir is None else run_dir
            if dist.rank == 0:  # only rank 0 writes; others must not race its first files
                run_dir = check_run_dir(run_dir)
        config.validate()
        tc = config.train
        rows = _micro_rows(tc.batch_size, dist.world, tc.accum, dist.rank)
    except SeddError as exc:
        error = exc
    dist.agree(error)
    run_dir = Path(run_dir)
    tc = config.train

    torch.manual_seed(tc.seed)
    tokenizer, train_blocks, val_blocks = _load_data(config, tokenizer, dist)
    L = int(train_blocks.tokens.shape[1])
    if L != config.model.length:
        raise SeddError(f"data blocks have length {L} but model.length is {config.model.length}")
    config = config_from_dict({"model": {"vocab_size": tokenizer.vocab_size}}, config)

    torch.manual_seed(tc.seed)  # the same initial weights on every process
    model, graph, noise = build_components(config, tokenizer.vocab_size)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, tc)
    ema = EMA(model, tc.ema)
    gen = torch.Generator().manual_seed(tc.seed + 1)  # t and corruption draws
    order = DataOrder(len(train_blocks), tc.seed, getattr(train_blocks, "weights", None))
    step = 0
    elapsed_before = 0.0
    resumed_from = None

    if ckpt_path is not None:
        load_state_strict(model, load_weights(ckpt_path / WEIGHTS_FILE), str(ckpt_path))
        ema.load(load_weights(ckpt_path / EMA_FILE))
        try:
            trainer_state = torch.load(ckpt_path / TRAINER_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise SeddError(
                f"cannot read {ckpt_path / TRAINER_FILE}: {str(exc).splitlines()[0][:160]}"
            ) from None
        optimizer.load_state_dict(trainer_state["optimizer"])
        for group in optimizer.param_groups:  # settings come from the config, state from the file
            group.update(betas=(tc.beta1, tc.beta2), eps=tc.adam_eps, weight_decay=tc.weight_decay)
        step = int(trainer_state["step"])
        resumed_from = step
        ema.num_updates = int(trainer_state["ema_num_updates"])
        ema.decay = tc.ema
        gen.set_state(trainer_state["rng"]["generator"])
        torch.set_rng_state(trainer_state["rng"]["torch"])
        if dev.type == "cuda" and "cuda" in trainer_state["rng"]:
            with contextlib.suppress(Exception):
                torch.cuda.set_rng_state(trainer_state["rng"]["cuda"], dev)
        order = DataOrder(
            len(train_blocks),
            tc.seed,
            getattr(train_blocks, "weights", None),
            epoch=int(trainer_state["data"]["epoch"]),
            offset=int(trainer_state["data"]["offset"]),
        )
        elapsed_before = float(trainer_state.get("elapsed", 0.0))

    # -- run directory (rank 0) ----------------------------------------------------------------
    if dist.main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SeddError(
                f"cannot create the run directory {str(run_dir)!r}: {exc.strerror or exc}"
            ) from None
        (run_dir / SAMPLES_DIR).mkdir(exist_ok=True)
        (run_dir / CHECKPOINTS_DIR).mkdir(exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, config.to_yaml())
        tokenizer.save(run_dir)
        if resume is not None:  # drop metric lines written after the checkpoint we continue from
            kept = [m for m in read_metrics(run_dir) if int(m.get("step", 0)) <= step]
            atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in kept))
        for stale in (run_dir / CHECKPOINTS_DIR).glob("*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)

    if compile_model:  # the loss calls model.features (the trunk); compile that
        model.features = torch.compile(model.features, dynamic=True)

    max_steps = tc.max_steps
    tokens_per_step = tc.batch_size * L
    emit(TrainEvent("start", step, max_steps, path=str(run_dir), message=_describe(config, model, dist, dev)))

    metrics_f = open(run_dir / METRICS_FILE, "a") if dist.main else None  # noqa: SIM115
    last_loss = last_lpt = last_val = None
    last_ckpt = str(ckpt_path) if ckpt_path is not None else None
    stopped = "max_steps"
    t0 = time.perf_counter()
    log_t, log_step = t0, step
    session_tokens = 0
    lr = lr_at(step, tc.lr, tc.warmup, tc.decay, max_steps, tc.decay_floor)

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def checkpoint() -> None:
        nonlocal last_ckpt
        if dist.main:
            last_ckpt = str(
                _save_checkpoint(
                    run_dir, step, model, ema, optimizer, gen, order, elapsed(), last_loss, last_val, tc
                )
            )
            emit(TrainEvent("checkpoint", step, max_steps, path=last_ckpt, elapsed=elapsed()))

    try:
        with _StopFlag() as stop:
            model.train()
            while step < max_steps:
                # ---- one optimizer step over the global batch --------------------------------
                idx = order.next(tc.batch_size)  # [B]
                x0_all = train_blocks.batch(idx).long()  # [B, L]
                t_all, xt_all = _draw(
                    graph, noise, x0_all, tc.sampling_eps, gen, tc.t_sampling == "stratified"
                )
                lr = lr_at(step + 1, tc.lr, tc.warmup, tc.decay, max_steps, tc.decay_floor)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = torch.zeros((), device=dev)
                for sl in rows:
                    x0 = x0_all[sl].to(dev, non_blocking=True)
                    out = score_entropy_loss(
                        model,
                        graph,
                        noise,
                        x0,
                        t_all[sl].to(dev),
                        xt=xt_all[sl].to(dev),
                        sampling_eps=tc.sampling_eps,
                    )
                    (out.loss.sum() / tc.batch_size).backward()
                    loss_sum += out.loss.detach().sum().float()
                _all_reduce_grads(params, dist)
                clip = tc.grad_clip if tc.grad_clip > 0 else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
                too_long = tc.max_time is not None and time.perf_counter() - t0 >= tc.max_time
                # one host sync per step: the loss and grad norm (logs, non-finite guard) and every process's
                # stop votes (signal, time budget), so that all processes stop at the same step
                flags = torch.stack(
                    [
                        loss_sum.float(),
                        torch.tensor(float(stop.set), device=dev),
                        torch.tensor(float(too_long), device=dev),
                        grad_norm.float() / dist.world,  # equal on every rank: the sum is the norm
                    ]
                )
                dist.all_reduce_sum(flags)
                loss_value, interrupt_votes, time_votes, gn = flags.tolist()
                loss_value /= tc.batch_size
                if not (math.isfinite(loss_value) and math.isfinite(gn)):
                    optimizer.zero_grad(set_to_none=True)
                    kept = f"; the last good checkpoint {last_ckpt} is kept" if last_ckpt else ""
                    raise SeddError(
                        f"non-finite loss at step {step + 1} (loss {loss_value}, grad norm {gn}){kept}; "
                        "try a lower --lr or a longer warm-up"
                    )
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                ema.update(model)
                step += 1
                session_tokens += tokens_per_step
                last_loss, last_lpt = loss_value, loss_value / L

                # ---- logging, validation, samples, checkpoints -----------------------------
                logged = step % max(tc.log_every, 1) == 0 or step == max_steps
                now = time.perf_counter()
                tps = (step - log_step) * tokens_per_step / max(now - log_t, 1e-9)
                event = TrainEvent(
                    "step",
                    step,
                    max_steps,
                    loss=loss_value,
                    loss_per_token=loss_value / L,
                    lr=lr,
                    grad_norm=gn,
                    tokens_per_s=tps,
                    elapsed=elapsed(),
                    logged=logged,
                )
                if logged:
                    log_t, log_step = now, step
                    _write_metrics(
                        metrics_f,
                        {
                            "step": step,
                            "loss": loss_value,
                            "loss_per_token": loss_value / L,
                            "lr": lr,
                            "grad_norm": gn,
                            "tokens_per_s": tps,
                            "elapsed": event.elapsed,
                        },
                    )
                emit(event)
                if val_blocks is not None and tc.eval_every > 0 and step % tc.eval_every == 0:
                    last_val = _validate(model, graph, noise, ema, val_blocks, config, dev, dist)
                    _write_metrics(metrics_f, {"step": step, "val_loss": last_val, "elapsed": elapsed()})
                    emit(TrainEvent("eval", step, max_steps, val_loss=last_val, elapsed=elapsed()))
                    model.train()
                if tc.sample_every > 0 and step % tc.sample_every == 0 and dist.main:
                    _snapshot(
                        model, graph, noise, ema, tokenizer, config, dev, run_dir, step, emit, max_steps
                    )
                    model.train()
                if dist.world == 1:  # a signal that came while this step was reported counts now
                    interrupt_votes += float(stop.set)
                if interrupt_votes > 0 or time_votes > 0:
                    stopped = "interrupted" if interrupt_votes > 0 else "max_time"
                    break
                if tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0 and step < max_steps:
                    checkpoint()
            # ---- the end: a final validation and checkpoint ----------------------------------
            if val_blocks is not None and (last_val is None or tc.eval_every <= 0 or step % tc.eval_every):
                last_val = _validate(model, graph, noise, ema, val_blocks, config, dev, dist)
                _write_metrics(metrics_f, {"step": step, "val_loss": last_val, "elapsed": elapsed()})
                emit(TrainEvent("eval", step, max_steps, val_loss=last_val, elapsed=elapsed()))
            if resumed_from is None or step != resumed_from:
                checkpoint()
    finally:
        if metrics_f is not None:
            metrics_f.close()

    session = time.perf_counter() - t0
    result = TrainResult(
        run_dir=str(run_dir),
        steps=step,
        loss=last_loss,
        loss_per_token=last_lpt,
        val_loss=last_val,
        tokens_per_s=session_tokens / max(session, 1e-9),
        elapsed=session,
        checkpoint=last_ckpt,
        stopped_reason=stopped,
        resumed_from=resumed_from,
        world_size=dist.world,
    )
    emit(
        TrainEvent("end", step, max_steps, loss=last_loss, val_loss=last_val, path=last_ckpt, message=stopped)
    )
    return result


def _describe(config: Config, model, dist: _Dist, dev: torch.device) -> str:
    n = sum(p.numel() for p in model.parameters())
    micro = config.train.batch_size // (dist.world * config.train.accum)
    return (
        f"{config.name}: {n / 1e6:.2f}M parameters, vocab {config.model.vocab_size}, length "
        f"{config.model.length}, batch {config.train.batch_size} ({dist.world} process(es) x "
        f"{config.train.accum} micro-batch(es) of {micro}) on {dev}"
    )


def _write_metrics(f, row: dict[str, Any]) -> None:
    if f is not None:
        f.write(json.dumps(row) + "\n")
        f.flush()


@torch.no_grad()
def _validate(model, graph, noise, ema: EMA, val_blocks, config: Config, dev, dist: _Dist) -> float:
    """Mean loss (nats per sequence) of the EMA weights over the first eval_batches x batch_size
    validation rows (cycled if fewer), with a fixed generator so values compare across steps."""
    tc = config.train
    n = len(val_blocks)
    gen = torch.Generator().manual_seed(tc.seed + 10_007)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    count = 0
    rows = _micro_rows(tc.batch_size, dist.world, tc.accum, dist.rank)
    model.eval()
    with ema.applied(model):
        for b in range(tc.eval_batches):
            idx = torch.arange(b * tc.batch_size, (b + 1) * tc.batch_size) % n  # [B]
            x0_all = val_blocks.batch(idx).long()  # [B, L]
            t_all, xt_all = _draw(graph, noise, x0_all, tc.sampling_eps, gen, tc.t_sampling == "stratified")
            for sl in rows:
                out = score_entropy_loss(
                    model, graph, noise, x0_all[sl].to(dev), t_all[sl].to(dev), xt=xt_all[sl].to(dev)
                )
                total += out.loss.double().sum()
            count += tc.batch_size
    dist.all_reduce_sum(total)
    return float(total) / count


def _snapshot(model, graph, noise, ema, tokenizer, config, dev, run_dir: Path, step, emit, max_steps) -> None:
    """Sample `sample.num_samples` sequences with the EMA weights into samples/step_XXXXXXXX.txt."""
    try:
        from .samplers import generate
    except ImportError:
        return
    sc = config.sample
    gen = torch.Generator(device=dev).manual_seed(config.train.seed + 20_011)
    model.eval()
    with ema.applied(model):
        ids = generate(
            model,
            graph,
            noise,
            batch_size=sc.num_samples,
            length=config.model.length,
            steps=sc.steps,
            predictor=sc.predictor if sc.predictor != "none" else "analytic",
            eps=sc.eps,
            denoise=sc.denoise,
            precision=sc.precision,
            device=dev,
            generator=gen,
            temperature=sc.temperature,
            top_p=sc.top_p,
        )
    texts = [tokenizer.decode(row.tolist(), skip_special=True) for row in ids.cpu()]
    if config.data.layout == "pad":
        body = "".join(t.replace("\n", " ") + "\n" for t in texts)
    else:
        body = "".join(t + "\n" + "=" * 80 + "\n" for t in texts)
    path = run_dir / SAMPLES_DIR / f"step_{step:08d}.txt"
    atomic_write_text(path, body)
    emit(TrainEvent("sample", step, max_steps, path=str(path), samples=texts))


def _save_checkpoint(
    run_dir: Path, step, model, ema: EMA, optimizer, gen, order: DataOrder, elapsed, loss, val, tc
):
    """checkpoints/step_XXXXXXXX/ written under a .tmp name, meta.json last, then renamed;
    only the newest `keep_checkpoints` complete checkpoints are kept."""
    root = run_dir / CHECKPOINTS_DIR
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_weights(tmp / WEIGHTS_FILE, model.state_dict())
    save_weights(tmp / EMA_FILE, ema.state_dict(model))
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": gen.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state()
    state = {
        "format": TRAINER_FORMAT,
        "step": step,
        "optimizer": optimizer.state_dict(),
        "ema_num_updates": ema.num_updates,
        "rng": rng,
        "data": order.state(),
        "elapsed": float(elapsed),
    }
    torch.save(state, tmp / TRAINER_FILE)
    meta = {"step": step, "loss": loss, "val_loss": val, "elapsed": float(elapsed), "time": time.time()}
    atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=2))
    if final.exists():  # same step saved before (e.g. re-run after a crash): replace it
        old = root / f"step_{step:08d}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    if tc.keep_checkpoints > 0:
        for _, path in list_checkpoints(run_dir)[: -tc.keep_checkpoints]:
            shutil.rmtree(path, ignore_errors=True)
    return final
