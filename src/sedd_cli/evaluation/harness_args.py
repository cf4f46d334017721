"""The ``model_args`` of the harness model ``sedd`` (``--model sedd --model_args KEY=VALUE,...``) and
their one check each, before any model is loaded. No `lm_eval` import: the checks run without it.

The harness parses ``key=value`` pairs itself and hands them over typed (``32`` an int, ``true``
a bool, anything else a string); it also passes its own ``--batch_size`` (1 unless given),
``--max_batch_size`` and ``--device`` (``cuda:0`` unless given). A key given in ``model_args``
wins over the harness's option of the same name (`merge_harness_args`), so ``--model_args
...,batch_size=16`` works whatever ``--batch_size`` defaults to; the harness's device is used
where it exists here, else ``auto``.

| key | meaning | default |
|---|---|---|
| pretrained | MODEL: a run, checkpoint, model folder, hub id or RADD folder | required |
| mc | K, time samples per request (each one network row) | 32 |
| batch_size | sequences per forward pass (rounded up to a multiple of 16) | 16 |
| seed | the seed hashed with every request's tokens | 0 |
| device | auto, cpu, cuda, cuda:N, mps | auto |
| weights | ema or model (where a checkpoint holds both) | ema |
| predictor, steps, temperature, top_p | ``generate_until``'s sampler | the model's ``sample:`` settings |
| greedy | compute ``is_greedy`` (false: report False, skip the greedy fill's calls) | true |
| bounds_log | a JSONL file: one line per request, with the bound's standard error | none |
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from typing import Any

from ..checkpoints.weights import check_weights
from ..config import check_seed, check_shaping, convert_value
from ..errors import SeddError
from ..sampling.checks import check_steps
from ..sampling.predictors import check_predictor
from .options import check_batch_size, check_mc

__all__ = ["HarnessOptions", "MODEL_ARGS", "harness_options", "merge_harness_args"]

MODEL_ARGS = (
    "pretrained",
    "mc",
    "batch_size",
    "seed",
    "device",
    "weights",
    "predictor",
    "steps",
    "temperature",
    "top_p",
    "greedy",
    "bounds_log",
    "max_batch_size",  # the harness passes it with --batch_size auto; not used
)


@dataclass(frozen=True)
class HarnessOptions:
    """The checked ``model_args`` of one ``sedd`` harness model."""

    pretrained: str
    mc: int = 32
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    weights: str = "ema"
    predictor: str | None = None
    steps: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    greedy: bool = True
    bounds_log: str | None = None


def merge_harness_args(model_args: dict[str, Any], harness: dict[str, Any] | None) -> dict[str, Any]:
    """``model_args`` over the harness's own options (batch_size, max_batch_size, device): a key
    in ``model_args`` wins, the harness's None values are dropped. The harness's command line
    always sends a device (``cuda:0`` unless told), so, as its own Hugging Face model does, its
    device is used only where it exists here; otherwise ``auto``."""
    extra = {k: v for k, v in (harness or {}).items() if v is not None and k not in model_args}
    if "device" in extra and not _present(str(extra["device"])):
        extra["device"] = "auto"
    return {**extra, **model_args}


def _present(device: str) -> bool:
    """Whether `device` (cpu, cuda, cuda:N, mps) names a device this machine has."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cpu":
        return True
    if kind == "cuda":
        n = torch.cuda.device_count()
        return n > 0 and (not index or (index.isdigit() and int(index) < n))
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return False


def _unknown(args: dict[str, Any]) -> None:
    for key in args:
        if key not in MODEL_ARGS:
            close = difflib.get_close_matches(str(key), MODEL_ARGS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SeddError(
                f"unknown model_args key {key!r} for --model sedd: {hint}known keys: "
                f"{', '.join(MODEL_ARGS[:-1])}"
            )


def harness_options(args: dict[str, Any]) -> HarnessOptions:
    """Check every key of `args` (the merged ``model_args``) once; SeddError names the key. Values
    are converted to the fields' types as a config file's are (`config.convert_value`), then
    checked by the same functions as the options of ``sedd perplexity`` / ``sedd sample``."""
    _unknown(args)
    if args.get("pretrained") in (None, ""):
        raise SeddError(
            "model_args pretrained is required: --model_args pretrained=MODEL (a run, checkpoint, "
            "model folder, hub id or RADD folder)"
        )
    if str(args.get("batch_size", "")).startswith("auto"):
        raise SeddError(
            "batch_size auto is not supported by --model sedd: give a number (sequences per pass)"
        )
    hints = typing.get_type_hints(HarnessOptions)
    given = {
        key: convert_value(f"model_args {key}", value, hints[key])
        for key, value in args.items()
        if key in hints and value is not None
    }
    opts = HarnessOptions(**given)
    check_mc(opts.mc, "model_args mc")
    check_batch_size(opts.batch_size, "model_args batch_size")
    check_seed(opts.seed, "model_args seed")
    check_weights(opts.weights, "model_args ")
    if opts.predictor is not None:
        check_predictor(opts.predictor, "model_args predictor")
    if opts.steps is not None:
        check_steps(opts.steps, "model_args steps")
    check_shaping(
        1.0 if opts.temperature is None else opts.temperature,
        1.0 if opts.top_p is None else opts.top_p,
        ("model_args temperature", "model_args top_p"),
    )
    return opts
