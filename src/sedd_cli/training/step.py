"""One optimizer step over the global batch (sedd-spec §4.2), counted from 1 for the first update:

    lr(step)   = train.lr * min(step / train.warmup, 1)        (see `schedule.lr_at`)
    loss       = (1 / B) sum_{b < B} loss_b                      (nats per sequence, B = global batch)
    grad       = d loss / d theta, summed over `accum` micro-batches and all processes
    theta     <- AdamW(theta, clip(grad, train.grad_clip))
    ema       <- ema - (1 - d_n) (ema - theta),   d_n = min(train.ema, (1 + n) / (10 + n))

where loss_b is the run's objective (``train.loss``, `losses.training_loss`: ``dse`` score entropy,
``t-dce`` or ``lambda-dce``) of sequence b and n counts EMA updates (incremented first).

The draws of t (lambda for lambda-dce) and of the corruption x_t use one dedicated CPU generator
for the whole *global* batch, so every process draws the same numbers and keeps its own rows: a
run on W processes computes the same per-sequence losses as one process on the same global batch.
With ``data.insert_pads`` > 0, the same generator first widens the batch's rows with
pads (`data.insertion.insert_pads`); validation and the bound see the data as it is.
The step ends with one host sync: the loss, the gradient norm and every process's stop votes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..data.insertion import insert_pads
from ..errors import SeddError
from ..losses import training_loss
from .distributed import Dist, StopFlag, all_reduce_grads
from .schedule import lr_at
from .state import TrainState


def draw(
    objective, graph, noise, x0: torch.Tensor, eps: float, gen: torch.Generator, stratified: bool = False
):
    """t ``[B]`` (lambda for lambda-dce) and x_t ``[B, L]`` for the whole global batch, on CPU from
    `gen`: the objective's own draw (`losses.TrainingLoss.draw`; for the t-losses, stratified is one
    t in each of B equal strata of [eps, 1], see `losses.sample_t`)."""
    return objective.draw(graph, noise, x0.cpu(), eps, gen, stratified)  # [B], [B, L]


@dataclass
class StepResult:
    """What one step reports: the loss (nats per sequence), lr, grad norm and the stop votes."""

    loss: float
    lr: float
    grad_norm: float
    interrupt_votes: float
    time_votes: float


def _set_lr(state: TrainState) -> float:
    """lr of the coming update (number ``state.step + 1``), set in every parameter group."""
    tc = state.config.train
    lr = lr_at(state.step + 1, tc.lr, tc.warmup, tc.decay, tc.max_steps, tc.decay_floor)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    return lr


def _backward(state: TrainState, x0_all, t_all, xt_all, rows: list[slice], dev) -> torch.Tensor:
    """Loss and backward over this process's micro-batches of the global batch; the summed loss
    of its rows (on `dev`)."""
    tc = state.config.train
    objective = training_loss(state.config)
    loss_sum = torch.zeros((), device=dev)
    for sl in rows:
        x0 = x0_all[sl].to(dev, non_blocking=True)
        out = objective(
            state.model,
            state.graph,
            state.noise,
            x0,
            t_all[sl].to(dev),
            xt=xt_all[sl].to(dev),
            sampling_eps=tc.sampling_eps,
        )
        (out.loss.sum() / tc.batch_size).backward()
        loss_sum += out.loss.detach().sum().float()
    return loss_sum


def _sync(loss_sum, grad_norm, stop: StopFlag, too_long: bool, dist: Dist, dev) -> list[float]:
    """One host sync per step: the loss and grad norm (logs, non-finite guard) and every process's
    stop votes (signal, time budget), so that all processes stop at the same step."""
    flags = torch.stack(
        [
            loss_sum.float(),
            torch.tensor(float(stop.set), device=dev),
            torch.tensor(float(too_long), device=dev),
            grad_norm.float() / dist.world,  # equal on every rank: the sum is the norm
        ]
    )
    dist.all_reduce_sum(flags)
    return flags.tolist()


def optimizer_step(
    state: TrainState, train_blocks, rows: list[slice], dist: Dist, dev, stop: StopFlag, t0: float,
    last_ckpt: str | None,
) -> StepResult:  # fmt: skip
    """One update of `state` over the next global batch; `state.step` counts it. A non-finite
    loss or gradient norm is a SeddError (naming `last_ckpt`, kept) and nothing is updated."""
    tc = state.config.train
    idx = state.order.next(tc.batch_size)  # [B]
    x0_all = train_blocks.batch(idx).long()  # [B, L]
    dc = state.config.data
    if dc.insert_pads > 0:
        pack = dc.layout == "pack"
        x0_all = insert_pads(x0_all, state.pad_id, dc.insert_pads, dc.insert_pads_max, state.gen, pack=pack)
    stratified = tc.t_sampling == "stratified"
    objective = training_loss(state.config)
    t_all, xt_all = draw(objective, state.graph, state.noise, x0_all, tc.sampling_eps, state.gen, stratified)
    lr = _set_lr(state)
    loss_sum = _backward(state, x0_all, t_all, xt_all, rows, dev)
    all_reduce_grads(state.params, dist)
    clip = tc.grad_clip if tc.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(state.params, clip)
    too_long = tc.max_time is not None and time.perf_counter() - t0 >= tc.max_time
    loss_value, interrupt_votes, time_votes, gn = _sync(loss_sum, grad_norm, stop, too_long, dist, dev)
    loss_value /= tc.batch_size
    if not (math.isfinite(loss_value) and math.isfinite(gn)):
        state.optimizer.zero_grad(set_to_none=True)
        kept = f"; the last good checkpoint {last_ckpt} is kept" if last_ckpt else ""
        raise SeddError(
            f"non-finite loss at step {state.step + 1} (loss {loss_value}, grad norm {gn}){kept}; "
            "try a lower --lr or a longer warm-up"
        )
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.ema.update(state.model)
    state.step += 1
    return StepResult(loss_value, lr, gn, interrupt_votes, time_votes)
