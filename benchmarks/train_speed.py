"""Training speed: median seconds per AdamW step (forward, backward, clip, step, EMA) on random tokens.

    python benchmarks/train_speed.py                       # every CPU preset
    python benchmarks/train_speed.py --preset names --steps 20 --repeats 3
    python benchmarks/train_speed.py --device cuda --preset small --peak-tflops 989

Prints one JSON object per line: preset, device, s_per_step (median over repeats of the mean step
time of each repeat, after warm-up steps), tokens_per_s (B * L / s_per_step), peak_rss_mb
(resource.getrusage maxrss of this process), threads, params; on CUDA also peak_gpu_mb, tflops
and mfu (model FLOPs per second / --peak-tflops). Model FLOPs per step count 6 x (trunk
parameters) per token, 6 x d x D per *masked* token for the output head (the loss evaluates the
head at masked positions only) and 12 x n_blocks x L x d per token for attention scores and mixing
(forward + backward). No dataset is needed: tokens are uniform random ids.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from sedd_cli.allocator import tune_cpu_allocator  # noqa: E402
from sedd_cli.checkpoints import build_components  # noqa: E402
from sedd_cli.config import load_preset  # noqa: E402
from sedd_cli.losses import sample_t, score_entropy_loss  # noqa: E402
from sedd_cli.training import EMA, lr_at, make_optimizer  # noqa: E402

# name: (base preset, vocab, length, hidden, blocks, heads, cond, batch); None = the preset's value
PRESETS = {
    "names": ("names", 28, 32, 256, 4, 4, 128, 64),
    "gpt2-tiny": ("names", 50257, 128, 256, 4, 4, 128, 8),
    "small-cpu": ("small", 50257, 256, None, None, None, None, 2),
    "small": ("small", 50257, 1024, None, None, None, None, 16),
}
CPU_PRESETS = ("names", "gpt2-tiny", "small-cpu")


def build(name: str, batch: int | None, device: torch.device):
    base, vocab, length, hidden, blocks, heads, cond, default_batch = PRESETS[name]
    cfg = load_preset(base)
    m = cfg.model
    m.vocab_size, m.length = vocab, length
    if hidden is not None:
        m.hidden_size, m.n_blocks, m.n_heads, m.cond_dim = hidden, blocks, heads, cond
    cfg.validate()
    model, graph, noise = build_components(cfg, vocab)
    return cfg, model.to(device), graph, noise, batch or default_batch


def model_flops(cfg, model, batch: int, masked_fraction: float) -> float:
    d, L, D = cfg.model.hidden_size, cfg.model.length, model.dim
    head = sum(p.numel() for p in model.output_layer.linear.parameters())
    embed = sum(p.numel() for p in model.vocab_embed.parameters())
    trunk = sum(p.numel() for p in model.parameters()) - head - embed
    tokens = batch * L
    return (
        6 * trunk * tokens + 6 * d * D * tokens * masked_fraction + 12 * cfg.model.n_blocks * L * d * tokens
    )


def run(name: str, device: str, steps: int, warmup: int, repeats: int, batch: int | None, peak_tflops: float):
    dev = torch.device(device)
    torch.manual_seed(0)
    cfg, model, graph, noise, B = build(name, batch, dev)
    tc = cfg.train
    L = cfg.model.length
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, tc)  # the training loop's optimizer
    ema = EMA(model, tc.ema)
    gen = torch.Generator().manual_seed(1)
    model.train()
    masked = []

    def step(k: int) -> None:
        x0 = torch.randint(0, graph.dim - 1, (B, L), generator=gen)  # [B, L] real tokens
        t = sample_t(B, tc.sampling_eps, None, gen)
        sigma, _ = noise(t)
        xt = graph.sample_transition(x0, sigma[:, None], generator=gen)
        masked.append((xt == graph.dim - 1).float().mean().item())
        for g in opt.param_groups:
            g["lr"] = lr_at(k + 1, tc.lr, tc.warmup, tc.decay, tc.max_steps, tc.decay_floor)
        out = score_entropy_loss(model, graph, noise, x0.to(dev), t.to(dev), xt=xt.to(dev))
        (out.loss.sum() / B).backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model)
        out.loss.sum().item()  # the loop's one host sync per step

    k = 0
    for _ in range(warmup):
        step(k)
        k += 1
    times = []
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step(k)
            k += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / steps)
    s = statistics.median(times)
    row = {
        "preset": name,
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "s_per_step": round(s, 5),
        "tokens_per_s": round(B * L / s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "batch": B,
        "length": L,
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "repeats_s_per_step": [round(x, 5) for x in times],
    }
    if dev.type == "cuda":
        flops = model_flops(cfg, model, B, statistics.mean(masked))
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        row["tflops"] = round(flops / s / 1e12, 2)
        row["mfu"] = round(flops / s / (peak_tflops * 1e12), 4)
    return row


def main(argv=None) -> None:
    tune_cpu_allocator()  # as the CLI does (SEDD_MALLOC=default to compare without)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--preset", choices=sorted(PRESETS), action="append", help="repeatable; default: all CPU ones"
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None, help="override the preset's batch")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument(
        "--peak-tflops", type=float, default=989.0, help="the chip's dense bf16 peak (H100/H200: 989)"
    )
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda: no CUDA GPU visible")
    names = a.preset or (list(CPU_PRESETS) if a.device == "cpu" else ["small"])
    for name in names:
        print(
            json.dumps(run(name, a.device, a.steps, a.warmup, a.repeats, a.batch_size, a.peak_tflops)),
            flush=True,
        )


if __name__ == "__main__":
    main()
