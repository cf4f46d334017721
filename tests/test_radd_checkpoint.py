"""RADD's published layout (issue #16 item 3): `checkpoints.radd`.

The folders are written here as RADD's ``PyTorchModelHubMixin`` writes them: a ``config.json``
holding RADD's Hydra config (``tokens``, ``model`` with ``type: ddit_wot``, ``noise``,
``training.loss_type`` and keys the loader must ignore) and the weights under RADD's names and
shapes, taken from tests/fixtures/reference/radd-state-dict.json (RADD small) scaled down, never
from our own model's state dict, so a renamed or reshaped parameter in our network fails here.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from sedd_cli.checkpoints import load_pretrained, locate
from sedd_cli.cli import app
from sedd_cli.errors import SeddError
from sedd_cli.sampling import sample
from sedd_cli.tokenizers import CharTokenizer

from .conftest import REFERENCE
from .helpers import offline_hub_snapshot, probe_outputs

HIDDEN, BLOCKS, HEADS, LENGTH = 32, 2, 4, 12

pytestmark = pytest.mark.usefixtures("one_thread")


def radd_shapes(tokens: int) -> dict[str, list[int]]:
    """RADD small's state dict with every dimension scaled down: d = 768, 3d = 2304, 4d = 3072,
    D = 50258 and inv_freq = head_dim / 2 = 32 are distinct, so each maps to one scaled size;
    blocks 0..11 become 0..BLOCKS-1."""
    small = json.loads((REFERENCE / "radd-state-dict.json").read_text())["state_dict"]
    scale = {768: HIDDEN, 2304: 3 * HIDDEN, 3072: 4 * HIDDEN, 50258: tokens + 1, 32: HIDDEN // HEADS // 2}
    return {
        name: [scale[s] for s in shape]
        for name, shape in small
        if not (name.startswith("blocks.") and int(name.split(".")[1]) >= BLOCKS)
    }


def radd_state(tokens: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {k: 0.2 * torch.randn(s, generator=g) for k, s in radd_shapes(tokens).items()}
    h = HIDDEN // HEADS  # the real rotary buffer: 10000^(-2k/h), k < h/2
    state["rotary_emb.inv_freq"] = 1.0 / 10000 ** (torch.arange(0, h, 2).float() / h)
    return state


def radd_config(tokens: int, loss_type: str = "lambda_DCE") -> dict:
    """RADD's configs/config.yaml + configs/model/small_radd.yaml as its hub folder holds them
    (sizes scaled down), with keys the loader must ignore and an unresolved interpolation."""
    return {
        "ngpus": 4,
        "tokens": tokens,
        "gpt_dir": "gpt2-large",
        "outdir": "../output",
        "training": {
            "batch_size": 512,
            "accum": 16,
            "n_iters": 1000001,
            "ema": 0.9999,
            "loss_type": loss_type,
        },
        "data": {"train": "openwebtext", "valid": "wikitext103", "cache_dir": "data"},
        "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
        "sampling": {"predictor": "euler", "steps": 1024},
        "eval": {"batch_size": 512, "perplexity": True, "perplexity_batch_size": 16},
        "optim": {"weight_decay": 0, "optimizer": "AdamW", "lr": 3e-4, "warmup": 2500, "grad_clip": 1.0},
        "model": {
            "name": "small_radd",
            "type": "ddit_wot",
            "hidden_size": HIDDEN,
            "cond_dim": 128,
            "length": LENGTH,
            "n_blocks": BLOCKS,
            "n_heads": HEADS,
            "dropout": 0.02,
            "use_checkpoint": False,
            "dtype": "float16",
        },
        "hydra": {"run": {"dir": "${outdir}/${now:%Y.%m.%d}/${now:%H%M%S}"}},
    }


def write_radd(
    folder: Path, tokens: int, state: dict, *, bin_file: bool = False, loss_type: str = "lambda_DCE",
    wrapped: bool = False,
) -> Path:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    cfg = radd_config(tokens, loss_type)
    (folder / "config.json").write_text(json.dumps({"config": cfg} if wrapped else cfg))
    if bin_file:
        torch.save(collections.OrderedDict(state), folder / "pytorch_model.bin")
    else:
        save_file(state, str(folder / "model.safetensors"))
    return folder


def char_radd(folder: Path, seed: int = 1, **kw) -> tuple[Path, dict, CharTokenizer]:
    """A RADD folder over a small character vocabulary (our tokenizer.json beside the config)."""
    tok = CharTokenizer.from_texts(["hello world", "abc"])
    state = radd_state(tok.vocab_size, seed)
    src = write_radd(folder, tok.vocab_size, state, **kw)
    tok.save(src)
    return src, state, tok


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_radd_folder_loads_strictly_converts_and_samples(tmp_path):
    """A RADD folder loads into our time-independent SEDD (every tensor equal, by name), with RADD's
    sizes, the absorbing graph, the log-linear schedule and train.loss from its loss_type; its
    log-score is log c - log(e^sigma - 1) (rows sum to 1/(e^sigma - 1) at masked positions);
    `sedd convert` writes our folder whose outputs and samples equal the source's."""
    src, state, tok = char_radd(tmp_path / "radd")
    pre = load_pretrained(src, device="cpu")
    assert pre.format == "radd-folder" and pre.origin["family"] == "RADD"
    assert pre.origin["file"] == "model.safetensors" and pre.weights == "ema"
    m = pre.config.model
    assert (m.hidden_size, m.n_blocks, m.n_heads, m.length, m.dropout) == (
        HIDDEN,
        BLOCKS,
        HEADS,
        LENGTH,
        0.02,
    )
    assert m.time_conditioning is False and pre.model.time_conditioned is False
    assert pre.config.graph.type == "absorb" and pre.graph.dim == tok.vocab_size + 1
    assert pre.config.noise.type == "loglinear" and pre.config.train.loss == "lambda-dce"
    assert pre.config.data.name == "owt" and pre.config.train.warmup == 2500  # carried over
    assert not pre.model.training
    loaded = pre.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    before = probe_outputs(pre.model, tok.vocab_size, LENGTH)
    masked = (
        torch.randint(0, tok.vocab_size + 1, (3, LENGTH), generator=torch.Generator().manual_seed(1))
    ) == (tok.vocab_size)
    rate = before[..., : tok.vocab_size].double().exp().sum(-1)  # [3, L]
    expected = 1 / torch.expm1(torch.tensor([0.05, 1.0, 6.0], dtype=torch.float64))[:, None].expand_as(rate)
    torch.testing.assert_close(rate[masked], expected[masked], rtol=1e-5, atol=0)
    drawn = sample(pre, steps=6, num_samples=3, seed=4, device="cpu")

    r = invoke("convert", str(src), str(tmp_path / "out"), "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "radd-folder" and doc["weights"] == "ema"
    post = load_pretrained(tmp_path / "out", device="cpu")
    assert post.format == "sedd-model" and post.config.model.time_conditioning is False
    assert post.config.train.loss == "lambda-dce" and post.tokenizer.vocab_size == tok.vocab_size
    assert torch.equal(probe_outputs(post.model, tok.vocab_size, LENGTH), before)
    again = sample(post, steps=6, num_samples=3, seed=4, device="cpu")
    assert torch.equal(again.ids, drawn.ids) and drawn.ids.shape == (3, LENGTH)
    r = invoke("info", str(tmp_path / "out"))
    assert r.exit_code == 0 and "RADD's published layout" in r.stdout and "converted from" in r.stdout


def test_radd_bin_folder_wrapped_config_and_t_dce(tmp_path):
    """The pytorch_model.bin variant (weights-only pickle), a config wrapped as {"config": ...}
    and training.loss_type t_DCE -> train.loss t-dce."""
    src, state, _ = char_radd(tmp_path / "radd", seed=2, bin_file=True, loss_type="t_DCE", wrapped=True)
    pre = load_pretrained(src, device="cpu")
    assert pre.format == "radd-folder" and pre.origin["file"] == "pytorch_model.bin"
    assert pre.config.train.loss == "t-dce" and pre.config.model.time_conditioning is False
    loaded = pre.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_radd_gpt2_vocabulary_and_a_loss_we_do_not_have(tmp_path):
    """tokens 50257 -> the GPT-2 tokenizer (no tokenizer.json needed); a loss_type we do not train
    (RADD's k_DCE) leaves train.loss at dse, still a valid choice for the model."""
    src = write_radd(tmp_path / "gpt2", 50257, radd_state(50257, seed=3), loss_type="k_DCE")
    found = locate(src)
    assert found.format == "radd-folder" and found.tokenizer.kind == "gpt2"
    assert found.config.model.vocab_size == 50257 and found.config.train.loss == "dse"
    assert found.config.sample.steps == 1024


def _break(state: dict, how: str) -> tuple[dict, str]:
    state = dict(state)
    if how == "missing":
        del state["blocks.1.mlp.0.bias"]
        return state, "missing: blocks.1.mlp.0.bias"
    if how == "extra":
        state["sigma_map.mlp.0.weight"] = torch.zeros(128, 256)  # a time-conditioned SEDD's key
        return state, "unexpected: sigma_map.mlp.0.weight"
    state["blocks.0.norm1.bias"] = torch.zeros(HIDDEN + 1)
    return state, f"mis-shaped: blocks.0.norm1.bias [{HIDDEN + 1}] (expected [{HIDDEN}])"


@pytest.mark.parametrize("how", ["missing", "extra", "misshaped"])
def test_a_key_that_does_not_fit_is_one_line(tmp_path, how):
    tok = CharTokenizer.from_texts(["hello world", "abc"])
    state, message = _break(radd_state(tok.vocab_size, seed=5), how)
    src = write_radd(tmp_path / "bad", tok.vocab_size, state)
    tok.save(src)
    r = invoke("info", str(src))
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: weights in ") and message in r.stderr
    with pytest.raises(SeddError, match="do not fit the model"):
        load_pretrained(src, device="cpu")


def test_radd_folder_without_weights_is_one_line(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(radd_config(50257)))
    r = invoke("info", str(folder))
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "no weights" in r.stderr


def test_info_names_radd(tmp_path):
    src, state, _ = char_radd(tmp_path / "radd", seed=6)
    r = invoke("info", str(src))
    assert r.exit_code == 0, r.stderr
    n_params = sum(v.numel() for k, v in state.items() if k != "rotary_emb.inv_freq")
    for text in ("radd-folder", "RADD's published layout", "time-independent", "hidden 32", f"{n_params:,}"):
        assert text in r.stdout, text
    doc = json.loads(invoke("info", str(src), "--json").stdout)
    assert doc["origin"]["family"] == "RADD" and doc["model"]["time_conditioning"] is False


def test_radd_hub_id_from_the_offline_cache(tmp_path, monkeypatch):
    """JingyangOu/radd-lambda-dce in huggingface_hub's cache layout, offline: the hub module finds
    it and hands the snapshot to the RADD format."""
    rev = "89abcdef0123456789abcdef0123456789abcdef"
    snapshot = offline_hub_snapshot(tmp_path, monkeypatch, "JingyangOu/radd-lambda-dce", rev)
    state = radd_state(256, seed=7)
    write_radd(snapshot, 256, state)
    pre = load_pretrained("JingyangOu/radd-lambda-dce", device="cpu")
    assert pre.format == "hub" and pre.origin["family"] == "RADD" and pre.origin["revision"] == rev
    assert pre.config.model.time_conditioning is False and pre.tokenizer.kind == "byte"
    loaded = pre.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    r = invoke("info", "JingyangOu/radd-lambda-dce")
    assert r.exit_code == 0 and "hub JingyangOu/radd-lambda-dce" in r.stdout and "RADD's" in r.stdout
