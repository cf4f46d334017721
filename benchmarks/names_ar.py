"""The baseline users would pick instead: a same-size autoregressive character transformer on names.

    python benchmarks/names_ar.py                      # 373 s of training, then NLL and samples
    python benchmarks/names_ar.py --seconds 60 --n 500
    python benchmarks/names_ar.py --steps 10000        # a fixed step budget (same result on a busy machine)

A GPT-style causal transformer of the `names` preset's size (4 blocks x 96, 4 heads, MLP 4x,
pre-LayerNorm, learned positions, GELU: 0.45 M parameters) trained on the preset's training split
(the same distinct lowercased names, the same hash split as `sedd train` and `names_ngram.py`) with
AdamW (lr 1e-3, betas 0.9/0.999, weight decay 0), batch 64, 100 warm-up steps and a cosine decay
over the wall-time budget `--seconds` (the schedule follows elapsed time, since the number of
steps that fit is not known in advance), or over `--steps` optimizer steps when given (the same
model whatever else the machine is doing; the docs convert a time budget to steps with the idle
step time this script prints as ``s_per_step``). Prints one JSON object:

* ``val_nats_per_name``: the exact negative log-likelihood of the validation names, letters plus
  the end of the name, ``-sum_i log p(c_i | c_<i) - log p(end | name)`` averaged over names: the
  quantity `sedd perplexity` bounds from above for a pad-layout names model (which also scores
  where the name ends), and `names_ngram.py` reports.
* for each temperature in ``--temperatures``: ``share_real`` (sample is a distinct name of the
  data, train or validation), ``share_unique``, ``share_short`` (at most 3 letters),
  ``mean_length`` of ``--n`` samples (ancestral sampling with logits / T; at most 15 letters).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sedd_cli.config import load_preset  # noqa: E402
from sedd_cli.data import load_texts  # noqa: E402

LETTERS = "abcdefghijklmnopqrstuvwxyz"
END, BOS = len(LETTERS), len(LETTERS) + 1  # ids 0..25 letters, 26 end, 27 start
MAX_LETTERS = 15


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, L, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, L, 3, self.heads, d // self.heads).unbind(2)  # [B, L, H, dh]
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        h = h + self.out(a.transpose(1, 2).reshape(B, L, d))
        return h + self.mlp(self.ln2(h))


class CharGPT(nn.Module):
    """p(c_i | c_<i) for names: ids [B, L] starting with BOS -> logits [B, L, 27] (26 letters + end)."""

    def __init__(self, d: int = 96, blocks: int = 4, heads: int = 4, length: int = MAX_LETTERS + 1):
        super().__init__()
        self.tok = nn.Embedding(BOS + 1, d)
        self.pos = nn.Parameter(torch.zeros(length, d))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(blocks))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, END + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tok(x) + self.pos[: x.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h))


def encode(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [N, 16] (BOS + letters, padded) and targets [N, 16] (letters + end, -1 = no target)."""
    x = torch.full((len(names), MAX_LETTERS + 1), END, dtype=torch.long)
    y = torch.full_like(x, -1)
    for i, name in enumerate(names):
        ids = [LETTERS.index(c) for c in name[:MAX_LETTERS]]
        x[i, 0] = BOS
        x[i, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
        y[i, : len(ids) + 1] = torch.tensor([*ids, END], dtype=torch.long)
    return x, y


def nats_per_name(model: CharGPT, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(x[i : i + batch])
            total += F.cross_entropy(
                logits.flatten(0, 1), y[i : i + batch].flatten(), ignore_index=-1, reduction="sum"
            ).item()
    return total / len(x)


def train(
    model: CharGPT,
    x: torch.Tensor,
    y: torch.Tensor,
    seconds: float,
    steps: int | None,
    batch: int,
    lr: float,
    seed: int,
) -> int:
    """AdamW with 100 warm-up steps and a cosine decay over `steps` (if given) or `seconds`."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    start, step = time.perf_counter(), 0
    while True:
        elapsed = time.perf_counter() - start
        progress = step / steps if steps is not None else elapsed / seconds
        if progress >= 1:
            return step
        scale = min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        rows = torch.randint(0, len(x), (batch,), generator=gen)
        logits = model(x[rows])
        loss = F.cross_entropy(logits.flatten(0, 1), y[rows].flatten(), ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1


def sample(model: CharGPT, n: int, temperature: float, seed: int) -> list[str]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1), BOS, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(MAX_LETTERS + 1):
            logits = model(x)[:, -1].double()
            if temperature == 0:
                c = logits.argmax(-1)
            else:
                c = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen).squeeze(-1)
            if x.shape[1] == MAX_LETTERS + 1:
                c = torch.full_like(c, END)
            c = torch.where(done, END, c)
            done |= c == END
            x = torch.cat([x, c[:, None]], dim=1)
    return ["".join(LETTERS[i] for i in row[1:].tolist() if i < END) for row in x]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=373.0, help="training wall time")
    ap.add_argument("--steps", type=int, default=None, help="train this many steps instead of --seconds")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n", type=int, default=1000, help="samples per temperature")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    data = load_preset("names").data
    train_names, val_names = load_texts(data, "train"), load_texts(data, "validation")
    real = set(train_names) | set(val_names)
    (xt, yt), (xv, yv) = encode(train_names), encode(val_names)
    model = CharGPT()
    start = time.perf_counter()
    steps = train(model, xt, yt, args.seconds, args.steps, args.batch_size, args.lr, args.seed)
    wall = time.perf_counter() - start
    model.eval()
    row = {
        "params": sum(p.numel() for p in model.parameters()),
        "budget": f"{args.steps} steps" if args.steps is not None else f"{args.seconds:g} s",
        "steps": steps,
        "train_s": round(wall, 1),
        "s_per_step": round(wall / max(steps, 1), 4),
        "train_names": len(train_names),
        "val_names": len(val_names),
        "val_nats_per_name": round(nats_per_name(model, xv, yv), 3),
    }
    for temp in args.temperatures:
        names = sample(model, args.n, temp, args.seed)
        row[f"T{temp:g}"] = {
            "share_real": round(sum(x in real for x in names) / args.n, 4),
            "share_unique": round(len(set(names)) / args.n, 4),
            "share_short": round(sum(len(x) <= 3 for x in names) / args.n, 4),
            "mean_length": round(sum(map(len, names)) / args.n, 2),
            "examples": names[:8],
        }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
