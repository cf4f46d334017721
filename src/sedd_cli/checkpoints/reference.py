"""The reference implementation's configuration and tokenizer conventions (sedd-spec §3.9-3.10).

Both of its formats (published folders and training runs) carry its Hydra config (``config.json``
or ``.hydra/config.yaml``): `reference_config` maps it to our `Config`, and `reference_parts`
adds the tokenizer. Tokenizer of a reference-format model: a ``tokenizer.json`` (ours) beside the
config wins; otherwise ``tokens`` = 50257 means GPT-2 and 256 means bytes; any other vocabulary is
an error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config, config_from_dict
from ..errors import ConfigError, SeddError
from ..tokenizers import TOKENIZER_FILE, ByteTokenizer, GPT2Tokenizer, Tokenizer
from .formats import load_tokenizer_file

__all__ = [
    "GPT2_TOKENS",
    "BYTE_TOKENS",
    "reference_config",
    "carry_settings",
    "reference_tokenizer",
    "reference_parts",
]

GPT2_TOKENS = 50257
BYTE_TOKENS = 256
_NETWORK_KEYS = ("hidden_size", "cond_dim", "n_blocks", "n_heads", "scale_by_sigma", "dropout", "length")


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _check_mapping(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise SeddError(f"{where} does not hold a mapping of settings")


def _network_config(data: dict[str, Any], tokenizer_kind: str, where: str) -> Config:
    """The settings that decide the network: tokens, graph, noise and the DDiT's sizes."""
    model, graph, noise = _section(data, "model"), _section(data, "graph"), _section(data, "noise")
    if model.get("type", "ddit") != "ddit":
        raise SeddError(f"{where}: model.type {model.get('type')!r} is not supported (only ddit)")
    tokens = data.get("tokens", GPT2_TOKENS)
    core: dict[str, Any] = {
        "name": str(model.get("name", "reference")),
        "model": {"vocab_size": tokens},
        "graph": {"type": graph.get("type", "absorb")},
        "noise": {"type": noise.get("type", "loglinear")},
        "data": {"tokenizer": tokenizer_kind},
    }
    for key in _NETWORK_KEYS:
        if key in model:
            core["model"][key] = model[key]
    if core["noise"]["type"] == "geometric":
        for key in ("sigma_min", "sigma_max"):
            if key in noise:
                core["noise"][key] = noise[key]
    try:
        return config_from_dict(core)
    except ConfigError as exc:
        raise SeddError(f"{where}: {exc}") from None


def _optional_settings(data: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(our section, our key, the reference's value or None) of settings that do not shape the
    network."""
    data_sec, sampling = _section(data, "data"), _section(data, "sampling")
    training, optim = _section(data, "training"), _section(data, "optim")
    return [
        ("data", "name", {"openwebtext": "owt"}.get(data_sec.get("train"), data_sec.get("train"))),
        ("sample", "predictor", sampling.get("predictor")),
        ("sample", "steps", sampling.get("steps")),
        ("sample", "denoise", sampling.get("noise_removal")),
        ("train", "batch_size", training.get("batch_size")),
        ("train", "accum", training.get("accum")),
        ("train", "max_steps", training.get("n_iters")),
        ("train", "ema", training.get("ema")),
        ("train", "checkpoint_every", training.get("snapshot_freq")),
        ("train", "log_every", training.get("log_freq")),
        ("train", "eval_every", training.get("eval_freq")),
        ("train", "lr", optim.get("lr")),
        ("train", "beta1", optim.get("beta1")),
        ("train", "beta2", optim.get("beta2")),
        ("train", "adam_eps", optim.get("eps")),
        ("train", "weight_decay", optim.get("weight_decay")),
        ("train", "warmup", optim.get("warmup")),
        ("train", "grad_clip", optim.get("grad_clip")),
    ]


def reference_config(data: dict[str, Any], tokenizer_kind: str, *, where: str = "config") -> Config:
    """Our `Config` for the reference (Hydra) training config `data` (config.json / .hydra/config.yaml).

    Read leniently: only ``tokens``, ``graph.type``, ``noise.{type, sigma_min, sigma_max}`` and
    ``model.{hidden_size, cond_dim, n_blocks, n_heads, scale_by_sigma, dropout, length}`` decide
    the network (missing ones take the paper's small-model defaults); ``sampling``, ``training``
    and ``optim`` values are carried over when they fit our settings; every other key is ignored.
    """
    _check_mapping(data, where)
    return carry_settings(_network_config(data, tokenizer_kind, where), data)


def carry_settings(cfg: Config, data: dict[str, Any]) -> Config:
    """`cfg` with the reference config's settings that do not shape the network (``sampling``,
    ``training``, ``optim``, ``data.train``) carried over one by one, each only when it fits."""
    for section, key, value in _optional_settings(data):
        if value is None:
            continue
        try:
            cfg = config_from_dict({section: {key: value}}, base=cfg)
        except ConfigError:
            pass  # e.g. an unresolved ${...} interpolation: not needed to use the model
    return cfg


def reference_tokenizer(tokens: Any, folder: Path, where: str) -> Tokenizer:
    """tokenizer.json beside the config, else GPT-2 for 50257 tokens, bytes for 256, else an error."""
    if (folder / TOKENIZER_FILE).is_file():
        tok = load_tokenizer_file(folder)
        if tok.vocab_size != tokens:
            raise SeddError(
                f"{where} says tokens={tokens} but {str(folder / TOKENIZER_FILE)!r} has "
                f"{tok.vocab_size} tokens: remove one of them or make them agree"
            )
        return tok
    if tokens == GPT2_TOKENS:
        return GPT2Tokenizer()
    if tokens == BYTE_TOKENS:
        return ByteTokenizer()
    raise SeddError(
        f"{where} says tokens={tokens}, which is neither GPT-2 ({GPT2_TOKENS}) nor bytes ({BYTE_TOKENS}): "
        f"put the model's {TOKENIZER_FILE} (a sedd tokenizer) beside it"
    )


def reference_parts(
    data: Any, folder: Path, where: str, build: Callable[..., Config] | None = None
) -> tuple[Config, Tokenizer]:
    """(our Config, the tokenizer) of a reference config `data` read from `where` in `folder`;
    `build(data, tokenizer_kind, where=...)` maps the settings (default `reference_config`; RADD's
    layout passes its own)."""
    _check_mapping(data, where)
    tokens = data.get("tokens", GPT2_TOKENS)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 2:
        raise SeddError(f"{where}: tokens must be a vocabulary size (an integer >= 2), got {tokens!r}")
    tokenizer = reference_tokenizer(tokens, folder, where)
    return (build or reference_config)(data, tokenizer.kind, where=where), tokenizer
