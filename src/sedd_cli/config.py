"""Settings as dataclasses, YAML presets shipped with the package, and their validation.

Precedence when a run's configuration is resolved (lowest first):
preset < ``--config FILE.yaml`` < typed command-line options < ``--set section.key=value``.

Every key is checked: an unknown key is a `ConfigError` that names the key and the closest valid
one; every value is converted to the field's type (YAML ``3e-4`` reads as a float here, although
plain PyYAML reads it as a string). This module imports no torch, so ``sedd --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = [
    "ModelConfig",
    "GraphConfig",
    "NoiseConfig",
    "DataConfig",
    "TrainConfig",
    "SampleConfig",
    "Config",
    "PRESETS",
    "load_config",
    "load_preset",
    "config_from_dict",
    "parse_set",
    "check_shaping",
    "yaml_load",
    "drop_none",
]

PRESETS = ("tiny", "names", "small", "medium")


@dataclass
class ModelConfig:
    """The DDiT score network (sedd-spec §3)."""

    hidden_size: int = 768  # d, width of the residual stream
    cond_dim: int = 128  # width of the sigma conditioning vector c
    n_blocks: int = 12
    n_heads: int = 12  # head dim = hidden_size / n_heads (64 in the paper's models)
    mlp_ratio: int = 4  # MLP width = mlp_ratio * hidden_size
    dropout: float = 0.1  # residual-branch dropout in train mode (0 in eval mode)
    scale_by_sigma: bool = True  # subtract log(e^sigma - 1) + log V from the output (absorbing only)
    length: int = 1024  # sequence length L; sets data blocks and sample shape, not the network
    vocab_size: int | None = None  # base vocabulary V; None = take it from the tokenizer
    attention: str = "sdpa"  # sdpa (torch scaled_dot_product_attention) | flash (flash-attn, CUDA)
    pos_embed: bool = False  # add a learned absolute position embedding [length, d] (not in the
    # reference, which has rotary only); helps short padded records such as names


@dataclass
class GraphConfig:
    """The forward corruption process (sedd-spec §2)."""

    type: str = "absorb"  # absorb (mask token = last id) | uniform


@dataclass
class NoiseConfig:
    """The noise schedule t -> (sigma, dsigma) (sedd-spec §1)."""

    type: str = "loglinear"  # loglinear | geometric
    eps: float = 1e-3  # loglinear: sigma(t) = -log(1 - (1 - eps) t)
    sigma_min: float = 1e-4  # geometric: sigma(t) = sigma_min^(1-t) sigma_max^t
    sigma_max: float = 20.0


@dataclass
class DataConfig:
    """Where training text comes from and how it becomes token blocks."""

    name: str = "babynames"  # babynames | owt | wikitext2 | ... | hf:NAME[:CONFIG] | a local file
    tokenizer: str = "gpt2"  # gpt2 | char | byte
    layout: str = "pack"  # pack (join with EOS, cut into blocks) | pad (one record per row, padded)
    text_field: str = "text"  # column holding the text in json/csv/parquet files
    document: str = "line"  # .txt files: line (one document per line) | file (whole file)
    lowercase: bool = False  # char tokenizer: lowercase text before encoding
    unknown: str = "error"  # char tokenizer, characters outside the vocabulary: error | skip | unk
    weighting: str = "distinct"  # babynames: distinct (one record per name) | count (by births)
    valid_fraction: float = 0.01  # share of records held out for validation (deterministic)
    cache_dir: str | None = None  # tokenized-data cache; None = ~/.cache/sedd


@dataclass
class TrainConfig:
    """The optimisation loop (sedd-spec §4)."""

    batch_size: int = 512  # global sequences per optimizer step
    accum: int = 1  # gradient-accumulation micro-steps per optimizer step
    lr: float = 3e-4
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    warmup: int = 2500  # linear warm-up steps: lr * step / warmup
    decay: str = "none"  # after warm-up: none (constant, the reference) | linear | cosine
    decay_floor: float = 0.1  # linear/cosine end at decay_floor * lr at max_steps
    grad_clip: float = 1.0
    ema: float = 0.9999
    max_steps: int = 400_000
    max_time: float | None = None  # seconds of training before a clean stop
    sampling_eps: float = 1e-3  # t ~ U[sampling_eps, 1] for the loss
    t_sampling: str = "uniform"  # uniform (i.i.d., the reference) | stratified (one t per stratum)
    log_every: int = 50
    eval_every: int = 500
    eval_batches: int = 4
    sample_every: int = 5000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    seed: int = 0
    compile: bool = False


@dataclass
class SampleConfig:
    """Sampling defaults (sedd-spec §5)."""

    predictor: str = "analytic"  # analytic | euler
    steps: int = 128
    eps: float = 1e-5  # end of the time grid linspace(1, eps, steps + 1)
    denoise: bool = True  # final Tweedie denoising step at t = eps
    precision: str = "float64"  # dtype of the categorical draw: float64 | float32
    temperature: float = 1.0  # token draws from exp(z / temperature); 0 = arg-max (absorbing only)
    top_p: float = 1.0  # nucleus: draw among the tokens holding this much of the mass (absorbing only)
    num_samples: int = 8
    batch_size: int = 64


def check_shaping(
    temperature: float, top_p: float, names: tuple[str, str] = ("--temperature", "--top-p")
) -> None:
    """Bad values of the token-draw shaping settings (sampling temperature, nucleus top-p) ->
    ConfigError naming them as `names` (the CLI flags by default)."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"{names[0]} must be 0 (arg-max) or positive, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ConfigError(f"{names[1]} must be in (0, 1], got {top_p}")


@dataclass
class Config:
    """A whole run: one section per concern."""

    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> Config:
        """Check cross-field rules; return self."""
        _choice("graph.type", self.graph.type, ("absorb", "uniform"))
        _choice("noise.type", self.noise.type, ("loglinear", "geometric"))
        _choice("data.layout", self.data.layout, ("pack", "pad"))
        _choice("data.document", self.data.document, ("line", "file"))
        _choice("data.unknown", self.data.unknown, ("error", "skip", "unk"))
        _choice("data.weighting", self.data.weighting, ("distinct", "count"))
        _choice("model.attention", self.model.attention, ("sdpa", "flash"))
        _choice("sample.predictor", self.sample.predictor, ("analytic", "euler", "none"))
        _choice("sample.precision", self.sample.precision, ("float64", "float32"))
        _choice("train.decay", self.train.decay, ("none", "linear", "cosine"))
        _choice("train.t_sampling", self.train.t_sampling, ("uniform", "stratified"))
        m = self.model
        for key, value in (
            ("model.hidden_size", m.hidden_size),
            ("model.cond_dim", m.cond_dim),
            ("model.n_blocks", m.n_blocks),
            ("model.n_heads", m.n_heads),
            ("model.mlp_ratio", m.mlp_ratio),
            ("train.batch_size", self.train.batch_size),
            ("train.accum", self.train.accum),
            ("sample.steps", self.sample.steps),
        ):
            if value < 1:
                raise ConfigError(f"{key} must be at least 1, got {value}")
        if m.length < 2:
            raise ConfigError(f"model.length must be at least 2, got {m.length}")
        if m.hidden_size % m.n_heads or (m.hidden_size // m.n_heads) % 2:
            raise ConfigError(
                f"model.hidden_size ({m.hidden_size}) must be divisible by model.n_heads "
                f"({m.n_heads}) into an even head dimension (rotary embedding)"
            )
        if m.vocab_size is not None and m.vocab_size < 2:
            raise ConfigError(f"model.vocab_size must be at least 2, got {m.vocab_size}")
        if not 0.0 <= m.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
        if m.scale_by_sigma and self.graph.type != "absorb":
            raise ConfigError(
                "model.scale_by_sigma applies to the absorbing graph only: "
                "set model.scale_by_sigma=false for graph.type=uniform"
            )
        sc = self.sample
        check_shaping(sc.temperature, sc.top_p, names=("sample.temperature", "sample.top_p"))
        if (sc.temperature != 1 or sc.top_p != 1) and self.graph.type != "absorb":
            raise ConfigError("sample.temperature and sample.top_p apply to the absorbing graph only")
        if not 0.0 < self.noise.eps < 1.0:
            raise ConfigError(f"noise.eps must be in (0, 1), got {self.noise.eps}")
        if not 0.0 < self.noise.sigma_min < self.noise.sigma_max:
            raise ConfigError("noise.sigma_min must be positive and below noise.sigma_max")
        if not 0.0 <= self.data.valid_fraction < 1.0:
            raise ConfigError(f"data.valid_fraction must be in [0, 1), got {self.data.valid_fraction}")
        if not 0.0 < self.train.sampling_eps < 1.0:
            raise ConfigError(f"train.sampling_eps must be in (0, 1), got {self.train.sampling_eps}")
        if not 0.0 <= self.train.ema < 1.0:
            raise ConfigError(f"train.ema must be in [0, 1), got {self.train.ema}")
        if not 0.0 <= self.train.decay_floor <= 1.0:
            raise ConfigError(f"train.decay_floor must be in [0, 1], got {self.train.decay_floor}")
        if self.train.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.train.lr}")
        if not 0.0 < self.sample.eps < 1.0:
            raise ConfigError(f"sample.eps must be in (0, 1), got {self.sample.eps}")
        return self


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}{hint}")


# --- YAML -------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader whose float rule accepts ``3e-4`` and ``1E5`` (YAML 1.2 style)."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in rules if tag != "tag:yaml.org,2002:float"]
    for key, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """Parse YAML safely, reading ``3e-4`` as a float."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {str(exc).splitlines()[0]}") from None


# --- dict <-> dataclass -------------------------------------------------------------------------


def _convert(key: str, value: Any, annotation: Any) -> Any:
    """Convert `value` to the field type `annotation`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", ())):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(key, value, inner[0])
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                try:
                    as_float = float(value)
                except ValueError:
                    as_float = None
                if as_float is not None and as_float.is_integer():
                    return int(as_float)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {annotation!r}")  # pragma: no cover


def _unknown_key(prefix: str, key: str, valid: list[str]) -> ConfigError:
    full = f"{prefix}{key}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key {full!r}{hint}")


def _update_dataclass(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'} must be a mapping")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in fields(obj)]
    for key, value in data.items():
        key = str(key)
        if key not in names:
            raise _unknown_key(prefix, key, names)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _update_dataclass(current, value, f"{prefix}{key}.")
        else:
            setattr(obj, key, _convert(f"{prefix}{key}", value, hints[key]))


def config_from_dict(data: dict[str, Any], base: Config | None = None) -> Config:
    """Return a copy of `base` (default: the built-in defaults) updated with `data`, validated."""
    cfg = _copy(base) if base is not None else Config()
    _update_dataclass(cfg, data)
    return cfg.validate()


def _copy(cfg: Config) -> Config:
    out = Config()
    _update_dataclass(out, cfg.to_dict())
    return out


def load_preset(name: str) -> Config:
    """The shipped preset `name` (tiny, names, small, medium)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)}){hint}")
    text = resources.files("sedd_cli.presets").joinpath(f"{name}.yaml").read_text()
    data = yaml_load(text) or {}
    data.setdefault("name", name)
    return config_from_dict(data)


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["train.lr=3e-4", "model.dropout=0"]`` into a nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        value = yaml_load(raw) if raw.strip() else ""
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {part} is not a section")
        node[parts[-1]] = value
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    preset: str | None = "names",
    file: str | Path | None = None,
    options: dict[str, Any] | None = None,
    sets: list[str] | tuple[str, ...] = (),
) -> Config:
    """Resolve a configuration: preset < file < typed options < ``--set`` items.

    `options` is a nested dict of typed command-line values; entries that are None are ignored.
    """
    data: dict[str, Any] = {}
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        loaded = yaml_load(path.read_text())
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
        data = _merge(data, loaded)
    if options:
        data = _merge(data, drop_none(options))
    data = _merge(data, parse_set(list(sets)))
    base = load_preset(preset) if preset else Config()
    return config_from_dict(data, base)


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """A copy of nested dict `d` without None values (and without sections left empty)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = drop_none(v)
            if v:
                out[k] = v
        elif v is not None:
            out[k] = v
    return out
