"""Infilling from Python: train a small names model (or reuse one) and fill masked positions.

python examples/infill.py                      # trains the names preset for 300 steps first
python examples/infill.py runs/names-...       # use an existing run
SEDD_EXAMPLE_PRESET=tiny SEDD_EXAMPLE_STEPS=10 python examples/infill.py   # smoke run
"""

from __future__ import annotations

import os
import sys

import sedd_cli


def main() -> None:
    if len(sys.argv) > 1:
        run = sys.argv[1]
    else:
        preset = os.environ.get("SEDD_EXAMPLE_PRESET", "names")
        steps = os.environ.get("SEDD_EXAMPLE_STEPS", "300")
        run = os.environ.get("SEDD_EXAMPLE_RUN", "runs/infill-example")
        cfg = sedd_cli.load_config(preset, sets=[f"train.max_steps={steps}"])
        result = sedd_cli.train(cfg, run_dir=run)
        print(f"trained {result.steps} steps, loss {result.loss:.2f} nats/sequence")

    # [MASK] is one token (here: one character), [MASK:N] is N; the given text never changes.
    out = sedd_cli.infill(run, template="ma[MASK:4]", num_samples=4, steps=32, seed=0)
    for text, spans in zip(out.texts, out.spans, strict=True):
        print(f"{text!r:20} filled positions {spans}")

    # the same with a prefix and a suffix, and the total length given
    out = sedd_cli.infill(run, prefix="j", suffix="n", length=5, num_samples=4, steps=32, seed=1)
    print(out.texts)


if __name__ == "__main__":
    main()
