"""`sedd sample` and `sedd infill` on a tiny random-init char model: every output mode and the
error paths. (Correctness of the samplers is in test_samplers.py, against an oracle.)"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sedd_cli.cli import app

from .helpers import save_tiny_char_model

ALPHABET = "abcdefgh"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_char_model(tmp_path_factory.mktemp("m") / "m", ALPHABET, seed=None)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="sedd")


def ok(r):
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r


def test_sample_human(model_dir):
    r = ok(invoke("sample", model_dir, "--steps", 4, "--num-samples", 3, "--device", "cpu"))
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:  # pads stripped, only vocabulary characters, at most the model length
        assert set(line) <= set(ALPHABET) and len(line) <= 16


def test_sample_json_records_settings(model_dir):
    r = ok(invoke("sample", model_dir, "--steps", 5, "-n", 5, "--batch-size", 2, "--seed", 3, "--json"))
    doc = json.loads(r.stdout)
    assert doc["steps"] == 5 and doc["seed"] == 3
    # network calls counted: 5 steps + the denoiser when a mask is left; no cache for this
    # time-conditioned model, so every call runs its whole batch (batches of 2, 2, 1)
    assert doc["nfe"] in (5, 6) and 5 * 5 <= doc["rows"] <= 5 * doc["nfe"]
    assert doc["cache"] is True and doc["tokens_per_step"] == 1
    assert doc["predictor"] == "analytic" and doc["precision"] == "float64"
    assert doc["wall_s"] > 0 and len(doc["samples"]) == 5
    mask_id = 2 + len(ALPHABET)
    for s in doc["samples"]:  # no mask id after denoising; 3 batches of at most 2
        assert len(s["ids"]) == 16 and max(s["ids"]) < mask_id
    # same seed, same samples (also across batch splits)
    again = json.loads(
        ok(
            invoke("sample", model_dir, "--steps", 5, "-n", 5, "--batch-size", 2, "--seed", 3, "--json")
        ).stdout
    )
    assert [s["ids"] for s in again["samples"]] == [s["ids"] for s in doc["samples"]]


def test_sample_temperature_top_p_recorded(model_dir):
    """The shaping options reach the sampler (recorded in --json) and give mask-free samples."""
    for args, want in (
        (["--temperature", 0], (0, 1)),
        (["--top-p", 0.5, "--temperature", 0.7], (0.7, 0.5)),
    ):
        doc = json.loads(ok(invoke("sample", model_dir, "--steps", 4, "-n", 3, *args, "--json")).stdout)
        assert (doc["temperature"], doc["top_p"]) == want
        assert all(max(x["ids"]) < 2 + len(ALPHABET) for x in doc["samples"])


def test_sample_euler_float32_no_denoise(model_dir):
    r = ok(
        invoke(
            "sample", model_dir, "--steps", 3, "-n", 2, "--predictor", "euler",
            "--precision", "float32", "--no-denoise", "--json",
        )
    )  # fmt: skip
    doc = json.loads(r.stdout)
    assert doc["predictor"] == "euler" and doc["precision"] == "float32" and doc["nfe"] <= 3
    assert doc["rows"] == 2 * doc["nfe"]
    assert doc["denoise"] is False


def test_sample_length_pad_layout(model_dir):
    """Pad-layout model: --length 5 fixes the tail to pads, so texts have at most 5 characters."""
    doc = json.loads(ok(invoke("sample", model_dir, "--steps", 4, "-n", 4, "--length", 5, "--json")).stdout)
    assert all(len(s["ids"]) == 5 and len(s["text"]) <= 5 for s in doc["samples"])


def test_sample_out_file_and_frames(model_dir, tmp_path):
    out, frames = tmp_path / "s.txt", tmp_path / "f.jsonl"
    r = ok(invoke("sample", model_dir, "--steps", 3, "-n", 2, "--out", out, "--save-frames", frames))
    assert r.stdout == ""
    assert len(out.read_text().splitlines()) == 2
    recs = [json.loads(line) for line in frames.read_text().splitlines()]
    assert [x["step"] for x in recs] == [0, 1, 2, 3, 4]
    assert recs[-1]["phase"] == "denoise" and recs[0]["texts"] == ["_" * 16] * 2
    assert all(len(x["ids"]) == 2 for x in recs)
    # jsonl --out
    ok(invoke("sample", model_dir, "--steps", 2, "-n", 2, "--out", tmp_path / "s.jsonl"))
    assert [set(json.loads(x)) for x in (tmp_path / "s.jsonl").read_text().splitlines()] == [
        {"text", "ids"}
    ] * 2


def test_show_intermediate_plain_lines(model_dir):
    r = ok(invoke("sample", model_dir, "--steps", 4, "-n", 2, "--show-intermediate", "--every", 2))
    lines = [x for x in r.stderr.splitlines() if x.startswith(("step", "denoised"))]
    # start (step 0), steps 2 and 4, then the denoised state; two samples each
    assert [x.split(" t=")[0] for x in lines[::2]] == ["step 0/4", "step 2/4", "step 4/4", "denoised"]
    assert "masked=100%" in lines[0] and lines[0].endswith("[0]: " + "_" * 16)
    # each step is labelled with the time it reached: 1 -> 0.5 -> 1e-5 on the 4-step grid
    assert [x.split(" t=")[1][:5] for x in lines[:6:2]] == ["1.000", "0.500", "0.000"]
    assert len(r.stdout.splitlines()) == 2


def test_infill_template_keeps_given_text(model_dir, tmp_path):
    frames = tmp_path / "f.jsonl"
    r = ok(
        invoke("infill", "ab[MASK:3]c", "--model", model_dir, "--steps", 4, "-n", 3, "--save-frames", frames)
    )
    for line in r.stdout.splitlines():  # plain output: brackets around the filled span
        assert line.startswith("ab[") and line.endswith("]c"), line
    doc = json.loads(ok(invoke("infill", "ab[MASK:3]c", "-m", model_dir, "--steps", 4, "--json")).stdout)
    s = doc["samples"][0]
    assert s["spans"] == [[2, 5]] and s["text"].startswith("ab") and s["text"].endswith("c")
    ids0 = json.loads(frames.read_text().splitlines()[0])["ids"][0]
    for rec in map(json.loads, frames.read_text().splitlines()):  # given tokens fixed at every step
        for row in rec["ids"]:
            assert row[:2] == ids0[:2] and row[5] == ids0[5] and row[6:] == [0] * 10


def test_infill_prefix_suffix(model_dir):
    doc = json.loads(
        ok(
            invoke(
                "infill",
                "-m",
                model_dir,
                "--prefix",
                "ha",
                "--suffix",
                "ed",
                "--length",
                7,
                "--steps",
                4,
                "--json",
            )
        ).stdout
    )
    for s in doc["samples"]:
        assert s["text"].startswith("ha") and s["text"].endswith("ed") and s["spans"] == [[2, 5]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "{m}", "--steps", "0"], "steps"),
        (["sample", "{m}", "--length", "0"], "length"),
        (["sample", "{m}", "--length", "17"], "trained length 16"),
        (["sample", "{m}", "--predictor", "heun"], "unknown predictor"),
        (["sample", "{m}", "--precision", "float16"], "precision"),
        (["sample", "{m}", "--every", "0"], "every"),
        (["sample", "{m}", "--temperature", "-1"], "--temperature"),
        (["sample", "{m}", "--top-p", "0"], "--top-p"),
        (["infill", "a[MASK]", "-m", "{m}", "--top-p", "1.5"], "--top-p"),
        (["sample", "{missing}"], "not found"),
        (["infill", "abc", "-m", "{m}"], "no [MASK]"),
        (
            ["infill", "-m", "{m}", "--prefix", "abcdef", "--suffix", "abc", "--length", "8"],
            "prefix + suffix",
        ),
        (["infill", "xyz[MASK]", "-m", "{m}"], "lacks the character"),
        (["infill", "-m", "{m}"], "nothing to infill"),
        # issue 14: numbers too large to mean anything, malformed masks, existing outputs
        (["sample", "{m}", "--steps", str(10**12)], "--steps must be between 1 and 100,000"),
        (["sample", "{m}", "--num-samples", str(10**12)], "--num-samples must be between 1 and 1,000,000"),
        (
            ["infill", "a[MASK:" + str(10**30) + "]", "-m", "{m}"],
            "more masked tokens than the model's length 16",
        ),
        (["infill", "a[MASK:" + "9" * 5000 + "]", "-m", "{m}"], "more masked tokens than"),
        (["infill", "a[MASK:10]b[MASK:7]", "-m", "{m}"], "more masked tokens than the model's length 16"),
        (["infill", "a[MASK:x]", "-m", "{m}"], "malformed mask '[MASK:x]'"),
        (["infill", "a[MASK:]b[MASK]", "-m", "{m}"], "malformed mask '[MASK:]'"),
        (["infill", "a[MASK:-2]", "-m", "{m}"], "malformed mask"),
        (["infill", "a[mask]b", "-m", "{m}"], "malformed mask '[mask]'"),
        (["infill", "ab[MASK:3", "-m", "{m}"], "malformed mask '[MASK:3'"),
        (["infill", "-m", "{m}", "--prefix", "a", "--length", str(10**30)], "trained length 16"),
        (["infill", "-m", "{m}", "--prefix", "a", "--length", "-3"], "--length must be at least 1"),
        (["infill", "a[MASK]", "-m", "{m}", "--length", str(10**30)], "trained length 16"),
        (["sample", "{m}", "--out", "{existing}"], "exists: pass --force"),
        (["sample", "{m}", "--save-frames", "{existing}"], "exists: pass --force"),
        (["infill", "a[MASK]", "-m", "{m}", "--out", "{existing}"], "exists: pass --force"),
        (["sample", "{m}", "--out", "{fresh}", "--save-frames", "{fresh}"], "the same file"),
    ],
)
def test_errors(model_dir, tmp_path, args, message):
    """Exit 1, one line on stderr, no traceback, nothing on stdout, the model folder and an
    existing output file unchanged."""
    existing = tmp_path / "old.txt"
    existing.write_text("keep me\n")
    before = _tree_hash(model_dir)
    args = [
        a.format(m=model_dir, missing=tmp_path / "nope", existing=existing, fresh=tmp_path / "new.txt")
        for a in args
    ]
    r = invoke(*args)
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and isinstance(r.exception, SystemExit), r.exception
    assert r.stdout == ""
    assert existing.read_text() == "keep me\n" and not (tmp_path / "new.txt").exists()
    assert _tree_hash(model_dir) == before


def _tree_hash(folder) -> str:
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_force_overwrites_out(model_dir, tmp_path):
    out = tmp_path / "s.txt"
    out.write_text("old\n")
    ok(invoke("sample", model_dir, "--steps", 2, "-n", 3, "--out", out, "--force"))
    assert len(out.read_text().splitlines()) == 3 and "old" not in out.read_text().splitlines()


@pytest.mark.parametrize("existing", [False, True])
def test_out_write_failure_is_one_line_and_leaves_no_file(model_dir, tmp_path, monkeypatch, existing):
    """Disk full during ``--out``: injected as ENOSPC from the atomic write's fsync. One line
    naming the file, exit 1, and no partial file: no file at all, or (with --force) the old
    content; no temporary file left beside it."""
    import errno
    import os

    import sedd_cli.runtime as runtime

    out = tmp_path / "d" / "s.txt"
    out.parent.mkdir()
    if existing:
        out.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runtime.os, "fsync", full)
    r = invoke("sample", model_dir, "--steps", 2, "-n", 2, "--out", out, *(["--force"] if existing else []))
    monkeypatch.undo()
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert str(out) in r.stderr and isinstance(r.exception, SystemExit)
    assert sorted(p.name for p in out.parent.iterdir()) == (["s.txt"] if existing else [])
    if existing:
        assert out.read_text() == "old\n"


def test_unencodable_infill_text_names_the_model_and_its_characters(model_dir):
    """The README's GPT-2 infill example run against a char model: the error says which model
    was loaded and which characters it knows, in one line."""
    r = invoke("infill", "-m", model_dir, "--prefix", "Hi my name is", "--suffix", "ok")
    assert r.exit_code == 1
    line = r.stderr.strip()
    assert "\n" not in line and f"model {model_dir}" in line
    assert "lacks the character(s)" in line and "it knows" in line


def test_no_runs_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("sample")
    assert r.exit_code == 1 and "no trained model" in r.stderr


def test_python_api(model_dir):
    from sedd_cli.sampling import infill, sample

    res = sample(str(model_dir), steps=3, num_samples=2, device="cpu")
    assert len(res.texts) == 2 and tuple(res.ids.shape) == (2, 16)
    assert res.nfe <= 4 and res.rows == 2 * res.nfe
    inf = infill(str(model_dir), template="[MASK:2]gh", steps=3, num_samples=2, device="cpu")
    assert all(t.endswith("gh") for t in inf.texts)
    assert all(seg[-1] == ("gh", False) for seg in inf.segments)


def test_first_hitting_cli(model_dir):
    """first-hitting: one network call per token (16 free positions), K per call with
    --tokens-per-step, --steps ignored; the live view shows one event per call (every K)."""
    doc = json.loads(
        ok(invoke("sample", model_dir, "--predictor", "first-hitting", "-n", 3, "--json")).stdout
    )
    assert doc["predictor"] == "first-hitting" and (doc["nfe"], doc["rows"]) == (16, 48)
    assert all(max(s["ids"]) < 2 + len(ALPHABET) for s in doc["samples"])
    args = ("sample", model_dir, "--predictor", "first-hitting", "--tokens-per-step", 4, "--steps", 999)
    doc = json.loads(ok(invoke(*args, "-n", 2, "--json")).stdout)
    assert (doc["nfe"], doc["tokens_per_step"], doc["steps"]) == (4, 4, 999)
    inf = json.loads(
        ok(invoke("infill", "ab[MASK:3]c", "-m", model_dir, "--predictor", "first-hitting", "--json")).stdout
    )
    assert inf["nfe"] == 3 and all(s["text"].startswith("ab") for s in inf["samples"])
    r = ok(invoke(*args, "-n", 1, "--show-intermediate", "--every", 2))
    lines = [x for x in r.stderr.splitlines() if x.startswith(("step", "denoised"))]
    assert [x.split(" t=")[0] for x in lines] == ["step 0/4", "step 2/4", "step 4/4", "denoised"]
