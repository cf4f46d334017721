"""What a training run holds between steps, and how it is built from a config.

`RunPlan` is what was resolved before any work (the config, the claimed folder, the checkpoint
to resume); `TrainState` is the live state: the network with its graph and noise, AdamW, the
EMA, the generator of the t / x_t draws, the data order and the step counters. Building it
draws from torch's global generator in a fixed order (seed, data, seed again, the weights), so
every process starts from the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import build_components
from ..config import Config, config_from_dict
from ..errors import SeddError
from .data_order import DataOrder
from .distributed import Dist
from .ema import EMA
from .schedule import make_optimizer


@dataclass
class RunPlan:
    """A run resolved and claimed, before any data or model is built."""

    config: Config
    run_dir: Path
    tokenizer: Any = None  # the resumed run's tokenizer (None: build it from the config)
    ckpt_path: Path | None = None  # the checkpoint to resume from
    trainer_state: dict[str, Any] | None = None  # its trainer.pt, checked
    kept_metrics: list[dict[str, Any]] | None = None  # resume: the metric lines to keep (rank 0)
    note: str = ""  # appended to the start event's message


@dataclass
class TrainState:
    """The live state of a run: what one optimizer step reads and updates."""

    config: Config
    model: torch.nn.Module
    graph: Any
    noise: Any
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    ema: EMA
    gen: torch.Generator  # the t and x_t draws of every global batch (CPU)
    order: DataOrder
    step: int = 0  # optimizer steps done (all sessions)
    elapsed_before: float = 0.0  # seconds of training in earlier sessions
    resumed_from: int | None = None
    pad_id: int | None = None  # the tokenizer's pad id: what data.insert_pads inserts


def load_data(config: Config, tokenizer, dist: Dist):
    """(tokenizer, train blocks, validation blocks or None). Rank 0 fills the cache first."""
    from ..data import build_tokenizer, prepare_data

    def load():
        tok = tokenizer if tokenizer is not None else build_tokenizer(config)
        train_blocks = prepare_data(config, tok, "train")
        val_blocks = None
        if config.train.eval_every > 0 and config.train.eval_batches > 0 and config.data.valid_fraction > 0:
            try:  # a small dataset may hold out no record: then train without validation
                val_blocks = prepare_data(
                    config, tok, "validation", max_blocks=config.train.eval_batches * config.train.batch_size
                )
            except SeddError:
                val_blocks = None
            if val_blocks is not None and len(val_blocks) == 0:
                val_blocks = None
        return tok, train_blocks, val_blocks

    error = None
    out = None
    if dist.main:
        try:
            out = load()
        except SeddError as exc:
            error = exc
    dist.agree(error)
    if not dist.main:
        out = load()
    return out


def fit_config(config: Config, tokenizer, train_blocks) -> tuple[Config, int]:
    """The config with the tokenizer's vocabulary size, and the block length L (checked)."""
    L = int(train_blocks.tokens.shape[1])
    if L != config.model.length:
        raise SeddError(f"data blocks have length {L} but model.length is {config.model.length}")
    return config_from_dict({"model": {"vocab_size": tokenizer.vocab_size}}, config), L


def build_state(config: Config, vocab_size: int, train_blocks, dev: torch.device) -> TrainState:
    """A fresh state at step 0: the initial weights from ``train.seed`` (the same on every
    process), AdamW, the EMA, the draw generator (seed + 1) and the data order."""
    tc = config.train
    torch.manual_seed(tc.seed)  # the same initial weights on every process
    model, graph, noise = build_components(config, vocab_size)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, tc)
    ema = EMA(model, tc.ema)
    gen = torch.Generator().manual_seed(tc.seed + 1)  # t and corruption draws
    order = DataOrder(len(train_blocks), tc.seed, getattr(train_blocks, "weights", None))
    return TrainState(config, model, graph, noise, params, optimizer, ema, gen, order)


def describe(config: Config, model, dist: Dist, dev: torch.device) -> str:
    """The start event's one line: size, vocabulary, length and how the batch is split."""
    n = sum(p.numel() for p in model.parameters())
    micro = config.train.batch_size // (dist.world * config.train.accum)
    return (
        f"{config.name}: {n / 1e6:.2f}M parameters, vocab {config.model.vocab_size}, length "
        f"{config.model.length}, batch {config.train.batch_size} ({dist.world} process(es) x "
        f"{config.train.accum} micro-batch(es) of {micro}) on {dev}"
    )
