"""Character n-gram baselines for the baby-names data: what a count model reaches in seconds.

    python benchmarks/names_ngram.py                 # orders 2-6, 200 samples each
    python benchmarks/names_ngram.py --orders 5 --n 1000

Trains an interpolated Witten-Bell character n-gram on the `names` preset's training split (the
same distinct lowercased names, the same hash split as `sedd train`) and prints one JSON object per
order: ``val_nats_per_name`` (cross-entropy on the validation split, letters plus the end of the
name, comparable to `sedd perplexity`'s bound per name for a pad-layout model, which also scores
where the name ends), and ``share_real`` / ``share_unique`` / ``share_short`` (at most 3 letters) /
``mean_length`` of ``--n`` sampled names (real: in the full data, as in `names_quality.py`).

Witten-Bell: p_k(c | h) = (N(h c) + T(h) p_{k-1}(c | h')) / (N(h) + T(h)) with h' the history
without its oldest character, N counts, T(h) the number of distinct characters after h, and p_0
uniform over the 27 symbols (26 letters and the end).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sedd_cli.config import load_preset  # noqa: E402
from sedd_cli.data import load_texts  # noqa: E402

END = "$"
ALPHABET = "abcdefghijklmnopqrstuvwxyz" + END


class NGram:
    """Interpolated Witten-Bell model of order `n` (n - 1 characters of history)."""

    def __init__(self, n: int, names: list[str]):
        self.n = n
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(n)]
        for name in names:
            s = "^" * (n - 1) + name + END
            for i in range(n - 1, len(s)):
                for k in range(n):  # history length k
                    self.counts[k][s[i - k : i]][s[i]] += 1

    def prob(self, history: str, c: str) -> float:
        p = 1.0 / len(ALPHABET)
        for k in range(self.n):
            h = history[len(history) - k :] if k else ""
            seen = self.counts[k].get(h)
            if not seen:
                continue
            total, types = sum(seen.values()), len(seen)
            p = (seen.get(c, 0) + types * p) / (total + types)
        return p

    def nll(self, name: str) -> float:
        s = "^" * (self.n - 1) + name + END
        return -sum(math.log(self.prob(s[i - self.n + 1 : i], s[i])) for i in range(self.n - 1, len(s)))

    def sample(self, rng: random.Random, max_len: int = 15) -> str:
        s = "^" * (self.n - 1)
        for _ in range(max_len):
            h = s[len(s) - self.n + 1 :] if self.n > 1 else ""
            c = rng.choices(ALPHABET, [self.prob(h, a) for a in ALPHABET])[0]
            if c == END:
                break
            s += c
        return s[self.n - 1 :]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    ap.add_argument("--n", type=int, default=200, help="samples per order")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = load_preset("names").data
    train, val = load_texts(data, "train"), load_texts(data, "validation")
    real = set(train) | set(val)
    for order in args.orders:
        start = time.perf_counter()
        model = NGram(order, train)
        val_nll = sum(model.nll(v) for v in val) / len(val)
        rng = random.Random(args.seed)
        names = [model.sample(rng) for _ in range(args.n)]
        row = {
            "order": order,
            "train_names": len(train),
            "val_names": len(val),
            "val_nats_per_name": round(val_nll, 3),
            "n": args.n,
            "share_real": round(sum(x in real for x in names) / args.n, 4),
            "share_unique": round(len(set(names)) / args.n, 4),
            "share_short": round(sum(len(x) <= 3 for x in names) / args.n, 4),
            "mean_length": round(sum(map(len, names)) / args.n, 2),
            "seconds": round(time.perf_counter() - start, 1),
            "examples": names[:8],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
