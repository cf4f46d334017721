"""Record the behaviour goldens: outputs of today's code that a refactor must keep bit-identical.

    python scripts/record_goldens.py            # writes tests/fixtures/behaviour-golden.json
    python scripts/record_goldens.py --check    # recompute and compare, write nothing

On CPU, float32 weights, one torch thread, fixed seeds, two small models with the reference's
formula init (`tests/helpers.py: deterministic_init_`, so nothing depends on torch's init RNG):
the ``tiny`` preset with a char tokenizer (pad layout), once with the absorbing graph and the
log-linear schedule, once with the uniform graph and the geometric schedule. Recorded:

* ``sample``: `sedd_cli.sample` ids on the saved model folder, for every registered predictor x
  graph x denoise on/off x float64/float32 draws; the same stopped early (``eps=0.3``, so the
  denoiser has masks to fill); temperature / top-p shaping (absorbing); a shorter ``length``;
  ``generate``: `sedd_cli.generate` with ``fast=False`` (the general path) on the absorbing
  graph, and with an infill projector;
* ``infill``: `sedd_cli.infill` ids for a ``[MASK:N]`` template and for a prefix/suffix pair;
* ``bounds``: `evaluate_blocks` per-sequence bounds, counts and reconstruction terms on fixed
  blocks, and the `sedd_cli.perplexity` summary on the same blocks;
* ``train``: every record of metrics.jsonl from a 4-step `sedd_cli.train` of the tiny preset on
  a local names file (losses, validation loss, lr, gradient norm; times dropped).

Ids are lists of ints, floats Python floats (JSON keeps them repr-exact). The recording
functions below are what `tests/test_behaviour_golden.py` runs too: one place for both. Only
re-record deliberately, with a CHANGELOG line saying why outputs changed
(tests/fixtures/README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "behaviour-golden.json"
if str(REPO) not in sys.path:  # tests.helpers (the formula init) when run as a script
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from tests.helpers import NAMES  # noqa: E402

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
GRAPHS = {"absorb": "loglinear", "uniform": "geometric"}  # graph -> its noise schedule
STEPS, NUM, BATCH = 6, 3, 2  # two batches per call: the generator carries across them
SEED = 1234

# The infill cases (template / prefix-suffix) and the shaping cases, by name.
INFILL = {
    "template": dict(template="ma[MASK:3]a[MASK]"),
    "prefix_suffix": dict(prefix="em", suffix="ly", length=9),
}
SHAPING = {
    "t0.7": dict(temperature=0.7),
    "p0.6": dict(top_p=0.6),
    "t0.8_p0.9": dict(temperature=0.8, top_p=0.9),
    "argmax": dict(temperature=0.0),
}


@contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ids_list(x: torch.Tensor) -> list[list[int]]:
    return [[int(v) for v in row] for row in x.tolist()]


def floats(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x.tolist()]


# Predictors registered after the recording, with the tests that pin them instead; a predictor
# that is neither recorded nor listed here fails test_golden_covers_every_predictor.
NOT_RECORDED = {
    "first-hitting": "added in #16 (absorbing only); exact law and cached/uncached identity in "
    "tests/test_first_hitting.py",
}


def predictors() -> list[str]:
    """The registered predictors the goldens record (all but `NOT_RECORDED`)."""
    from sedd_cli.sampling import PREDICTORS

    return sorted(p for p in PREDICTORS if p not in NOT_RECORDED)


def model_config(graph: str):
    """The tiny preset (hidden 64, 2 blocks, L 16, pad layout) on `graph`, vocab from ALPHABET."""
    from sedd_cli.config import load_config

    sets = [f"graph.type={graph}", f"noise.type={GRAPHS[graph]}"]
    if graph != "absorb":
        sets.append("model.scale_by_sigma=false")
    cfg = load_config("tiny", sets=sets)
    cfg.model.vocab_size = char_tokenizer().vocab_size
    return cfg


def char_tokenizer():
    from sedd_cli.tokenizers import get_tokenizer

    return get_tokenizer("char", [ALPHABET])


def build_model_dir(graph: str, directory: Path) -> Path:
    """A model folder with the formula init (deterministic, independent of torch's init RNG)."""
    from tests.helpers import deterministic_init_

    from sedd_cli.checkpoints import build_components, save_model_dir

    cfg = model_config(graph)
    tok = char_tokenizer()
    model, _, _ = build_components(cfg, tok.vocab_size)
    deterministic_init_(model)
    return save_model_dir(directory / graph, model.state_dict(), cfg, tok, {"step": 0})


def load(model_dir: Path):
    import sedd_cli

    return sedd_cli.load_pretrained(str(model_dir), device="cpu")


# --- the recorders: each returns a JSON-ready dict ------------------------------------------------


def record_sample(pre: Any, graph: str) -> dict[str, Any]:
    """`sedd_cli.sample` ids for each predictor x denoise x precision (+ shaping on absorb)."""
    import sedd_cli

    out: dict[str, Any] = {}
    for predictor in predictors():
        for denoise in (True, False):
            for precision in ("float64", "float32"):
                key = f"{predictor}/{'denoise' if denoise else 'no-denoise'}/{precision}"
                r = sedd_cli.sample(
                    pre, steps=STEPS, predictor=predictor, num_samples=NUM, batch_size=BATCH,
                    seed=SEED, device="cpu", denoise=denoise, precision=precision,
                )  # fmt: skip
                out[key] = ids_list(r.ids)
    for predictor in predictors():  # stop early (t = 0.3): masks are left for the denoiser
        for denoise in (True, False):
            r = sedd_cli.sample(
                pre, steps=STEPS, predictor=predictor, num_samples=NUM, batch_size=BATCH,
                seed=SEED, device="cpu", denoise=denoise, eps=0.3,
            )  # fmt: skip
            out[f"{predictor}/{'denoise' if denoise else 'no-denoise'}/float64/eps0.3"] = ids_list(r.ids)
    r = sedd_cli.sample(
        pre, steps=STEPS, num_samples=NUM, batch_size=BATCH, seed=SEED, device="cpu", length=7
    )
    out["analytic/denoise/float64/length7"] = ids_list(r.ids)
    if graph == "absorb":
        for name, shaping in SHAPING.items():
            for predictor in predictors():
                r = sedd_cli.sample(
                    pre, steps=STEPS, predictor=predictor, num_samples=NUM, batch_size=BATCH,
                    seed=SEED, device="cpu", **shaping,
                )  # fmt: skip
                out[f"{predictor}/denoise/float64/{name}"] = ids_list(r.ids)
    return out


def record_generate(pre: Any, graph: str) -> dict[str, Any]:
    """`sedd_cli.generate` directly: the general path (fast=False) and a projector."""
    import sedd_cli

    out: dict[str, Any] = {}
    L = pre.config.model.length
    fixed = torch.full((L,), -1, dtype=torch.long)
    fixed[:2] = torch.tensor(pre.tokenizer.encode("jo"))
    fixed[-3:] = pre.tokenizer.pad_id
    given = fixed >= 0

    def projector(x: torch.Tensor) -> torch.Tensor:
        return torch.where(given, fixed, x)

    for predictor in predictors():
        for fast in (True, False) if graph == "absorb" else (True,):
            for proj in (None, projector):
                gen = torch.Generator().manual_seed(SEED)
                x = sedd_cli.generate(
                    pre.model, pre.graph, pre.noise, batch_size=BATCH, length=L, steps=STEPS,
                    predictor=predictor, generator=gen, projector=proj, fast=fast, device="cpu",
                )  # fmt: skip
                key = f"{predictor}/{'fast' if fast else 'general'}/{'projector' if proj else 'free'}"
                out[key] = ids_list(x)
    return out


def record_infill(pre: Any, graph: str) -> dict[str, Any]:
    import sedd_cli

    out: dict[str, Any] = {}
    for name, kw in INFILL.items():
        for predictor in predictors():
            r = sedd_cli.infill(
                pre, steps=STEPS, predictor=predictor, num_samples=NUM, batch_size=BATCH,
                seed=SEED, device="cpu", **kw,
            )  # fmt: skip
            out[f"{name}/{predictor}"] = {"ids": ids_list(r.ids), "texts": r.texts}
    return out


def eval_blocks(pre: Any) -> torch.Tensor:
    """Fixed blocks [8, L]: names encoded and padded as the pad layout stores them."""
    L, tok = pre.config.model.length, pre.tokenizer
    rows = []
    for name in NAMES[:8]:
        ids = tok.encode(name)[:L]
        rows.append(ids + [tok.pad_id] * (L - len(ids)))
    return torch.tensor(rows, dtype=torch.long)


def record_bounds(pre: Any, graph: str) -> dict[str, Any]:
    """Per-sequence bounds (`evaluate_blocks`) and the `perplexity` summary on fixed blocks."""
    import sedd_cli
    from sedd_cli.evaluation import evaluate_blocks

    blocks = eval_blocks(pre)
    out: dict[str, Any] = {}
    for spacing in ("sqrt", "uniform"):
        res = evaluate_blocks(
            pre.model, pre.graph, pre.noise, blocks, layout="pad", pad_id=pre.tokenizer.pad_id,
            mc=4, batch_size=3, seed=SEED, device="cpu", spacing=spacing,
        )  # fmt: skip
        out[f"blocks/{spacing}"] = {
            "bounds": floats(res.bounds),
            "counts": [int(c) for c in res.counts.tolist()],
            "reconstruction": floats(res.reconstruction),
            "prior": float(res.prior),
        }
    ppl = sedd_cli.perplexity(pre, data=blocks, mc=4, batch_size=3, seed=SEED, device="cpu")
    out["perplexity"] = {
        k: v
        for k, v in ppl.to_dict().items()
        if k not in ("seconds", "tokens_per_second", "model") and isinstance(v, (int, float, str, type(None)))
    }
    return out


def record_train(workdir: Path) -> dict[str, Any]:
    """metrics.jsonl of a 4-step train of the tiny preset on a local names file (times dropped)."""
    import sedd_cli
    from sedd_cli.training import read_metrics

    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "names.txt"
    data.write_text("\n".join(NAMES) + "\n")
    cfg = sedd_cli.load_config(
        "tiny",
        sets=[
            f"data.name={data}",
            f"data.cache_dir={workdir / 'cache'}",
            "data.valid_fraction=0.1",
            "train.max_steps=4",
            "train.log_every=1",
            "train.eval_every=2",
            "train.checkpoint_every=4",
            "train.sample_every=0",
            f"train.seed={SEED}",
        ],
    )
    result = sedd_cli.train(cfg, run_dir=workdir / "run", device="cpu")
    timing = ("time", "elapsed", "wall", "tokens_per_s", "step_s", "sec", "eta")
    records = [
        {k: v for k, v in m.items() if not any(w in k for w in timing)} for m in read_metrics(workdir / "run")
    ]
    return {"metrics": records, "loss": result.loss, "val_loss": result.val_loss, "steps": result.steps}


# --- everything -----------------------------------------------------------------------------------


def models(workdir: Path) -> dict[str, Any]:
    """The two loaded models, by graph."""
    return {g: load(build_model_dir(g, workdir)) for g in GRAPHS}


RECORDERS = {
    "sample": record_sample,
    "generate": record_generate,
    "infill": record_infill,
    "bounds": record_bounds,
}


def record_all(workdir: Path) -> dict[str, Any]:
    with one_thread():
        pres = models(workdir)
        doc: dict[str, Any] = {
            name: {g: fn(pre, g) for g, pre in pres.items()} for name, fn in RECORDERS.items()
        }
        doc["train"] = record_train(workdir / "train")
    return doc


def provenance() -> dict[str, Any]:
    import platform
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    return {
        "commit": commit,
        "src_dirty": dirty,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def check_finite(doc: Any, where: str = "") -> None:
    """NaN would never compare equal; refuse to record one."""
    if isinstance(doc, float) and not math.isfinite(doc):
        raise ValueError(f"non-finite value at {where}")
    if isinstance(doc, dict):
        for k, v in doc.items():
            check_finite(v, f"{where}/{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            check_finite(v, f"{where}[{i}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(FIXTURE))
    ap.add_argument("--check", action="store_true", help="compare with the fixture, write nothing")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEDD_CACHE_DIR"] = str(Path(tmp) / "sedd-cache")
        doc = record_all(Path(tmp))
    check_finite(doc)
    if args.check:
        want = json.loads(Path(args.out).read_text())
        want.pop("provenance", None)
        bad = [k for k in want if want[k] != doc.get(k)]
        print("match" if not bad else f"MISMATCH in {bad}")
        sys.exit(1 if bad else 0)
    doc = {"provenance": provenance(), **doc}
    Path(args.out).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
