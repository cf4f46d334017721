"""Sampling speed: seconds per batch of a predictor on random-init models.

    python benchmarks/sample_speed.py                       # both presets, analytic
    python benchmarks/sample_speed.py --preset names --steps 64 --repeats 3
    python benchmarks/sample_speed.py --preset names --predictor first-hitting --time-independent

Presets (from the sampling issue; the reference took 16.7 s and 103 s on a 2-core machine):
  names:     char vocab 28, length 32, hidden 256, 4 blocks, 4 heads, cond 128, batch 64, 64 steps
  gpt2-tiny: vocab 50257, length 128, hidden 256, 4 blocks, 4 heads, cond 128, batch 8, 32 steps
A random-init model's masked share follows the schedule exactly as a trained one's (the noise
schedule, not the model, decides when positions unmask), so the timing is representative.
`--time-independent` builds the same shape with ``model.time_conditioning: false`` (RADD's
network; the Euler / analytic predictors then use the per-sequence cache unless `--no-cache`).
Prints one JSON object per line: preset, predictor, steps (first-hitting ignores them),
s_per_batch (median), nfe (network calls of a batch) and rows (sequence rows they ran), peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import torch

from sedd_cli.allocator import tune_cpu_allocator
from sedd_cli.config import ModelConfig
from sedd_cli.graph import Absorbing
from sedd_cli.model import SEDD
from sedd_cli.noise import LogLinearNoise
from sedd_cli.sampling import NetworkCalls, generate

PRESETS = {
    "names": dict(vocab=28, length=32, batch=64, steps=64),
    "gpt2-tiny": dict(vocab=50257, length=128, batch=8, steps=32),
}


def run(
    preset: str,
    steps: int | None,
    repeats: int,
    device: str,
    predictor: str = "analytic",
    time_independent: bool = False,
    cache: bool = True,
    tokens_per_step: int = 1,
) -> dict:
    p = PRESETS[preset]
    steps = steps or p["steps"]
    cfg = ModelConfig(
        hidden_size=256, cond_dim=128, n_blocks=4, n_heads=4, dropout=0.0, length=p["length"],
        time_conditioning=not time_independent,
    )  # fmt: skip
    torch.manual_seed(0)
    graph = Absorbing(p["vocab"])
    model = SEDD(cfg, graph.dim).to(device).eval()
    noise = LogLinearNoise(1e-3)
    times = []
    for r in range(repeats + 1):  # the first run warms up and is not counted
        calls = NetworkCalls()
        gen = torch.Generator(device=device).manual_seed(r)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        generate(
            model,
            graph,
            noise,
            batch_size=p["batch"],
            length=p["length"],
            steps=steps,
            predictor=predictor,
            generator=gen,
            device=device,
            cache=cache,
            tokens_per_step=tokens_per_step,
            calls=calls,
        )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if r:
            times.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "preset": preset,
        "predictor": predictor,
        "time_independent": time_independent,
        "cache": cache,
        "tokens_per_step": tokens_per_step,
        "steps": steps,
        "s_per_batch": round(statistics.median(times), 3),
        "nfe": calls.nfe,
        "rows": calls.rows,
        "peak_rss_mb": round(rss, 1),
        "batch": p["batch"],
        "length": p["length"],
        "repeats": repeats,
        "device": device,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    tune_cpu_allocator()  # as the CLI does (SEDD_MALLOC=default to compare without)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), action="append")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--predictor", default="analytic", help="analytic | euler | first-hitting | none")
    ap.add_argument("--time-independent", action="store_true", help="model.time_conditioning: false")
    ap.add_argument("--no-cache", dest="cache", action="store_false", help="the uncached predictors")
    ap.add_argument("--tokens-per-step", type=int, default=1, help="first-hitting: positions per call")
    args = ap.parse_args(argv)
    for preset in args.preset or list(PRESETS):
        out = run(
            preset, args.steps, args.repeats, args.device, args.predictor, args.time_independent,
            args.cache, args.tokens_per_step,
        )  # fmt: skip
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
