"""How large must mc be for a multiple-choice margin to be resolved? Figures for docs/evaluation.md.

    python scripts/harness_margins.py [--mc 32] [--steps 300] [--batch-size 16]

Trains the tiny model of tests/test_harness.py (pad layout, 300 steps on the words c^n, c in
a..f, n = 2..6; a few seconds on one CPU core) in a temporary folder, then bounds the 72 answers of
its 36 two-choice questions (after c^n, "c" against another letter; the test's task) exactly as
the harness model ``sedd`` does (`evaluation.requests` rows, `request_seed`, `conditional_bound`),
with K = mc samples each, and prints:

* sigma_1: the per-sample spread of one answer's bound, sd(v_1..v_K) (its standard error is
  sigma_1 / sqrt(K));
* per question, the margin Delta between the two answers and the per-sample spread of their
  difference, paired (the answers of one context share their draws) and, for comparison, as if
  independent, sqrt(sigma_a^2 + sigma_b^2);
* the mc each question needs for its margin to stand at z = 2 standard errors,
  mc >= (z sigma_Delta / Delta)^2, and how many are resolved at the mc used.

Needs no lm-eval (the layout and the bound are the library's). Results vary with the machine only
through the training run's floating point.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sedd_cli.checkpoints import load_pretrained
from sedd_cli.config import load_config
from sedd_cli.evaluation import Layout, conditional_bound, encode_pair, request_seed, score_row
from sedd_cli.training import train

LETTERS = "abcdef"


def _train(folder: Path, steps: int) -> Path:
    words = [c * n for c in LETTERS for n in range(2, 7)]
    (folder / "words.txt").write_text("\n".join(words * 4) + "\n")
    cfg = load_config(
        "tiny",
        sets=[
            f"data.name={folder / 'words.txt'}", "data.valid_fraction=0.1", f"train.max_steps={steps}",
            "train.lr=3e-3", "train.batch_size=16", "train.log_every=100", "train.eval_every=0",
            f"train.checkpoint_every={steps}", "train.sample_every=0",
        ],
    )  # fmt: skip
    train(cfg, run_dir=folder / "run", device="cpu")
    return folder / "run"


def _questions() -> list[tuple[str, list[str], int]]:
    out = []
    for c, other in zip(LETTERS, LETTERS[1:] + LETTERS[0], strict=True):
        for n in (1, 2, 3):
            out.append((c * n, [c, other], 0))
            out.append((c * n, [other * 2, c * 2], 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mc", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--z", type=float, default=2.0)
    ap.add_argument(
        "--batch-size", type=int, default=16, help="sequences per forward pass (model_args batch_size)"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        pre = load_pretrained(str(_train(Path(tmp), args.steps)), device="cpu")
    layout = Layout.of(pre)
    qs = _questions()
    rows = [
        score_row(layout, *encode_pair(pre.tokenizer, ctx, ans)) for ctx, answers, _ in qs for ans in answers
    ]
    x0 = torch.tensor([r.ids for r in rows])
    start = time.perf_counter()
    res = conditional_bound(
        pre.model, pre.graph, pre.noise, x0, [r.start for r in rows], [r.end for r in rows], args.mc,
        [request_seed(0, *r.seed_parts) for r in rows], width=layout.length, batch_size=args.batch_size,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    v, K = res.values, args.mc
    sigma1 = v.std(dim=1)
    print(f"mc = {K}, {len(qs)} two-choice questions, {len(rows)} answers")
    print(
        f"cost: {len(rows) * K} network rows of L = {layout.length} in {seconds:.2f} s "
        f"({len(rows) * K / seconds:,.0f} rows/s, {torch.get_num_threads()} CPU thread)"
    )
    print(f"sigma_1 (per-sample sd of one answer's bound): median {float(sigma1.median()):.2f} nats, "
          f"range {float(sigma1.min()):.2f} .. {float(sigma1.max()):.2f}")  # fmt: skip
    paired, unpaired, need, resolved, right = [], [], [], 0, 0
    for q, (_, _, gold) in enumerate(qs):
        a, b = 2 * q, 2 * q + 1
        delta = abs(float(res.bound[a] - res.bound[b]))
        s_pair = float((v[a] - v[b]).std())
        paired.append(s_pair)
        unpaired.append(math.hypot(float(sigma1[a]), float(sigma1[b])))
        need.append((args.z * s_pair / max(delta, 1e-12)) ** 2)
        resolved += delta >= args.z * s_pair / math.sqrt(K)
        right += (0 if res.bound[a] < res.bound[b] else 1) == gold
    print(f"sigma_Delta paired (shared draws): median {statistics.median(paired):.2f} nats; "
          f"as if independent: median {statistics.median(unpaired):.2f}")  # fmt: skip
    margins = [abs(float(res.bound[2 * q] - res.bound[2 * q + 1])) for q in range(len(qs))]
    print(f"margins: median {statistics.median(margins):.2f} nats")
    print(f"mc needed at z = {args.z:g} (paired): median {statistics.median(need):.0f}, "
          f"90th percentile {sorted(need)[int(0.9 * len(need))]:.0f}")  # fmt: skip
    print(f"resolved at mc = {K}: {resolved} of {len(qs)}; accuracy {right / len(qs):.3f}")


if __name__ == "__main__":
    main()
