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
    "LOSSES",
    "LOGGERS",
    "check_loggers",
    "load_config",
    "load_preset",
    "config_from_dict",
    "parse_set",
    "check_shaping",
    "check_seed",
    "COUNT_BOUNDS",
    "REAL_RANGES",
    "MAX_SEED",
    "yaml_load",
    "read_text_file",
    "check_values",
    "not_utf8",
    "read_yaml_file",
    "drop_none",
]

PRESETS = ("tiny", "names", "names-infill", "small", "medium")
LOSSES = ("dse", "t-dce", "lambda-dce")  # train.loss; the objectives live in losses.py
LOGGERS = ("tensorboard", "wandb")  # train.loggers; the loggers live in training/loggers/


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
    time_conditioning: bool = True  # false: RADD's time-independent network (no sigma input, plain
    # LayerNorm blocks, head = log-softmax over the V real tokens; absorbing graph only; cond_dim
    # and scale_by_sigma unused: the log-score is always log c - log(e^sigma - 1))


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
    insert_pads: float = 0.0  # share of training rows given a run of pads inside the text (data/insertion.py)
    insert_pads_max: int = 8  # the most pads one insertion adds (M >= the widest [MASK:A-B] gap)
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
    loss: str = "dse"  # dse (score entropy) | t-dce | lambda-dce (RADD's, time-independent model)
    t_sampling: str = "uniform"  # uniform (i.i.d., the reference) | stratified (one t per stratum)
    log_every: int = 50
    eval_every: int = 500
    eval_batches: int = 4
    sample_every: int = 5000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    seed: int = 0
    compile: bool = False
    loggers: list[str] = field(default_factory=list)  # dashboards beside metrics.jsonl: LOGGERS
    logger_required: bool = False  # a logger that fails stops the run (else: one line, go on)
    wandb_project: str | None = None  # None: $WANDB_PROJECT, else "sedd"
    wandb_entity: str | None = None  # None: $WANDB_ENTITY, else W&B's default entity
    wandb_name: str | None = None  # None: $WANDB_NAME, else the run directory's name


@dataclass
class SampleConfig:
    """Sampling defaults (sedd-spec §5)."""

    predictor: str = "analytic"  # analytic | euler | first-hitting (absorbing only) | none
    tokens_per_step: int = 1  # first-hitting: positions unmasked per network call (>1 approximate)
    steps: int = 128
    eps: float = 1e-5  # end of the time grid linspace(1, eps, steps + 1)
    denoise: bool = True  # final Tweedie denoising step at t = eps
    precision: str = "float64"  # dtype of the categorical draw: float64 | float32
    temperature: float = 1.0  # token draws from exp(z / temperature); 0 = arg-max (absorbing only)
    top_p: float = 1.0  # nucleus: draw among the tokens holding this much of the mass (absorbing only)
    num_samples: int = 8
    batch_size: int = 64


MAX_SEED = 2**63 - 1

# Every count a config holds, with its valid range [low, high]. The upper bounds are far beyond
# any sensible run; they exist so a typo (10**12) is one line here instead of an allocation that
# exhausts memory. 0 means "off" for the *_every, eval_batches and keep_checkpoints counts.
COUNT_BOUNDS: dict[str, tuple[int, int]] = {
    "model.hidden_size": (1, 65_536),
    "model.cond_dim": (1, 65_536),
    "model.n_blocks": (1, 1_024),
    "model.n_heads": (1, 1_024),
    "model.mlp_ratio": (1, 64),
    "model.length": (2, 1_048_576),  # 2**20 positions
    "model.vocab_size": (2, 16_777_216),  # 2**24 tokens
    "data.insert_pads_max": (1, 1_048_576),
    "train.batch_size": (1, 1_048_576),
    "train.accum": (1, 65_536),
    "train.warmup": (0, 1_000_000_000),
    "train.max_steps": (1, 1_000_000_000),
    "train.log_every": (0, 1_000_000_000),
    "train.eval_every": (0, 1_000_000_000),
    "train.eval_batches": (0, 1_000_000),
    "train.sample_every": (0, 1_000_000_000),
    "train.checkpoint_every": (0, 1_000_000_000),
    "train.keep_checkpoints": (0, 1_000_000),
}
# The `sample:` section's values are checked by the sampling stage's own checks
# (`sampling.check_sample_settings`): one place for each sampling fact.

# Every real-valued setting with its interval (low, high, which ends are closed). Non-finite
# values (nan, inf) are refused everywhere.
REAL_RANGES: dict[str, tuple[float, float, str]] = {
    "model.dropout": (0.0, 1.0, "[)"),
    "noise.eps": (0.0, 1.0, "()"),
    "noise.sigma_min": (0.0, math.inf, "()"),
    "noise.sigma_max": (0.0, math.inf, "()"),
    "data.valid_fraction": (0.0, 1.0, "[)"),
    "data.insert_pads": (0.0, 1.0, "[]"),
    "train.lr": (0.0, math.inf, "()"),
    "train.beta1": (0.0, 1.0, "[)"),
    "train.beta2": (0.0, 1.0, "[)"),
    "train.adam_eps": (0.0, math.inf, "()"),
    "train.weight_decay": (0.0, math.inf, "[)"),
    "train.decay_floor": (0.0, 1.0, "[]"),
    "train.grad_clip": (0.0, math.inf, "[)"),  # 0 = no clipping
    "train.ema": (0.0, 1.0, "[)"),
    "train.sampling_eps": (0.0, 1.0, "()"),
    "sample.eps": (0.0, 1.0, "()"),
}


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
        _choice("train.decay", self.train.decay, ("none", "linear", "cosine"))
        _choice("train.t_sampling", self.train.t_sampling, ("uniform", "stratified"))
        _choice("train.loss", self.train.loss, LOSSES)
        check_loggers(self.train.loggers)
        m = self.model
        for key in COUNT_BOUNDS:
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if not (value is None and key == "model.vocab_size"):
                _check_count(key, value)
        check_seed(self.train.seed, "train.seed")
        if m.hidden_size % m.n_heads or (m.hidden_size // m.n_heads) % 2:
            raise ConfigError(
                f"model.hidden_size ({m.hidden_size}) must be divisible by model.n_heads "
                f"({m.n_heads}) into an even head dimension (rotary embedding)"
            )
        for key, (low, high, closed) in REAL_RANGES.items():
            section, name = key.split(".")
            _check_real(key, getattr(getattr(self, section), name), low, high, closed)
        if self.data.insert_pads > 0 and self.data.layout == "pack" and self.data.tokenizer == "byte":
            raise ConfigError(
                "data.insert_pads with data.layout=pack needs a pad distinct from end-of-text: use the "
                "char or gpt2 tokenizer (gpt2 then gets pad id 50257), or data.layout=pad"
            )
        if self.train.max_time is not None:
            _check_real("train.max_time", self.train.max_time, 0.0, math.inf, "()")
        if m.scale_by_sigma and self.graph.type != "absorb":
            raise ConfigError(
                "model.scale_by_sigma applies to the absorbing graph only: "
                "set model.scale_by_sigma=false for graph.type=uniform"
            )
        self._check_time_independent()
        sc = self.sample
        check_shaping(sc.temperature, sc.top_p, names=("sample.temperature", "sample.top_p"))
        if (sc.temperature != 1 or sc.top_p != 1) and self.graph.type != "absorb":
            raise ConfigError("sample.temperature and sample.top_p apply to the absorbing graph only")
        if not self.noise.sigma_min < self.noise.sigma_max:
            raise ConfigError(
                f"noise.sigma_min ({self.noise.sigma_min:g}) must be below noise.sigma_max "
                f"({self.noise.sigma_max:g})"
            )
        return self

    def _check_time_independent(self) -> None:
        """The time-independent network models the absorbing graph only; the DCE losses need it."""
        if not self.model.time_conditioning and self.graph.type != "absorb":
            raise ConfigError(
                "model.time_conditioning=false (a time-independent network) needs graph.type=absorb, "
                f"got graph.type={self.graph.type}"
            )
        if self.train.loss != "dse" and self.model.time_conditioning:
            raise ConfigError(
                f"train.loss={self.train.loss} needs a time-independent model: set "
                "model.time_conditioning=false (or train.loss=dse)"
            )


def _check_count(key: str, value: int) -> None:
    low, high = COUNT_BOUNDS[key]
    if not low <= value <= high:
        side = f"at least {low}" if value < low else f"at most {high:,}"
        raise ConfigError(f"{key} must be {side} (valid: {low} .. {high:,}), got {value:,}")


def check_values(data: dict[str, Any]) -> None:
    """The range checks of `Config.validate` on a partial nested dict of settings (one layer of
    overrides, e.g. the typed options of `sedd train`), so that a later layer (``--set``) cannot
    hide a bad value given in an earlier one. Keys without a range are left to `validate`."""
    for key in (*COUNT_BOUNDS, *REAL_RANGES):
        section, name = key.split(".")
        value = (data.get(section) or {}).get(name)
        if value is None:
            continue
        if key in COUNT_BOUNDS:
            _check_count(key, value)
        else:
            _check_real(key, value, *REAL_RANGES[key])


def _check_real(key: str, value: float, low: float, high: float, closed: str) -> None:
    """`value` finite and in the interval from `low` to `high`, each end closed or open as
    `closed` says (``"[)"``: low <= value < high), or a ConfigError stating the interval."""
    above = value >= low if closed[0] == "[" else value > low
    below = value <= high if closed[1] == "]" else value < high
    if not (math.isfinite(value) and above and below):
        top = "inf" if math.isinf(high) else f"{high:g}"
        raise ConfigError(
            f"{key} must be a finite number in {closed[0]}{low:g}, {top}{closed[1]}, got {value}"
        )


def check_seed(seed: int, name: str = "--seed") -> int:
    """A random seed in [0, MAX_SEED] (2**63 - 1): torch seeds take 64 bits and sedd derives the
    seeds of its separate streams by adding small offsets (seed + 1, seed + 10007, ...), which
    must stay below 2**64. Returns `seed`; a ConfigError naming `name` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer in [0, 2**63 - 1], got {seed}")
    return seed


def check_loggers(names: list[str], key: str = "train.loggers") -> list[str]:
    """Every name in `names` is a logger sedd has (`LOGGERS`); returns `names`, else a one-line
    ConfigError naming the unknown one, the valid names and the closest."""
    for name in names:
        if name not in LOGGERS:
            close = difflib.get_close_matches(str(name), LOGGERS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{key}: unknown logger {name!r}; valid names: {', '.join(LOGGERS)}{hint}")
    return names


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


def yaml_load(text: str, where: str | None = None) -> Any:
    """Parse YAML safely, reading ``3e-4`` as a float. `where` (a file name) goes into the error,
    with the line and column of the problem when the parser gives them."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        place = f" in {where}" if where else ""
        raise ConfigError(f"invalid YAML{place}{at}: {problem}") from None


def read_text_file(path: str | Path, what: str | None = None, *, damaged: bool = False) -> str:
    """The UTF-8 text of `path`: the one reader of text files for every stage. A ConfigError
    naming the file (as ``what 'path'`` when `what` is given) when it is a folder, cannot be read,
    or is not UTF-8 (with the byte offset of the first byte that is not); `damaged` adds that the
    file is damaged (a file sedd wrote itself)."""
    path = Path(path)
    name = f"{what} {str(path)!r}" if what else repr(str(path))
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{name} is a folder, not a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(name, exc, "; the file is damaged" if damaged else "") from None


def not_utf8(name: str, exc: UnicodeDecodeError, hint: str = "") -> ConfigError:
    """The one message for text that is not UTF-8: `name` (a quoted path, "standard input"), the
    reason and the byte offset of the first byte that is not UTF-8, then `hint`."""
    return ConfigError(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start}){hint}")


def read_yaml_file(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping in YAML file `path` (empty file -> {}); a ConfigError naming the file when it is
    missing, not UTF-8, not valid YAML or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} not found" + (" (it is a folder)" if path.is_dir() else ""))
    loaded = yaml_load(read_text_file(path), where=repr(str(path)))
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{what} {str(path)!r} must hold a mapping of sections, not a {type(loaded).__name__}"
        )
    return loaded


# --- dict <-> dataclass -------------------------------------------------------------------------


def _convert(key: str, value: Any, annotation: Any) -> Any:
    """Convert `value` to the field type `annotation`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list:
        return _convert_list(key, value, args[0])
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


def _convert_list(key: str, value: Any, item: Any) -> list:
    """A list setting: a YAML list, or one string of comma-separated items (``--set
    train.loggers=tensorboard,wandb``); None and "" are the empty list."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key} must be a list, got {value!r}")
    return [_convert(f"{key}[{i}]", v, item) for i, v in enumerate(value)]


def convert_value(key: str, value: Any, annotation: Any) -> Any:
    """`value` as the type `annotation` (bool, int, float, str, or ``X | None``), converted as a
    config file's values are (``"true"``, ``"32"``, ``"3e-4"``), or a ConfigError naming `key`;
    for other readers of typed key=value settings (the harness model's ``model_args``)."""
    return _convert(key, value, annotation)


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
    """The shipped preset `name` (tiny, names, names-infill, small, medium)."""
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
        data = _merge(data, read_yaml_file(file))
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
