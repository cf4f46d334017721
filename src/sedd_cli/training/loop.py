"""The training loop and the `train()` entry: claim, build, step, report, save.

Randomness is split so that a run is a pure function of (config, seed):

* data order: a permutation of the training rows per epoch, drawn from a generator seeded with
  (seed, epoch) (a seeded `torch.multinomial` draw when the data carries sampling weights); the
  position (epoch, offset) is saved in each checkpoint (`data_order`);
* the draws of t and of the corruption x_t use one dedicated CPU generator for the whole *global*
  batch, so every process draws the same numbers and keeps its own rows: a run on W processes
  computes the same per-sequence losses as one process on the same global batch (`step`);
* dropout uses torch's global generator (state saved too).

A run stopped at step N and resumed therefore reaches exactly the same loss at step M > N as an
uninterrupted run (on the same device and thread count). Under torchrun (``WORLD_SIZE > 1``) the
gradients are summed with one flat all-reduce per step (gloo on CPU, nccl on CUDA); only rank 0
writes files. Library code: it never prints; progress goes to ``on_step(TrainEvent)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..errors import SeddError
from ..runtime import WriteError, pick_device
from ..sampling import check_sample_settings
from .distributed import Dist, StopFlag, check_batch_split, micro_rows
from .events import TrainEvent, TrainResult
from .loggers import LoggerFailed, LoggerSet, check_available
from .metrics import read_metrics, write_metrics
from .resume import (
    check_within_budget,
    newest_checkpoint,
    read_trainer_state,
    restore,
    resumed_config,
)
from .run_dir import (
    METRICS_FILE,
    RunClaim,
    check_is_run,
    check_resume_in_place,
    claim_run_dir,
    default_run_dir,
)
from .saving import run_state, save_checkpoint, write_failed, write_run_files
from .snapshots import snapshot
from .state import RunPlan, TrainState, build_state, describe, fit_config, load_data
from .step import StepResult, optimizer_step
from .validation import validate


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

    `run_dir` defaults to ``runs/<config.name>-<timestamp>``; it must be empty, absent, or a run
    that stopped before its first checkpoint (started again in place). `resume` continues a run
    directory from its newest checkpoint (a run with none is started again from step 0 with its
    saved settings); then `config` (optional) may change training settings (max_steps, lr, ...)
    but not the model, graph or noise. The run directory is locked (`claim_run_dir`) for the whole
    call: a second `train` of the same run is refused with the holder's pid.
    """
    emit = on_step or (lambda event: None)
    dev = pick_device(device)
    dist = Dist(dev.type)
    claims: list[RunClaim] = []
    try:
        if dist.world > 1 and dev.type == "cuda":
            dev = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(dev)
            dist.device = dev
        return _train(config, run_dir, resume, dev, emit, compile, dist, claims)
    finally:
        for claim in claims:
            claim.release()
        dist.close()


# --- claim: resolve the config and the run directory, check everything before any work ----------


def _plan_resume(config: Config | None, run_dir, resume, dist: Dist, claims: list) -> RunPlan:
    """Continue run `resume` in place: its config (same model), its newest checkpoint, checked."""
    from ..tokenizers import load_tokenizer

    run = Path(resume)
    check_resume_in_place(run, run_dir)
    check_is_run(run)
    if dist.main:
        claims.append(claim_run_dir(run, resume=True))
    config = resumed_config(run, config)
    config.validate()
    check_sample_settings(config.sample)
    plan = RunPlan(config, run)
    newest = newest_checkpoint(run)
    if newest is None:  # stopped before its first checkpoint: start it again in place
        plan.note = "; no checkpoint yet: started again from step 0"
        plan.kept_metrics = [] if dist.main else None
        return plan
    ckpt_step, plan.ckpt_path = newest
    plan.trainer_state = read_trainer_state(plan.ckpt_path, ckpt_step)
    check_within_budget(run, ckpt_step, config.train.max_steps)
    plan.tokenizer = load_tokenizer(run)
    if dist.main:
        kept = read_metrics(run)  # validated; a cut last line is dropped
        plan.kept_metrics = [m for m in kept if m["step"] <= ckpt_step]
    return plan


def _plan(config: Config | None, run_dir, resume, dist: Dist, claims: list) -> RunPlan:
    """The run resolved and (rank 0) claimed; every process raises if any process failed."""
    error: SeddError | None = None
    plan = None
    try:
        if resume is not None:
            plan = _plan_resume(config, run_dir, resume, dist, claims)
        else:
            if config is None:
                raise SeddError("train() needs a Config (or resume=RUN)")
            config.validate()
            check_sample_settings(config.sample)  # the snapshots' settings, before the folder is made
            run_dir = default_run_dir(config) if run_dir is None else run_dir
            if dist.rank == 0:  # only rank 0 writes; the others never touch the folder
                claims.append(claim_run_dir(run_dir))
            plan = RunPlan(config, Path(run_dir))
        tc = plan.config.train
        check_batch_split(tc.batch_size, dist.world, tc.accum)
        if dist.main:  # only rank 0 logs; with logger_required a missing extra stops here
            check_available(tc.loggers, tc.logger_required)
    except SeddError as exc:
        error = exc
    dist.agree(error)
    return plan


# --- the session: bookkeeping, reports and saves of one call -----------------------------------


@dataclass
class Session:
    """One call's view of the run: where it writes, what it reports, and its running totals."""

    run_dir: Path
    dist: Dist
    dev: torch.device
    emit: Callable[[TrainEvent], None]
    tokenizer: Any
    train_blocks: Any
    val_blocks: Any
    rows: list[slice]  # this process's micro-batches of the global batch
    L: int  # block length
    metrics_f: Any = None
    loggers: Any = None  # LoggerSet: the dashboards (rank 0; empty elsewhere)
    last_loss: float | None = None
    last_lpt: float | None = None
    last_val: float | None = None
    last_ckpt: str | None = None
    stopped: str = "max_steps"
    t0: float = 0.0
    log_t: float = 0.0
    log_step: int = 0
    session_tokens: int = 0
    elapsed_before: float = 0.0

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def checkpoint(self, state: TrainState) -> None:
        if self.dist.main:
            path = save_checkpoint(self.run_dir, state, self.elapsed(), self.last_loss, self.last_val)
            self.last_ckpt = str(path)
            max_steps = state.config.train.max_steps
            self.emit(
                TrainEvent("checkpoint", state.step, max_steps, path=self.last_ckpt, elapsed=self.elapsed())
            )

    def report_step(self, state: TrainState, r: StepResult) -> None:
        """The step event, and every ``log_every`` steps (and the last) a metrics line."""
        tc = state.config.train
        step, L = state.step, self.L
        tokens_per_step = tc.batch_size * L
        self.session_tokens += tokens_per_step
        self.last_loss, self.last_lpt = r.loss, r.loss / L
        logged = step % max(tc.log_every, 1) == 0 or step == tc.max_steps
        now = time.perf_counter()
        tps = (step - self.log_step) * tokens_per_step / max(now - self.log_t, 1e-9)
        event = TrainEvent(
            "step",
            step,
            tc.max_steps,
            loss=r.loss,
            loss_per_token=r.loss / L,
            lr=r.lr,
            grad_norm=r.grad_norm,
            tokens_per_s=tps,
            elapsed=self.elapsed(),
            logged=logged,
        )
        if logged:
            self.log_t, self.log_step = now, step
            row = {
                "step": step,
                "loss": r.loss,
                "loss_per_token": r.loss / L,
                "lr": r.lr,
                "grad_norm": r.grad_norm,
                "tokens_per_s": tps,
                "elapsed": event.elapsed,
            }
            write_metrics(self.metrics_f, self.metrics_path, row)
            self.loggers.scalars(step, row)
        self.emit(event)

    def validate(self, state: TrainState) -> None:
        """The EMA weights' validation loss: a metrics line and an ``eval`` event."""
        st = state
        self.last_val = validate(
            st.model, st.graph, st.noise, st.ema, self.val_blocks, st.config, self.dev, self.dist
        )
        row = {"step": state.step, "val_loss": self.last_val, "elapsed": self.elapsed()}
        write_metrics(self.metrics_f, self.metrics_path, row)
        self.loggers.scalars(state.step, row)
        max_steps = state.config.train.max_steps
        self.emit(TrainEvent("eval", state.step, max_steps, val_loss=self.last_val, elapsed=self.elapsed()))

    def periodic(self, state: TrainState) -> None:
        """Validation every ``eval_every`` steps; samples every ``sample_every`` steps (rank 0)."""
        tc, step = state.config.train, state.step
        if self.val_blocks is not None and tc.eval_every > 0 and step % tc.eval_every == 0:
            self.validate(state)
            state.model.train()
        if tc.sample_every > 0 and step % tc.sample_every == 0 and self.dist.main:
            texts = snapshot(
                state.model, state.graph, state.noise, state.ema, self.tokenizer, state.config,
                self.dev, self.run_dir, step, self.emit, tc.max_steps,
            )  # fmt: skip
            state.model.train()
            if texts is not None:
                self.loggers.samples(step, texts)

    def finish(self, state: TrainState) -> None:
        """The end: a validation unless this step had one, and a checkpoint unless this step is
        the one resumed from."""
        tc = state.config.train
        if self.val_blocks is not None and (
            self.last_val is None or tc.eval_every <= 0 or state.step % tc.eval_every
        ):
            self.validate(state)
        if state.resumed_from is None or state.step != state.resumed_from:
            self.checkpoint(state)

    def result(self, state: TrainState) -> TrainResult:
        """The result, after the ``end`` event."""
        session = time.perf_counter() - self.t0
        result = TrainResult(
            run_dir=str(self.run_dir),
            steps=state.step,
            loss=self.last_loss,
            loss_per_token=self.last_lpt,
            val_loss=self.last_val,
            tokens_per_s=self.session_tokens / max(session, 1e-9),
            elapsed=session,
            checkpoint=self.last_ckpt,
            stopped_reason=self.stopped,
            resumed_from=state.resumed_from,
            world_size=self.dist.world,
            loggers=self.loggers.closed,
        )
        end = TrainEvent(
            "end", state.step, state.config.train.max_steps, loss=self.last_loss, val_loss=self.last_val,
            path=self.last_ckpt, message=self.stopped,
        )  # fmt: skip
        self.emit(end)
        return result


# --- the loop ----------------------------------------------------------------------------------


def _loop(s: Session, state: TrainState) -> None:
    """Steps until ``max_steps``, a stop vote (signal: checkpoint and return; time budget), or an
    error; then the final validation and checkpoint."""
    tc = state.config.train
    with StopFlag() as stop:
        state.model.train()
        while state.step < tc.max_steps:
            r = optimizer_step(state, s.train_blocks, s.rows, s.dist, s.dev, stop, s.t0, s.last_ckpt)
            s.report_step(state, r)
            s.periodic(state)
            interrupt_votes = r.interrupt_votes
            if s.dist.world == 1:  # a signal that came while this step was reported counts now
                interrupt_votes += float(stop.set)
            if interrupt_votes > 0 or r.time_votes > 0:
                s.stopped = "interrupted" if interrupt_votes > 0 else "max_time"
                break
            every = tc.checkpoint_every
            if every > 0 and state.step % every == 0 and state.step < tc.max_steps:
                s.checkpoint(state)
        s.finish(state)


def _build(plan: RunPlan, dev, dist: Dist, emit):
    """(config with the vocabulary size, state, session) for `plan`, resumed when it says so."""
    tc = plan.config.train
    torch.manual_seed(tc.seed)
    tokenizer, train_blocks, val_blocks = load_data(plan.config, plan.tokenizer, dist)
    config, L = fit_config(plan.config, tokenizer, train_blocks)
    state = build_state(config, tokenizer.vocab_size, train_blocks, dev)
    state.pad_id = tokenizer.pad_id
    if plan.ckpt_path is not None:
        restore(state, plan.ckpt_path, plan.trainer_state, train_blocks, dev)
    rows = micro_rows(tc.batch_size, dist.world, tc.accum, dist.rank)
    session = Session(plan.run_dir, dist, dev, emit, tokenizer, train_blocks, val_blocks, rows, L)
    session.last_ckpt = str(plan.ckpt_path) if plan.ckpt_path is not None else None
    session.elapsed_before = state.elapsed_before
    session.loggers = LoggerSet(
        tc.loggers, required=tc.logger_required, main=dist.main, emit=emit, max_steps=tc.max_steps
    )
    return config, state, session


def _train(config, run_dir, resume, dev, emit, compile_model, dist: Dist, claims: list) -> TrainResult:
    plan = _plan(config, run_dir, resume, dist, claims)
    config, state, s = _build(plan, dev, dist, emit)
    if dist.main:  # rank 0: settings, tokenizer, the metric lines up to the checkpoint
        try:
            write_run_files(s.run_dir, config, s.tokenizer, plan.kept_metrics)
        except WriteError as exc:
            raise write_failed(exc, s.last_ckpt, s.run_dir) from None
    if compile_model:  # the loss calls model.features (the trunk); compile that
        state.model.features = torch.compile(state.model.features, dynamic=True)
    message = describe(config, state.model, dist, dev) + plan.note
    emit(TrainEvent("start", state.step, config.train.max_steps, path=str(s.run_dir), message=message))
    ok = False
    try:
        s.loggers.start(config.to_dict(), s.run_dir, state.step, resumed=resume is not None)
        try:
            s.metrics_f = open(s.metrics_path, "ab", buffering=0) if dist.main else None  # noqa: SIM115
        except OSError as exc:
            raise SeddError(f"cannot open {str(s.metrics_path)!r}: {exc.strerror or exc}") from None
        s.t0 = time.perf_counter()
        s.log_t, s.log_step = s.t0, state.step
        _loop(s, state)
        ok = True
    except WriteError as exc:
        raise write_failed(exc, s.last_ckpt, s.run_dir) from None
    except LoggerFailed as exc:
        raise SeddError(f"{exc}: {run_state(s.last_ckpt, s.run_dir)}") from None
    finally:
        if s.metrics_f is not None:
            s.metrics_f.close()
        s.loggers.finish(state.step, ok)
    return s.result(state)
