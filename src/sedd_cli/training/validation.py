"""The validation loss: the score-entropy loss of the EMA weights on held-out rows.

    val_loss = (1 / N) sum_{n < N} loss_n      (nats per sequence, N = eval_batches x batch_size)

over the first N validation rows (cycled if fewer), with t and x_t drawn from a generator seeded
with ``train.seed + 10007`` afresh each time, so values compare across steps and runs.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..losses import score_entropy_loss
from .distributed import Dist, micro_rows
from .ema import EMA
from .step import draw


@torch.no_grad()
def validate(model, graph, noise, ema: EMA, val_blocks, config: Config, dev, dist: Dist) -> float:
    """Mean loss (nats per sequence) of the EMA weights over the first eval_batches x batch_size
    validation rows (cycled if fewer), with a fixed generator so values compare across steps."""
    tc = config.train
    n = len(val_blocks)
    gen = torch.Generator().manual_seed(tc.seed + 10_007)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    count = 0
    rows = micro_rows(tc.batch_size, dist.world, tc.accum, dist.rank)
    model.eval()
    with ema.applied(model):
        for b in range(tc.eval_batches):
            idx = torch.arange(b * tc.batch_size, (b + 1) * tc.batch_size) % n  # [B]
            x0_all = val_blocks.batch(idx).long()  # [B, L]
            t_all, xt_all = draw(graph, noise, x0_all, tc.sampling_eps, gen, tc.t_sampling == "stratified")
            for sl in rows:
                out = score_entropy_loss(
                    model, graph, noise, x0_all[sl].to(dev), t_all[sl].to(dev), xt=xt_all[sl].to(dev)
                )
                total += out.loss.double().sum()
            count += tc.batch_size
    dist.all_reduce_sum(total)
    return float(total) / count
