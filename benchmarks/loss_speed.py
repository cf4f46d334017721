"""Masked-only vs full output head in the training objective (absorbing graph).

For the absorbing graph the score entropy is exactly 0 at unmasked positions, so
`score_entropy_loss(masked_only=True)` evaluates the output head, the exp and the loss only at
masked positions. This script times a forward+backward of the loss both ways on random tokens and
prints one JSON object per line: preset, mode, s_per_step (median), speedup, max_abs_diff.

    python benchmarks/loss_speed.py                 # gpt2-tiny: V = 50257, L = 128, batch 8
    python benchmarks/loss_speed.py --preset names  # char vocabulary (the head is cheap there)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sedd_cli.allocator import tune_cpu_allocator
from sedd_cli.config import ModelConfig
from sedd_cli.graph import Absorbing
from sedd_cli.losses import sample_t, score_entropy_loss
from sedd_cli.model import SEDD
from sedd_cli.noise import LogLinearNoise

PRESETS = {
    "gpt2-tiny": dict(vocab=50257, length=128, hidden=256, blocks=4, heads=4, batch=8),
    "names": dict(vocab=28, length=32, hidden=256, blocks=4, heads=4, batch=64),
}


def main() -> None:
    tune_cpu_allocator()  # as the CLI does (SEDD_MALLOC=default to compare without)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpt2-tiny")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    p = PRESETS[args.preset]
    cfg = ModelConfig(
        hidden_size=p["hidden"], n_blocks=p["blocks"], n_heads=p["heads"], cond_dim=128, dropout=0.0
    )
    torch.manual_seed(0)
    model = SEDD(cfg, p["vocab"] + 1)
    with torch.no_grad():  # non-zero head so the loss is not trivial
        model.output_layer.linear.weight.normal_(0, 0.02)
    graph, noise = Absorbing(p["vocab"]), LogLinearNoise()
    x0 = torch.randint(0, p["vocab"], (p["batch"], p["length"]))
    t = sample_t(p["batch"], generator=torch.Generator().manual_seed(0))

    def step(masked_only: bool) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        out = score_entropy_loss(
            model, graph, noise, x0, t, masked_only=masked_only, generator=torch.Generator().manual_seed(1)
        )
        out.loss.mean().backward()
        return out.loss.detach()

    times: dict[bool, list[float]] = {True: [], False: []}
    losses = {m: step(m) for m in (True, False)}  # warm-up
    for _ in range(args.repeats):
        for mode in (False, True):
            start = time.perf_counter()
            step(mode)
            times[mode].append(time.perf_counter() - start)
    full, fast = statistics.median(times[False]), statistics.median(times[True])
    diff = (losses[True] - losses[False]).abs().max().item()
    for mode, median in (("full", full), ("masked_only", fast)):
        print(
            json.dumps(
                {
                    "preset": args.preset,
                    "mode": mode,
                    "s_per_step": round(median, 4),
                    "speedup": round(full / median, 3),
                    "max_abs_diff": diff,
                    "threads": torch.get_num_threads(),
                }
            )
        )


if __name__ == "__main__":
    main()
