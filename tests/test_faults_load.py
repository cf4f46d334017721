"""Fault injection on the loading side (issue #14): every file a run directory or a model folder
holds for loading (weights, ema, meta.json, config.yaml, tokenizer.json), damaged in each way a
disk, a copy or a person damages it (truncated, emptied, byte-flipped, NaN/Inf, wrong dtype,
missing key, not UTF-8, wrong type), goes through the real command line (`sedd info`,
`sedd sample`). Each must end in exit 1 with one `error:` line that names the file, no
traceback, and leave the folder byte for byte as it was (a hash of every path and its bytes).

Also `sedd convert` onto its own source (issue #14 item 2), with a real run directory and links.

The run is made once per module by a real one-step `sedd_cli.train` of the tiny preset (about
1 s), and converted once into a model folder; each case works on a fresh copy.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from sedd_cli.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

CKPT = "checkpoints/step_00000001"
NAMES = "emma olivia ava isabella sophia mia liam noah william james oliver lucas mason ella".split()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    """{"run": a one-step tiny run directory, "model": it converted to a model folder}."""
    from sedd_cli.checkpoints import convert_model
    from sedd_cli.config import load_config
    from sedd_cli.training import train

    root = tmp_path_factory.mktemp("pristine")
    data = root / "names.txt"
    data.write_text("\n".join(NAMES) + "\n")
    cfg = load_config(
        "tiny",
        sets=[
            f"data.name={data}",
            "data.valid_fraction=0",
            "train.max_steps=1",
            "train.sample_every=0",
            "train.eval_every=0",
            "train.log_every=1",
        ],
    )
    train(cfg, run_dir=root / "runs" / "tiny", device="cpu")
    convert_model(root / "runs" / "tiny", root / "model")
    for folder, name in (
        (root / "runs" / "tiny" / CKPT, "ema.safetensors"),
        (root / "model", "model.safetensors"),
    ):
        recorded = json.loads((folder / "meta.json").read_text())["files"][
            name
        ]  # training / convert record it
        assert set(recorded) >= {"bytes", "sha256"}
    return {"run": root / "runs" / "tiny", "model": root / "model"}


def folder_hash(root: Path) -> str:
    """sha256 over every path under `root` (sorted, relative) and the bytes of every file."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
        h.update(b"\1")
    return h.hexdigest()


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_one_line_error(r, *fragments: str) -> None:
    """Exit 1, exactly one line on stderr starting `error:`, no traceback, every fragment in it."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 1, (r.exit_code, r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for text in fragments:
        assert text in r.stderr, (text, r.stderr)


# --- the corruptions -----------------------------------------------------------------------------


def _header(path: Path) -> tuple[bytes, int, dict]:
    """(file bytes, header length n, header) of a safetensors file: 8-byte little-endian n, then
    n bytes of JSON {name: {dtype, shape, data_offsets}}, then the tensor bytes."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return raw, n, json.loads(raw[8 : 8 + n])


def _first_value(path: Path) -> tuple[bytearray, int]:
    """The file bytes and the offset of the first float32 value of the first tensor (by name)."""
    raw, n, header = _header(path)
    name = sorted(k for k in header if k != "__metadata__")[0]
    assert header[name]["dtype"] == "F32"
    return bytearray(raw), 8 + n + header[name]["data_offsets"][0]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def cut_after(marker: str) -> Callable[[Path], None]:
    """Truncate a text file just after the first `marker` (a fixed place, unlike half the size,
    which moves with the length of the paths the file holds)."""

    def cut(path: Path) -> None:
        text = path.read_text()
        path.write_text(text[: text.index(marker) + len(marker)])

    return cut


def empty(path: Path) -> None:
    path.write_bytes(b"")


def flip_byte(offset: int) -> Callable[[Path], None]:
    """XOR one byte with 0xFF (in a safetensors file, offset 10 lies in the JSON header)."""

    def flip(path: Path) -> None:
        raw = bytearray(path.read_bytes())
        raw[offset] ^= 0xFF
        path.write_bytes(bytes(raw))

    return flip


def exponent_bits(mantissa_high: int) -> Callable[[Path], None]:
    """Set every exponent bit of the first float32 value: Inf when the mantissa is then 0, NaN
    otherwise (IEEE 754: exponent 0xFF). Bytes are little-endian: byte 3 = sign + 7 exponent
    bits, byte 2 = last exponent bit + 7 mantissa bits."""

    def flip(path: Path) -> None:
        raw, at = _first_value(path)
        raw[at : at + 4] = bytes([0, 0, 0x80 | mantissa_high, 0x7F])
        path.write_bytes(bytes(raw))

    return flip


def mantissa_flip(path: Path) -> None:
    """XOR the lowest byte of the first float32 value: still a finite number, only ~1e-7 away
    relative, so no check of the values can see it; only the recorded sha256 can."""
    raw, at = _first_value(path)
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def _set_record(path: Path, record: dict | None) -> None:
    meta_path = path.parent / "meta.json"
    meta = json.loads(meta_path.read_text())
    files = meta.setdefault("files", {})
    if record is None:
        files.pop(path.name, None)
    else:
        files[path.name] = record
    meta_path.write_text(json.dumps(meta, indent=2))


def rerecorded(corrupt: Callable[[Path], None]) -> Callable[[Path], None]:
    """The damage as written by the saver itself (a diverged run, a foreign tool): meta.json
    records the damaged file's size and sha256, so only the loader's own checks can refuse it."""

    def apply(path: Path) -> None:
        from sedd_cli.checkpoints import file_record

        corrupt(path)
        _set_record(path, file_record(path))

    apply.__qualname__ = f"rerecorded_{getattr(corrupt, '__qualname__', 'x').split('.')[0]}"
    return apply


def unrecorded(corrupt: Callable[[Path], None]) -> Callable[[Path], None]:
    """The damage in a file meta.json holds no record of (a checkpoint saved before records)."""

    def apply(path: Path) -> None:
        corrupt(path)
        _set_record(path, None)

    apply.__qualname__ = f"unrecorded_{getattr(corrupt, '__qualname__', 'x').split('.')[0]}"
    return apply


def rewrite(change: Callable[[dict], dict]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        save_file(change(load_file(str(path))), str(path))

    return apply


def first_to_int(state: dict) -> dict:
    name = sorted(state)[0]
    return {**state, name: (state[name] * 1000).to(torch.int64)}


def drop_one(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "blocks.1.adaLN_modulation.weight"}


def prepend_binary(path: Path) -> None:
    path.write_bytes(b"\xff\xfe\x00" + path.read_bytes())


def write(text: str) -> Callable[[Path], None]:
    def put(path: Path) -> None:
        path.write_text(text)

    return put


def edit_json(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return apply


def replace_text(old: str, new: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return apply


def remove(path: Path) -> None:
    path.unlink()


# (folder, file, corruption, commands, fragments of the message besides the file name)
# commands: "info" = `sedd info`, "sample" = `sedd sample --steps 2`, "raw" = `sedd info --weights model`
W = f"{CKPT}/ema.safetensors"
CASES = [
    # the EMA weights (what info and sample load by default), damaged after they were saved:
    # meta.json's record (bytes, sha256) tells
    ("run", W, truncate, "info sample", "its size differs from the one recorded"),
    ("run", W, empty, "info sample", "its size differs from the one recorded"),
    ("run", W, flip_byte(10), "info sample", "its sha256 differs from the one recorded"),
    ("run", W, mantissa_flip, "info sample", "its sha256 differs from the one recorded"),
    ("run", W, exponent_bits(0x40), "info sample", "its sha256 differs from the one recorded"),
    # ... in a file without a record: the reader and the value checks tell
    ("run", W, unrecorded(truncate), "info sample", "truncated or damaged"),
    ("run", W, unrecorded(empty), "info sample", "truncated or damaged"),
    ("run", W, unrecorded(flip_byte(10)), "info sample", "truncated or damaged"),
    ("run", W, unrecorded(exponent_bits(0x40)), "info sample", "holds 1 NaN or Inf value(s)"),
    # ... written that way (recorded as it is): the value, dtype and key checks tell
    ("run", W, rerecorded(exponent_bits(0x40)), "info sample", "holds 1 NaN or Inf value(s)"),
    ("run", W, rerecorded(exponent_bits(0x00)), "info sample", "holds 1 NaN or Inf value(s)"),
    ("run", W, rerecorded(rewrite(first_to_int)), "info sample", "is int64, but model weights are floating"),
    ("run", W, rerecorded(rewrite(drop_one)), "info sample", "missing: blocks.1.adaLN_modulation.weight"),
    # the raw weights, loaded with --weights model
    ("run", f"{CKPT}/model.safetensors", truncate, "raw", "its size differs"),
    ("run", f"{CKPT}/model.safetensors", rerecorded(exponent_bits(0x40)), "raw", "NaN or Inf"),
    ("run", f"{CKPT}/model.safetensors", rerecorded(rewrite(first_to_int)), "raw", "is int64"),
    # meta.json of the checkpoint
    ("run", f"{CKPT}/meta.json", truncate, "info sample", "is not valid JSON"),
    ("run", f"{CKPT}/meta.json", empty, "info sample", "is not valid JSON"),
    (
        "run",
        f"{CKPT}/meta.json",
        prepend_binary,
        "info sample",
        "is not UTF-8 text (invalid start byte at byte 0)",
    ),
    ("run", f"{CKPT}/meta.json", write("[1, 2]"), "info sample", "holds a JSON list, not an object"),
    (
        "run",
        f"{CKPT}/meta.json",
        edit_json(lambda m: {**m, "step": "abc"}),
        "info",
        "step must be a non-negative",
    ),
    (
        "run",
        f"{CKPT}/meta.json",
        edit_json(lambda m: {**m, "step": -3}),
        "info",
        "step must be a non-negative",
    ),
    ("run", f"{CKPT}/meta.json", remove, "info sample", "has no complete checkpoint"),
    # config.yaml of the run
    ("run", "config.yaml", cut_after("  n_he"), "info sample", "invalid YAML in"),
    ("run", "config.yaml", cut_after("model:\n"), "info", "lacks the graph, noise, data, train, sample"),
    ("run", "config.yaml", truncate, "info sample", "config.yaml"),  # wherever half falls
    (
        "run",
        "config.yaml",
        lambda p: p.write_text(p.read_text().rstrip("\n")),
        "info",
        "last line is cut short",
    ),
    ("run", "config.yaml", empty, "info sample", "lacks the name, model, graph"),
    ("run", "config.yaml", prepend_binary, "info sample", "is not UTF-8 text (invalid start byte at byte 0)"),
    ("run", "config.yaml", flip_byte(10), "info sample", "is not UTF-8 text"),
    ("run", "config.yaml", replace_text("  lr:", "  lr: {"), "info", "invalid YAML in"),
    (
        "run",
        "config.yaml",
        replace_text("hidden_size:", "hidden_sise:"),
        "info",
        "unknown config key 'model.hidden_sise'",
    ),
    (
        "run",
        "config.yaml",
        replace_text("  n_blocks: 2", "  n_blocks: two"),
        "info",
        "model.n_blocks must be an integer",
    ),
    (
        "run",
        "config.yaml",
        replace_text("  beta1: 0.9", "  beta1: 2"),
        "info",
        "train.beta1 must be a finite number in [0, 1)",
    ),
    ("run", "config.yaml", write("- 1\n- 2\n"), "info", "must hold a mapping"),
    # tokenizer.json of the run
    ("run", "tokenizer.json", truncate, "info sample", "cannot read"),
    ("run", "tokenizer.json", empty, "info sample", "cannot read"),
    (
        "run",
        "tokenizer.json",
        prepend_binary,
        "info sample",
        "is not UTF-8 text (invalid start byte at byte 0)",
    ),
    (
        "run",
        "tokenizer.json",
        edit_json(lambda d: {k: v for k, v in d.items() if k != "kind"}),
        "info",
        "'kind'",
    ),
    (
        "run",
        "tokenizer.json",
        edit_json(lambda d: {**d, "vocab_size": "abc"}),
        "info",
        "not a valid tokenizer",
    ),
    ("run", "tokenizer.json", edit_json(lambda d: {**d, "format": [1]}), "info", "not a valid tokenizer"),
    ("run", "tokenizer.json", edit_json(lambda d: {**d, "chars": d["chars"][:-1]}), "info", "rebuilds to"),
    # a converted model folder
    ("model", "model.safetensors", mantissa_flip, "info sample", "its sha256 differs"),
    ("model", "model.safetensors", truncate, "info sample", "its size differs"),
    ("model", "model.safetensors", rerecorded(exponent_bits(0x40)), "info sample", "NaN or Inf"),
    ("model", "model.safetensors", unrecorded(truncate), "info sample", "truncated or damaged"),
    ("model", "model.safetensors", rerecorded(rewrite(first_to_int)), "info", "is int64"),
    (
        "model",
        "meta.json",
        edit_json(lambda m: {**m, "weights": "best"}),
        "info",
        "weights must be one of ema, model",
    ),
    ("model", "meta.json", edit_json(lambda m: {**m, "step": 1.5}), "info", "step must be a non-negative"),
    ("model", "meta.json", prepend_binary, "info", "is not UTF-8 text"),
    ("model", "config.yaml", prepend_binary, "info sample", "is not UTF-8 text"),
    ("model", "tokenizer.json", truncate, "info", "cannot read"),
]


def _id(case) -> str:
    folder, file, corrupt, _, _ = case
    name = getattr(corrupt, "__qualname__", "x").split(".")[0]
    return f"{folder}-{Path(file).name}-{name}-{CASES.index(case)}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_a_damaged_file_is_one_line_and_changes_nothing(case, pristine, tmp_path):
    folder, file, corrupt, commands, fragment = case
    target = tmp_path / folder
    shutil.copytree(pristine[folder], target)
    corrupt(target / file)
    before = folder_hash(target)
    name = Path(file).name if corrupt is not remove else str(target)
    runs = {
        "info": ["info", str(target)],
        "raw": ["info", str(target), "--weights", "model"],
        "sample": ["sample", str(target), "--steps", "2", "--num-samples", "1", "--device", "cpu"],
    }
    for command in commands.split():
        r = invoke(*runs[command])
        assert_one_line_error(r, name, fragment)
        assert folder_hash(target) == before, f"{command} changed {target}"


@pytest.mark.parametrize("folder", ["run", "model"])
def test_the_pristine_folders_load_and_sample(folder, pristine):
    """The control: without damage the same commands succeed, so each failure above is the
    damage's doing."""
    before = folder_hash(pristine[folder])
    r = invoke("info", str(pristine[folder]), "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["step"] == 1
    r = invoke("sample", str(pristine[folder]), "--steps", "2", "--num-samples", "1", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert folder_hash(pristine[folder]) == before


def test_nan_in_the_unused_weights_does_not_block_the_used_ones(pristine, tmp_path):
    """Only the file that is loaded is checked: NaN in model.safetensors leaves the EMA weights
    usable (the default), and is refused with --weights model."""
    run = tmp_path / "run"
    shutil.copytree(pristine["run"], run)
    rerecorded(exponent_bits(0x40))(run / CKPT / "model.safetensors")
    assert invoke("info", str(run)).exit_code == 0
    assert_one_line_error(invoke("info", str(run), "--weights", "model"), "model.safetensors", "NaN or Inf")


# --- sedd convert onto its own source ------------------------------------------------------------


@pytest.fixture
def runs(pristine, tmp_path) -> Path:
    """A copy of the runs/ folder holding the tiny run and a second run beside it."""
    root = tmp_path / "runs"
    shutil.copytree(pristine["run"], root / "tiny")
    shutil.copytree(pristine["run"], root / "other")
    return root


@pytest.mark.parametrize(
    "source, out, how",
    [
        ("tiny", "tiny", "is the source"),  # OUT = SRC
        ("tiny", "tiny/converted", "lies inside the source"),
        ("tiny", ".", "contains the source"),  # OUT = runs/: every run
        (f"tiny/{CKPT}", "tiny", "contains the source"),  # the run around a checkpoint
        (f"tiny/{CKPT}", f"tiny/{CKPT}", "is the source"),
        (f"tiny/{CKPT}", "tiny/checkpoints/step_00000002", "lies inside the source"),  # a sibling checkpoint
    ],
)
@pytest.mark.parametrize("force", [False, True])
def test_convert_refuses_out_overlapping_the_source(runs, source, out, how, force):
    before = folder_hash(runs)
    args = ["convert", str(runs / source), str(runs / out)] + (["--force"] if force else [])
    assert_one_line_error(invoke(*args), "refusing to write", how, "--force does not change this")
    assert folder_hash(runs) == before


def test_model_folder_converts_beside_itself(runs, tmp_path):
    """A model folder (meta.json + weights, as `sedd convert` writes) is not a run's checkpoint:
    converting models/a to models/b is allowed. (The run around a checkpoint was once taken to be
    the folder two levels up of any model folder, so this was refused as inside the source.)"""
    models = tmp_path / "models"
    assert invoke("convert", str(runs / "tiny"), str(models / "a")).exit_code == 0
    r = invoke("convert", str(models / "a"), str(models / "b"))
    assert r.exit_code == 0, r.stderr
    assert (models / "b" / "meta.json").is_file()


def test_convert_refuses_through_links(runs, tmp_path):
    """Links resolved on both sides: a link to the run as SRC, a link to the run (or to runs/)
    as OUT, and OUT under a linked folder."""
    (tmp_path / "link-to-run").symlink_to(runs / "tiny", target_is_directory=True)
    (tmp_path / "link-to-runs").symlink_to(runs, target_is_directory=True)
    before = folder_hash(runs)
    for src, out in [
        (tmp_path / "link-to-run", runs / "tiny"),
        (runs / "tiny", tmp_path / "link-to-run"),
        (runs / "tiny", tmp_path / "link-to-runs"),
        (tmp_path / "link-to-run", tmp_path / "link-to-runs" / "tiny" / "model"),
        (runs / "tiny" / CKPT, tmp_path / "link-to-runs" / "tiny"),
    ]:
        r = invoke("convert", str(src), str(out), "--force")
        assert_one_line_error(r, "refusing to write", "the source")
        assert folder_hash(runs) == before, (src, out)
    assert (tmp_path / "link-to-run").is_symlink() and (tmp_path / "link-to-runs").is_symlink()


def test_convert_beside_the_source_still_works(runs):
    """The control: a sibling OUT (runs/converted, not inside runs/tiny) converts, --force
    replaces it, and the source run is untouched."""
    before = folder_hash(runs / "tiny")
    for extra in ([], ["--force"]):
        r = invoke("convert", str(runs / "tiny"), str(runs / "converted"), *extra)
        assert r.exit_code == 0, r.stderr
    assert folder_hash(runs / "tiny") == before
    assert (runs / "converted" / "model.safetensors").is_file()
