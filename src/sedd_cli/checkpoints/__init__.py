"""Models on disk and on the hub, and the one loader behind every command that takes a MODEL.

Formats, one module each (docs/checkpoints.md):

* `ours`: our **model folder** (``config.yaml``, ``tokenizer.json``, ``model.safetensors``,
  ``meta.json``) and **run directory** with ``checkpoints/step_XXXXXXXX/`` folders;
* `published`: the reference's **published (Hugging Face) folder**, ``config.json`` with
  ``model.safetensors`` or ``pytorch_model.bin`` (its config conventions: `reference`);
* `radd`: **RADD's published folder** (``JingyangOu/radd-*``), ``config.json`` with
  ``model.type: ddit_wot`` and the same weight files: a time-independent absorbing model;
* `hub`: a **hub id** ``owner/name`` (e.g. ``louaaron/sedd-small``), a published folder
  downloaded into the Hugging Face cache, or found there when offline;
* `reference_run`: a **reference training run**, ``.hydra/config.yaml`` with
  ``checkpoints-meta/checkpoint.pth`` (its EMA shadow parameters used by default).

Every source goes through one path: `locate` finds the config, tokenizer and tensors (each format
registers its locator in `formats`); then `load_pretrained` (`pretrained`) builds config -> model
-> strict load. Tensors are read and checked in `weights`; `convert` writes any of them as our
model folder.
"""

from __future__ import annotations

from .convert import ConvertResult, check_convert_out, convert_model
from .formats import Located, register_format
from .hub import is_hub_id
from .locate import locate
from .ours import (
    CONFIG_FILE,
    EMA_FILE,
    META_FILE,
    TRAINER_FILE,
    WEIGHTS_FILE,
    file_record,
    latest_checkpoint,
    list_checkpoints,
    newest_run,
    read_config,
    save_model_dir,
)
from .pretrained import Pretrained, build_components, graph_dim, load_pretrained
from .published import HF_CONFIG_FILE, HF_WEIGHT_FILES, locate_published  # noqa: F401 (registers)
from .radd import RADD_FAMILY, locate_radd  # noqa: F401 (registers)
from .reference import BYTE_TOKENS, GPT2_TOKENS, reference_config
from .reference_run import HYDRA_CONFIG, REF_META_CHECKPOINT, locate_reference_run  # noqa: F401 (registers)
from .weights import (
    OPTIONAL_KEYS,
    WEIGHT_CHOICES,
    check_tensors,
    check_weights,
    load_state_strict,
    load_weights,
    save_weights,
    torch_load_safe,
)

__all__ = [
    "Pretrained",
    "Located",
    "ConvertResult",
    "build_components",
    "save_weights",
    "load_weights",
    "torch_load_safe",
    "check_tensors",
    "load_state_strict",
    "save_model_dir",
    "list_checkpoints",
    "latest_checkpoint",
    "newest_run",
    "locate",
    "load_pretrained",
    "convert_model",
    "check_convert_out",
    "read_config",
    "reference_config",
    "is_hub_id",
    "check_weights",
    "register_format",
    "graph_dim",
    "file_record",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "EMA_FILE",
    "META_FILE",
    "TRAINER_FILE",
    "OPTIONAL_KEYS",
    "WEIGHT_CHOICES",
    "HF_CONFIG_FILE",
    "HF_WEIGHT_FILES",
    "HYDRA_CONFIG",
    "REF_META_CHECKPOINT",
    "GPT2_TOKENS",
    "BYTE_TOKENS",
    "RADD_FAMILY",
]
