"""`load_pretrained`: any MODEL -> a ready `Pretrained` (config -> model -> strict load -> eval).

Every source goes through one path: `locate` finds the config, tokenizer and tensors; then the
network is built from the config (`build_components`), a reference run's EMA shadow tensors are
put on the parameter names, and the state is loaded strictly (`weights.load_state_strict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Config, config_from_dict
from ..errors import SeddError
from ..graph import Graph, get_graph
from ..model import SEDD, count_parameters
from ..noise import Noise, get_noise
from ..runtime import pick_device
from ..tokenizers import Tokenizer
from .formats import Located
from .locate import locate
from .weights import load_state_strict

__all__ = ["Pretrained", "graph_dim", "build_components", "load_pretrained"]


@dataclass
class Pretrained:
    """A loaded model with everything needed to use it. ``model(x, sigma)`` -> log-score.

    `format` says what the source was (sedd-model, sedd-checkpoint, sedd-run, hf-folder,
    radd-folder, hub, reference-run); `origin` where the weights came from (path, or hub id,
    revision and file; ``family: RADD`` for RADD's layout).
    """

    model: SEDD
    graph: Graph
    noise: Noise
    tokenizer: Tokenizer
    config: Config
    source: str
    step: int | None = None
    weights: str = "model"  # which weights were loaded: ema | model
    meta: dict[str, Any] = field(default_factory=dict)
    format: str = "sedd-model"
    origin: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def summary(self) -> dict[str, Any]:
        """What `sedd info` shows: config, sizes, step, weights and their origin (JSON-ready)."""
        m, cfg = self.config.model, self.config
        return {
            "source": self.source,
            "format": self.format,
            "name": cfg.name,
            "parameters": self.num_parameters,
            "step": self.step,
            "weights": self.weights,
            "origin": self.origin,
            "model": {
                "hidden_size": m.hidden_size,
                "n_blocks": m.n_blocks,
                "n_heads": m.n_heads,
                "cond_dim": m.cond_dim,
                "mlp_ratio": m.mlp_ratio,
                "dropout": m.dropout,
                "scale_by_sigma": m.scale_by_sigma,
                "length": m.length,
                "time_conditioning": m.time_conditioning,
            },
            "vocab_size": self.tokenizer.vocab_size,
            "graph": {"type": cfg.graph.type, "dim": self.graph.dim},
            "noise": {
                "type": cfg.noise.type,
                **(
                    {"eps": cfg.noise.eps}
                    if cfg.noise.type == "loglinear"
                    else {"sigma_min": cfg.noise.sigma_min, "sigma_max": cfg.noise.sigma_max}
                ),
            },
            "tokenizer": self.tokenizer.kind,
        }


def graph_dim(config: Config, vocab_size: int) -> int:
    return vocab_size + 1 if config.graph.type == "absorb" else vocab_size


def build_components(config: Config, vocab_size: int | None = None) -> tuple[SEDD, Graph, Noise]:
    """A fresh model, its graph and noise schedule for `config` (vocab from config if None)."""
    V = vocab_size if vocab_size is not None else config.model.vocab_size
    if V is None:
        raise SeddError("model.vocab_size is not set: pass the tokenizer's vocabulary size")
    graph = get_graph(config.graph, V)
    return SEDD(config.model, graph.dim), graph, get_noise(config.noise)


def _apply_shadow(model: SEDD, found: Located, where: str) -> dict[str, torch.Tensor]:
    """The state with the EMA shadow tensors put on the parameter names, in ``parameters()`` order
    (buffers such as ``rotary_emb.inv_freq`` keep their values from the raw state)."""
    names = [name for name, _ in model.named_parameters()]
    shadow = found.shadow or []
    if len(shadow) != len(names):
        raise SeddError(
            f"EMA weights in {where} hold {len(shadow)} tensors but the model has {len(names)} parameters: "
            "the checkpoint belongs to another model configuration (or use --weights model)"
        )
    state = {k: v for k, v in found.state.items() if k not in set(names)}
    state.update(zip(names, shadow, strict=True))
    return state


def load_pretrained(
    source: str | Path | None = None, device: str | torch.device = "auto", *, weights: str = "ema"
) -> Pretrained:
    """Load a model from any supported source (`locate`): locate it, build config -> model,
    load the tensors strictly, move to `device` and switch to eval mode.

    `source` None means the newest run under ``runs/``. `weights` chooses the EMA weights (the
    default, as the reference samples with them) or the raw ``model`` weights where a checkpoint
    holds both (our run checkpoints, reference runs); published files hold one set.
    """
    found = locate(source, weights=weights)
    where = found.origin.get("path") or found.source
    model, graph, noise = build_components(found.config, found.tokenizer.vocab_size)
    state = _apply_shadow(model, found, where) if found.shadow is not None else found.state
    load_state_strict(model, state, where)
    config = found.config
    if config.model.vocab_size is None:
        config = config_from_dict({"model": {"vocab_size": found.tokenizer.vocab_size}}, base=config)
    dev = pick_device(device) if isinstance(device, str) else device
    model.to(dev).eval()
    return Pretrained(
        model=model,
        graph=graph,
        noise=noise,
        tokenizer=found.tokenizer,
        config=config,
        source=found.source,
        step=found.step,
        weights=found.weights,
        meta=found.meta,
        format=found.format,
        origin=found.origin,
    )
