"""The sampling options' checks, one function per fact, each the only place its message is written.

`sample`, `infill` and `generate` call them before any work, and `sedd sample` / `sedd infill`
call the ones they need before loading a model (the CLI parses, calls and renders). Bounds:
``--steps`` 1 to `MAX_STEPS` (the paper's longest runs use 2048), ``--num-samples`` 1 to
`MAX_SAMPLES` per call (several ``--seed``s give more), ``--length`` 1 to the model's trained
length, ``--eps`` in (0, 1), ``--tokens-per-step`` 1 to the sample's length. Shaping
(``--temperature``, ``--top-p``) is checked by `config.check_shaping`, shared with the
``sample:`` config section; the predictor name by `predictors.check_predictor`, next to the
registry.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SeddError

PRECISIONS = ("float64", "float32")
MAX_STEPS = 100_000  # reverse-process steps; the paper's longest runs use 2048
MAX_SAMPLES = 1_000_000  # samples per call (--num-samples)
MAX_BATCH = 1_048_576  # sequences per batch (--batch-size): a typo, not a real batch, beyond this
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def check_precision(precision: str, name: str = "--precision") -> torch.dtype:
    """The dtype of the categorical draws named by `precision` (float64 | float32). `name` is the
    option or config key the value came from (here and below: the message names it)."""
    if precision not in DTYPES:
        raise SeddError(f"{name} must be float64 or float32, got {precision!r}")
    return DTYPES[precision]


def check_steps(steps: int, name: str = "--steps") -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise SeddError(f"{name} must be between 1 and {MAX_STEPS:,} reverse-process steps, got {steps}")


def check_num_samples(num_samples: int, name: str = "--num-samples") -> None:
    if not 1 <= num_samples <= MAX_SAMPLES:
        raise SeddError(
            f"{name} must be between 1 and {MAX_SAMPLES:,}, got {num_samples}: "
            "run several calls with different --seed for more"
        )


def check_batch_size(batch_size: int, name: str = "--batch-size") -> None:
    if not 1 <= batch_size <= MAX_BATCH:
        raise SeddError(
            f"{name} (sequences per sampling batch) must be between 1 and {MAX_BATCH:,}, got {batch_size}"
        )


def check_length(length: int, max_length: int | None = None) -> None:
    """At least 1 and, given the model's trained length `max_length`, at most that."""
    if length < 1:
        raise SeddError(f"--length must be at least 1, got {length}")
    if max_length is not None and length > max_length:
        raise SeddError(
            f"--length {length} is longer than the model's trained length {max_length}: "
            f"use at most {max_length}"
        )


def check_eps(eps: float) -> None:
    if not 0 < eps < 1:
        raise SeddError(f"--eps (the end of the time grid) must be in (0, 1), got {eps}")


def check_tokens_per_step(k: int, length: int | None = None, name: str = "--tokens-per-step") -> None:
    """Positions the first-hitting sampler unmasks per network call: at least 1 and, given the
    sample's `length`, at most that."""
    if k < 1:
        raise SeddError(f"{name} must be at least 1 (positions unmasked per network call), got {k}")
    if length is not None and k > length:
        raise SeddError(f"{name} {k} is more than the {length} positions of a sample: use 1 to {length}")


def check_every(every: int) -> None:
    """``--every K`` of the live view: show every K-th step."""
    if every < 1:
        raise SeddError(f"--every must be at least 1, got {every}")


def check_outputs(out: Path | None, frames: Path | None, force: bool) -> None:
    """The output files (``--out``, ``--save-frames``), before sampling starts: not folders, not
    existing files unless `force`, not the same file."""
    for opt, path in (("--out", out), ("--save-frames", frames)):
        if path is not None and path.is_dir():
            raise SeddError(f"{opt} {str(path)!r} is a folder: give a file name")
        if path is not None and path.exists() and not force:
            raise SeddError(
                f"{opt} {str(path)!r} exists: pass --force to overwrite it, or choose another name"
            )
    if out is not None and frames is not None and out.resolve() == frames.resolve():
        raise SeddError("--out and --save-frames name the same file: give two names")


def check_infill_request(
    template: str | None, prefix: str | None, suffix: str | None, gap: str | None = None
) -> None:
    """Infill needs a template, or a prefix and/or a suffix (with `gap`, the gap between them), not
    both kinds."""
    if gap is not None and (template is not None or not (prefix or suffix)):
        raise SeddError("--gap A-B goes with --prefix and/or --suffix (not a TEMPLATE): give them")
    if template is not None and (prefix or suffix):
        raise SeddError("give either a TEMPLATE or --prefix/--suffix, not both")
    if template is None and not prefix and not suffix:
        raise SeddError("nothing to infill: give a TEMPLATE with [MASK], or --prefix and/or --suffix")


def check_run(steps: int, num_samples: int, batch_size: int, length: int, max_length: int) -> None:
    """All the size options of one `sample` / `infill` call."""
    check_steps(steps)
    check_num_samples(num_samples)
    check_batch_size(batch_size)
    check_length(length, max_length)
