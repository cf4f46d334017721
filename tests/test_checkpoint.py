"""The one loader: published (HF) folders, hub ids from the cache, reference training runs, our
formats; strictness, pickle refusal, `sedd convert` and `sedd info`.

The checkpoints are built here from the reference's parameter names and shapes
(tests/fixtures/reference/sedd-state-dict.json, the `small` model) scaled down, never from our own
model's state dict, so a renamed or reshaped parameter in our network would fail these tests.
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
from sedd_cli.tokenizers import CharTokenizer

from .conftest import REFERENCE
from .helpers import offline_hub_snapshot, probe_outputs

HIDDEN, COND, BLOCKS, HEADS, LENGTH = 32, 16, 2, 4, 12


def reference_shapes(tokens: int, graph: str = "absorb") -> dict[str, list[int]]:
    """The `small` state dict of the reference with every dimension scaled down.

    Small uses d = 768, 3d = 2304, 4d = 3072, 6d = 4608, 2d = 1536, D = 50258, cond = 128,
    frequency embedding 256, inv_freq = head_dim / 2 = 32; these values are distinct, so each
    maps to one scaled dimension. Blocks 0..11 become 0..BLOCKS-1.
    """
    small = json.loads((REFERENCE / "sedd-state-dict.json").read_text())["small"]["state_dict"]
    D = tokens + 1 if graph == "absorb" else tokens
    scale = {
        768: HIDDEN,
        2304: 3 * HIDDEN,
        3072: 4 * HIDDEN,
        4608: 6 * HIDDEN,
        1536: 2 * HIDDEN,
        50258: D,
        128: COND,
        256: 256,
        32: HIDDEN // HEADS // 2,
    }
    out = {}
    for key, shape in small.items():
        if key.startswith("blocks.") and int(key.split(".")[1]) >= BLOCKS:
            continue
        out[key] = [scale[s] for s in shape]
    return out


def random_state(tokens: int, seed: int, *, inv_freq: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {k: 0.2 * torch.randn(s, generator=g) for k, s in reference_shapes(tokens).items()}
    if inv_freq:  # the real buffer: 10000^(-2k/h), k < h/2
        h = HIDDEN // HEADS
        state["rotary_emb.inv_freq"] = 1.0 / 10000 ** (torch.arange(0, h, 2).float() / h)
    else:
        del state["rotary_emb.inv_freq"]
    return state


def reference_config(tokens: int) -> dict:
    """A Hydra training config as the reference dumps it, with keys the loader must ignore and an
    unresolved interpolation in a field it may carry over."""
    return {
        "ngpus": 1,
        "tokens": tokens,
        "training": {"batch_size": "${ngpus}", "accum": 1, "n_iters": 1300001, "ema": 0.9999},
        "data": {"train": "openwebtext", "valid": "wikitext103", "cache_dir": "data"},
        "graph": {"type": "absorb", "file": "data", "report_all": False},
        "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
        "sampling": {"predictor": "euler", "steps": 128, "noise_removal": True},
        "optim": {"weight_decay": 0, "optimizer": "AdamW", "lr": 3e-4, "warmup": 2500, "grad_clip": 1.0},
        "model": {
            "name": "tiny",
            "type": "ddit",
            "hidden_size": HIDDEN,
            "cond_dim": COND,
            "length": LENGTH,
            "n_blocks": BLOCKS,
            "n_heads": HEADS,
            "scale_by_sigma": True,
            "dropout": 0.1,
        },
        "hydra": {"run": {"dir": "exp_local/${now:%Y.%m.%d}"}},
    }


def write_published(folder: Path, tokens: int, state: dict, *, bin_file: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(reference_config(tokens)))
    if bin_file:
        torch.save(collections.OrderedDict(state), folder / "pytorch_model.bin")
    else:
        save_file(state, str(folder / "model.safetensors"))
    return folder


def write_reference_run(root: Path, tokens: int, raw: dict, ema: dict, step: int) -> Path:
    import yaml

    (root / ".hydra").mkdir(parents=True)
    (root / ".hydra" / "config.yaml").write_text(yaml.safe_dump(reference_config(tokens)))
    (root / "checkpoints-meta").mkdir()
    order = [k for k in reference_shapes(tokens) if k != "rotary_emb.inv_freq"]  # parameters() order
    params = [torch.zeros(1, requires_grad=True)]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    params[0].grad = torch.ones(1)
    optimizer.step()
    ckpt = {
        "model": raw,
        "ema": {"decay": 0.9999, "num_updates": step, "shadow_params": [ema[k] for k in order]},
        "optimizer": optimizer.state_dict(),
        "step": step,
    }
    torch.save(ckpt, root / "checkpoints-meta" / "checkpoint.pth")
    return root


def assert_weights(pre, state: dict) -> None:
    loaded = pre.model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


# --- published layout --------------------------------------------------------------------------


def test_published_safetensors_folder_loads_strictly_and_converts(tmp_path):
    state = random_state(256, seed=0, inv_freq=False)  # inv_freq is optional
    src = write_published(tmp_path / "hf", 256, state)
    pre = load_pretrained(src, device="cpu")
    assert pre.format == "hf-folder" and pre.tokenizer.kind == "byte"
    assert pre.graph.dim == 257 and pre.config.graph.type == "absorb"
    m = pre.config.model
    assert (m.hidden_size, m.cond_dim, m.n_blocks, m.n_heads, m.length) == (
        HIDDEN,
        COND,
        BLOCKS,
        HEADS,
        LENGTH,
    )
    assert pre.config.noise.type == "loglinear" and pre.config.model.vocab_size == 256
    assert not pre.model.training  # eval mode: dropout 0.1 is off
    assert_weights(pre, state)
    before = probe_outputs(pre.model, 256, LENGTH)

    r = invoke("convert", str(src), str(tmp_path / "out"), "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "hf-folder" and doc["parameters"] == sum(v.numel() for v in state.values())
    assert {"model.safetensors", "config.yaml", "tokenizer.json", "meta.json"} <= set(doc["files"])
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["source"] == str(src) and meta["step"] is None and meta["weights"] == "ema"

    post = load_pretrained(tmp_path / "out", device="cpu")
    assert post.format == "sedd-model" and post.tokenizer.kind == "byte"
    assert torch.equal(probe_outputs(post.model, 256, LENGTH), before)


def test_published_bin_folder_with_our_tokenizer_beside(tmp_path):
    tok = CharTokenizer.from_texts(["hello world", "abc"])
    state = random_state(tok.vocab_size, seed=3)
    src = write_published(tmp_path / "hf", tok.vocab_size, state, bin_file=True)
    tok.save(src)
    pre = load_pretrained(src, device="cpu")
    assert pre.tokenizer.kind == "char" and pre.tokenizer.vocab_size == tok.vocab_size
    assert pre.origin["file"] == "pytorch_model.bin"
    assert_weights(pre, state)


def test_published_vocab_rules(tmp_path):
    """50257 tokens -> GPT-2 (no BPE files needed to load); other sizes need a tokenizer.json."""
    src = write_published(tmp_path / "gpt2", 50257, random_state(50257, seed=4))
    found = locate(src)
    assert found.tokenizer.kind == "gpt2" and found.config.data.tokenizer == "gpt2"
    assert found.config.data.name == "owt" and found.config.sample.steps == 128
    assert (
        found.config.train.max_steps == 1300001 and found.config.train.batch_size == 512
    )  # ${ngpus} skipped
    odd = write_published(tmp_path / "odd", 100, random_state(100, seed=5))
    with pytest.raises(SeddError, match=r"tokens=100.*tokenizer\.json"):
        locate(odd)


# --- hub ids -------------------------------------------------------------------------------------


def test_hub_id_found_in_offline_cache(tmp_path, monkeypatch):
    """huggingface_hub's cache layout: hub/models--OWNER--NAME/{refs/main, snapshots/REV/FILES}."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    snapshot = offline_hub_snapshot(tmp_path, monkeypatch, "someone/sedd-tiny", rev)
    state = random_state(256, seed=6)
    write_published(snapshot, 256, state)

    pre = load_pretrained("someone/sedd-tiny", device="cpu")
    assert pre.format == "hub" and pre.origin["hub_id"] == "someone/sedd-tiny"
    assert pre.origin["revision"] == rev and pre.origin["file"] == "model.safetensors"
    assert_weights(pre, state)

    r = invoke("info", "someone/sedd-tiny", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["origin"]["hub_id"] == "someone/sedd-tiny" and doc["vocab_size"] == 256
    assert doc["graph"] == {"type": "absorb", "dim": 257} and doc["tokenizer"] == "byte"


def test_hub_id_not_cached_offline_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = invoke("info", "nobody/no-such-model")
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "not in the Hugging Face cache" in r.stderr
    assert "nobody/no-such-model" in r.stderr and "--local-dir" in r.stderr


# --- reference training runs --------------------------------------------------------------------


def test_reference_run_uses_ema_shadow_params(tmp_path):
    raw, ema = random_state(256, seed=7), random_state(256, seed=8)
    ema["rotary_emb.inv_freq"] = raw["rotary_emb.inv_freq"]
    run = write_reference_run(tmp_path / "exp", 256, raw, ema, step=1234)

    pre = load_pretrained(run, device="cpu")
    assert pre.format == "reference-run" and pre.weights == "ema" and pre.step == 1234
    assert_weights(pre, ema)
    raw_pre = load_pretrained(run, device="cpu", weights="model")
    assert raw_pre.weights == "model"
    assert_weights(raw_pre, raw)
    assert not torch.equal(probe_outputs(pre.model, 256, LENGTH), probe_outputs(raw_pre.model, 256, LENGTH))

    out = tmp_path / "converted"
    r = invoke("convert", str(run), str(out))
    assert r.exit_code == 0, r.stderr
    assert "step 1,234" in r.stdout
    post = load_pretrained(out, device="cpu")
    assert post.step == 1234 and post.weights == "ema"
    assert torch.equal(probe_outputs(post.model, 256, LENGTH), probe_outputs(pre.model, 256, LENGTH))


def test_reference_run_ema_count_mismatch(tmp_path):
    raw = random_state(256, seed=9)
    run = write_reference_run(tmp_path / "exp", 256, raw, raw, step=1)
    ckpt_path = run / "checkpoints-meta" / "checkpoint.pth"
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["ema"]["shadow_params"] = ckpt["ema"]["shadow_params"][:-1]
    torch.save(ckpt, ckpt_path)
    n = sum(1 for k in raw if k != "rotary_emb.inv_freq")
    with pytest.raises(SeddError, match=rf"hold {n - 1} tensors but the model has {n} parameters"):
        load_pretrained(run, device="cpu")


# --- strictness and safety -----------------------------------------------------------------------


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path):
    state = random_state(256, seed=10)
    del state["blocks.1.mlp.0.bias"]
    state["blocks.0.attn_out.weight"] = torch.zeros(HIDDEN, HIDDEN + 1)
    state["output_layer.extra"] = torch.zeros(3)
    src = write_published(tmp_path / "bad", 256, state)
    r = invoke("info", str(src))
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    msg = r.stderr
    assert "missing: blocks.1.mlp.0.bias" in msg
    assert "unexpected: output_layer.extra" in msg
    assert (
        f"mis-shaped: blocks.0.attn_out.weight [{HIDDEN}, {HIDDEN + 1}] (expected [{HIDDEN}, {HIDDEN}])"
        in msg
    )


class Payload:
    """Unpickling this would create `path` (the file proves whether anything was unpickled)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("obj", ["payload", "counter"])
def test_pickles_with_objects_are_refused(tmp_path, obj):
    sentinel = tmp_path / "unpickled"
    state = dict(random_state(256, seed=11))
    state["blocks.0.norm1.weight"] = Payload(sentinel) if obj == "payload" else collections.Counter(a=1)
    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(reference_config(256)))
    torch.save(state, src / "pytorch_model.bin")
    with pytest.raises(SeddError, match="refusing to load"):
        load_pretrained(src, device="cpu")
    # the same object inside a reference run checkpoint
    run = write_reference_run(tmp_path / "exp", 256, random_state(256, 0), random_state(256, 0), step=1)
    ckpt = run / "checkpoints-meta" / "checkpoint.pth"
    torch.save({"model": state, "ema": {}, "optimizer": {}, "step": 1}, ckpt)
    r = invoke("convert", str(run), str(tmp_path / "out"))
    assert r.exit_code == 1 and "refusing to load" in r.stderr
    assert not sentinel.exists() and not (tmp_path / "out").exists()


# --- the commands ----------------------------------------------------------------------------------


def test_convert_refuses_non_empty_out_unless_force(tmp_path):
    src = write_published(tmp_path / "hf", 256, random_state(256, seed=12))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = invoke("convert", str(src), str(out))
    assert r.exit_code == 1 and "--force" in r.stderr
    assert (out / "keep.txt").read_text() == "mine"
    r = invoke("convert", str(src), str(out), "--force")
    assert r.exit_code == 0, r.stderr
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_info_human_view(tmp_path):
    state = random_state(256, seed=13)
    src = write_published(tmp_path / "hf", 256, state)
    r = invoke("info", str(src))
    assert r.exit_code == 0, r.stderr
    n_params = sum(v.numel() for k, v in state.items() if k != "rotary_emb.inv_freq")
    assert f"{n_params:,}" in r.stdout
    for text in ("hf-folder", "hidden 32", "2 blocks", "4 heads", "byte tokenizer", "D = 257", "loglinear"):
        assert text in r.stdout, text


@pytest.mark.parametrize("name", ["info", "convert"])
def test_help_has_examples(name):
    r = invoke(name, "--help")
    assert r.exit_code == 0 and "Examples" in r.stdout and f"sedd {name} " in r.stdout


def test_paper_parameter_counts():
    """Our network with the paper's sizes has the reference's parameter count (the figures the
    docs' memory estimates use): small 169,627,218; medium 424,477,010."""
    from sedd_cli.config import load_preset
    from sedd_cli.model import SEDD, count_parameters

    ref = json.loads((REFERENCE / "sedd-state-dict.json").read_text())
    for size in ("small", "medium"):
        cfg = load_preset(size)
        with torch.device("meta"):
            model = SEDD(cfg.model, 50258)
        assert count_parameters(model) == ref[size]["parameters"]


def test_hub_id_with_an_unreachable_hub_fails_at_once_without_downloading(tmp_path, monkeypatch):
    """No HF_HUB_OFFLINE, but the hub does not answer the probe: a one-line error naming the
    endpoint, and `hf_hub_download` (whose retries printed 30 s of chatter) is never called."""
    import huggingface_hub

    from sedd_cli import hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hub, "_probed", {"http://127.0.0.1:9": False})

    def never(*a, **k):
        raise AssertionError("hf_hub_download was called although the hub does not answer")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)
    with pytest.raises(SeddError, match=r"the hub \(http://127.0.0.1:9\) does not answer") as err:
        load_pretrained("louaaron/sedd-tiny", device="cpu")
    assert "\n" not in str(err.value)


def test_hub_download_falls_back_to_pytorch_model_bin(tmp_path, monkeypatch):
    """Online: config.json, then model.safetensors (absent in the published repos), then
    pytorch_model.bin, as PyTorchModelHubMixin looks them up (huggingface_hub stubbed)."""
    import huggingface_hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    snapshot = tmp_path / "hf" / "hub" / "models--louaaron--sedd-tiny" / "snapshots" / ("a" * 40)
    state = random_state(256, seed=14)
    write_published(snapshot, 256, state, bin_file=True)
    asked = []

    def fake_download(repo_id, filename, *, cache_dir=None, **kw):
        asked.append(filename)
        assert repo_id == "louaaron/sedd-tiny" and Path(cache_dir) == tmp_path / "hf" / "hub"
        if not (snapshot / filename).is_file():
            raise huggingface_hub.errors.EntryNotFoundError(f"{filename} not in repo")
        return str(snapshot / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    from sedd_cli import hub

    monkeypatch.setattr(hub, "reachable", lambda *a: True)  # the stubbed hub "answers"
    pre = load_pretrained("louaaron/sedd-tiny", device="cpu")
    assert asked == ["config.json", "model.safetensors", "pytorch_model.bin"]
    assert pre.origin == {
        "hub_id": "louaaron/sedd-tiny",
        "revision": "a" * 40,
        "file": "pytorch_model.bin",
        "path": str(snapshot / "pytorch_model.bin"),
    }
    assert_weights(pre, state)

    def no_network(repo_id, filename, **kw):
        raise OSError("Connection refused")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with pytest.raises(SeddError, match=r"could not download 'louaaron/other'.*Connection refused"):
        load_pretrained("louaaron/other", device="cpu")


def test_our_run_directory_loads_ema_or_model(tmp_path):
    """Our run layout: config.yaml + tokenizer.json + checkpoints/step_N/{model,ema}.safetensors
    + meta.json; the newest complete checkpoint is used (a folder without meta.json is not)."""
    from sedd_cli.checkpoints import save_weights
    from sedd_cli.config import Config
    from sedd_cli.tokenizers import ByteTokenizer

    from .helpers import tiny_model_config

    run = tmp_path / "runs" / "r"
    cfg = Config(model=tiny_model_config(hidden_size=HIDDEN, cond_dim=COND, vocab_size=256))
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(cfg.to_yaml())
    ByteTokenizer().save(run)
    raw, ema = random_state(256, seed=15), random_state(256, seed=16)
    for step in (10, 20, 30):
        ckpt = run / "checkpoints" / f"step_{step:08d}"
        ckpt.mkdir(parents=True)
        save_weights(ckpt / "model.safetensors", raw)
        save_weights(ckpt / "ema.safetensors", ema)
        if step != 30:  # step 30 is incomplete (no meta.json)
            (ckpt / "meta.json").write_text(json.dumps({"step": step}))
    pre = load_pretrained(run, device="cpu")
    assert pre.format == "sedd-run" and pre.step == 20 and pre.weights == "ema"
    assert_weights(pre, ema)
    assert_weights(load_pretrained(run, device="cpu", weights="model"), raw)
    with pytest.raises(SeddError, match="weights must be one of ema, model"):
        load_pretrained(run, weights="best")


def test_hub_id_versus_local_path(tmp_path, monkeypatch):
    from sedd_cli.checkpoints import is_hub_id

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert is_hub_id("louaaron/sedd-small")
    assert not is_hub_id("runs/mistyped")  # its folder exists: a local path, reported as not found
    assert not is_hub_id("./model") and not is_hub_id("a/b/c") and not is_hub_id("/abs/path")
    with pytest.raises(SeddError, match="'runs/mistyped' not found"):
        locate("runs/mistyped")


# --- corrupted tensors in the reference formats (issue #14 item 4) ----------------------------------


def _poison(state: dict, key: str, how: str) -> dict:
    """A copy of `state` with tensor `key` holding one NaN / one -Inf, or cast to int64."""
    out = dict(state)
    t = out[key].clone()
    if how == "int":
        out[key] = (t * 100).to(torch.int64)
    else:
        t.view(-1)[3] = float("nan") if how == "nan" else float("-inf")
        out[key] = t
    return out


@pytest.mark.parametrize("how", ["nan", "inf", "int"])
@pytest.mark.parametrize("bin_file", [False, True])
def test_published_weights_that_are_not_finite_floats_are_refused(tmp_path, how, bin_file):
    """model.safetensors and pytorch_model.bin alike: one line naming the file and the tensor;
    an int64 tensor is refused, not cast to float (before, all three loaded with exit 0)."""
    key = "blocks.1.attn_qkv.weight"
    src = write_published(
        tmp_path / "hf", 256, _poison(random_state(256, seed=20), key, how), bin_file=bin_file
    )
    r = invoke("info", str(src))
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
    name = "pytorch_model.bin" if bin_file else "model.safetensors"
    expected = (
        "is int64, but model weights are floating point" if how == "int" else "holds 1 NaN or Inf value(s)"
    )
    assert name in r.stderr and repr(key) in r.stderr and expected in r.stderr, r.stderr


@pytest.mark.parametrize("which", ["ema", "model"])
def test_reference_run_with_nan_in_the_weights_it_loads_is_refused(tmp_path, which):
    """A reference checkpoint.pth holds both weight sets: NaN in the EMA shadow list is refused
    when the EMA weights are loaded (the default) and ignored with --weights model, and the
    other way round; the message names the .pth file."""
    good = random_state(256, seed=21)
    bad = _poison(good, "blocks.0.mlp.0.weight", "nan")
    raw, ema = (good, bad) if which == "ema" else (bad, good)
    run = write_reference_run(tmp_path / "exp", 256, raw, ema, step=5)
    with pytest.raises(SeddError, match=r"checkpoint\.pth.*NaN or Inf"):
        load_pretrained(run, device="cpu", weights=which)
    other = "model" if which == "ema" else "ema"
    assert load_pretrained(run, device="cpu", weights=other).step == 5


def test_state_dict_with_integer_tensor_is_refused_by_the_strict_load():
    """load_state_strict itself refuses an integer tensor where the model has floats (torch's
    load_state_dict would cast it), naming the source and the tensor."""
    from sedd_cli.checkpoints import build_components, load_state_strict
    from sedd_cli.config import Config

    from .helpers import tiny_model_config

    model, _, _ = build_components(Config(model=tiny_model_config(vocab_size=8)))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["output_layer.linear.bias"] = torch.zeros_like(state["output_layer.linear.bias"], dtype=torch.int32)
    with pytest.raises(
        SeddError, match=r"src.pt: tensor 'output_layer.linear.bias' is int32 where the model has float32"
    ):
        load_state_strict(model, state, "src.pt")


def test_finite_check_is_exact_where_the_fast_sum_overflows():
    """check_tensors tests sum(t) first (NaN and Inf propagate through a sum); a finite tensor
    whose float32 sum overflows to inf (3e38 + 3e38) is still accepted, one NaN among finite
    values or +Inf next to -Inf (sum NaN) is refused, and so is a NaN in bfloat16."""
    from sedd_cli.checkpoints import check_tensors

    check_tensors({"big": torch.full((4,), 3e38)}, "f")
    assert not torch.isfinite(torch.full((4,), 3e38).sum())  # the fast path alone would refuse it
    for bad in (
        torch.tensor([1.0, float("nan"), 2.0]),
        torch.tensor([float("inf"), -float("inf")]),
        torch.tensor([0.5, float("nan")], dtype=torch.bfloat16),
    ):
        with pytest.raises(SeddError, match="'w' holds"):
            check_tensors({"w": bad}, "f")
    with pytest.raises(SeddError, match=r"'\[1\]' is bool"):
        check_tensors([torch.zeros(2), torch.zeros(2, dtype=torch.bool)], "f")


def test_damaged_reference_configs_name_the_file_and_the_place(tmp_path):
    """config.json of a published folder and .hydra/config.yaml of a reference run: not UTF-8 ->
    the byte offset; not JSON / YAML -> line and column (before: a UnicodeDecodeError traceback,
    and "invalid YAML" without the file)."""
    src = write_published(tmp_path / "hf", 256, random_state(256, seed=22))
    (src / "config.json").write_bytes(b'{"tokens": 256,\xc3\x28}')
    with pytest.raises(
        SeddError, match=r"config\.json' is not UTF-8 text \(invalid continuation byte at byte 15\)"
    ):
        locate(src)
    (src / "config.json").write_text('{"tokens": 256,\n "graph": }')
    with pytest.raises(
        SeddError, match=r"config\.json' is not valid JSON \(Expecting value at line 2, column 11\)"
    ):
        locate(src)
    run = write_reference_run(tmp_path / "exp", 256, random_state(256, 0), random_state(256, 0), step=1)
    (run / ".hydra" / "config.yaml").write_text("tokens: 256\nmodel: {hidden_size: 32\n")
    with pytest.raises(SeddError, match=r"invalid YAML in '.*\.hydra/config\.yaml' \(line 3, column 1\)"):
        locate(run)
