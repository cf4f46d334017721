"""CPU kernels behind the speed choices: tanh-GELU forms, and large fresh tensors with the allocator setting.

    python benchmarks/cpu_kernels.py                       # with the allocator setting, as the CLI
    SEDD_MALLOC=default python benchmarks/cpu_kernels.py   # glibc's defaults, to compare

Prints one JSON object per line: kernel, shape, ms (median of --repeats calls after one warm-up),
threads, malloc ("tuned" or "default"). Kernels: torch's tanh-GELU and `model.GeluTanh`, forward
and forward + backward, on ``[2048, 1024]`` (the `names` MLP activation); ``exp`` and
``logsumexp`` of a fresh ``[800, 50257]`` tensor (a GPT-2 head output at masked rows).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from sedd_cli.allocator import tune_cpu_allocator
from sedd_cli.model import GeluTanh


def _ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1e3 * statistics.median(times), 2)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = ap.parse_args(argv)
    malloc = "tuned" if tune_cpu_allocator() else "default"
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    act = torch.randn(2048, 1024, generator=gen)
    head = 3 * torch.randn(800, 50257, generator=gen)
    ours = GeluTanh()

    def fwd_bwd(f):
        def run():
            x = act.clone().requires_grad_()
            f(x).backward(torch.ones_like(act))

        return run

    cases = [
        ("gelu_tanh_torch", act, lambda: F.gelu(act, approximate="tanh")),
        ("gelu_tanh_sedd", act, lambda: ours(act)),
        ("gelu_tanh_torch_fwd_bwd", act, fwd_bwd(lambda x: F.gelu(x, approximate="tanh"))),
        ("gelu_tanh_sedd_fwd_bwd", act, fwd_bwd(ours)),
        ("exp_fresh", head, lambda: torch.exp(head)),
        ("logsumexp", head, lambda: torch.logsumexp(head, dim=-1)),
    ]
    for name, tensor, fn in cases:
        row = {"kernel": name, "shape": list(tensor.shape), "ms": _ms(fn, args.repeats)}
        print(json.dumps(row | {"threads": torch.get_num_threads(), "malloc": malloc}), flush=True)


if __name__ == "__main__":
    main()
