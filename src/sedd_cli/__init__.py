"""sedd: Score Entropy Discrete Diffusion text models: train, sample, infill and evaluate.

The public Python API. Names are imported lazily, so ``import sedd_cli`` (and ``sedd --help``)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # configuration (no torch)
    "Config": "config",
    "ModelConfig": "config",
    "GraphConfig": "config",
    "NoiseConfig": "config",
    "DataConfig": "config",
    "TrainConfig": "config",
    "SampleConfig": "config",
    "load_config": "config",
    "load_preset": "config",
    "SeddError": "errors",
    "tune_cpu_allocator": "allocator",
    "ConfigError": "errors",
    # tokenizers
    "get_tokenizer": "tokenizers",
    "load_tokenizer": "tokenizers",
    # the maths
    "LogLinearNoise": "noise",
    "GeometricNoise": "noise",
    "get_noise": "noise",
    "Absorbing": "graph",
    "Uniform": "graph",
    "get_graph": "graph",
    "SEDD": "model",
    "build_model": "model",
    "score_entropy_loss": "losses",
    # models on disk
    "load_pretrained": "checkpoints",
    "Pretrained": "checkpoints",
    # commands as functions
    "perplexity": "evaluation",
    "train": "training",
    "TrainResult": "training",
    "sample": "sampling",
    "infill": "sampling",
    "generate": "sampling",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sedd_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
