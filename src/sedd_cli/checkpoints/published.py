"""The published (Hugging Face) layout of the reference models (sedd-spec §3.10).

A folder with ``config.json`` (the reference Hydra config as JSON: ``tokens``, ``graph.type``,
``noise.type``, ``model.hidden_size`` ...) and ``model.safetensors`` or ``pytorch_model.bin``
(looked up in that order, as PyTorchModelHubMixin does). The published files hold one set of
weights, the EMA weights. A hub id resolves to such a folder in the hub cache (`hub`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SeddError
from .formats import Located, read_json, register_format
from .reference import reference_parts
from .weights import load_weights

__all__ = ["HF_CONFIG_FILE", "HF_WEIGHT_FILES", "hf_weight_file", "locate_published"]

HF_CONFIG_FILE = "config.json"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # lookup order of PyTorchModelHubMixin


def hf_weight_file(path: Path) -> Path:
    """The folder's weights, the first of `HF_WEIGHT_FILES` present; a SeddError when none is."""
    files = [path / name for name in HF_WEIGHT_FILES if (path / name).is_file()]
    if not files:
        raise SeddError(
            f"{str(path)!r} has {HF_CONFIG_FILE} but no weights: expected {' or '.join(HF_WEIGHT_FILES)}"
        )
    return files[0]


@register_format(20, f"a published folder ({HF_CONFIG_FILE} + weights)")
def locate_published(path: Path, weights: str, origin: dict[str, Any] | None = None) -> Located | None:
    """A folder in the published layout: config.json + model.safetensors | pytorch_model.bin."""
    cfg_path = path / HF_CONFIG_FILE
    if not cfg_path.is_file():
        return None
    weight = hf_weight_file(path)
    data = read_json(cfg_path)
    config, tokenizer = reference_parts(data, path, repr(str(cfg_path)))
    state = load_weights(weight)
    origin = {**(origin or {}), "path": str(weight), "file": weight.name}
    # The published files hold one set of weights (the EMA weights, sedd-spec §3.10).
    return Located("hf-folder", config, tokenizer, state, "ema", origin)
