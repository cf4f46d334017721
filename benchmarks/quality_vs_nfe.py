"""Sample quality against compute on the names model: "trade compute for quality", made visible.

    python benchmarks/quality_vs_nfe.py RUN                      # JSON lines on stdout
    python benchmarks/quality_vs_nfe.py RUN --n 400 --figure docs/quality_vs_nfe.svg

For each sampler — euler and analytic at 8 to 128 steps, analytic with the per-sequence cache
(time-independent models), first-hitting (exact) and first-hitting with K = 2 and 4 tokens per
network call — draws ``--n`` names at temperature 1 and top-p 1 (the model's own distribution)
and prints one JSON object per setting:

* ``nfe`` (network calls per batch), ``rows`` (sequences run through the network), ``wall_s``;
* ``share_real``: share of samples that are a distinct name of the data (train or validation);
* ``ngram_nll``: mean negative log-likelihood (nats per name, end of name included) of the samples
  under an interpolated character 5-gram fitted on the training split (`names_ngram.NGram`): how
  name-like the samples are to a model that never saw them; lower is more name-like, and the
  data's own validation names score ``data_ngram_nll`` (printed first, as ``"sampler": "data"``);
* ``entropy``: mean per-sample unigram entropy of the characters (nats): very low values flag
  repetitive samples, which a low 5-gram NLL alone would reward.

With ``--figure`` it also draws the three quality measures against ``nfe`` (matplotlib, the
``[plot]`` extra), one line per sampler (the share of real names with its binomial standard
error), the data's values dashed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from names_ngram import NGram  # noqa: E402

from sedd_cli.config import load_preset  # noqa: E402
from sedd_cli.data import load_texts  # noqa: E402
from sedd_cli.errors import SeddError  # noqa: E402

STEPS = (8, 16, 32, 64, 128)
# (label, sample() keywords, whether it has a steps axis)
SAMPLERS = (
    ("euler", {"predictor": "euler", "cache": False}, True),
    ("analytic", {"predictor": "analytic", "cache": False}, True),
    ("analytic + cache", {"predictor": "analytic", "cache": True}, True),
    ("first-hitting", {"predictor": "first-hitting", "tokens_per_step": 1}, False),
    ("first-hitting K=2", {"predictor": "first-hitting", "tokens_per_step": 2}, False),
    ("first-hitting K=4", {"predictor": "first-hitting", "tokens_per_step": 4}, False),
)


def entropy(text: str) -> float:
    counts = Counter(text)
    n = sum(counts.values())
    return -sum(c / n * math.log(c / n) for c in counts.values()) if n else 0.0


def measure(names: list[str], real: set[str], ngram: NGram) -> dict[str, float]:
    clean = [x for x in names if all("a" <= c <= "z" for c in x)]  # the 5-gram knows only letters
    return {
        "share_real": round(sum(x in real for x in names) / len(names), 4),
        "ngram_nll": round(sum(ngram.nll(x) for x in clean) / max(len(clean), 1), 3),
        "entropy": round(sum(entropy(x) for x in names) / len(names), 4),
        "mean_length": round(sum(map(len, names)) / len(names), 2),
    }


def settings(time_independent: bool):
    for label, kw, stepped in SAMPLERS:
        if kw.get("cache") and not time_independent:
            continue  # the cache needs a network without time input
        for steps in STEPS if stepped else (None,):
            yield label, kw, steps


def run(args) -> list[dict]:
    from sedd_cli.checkpoints import load_pretrained
    from sedd_cli.sampling import sample

    data = load_preset("names").data
    train, val = load_texts(data, "train"), load_texts(data, "validation")
    real, ngram = set(train) | set(val), NGram(5, train)
    pre = load_pretrained(args.run, device=args.device)
    time_independent = not getattr(pre.model, "time_conditioned", True)
    rows = [{"sampler": "data", **measure(val, real, ngram)}]
    print(json.dumps(rows[0]), flush=True)
    for label, kw, steps in settings(time_independent):
        try:
            res = sample(
                pre, steps=steps, num_samples=args.n, batch_size=args.batch_size, seed=args.seed,
                temperature=1.0, top_p=1.0, **kw,
            )  # fmt: skip
        except SeddError as exc:
            print(json.dumps({"sampler": label, "steps": steps, "skipped": str(exc)}), flush=True)
            continue
        names = [t.strip().lower() for t in res.texts]
        row = {
            "sampler": label,
            "steps": steps,
            "nfe": res.nfe,
            "rows": res.rows,
            "wall_s": round(res.wall_s, 2),
        }
        row.update(measure(names, real, ngram))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def figure(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = rows[0]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (
        ("share_real", "share of real names"),
        ("ngram_nll", "5-gram NLL (nats/name)"),
        ("entropy", "entropy (nats)"),
    )
    # equal points overlap (euler = analytic = cache for a time-independent log-linear model):
    # different line styles and marker sizes keep each visible
    styles = {"euler": ("s--", 9), "analytic": ("o-", 6), "analytic + cache": ("x:", 7)}
    for ax, (key, label) in zip(axes, panels, strict=True):
        for sampler in dict.fromkeys(r["sampler"] for r in rows[1:] if "nfe" in r):
            pts = sorted(
                (r["nfe"], r[key], r.get("n", 1)) for r in rows[1:] if r["sampler"] == sampler and "nfe" in r
            )
            x, y = [p[0] for p in pts], [p[1] for p in pts]
            style, size = styles.get(sampler, ("*", 11))
            # binomial standard error of a share: sqrt(p (1 - p) / n)
            err = (
                [math.sqrt(v * (1 - v) / p[2]) for v, p in zip(y, pts, strict=True)]
                if key == "share_real"
                else None
            )
            ax.errorbar(
                x, y, yerr=err, fmt=style, label=sampler, markersize=size, capsize=2, fillstyle="none"
            )
        if key != "share_real":
            ax.axhline(data[key], color="gray", linestyle="--", linewidth=1, label="data (validation names)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("network calls per batch (nfe)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a names run directory (or any model folder sedd can load)")
    ap.add_argument("--n", type=int, default=200, help="samples per setting")
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--figure", type=Path, default=None, help="write the figure here (.svg / .png)")
    args = ap.parse_args(argv)
    rows = run(args)
    if args.figure is not None:
        figure(rows, args.figure, f"{args.run}: {args.n} samples per point, temperature 1")


if __name__ == "__main__":
    main()
