"""Shared test helpers: the reference's deterministic init and tiny model builders."""

from __future__ import annotations

import json

import torch

from sedd_cli.config import ModelConfig

from .conftest import REFERENCE

# 60 common first names: a small local corpus for tiny training runs (no download)
NAMES = (
    "emma olivia ava isabella sophia mia charlotte amelia harper evelyn abigail emily elizabeth "
    "sofia avery ella scarlett grace chloe victoria riley aria lily aubrey zoey penelope lillian "
    "liam noah william james oliver benjamin elijah lucas mason logan alexander ethan jacob michael "
    "daniel henry jackson sebastian aiden matthew samuel david joseph carter owen wyatt john jack"
).split()


def golden() -> dict:
    return json.loads((REFERENCE / "golden-tiny.json").read_text())


def radd_golden() -> dict:
    """RADD's outputs on its tiny deterministic model (tests/fixtures/reference/README)."""
    return json.loads((REFERENCE / "radd-golden-tiny.json").read_text())


def radd_state_dict() -> dict:
    """RADD small's state-dict names and shapes, in order, and its parameter count."""
    return json.loads((REFERENCE / "radd-state-dict.json").read_text())


def deterministic_init_(model: torch.nn.Module) -> list[str]:
    """Parameter number i (names sorted as strings, buffers excluded) gets
    0.2 sin(0.37 j + 1.3 i) at flat index j, computed in float64 then cast (reference README)."""
    params = dict(model.named_parameters())
    names = sorted(params)
    with torch.no_grad():
        for i, name in enumerate(names):
            p = params[name]
            j = torch.arange(p.numel(), dtype=torch.float64)
            p.copy_((0.2 * torch.sin(0.37 * j + 1.3 * i)).to(p.dtype).view_as(p))
    return names


def tiny_model_config(**kw) -> ModelConfig:
    base = dict(hidden_size=32, cond_dim=16, n_blocks=2, n_heads=4, dropout=0.0, length=12)
    base.update(kw)
    return ModelConfig(**base)


def save_tiny_char_model(folder, alphabet: str = "abc def", seed: int | None = 0):
    """A tiny random char model (tiny preset: pad layout, pad id 0, length 16) over the characters
    of `alphabet`, saved as a model folder (`seed` None: the weights come from torch's global RNG)."""
    from sedd_cli.checkpoints import build_components, save_model_dir
    from sedd_cli.config import load_preset
    from sedd_cli.tokenizers import get_tokenizer

    if seed is not None:
        torch.manual_seed(seed)
    cfg = load_preset("tiny")
    tok = get_tokenizer("char", [alphabet])
    cfg.model.vocab_size = tok.vocab_size
    model, _, _ = build_components(cfg, tok.vocab_size)
    save_model_dir(folder, model.state_dict(), cfg, tok, {"step": 0})
    return folder


def offline_hub_snapshot(tmp_path, monkeypatch, repo_id: str, rev: str):
    """An empty snapshot folder of `repo_id` at revision `rev` in huggingface_hub's cache layout
    (hub/models--OWNER--NAME/{refs/main, snapshots/REV/}) under a temporary HF_HOME, offline;
    the caller writes the model's files into the returned folder."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "hf" / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    return repo / "snapshots" / rev


def probe_outputs(model, tokens: int, length: int, seed: int = 1) -> torch.Tensor:
    """The model's log-scores on 3 fixed random sequences of `length` ids (mask ids included) at
    sigma 0.05, 1 and 6: a fingerprint to compare a model before and after save / load / convert."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, tokens + 1, (3, length), generator=g)
    sigma = torch.tensor([0.05, 1.0, 6.0])
    with torch.no_grad():
        return model(x, sigma)
