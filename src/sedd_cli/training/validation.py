"""The validation loss: a bound on -log p_theta(x0) of the EMA weights on held-out rows.

    val_loss = (1 / N) sum_{n < N} loss_n      (nats per sequence, N = eval_batches x batch_size)

over the first N validation rows (cycled if fewer), with the draws from a generator seeded with
``train.seed + 10007`` afresh each time, so values compare across steps and runs. Which loss_n
(`validation_loss`):

* a time-conditioned model (``train.loss: dse``): the score-entropy loss at t ~ U[eps, 1]
  (stratified when ``train.t_sampling: stratified``), the diffusion part of the DWDSE bound;
* a time-independent model (``model.time_conditioning: false``, any ``train.loss``): the
  lambda-DCE loss, -sum_masked log c[x0] / lambda with lambda ~ U(0, 1] (RADD's stratification),
  whose expectation is the lambda-form bound (`losses.lambda_bound_per_sequence`; no prior term).
  One figure for the three objectives, so runs with different ``train.loss`` compare (the t-DCE
  training value is not a bound).
"""

from __future__ import annotations

import torch

from ..config import Config
from ..losses import TrainingLoss, get_loss
from .distributed import Dist, micro_rows
from .ema import EMA
from .step import draw


def validation_loss(config: Config) -> TrainingLoss:
    """The objective whose mean is logged as ``val_loss``: ``lambda-dce`` for a time-independent
    model, ``dse`` otherwise (see the module notes)."""
    return get_loss("dse" if config.model.time_conditioning else "lambda-dce")


@torch.no_grad()
def validate(model, graph, noise, ema: EMA, val_blocks, config: Config, dev, dist: Dist) -> float:
    """Mean loss (nats per sequence) of the EMA weights over the first eval_batches x batch_size
    validation rows (cycled if fewer), with a fixed generator so values compare across steps."""
    tc = config.train
    objective = validation_loss(config)
    n = len(val_blocks)
    gen = torch.Generator().manual_seed(tc.seed + 10_007)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    count = 0
    rows = micro_rows(tc.batch_size, dist.world, tc.accum, dist.rank)
    stratified = tc.t_sampling == "stratified"
    model.eval()
    with ema.applied(model):
        for b in range(tc.eval_batches):
            idx = torch.arange(b * tc.batch_size, (b + 1) * tc.batch_size) % n  # [B]
            x0_all = val_blocks.batch(idx).long()  # [B, L]
            t_all, xt_all = draw(objective, graph, noise, x0_all, tc.sampling_eps, gen, stratified)
            for sl in rows:
                out = objective(
                    model, graph, noise, x0_all[sl].to(dev), t_all[sl].to(dev), xt=xt_all[sl].to(dev)
                )
                total += out.loss.double().sum()
            count += tc.batch_size
    dist.all_reduce_sum(total)
    return float(total) / count
