"""RADD's published layout (Ou et al. 2024, code ML-GSAI/RADD): ``JingyangOu/radd-t-dce``,
``JingyangOu/radd-lambda-dce`` and folders like them.

RADD's network class is a ``PyTorchModelHubMixin``: ``save_pretrained`` / ``push_to_hub`` write a
folder with

* ``config.json``: RADD's Hydra config as JSON, the mapping its ``RADD(config)`` and
  ``noise_lib.get_noise(config)`` read back: ``tokens`` (V, 50257 for GPT-2), ``model`` with
  ``type: ddit_wot`` and ``hidden_size``, ``n_blocks``, ``n_heads``, ``dropout``, ``length``
  (``cond_dim``, ``dtype`` and ``use_checkpoint`` do not shape the weights), ``noise`` (``type``:
  loglinear, or geometric with ``sigma_min`` / ``sigma_max``), and usually ``training.loss_type``
  (``t_DSE`` | ``t_DCE`` | ``lambda_DCE``), ``sampling``, ``optim``. A mapping wrapped as
  ``{"config": {...}}`` is read the same way.
* ``model.safetensors`` or ``pytorch_model.bin`` (that lookup order, as the mixin's), one set of
  weights, read weights-only (`weights.load_weights`).

RADD's network is ours with ``model.time_conditioning: false`` (no sigma embedding, plain
LayerNorm with weight and bias, log-softmax head over the V real tokens), and its state-dict names
are ours (tests/fixtures/reference/radd-state-dict.json), so the weights load strictly by name, like
SEDD's; the graph is absorbing (RADD has no other), the tokenizer GPT-2 for 50257 tokens (or a sedd
``tokenizer.json`` beside the config, as for the reference layout: `reference.reference_tokenizer`).
The format is recognised by ``model.type: ddit_wot`` and tried before the reference's published
layout, whose loader refuses that type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, config_from_dict
from ..errors import SeddError
from .formats import Located, read_json, register_format
from .published import HF_CONFIG_FILE, hf_weight_file
from .reference import carry_settings, reference_parts
from .weights import load_weights

__all__ = ["RADD_MODEL_TYPE", "RADD_LOSSES", "RADD_FAMILY", "radd_settings", "radd_config", "locate_radd"]

RADD_MODEL_TYPE = "ddit_wot"  # RADD's model.type: DDiT "without time"
RADD_FAMILY = "RADD"  # origin["family"] of a model read in this layout (`sedd info` names it)
RADD_LOSSES = {
    "t_DSE": "dse",
    "t_DCE": "t-dce",
    "lambda_DCE": "lambda-dce",
}  # training.loss_type -> train.loss
_NETWORK_KEYS = ("hidden_size", "cond_dim", "n_blocks", "n_heads", "dropout", "length")


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def radd_settings(data: Any) -> dict[str, Any] | None:
    """RADD's config mapping when `data` (a config.json document) is one (``model.type`` is
    ``ddit_wot``, possibly wrapped as ``{"config": ...}``), else None."""
    if isinstance(data, dict) and "model" not in data and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        return None
    return data if _section(data, "model").get("type") == RADD_MODEL_TYPE else None


def radd_config(data: dict[str, Any], tokenizer_kind: str, *, where: str = "config") -> Config:
    """Our `Config` for RADD's config mapping: a time-independent absorbing model with RADD's
    sizes and noise schedule, ``train.loss`` from ``training.loss_type`` when it is one of ours,
    and the settings that do not shape the network carried over when they fit."""
    model, noise = _section(data, "model"), _section(data, "noise")
    core: dict[str, Any] = {
        "name": str(model.get("name", "radd")),
        "model": {"vocab_size": data.get("tokens"), "time_conditioning": False},
        "graph": {"type": "absorb"},
        "noise": {"type": noise.get("type", "loglinear")},
        "data": {"tokenizer": tokenizer_kind},
    }
    core["model"].update({k: model[k] for k in _NETWORK_KEYS if k in model})
    if core["noise"]["type"] == "geometric":
        core["noise"].update({k: noise[k] for k in ("sigma_min", "sigma_max") if k in noise})
    loss = RADD_LOSSES.get(_section(data, "training").get("loss_type"))
    if loss is not None:
        core["train"] = {"loss": loss}
    try:
        cfg = config_from_dict(core)
    except ConfigError as exc:
        raise SeddError(f"{where}: {exc}") from None
    return carry_settings(cfg, data)


@register_format(15, f"a RADD folder ({HF_CONFIG_FILE} with model.type {RADD_MODEL_TYPE} + weights)")
def locate_radd(path: Path, weights: str, origin: dict[str, Any] | None = None) -> Located | None:
    """A folder in RADD's published layout (module notes), else None (e.g. the reference's)."""
    cfg_path = path / HF_CONFIG_FILE
    if not cfg_path.is_file():
        return None
    data = radd_settings(read_json(cfg_path))
    if data is None:
        return None
    weight = hf_weight_file(path)
    config, tokenizer = reference_parts(data, path, repr(str(cfg_path)), build=radd_config)
    state = load_weights(weight)
    origin = {**(origin or {}), "path": str(weight), "file": weight.name, "family": RADD_FAMILY}
    # One set of weights, the ones RADD's own loader (load_model_hf) samples with.
    return Located("radd-folder", config, tokenizer, state, "ema", origin)
