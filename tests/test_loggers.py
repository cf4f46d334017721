"""Dashboard loggers (issue 19): TensorBoard and Weights & Biases get exactly the rows of
metrics.jsonl, the config and the samples; a resume continues the same dashboard run; only rank 0
logs under torchrun; a logger that fails is one line (or a stop with --logger-required).

What is read back is read with the dashboards' own readers: TensorBoard's `EventAccumulator`, and
for an offline W&B run the records of its ``run-ID.wandb`` file (wandb 0.31 writes nothing else
offline: no config.yaml, no wandb-summary.json), parsed with wandb's own protobuf `Record` after
splitting the file into records by its documented framing (`wandb_records`).

Extras: the TensorBoard tests need ``tensorboard``, the W&B tests ``wandb`` (skipped without).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sedd_cli.cli import app
from sedd_cli.config import LOGGERS, load_config
from sedd_cli.errors import SeddError
from sedd_cli.training import read_metrics, train
from sedd_cli.training.loggers import LOGGER_CLASSES
from sedd_cli.training.loggers.tensorboard import TensorBoardLogger

from .checks import assert_checked_once

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

# metrics every step, validation at 3 (and the last step), samples at 2 and 4, checkpoints at 2, 4
SETS = (
    "data.valid_fraction=0.1",
    "train.max_steps=4",
    "train.log_every=1",
    "train.eval_every=3",
    "train.eval_batches=1",
    "train.checkpoint_every=2",
    "train.keep_checkpoints=3",
    "train.sample_every=2",
    "sample.steps=4",
    "sample.num_samples=2",
)
# metrics.jsonl key -> the dashboards' scalar name (docs/training.md, "Dashboards")
TRAIN_TAGS = {
    "loss": "train/loss",
    "loss_per_token": "train/loss_per_token",
    "lr": "train/lr",
    "grad_norm": "train/grad_norm",
    "tokens_per_s": "train/tokens_per_s",
}


def tiny(names_file: Path, *sets: str):
    return load_config("tiny", sets=[f"data.name={names_file}", *SETS, *sets])


@pytest.fixture(scope="module")
def wandb_service():
    """W&B, and its service process shut down after this module's tests (a test that reads the
    files of a run it just finished shuts it down first: the service writes them in the
    background, and `run.finish()` can return before the last record is on disk)."""
    wandb = pytest.importorskip("wandb")
    yield wandb
    wandb.teardown()


@pytest.fixture
def wandb_env(tmp_path, monkeypatch, wandb_service):
    """An offline W&B with every one of its folders under tmp_path."""
    wandb = wandb_service
    for var in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_NAME", "WANDB_RUN_ID", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
    ):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / sub))
    return wandb


# --- readers -----------------------------------------------------------------------------------


def tb_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} as TensorBoard's own reader shows them (purges applied)."""
    ea = event_accumulator(log_dir)
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def event_accumulator(log_dir: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def wandb_records(path: Path):
    """The records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then 32 KiB
    blocks of chunks, each with a 7-byte header (crc32 4, length 2, type 1: full, first, middle,
    last); a block's tail shorter than a header is padding. Parsed with wandb's own `Record`."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts, block = 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + n], pos + 7 + n
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts + chunk if kind == 4 else chunk)
            yield record
        parts = chunk if kind == 2 else parts + chunk if kind == 3 else b""


def wandb_run(offline_dir: Path) -> tuple[object, dict, dict[int, dict]]:
    """(the run record, its config, {step: merged history items}) of one offline run folder."""
    (path,) = offline_dir.glob("run-*.wandb")
    run, history = None, {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            history.setdefault(items["_step"], {}).update(items)
    assert run is not None, f"{path} holds no run record"
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    return run, config, history


def _warnings(events) -> list[str]:
    return [e.message for e in events if e.kind == "warning"]


def sample_texts(run: Path, step: int) -> list[str]:
    return (run / "samples" / f"step_{step:08d}.txt").read_text().splitlines()


# --- the registry ------------------------------------------------------------------------------


def test_the_registry_has_every_name_the_config_accepts():
    assert sorted(LOGGER_CLASSES) == sorted(LOGGERS) == ["tensorboard", "wandb"]
    for name, cls in LOGGER_CLASSES.items():
        assert cls.name == name and cls.extra == name


def test_config_reads_loggers_as_a_list_and_refuses_unknown_names(names_file):
    assert tiny(names_file, "train.loggers=tensorboard,wandb").train.loggers == ["tensorboard", "wandb"]
    assert tiny(names_file, "train.loggers=[wandb]").train.loggers == ["wandb"]
    assert tiny(names_file).train.loggers == [] and tiny(names_file).train.logger_required is False
    with pytest.raises(SeddError, match=r"unknown logger 'tensorbord'; valid names: tensorboard, wandb; did"):
        tiny(names_file, "train.loggers=[tensorbord]")


# --- TensorBoard -------------------------------------------------------------------------------


def test_tensorboard_holds_the_metrics_config_and_samples(names_file, tmp_path):
    pytest.importorskip("tensorboard")
    events = []
    run = tmp_path / "run"
    result = train(
        tiny(names_file, "train.loggers=[tensorboard]"), run_dir=run, device="cpu", on_step=events.append
    )
    assert result.loggers == ["tensorboard"] and not [e for e in events if e.kind == "warning"]
    rows = read_metrics(run)
    scalars = tb_scalars(run / "tensorboard")
    assert sorted(scalars) == sorted([*TRAIN_TAGS.values(), "val/loss"])
    for key, tag in TRAIN_TAGS.items():
        want = [(m["step"], m[key]) for m in rows if key in m]
        assert [s for s, _ in scalars[tag]] == [s for s, _ in want] == [1, 2, 3, 4]
        for (_, got), (_, value) in zip(scalars[tag], want, strict=True):
            assert got == pytest.approx(value, rel=1e-6)  # float32 in the event file
    val = [(m["step"], m["val_loss"]) for m in rows if "val_loss" in m]
    assert [s for s, _ in scalars["val/loss"]] == [s for s, _ in val] == [3, 4]
    assert [v for _, v in scalars["val/loss"]] == pytest.approx([v for _, v in val], rel=1e-6)

    ea = event_accumulator(run / "tensorboard")
    texts = {e.step: e.tensor_proto.string_val[0].decode() for e in ea.Tensors("samples/text_summary")}
    assert sorted(texts) == [2, 4]
    for step, text in texts.items():
        assert [line.removeprefix("    ") for line in text.split("\n\n")] == sample_texts(run, step)
    assert ea.Tensors("run_dir/text_summary")[0].tensor_proto.string_val[0].decode() == str(run)
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hp = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hp["model.hidden_size"].number_value == 64 and hp["train.lr"].number_value == pytest.approx(1e-3)
    assert hp["run_dir"].string_value == str(run) and hp["train.loggers"].string_value == "tensorboard"


# --- Weights & Biases --------------------------------------------------------------------------


def test_wandb_offline_run_holds_the_config_history_and_samples(names_file, tmp_path, wandb_env):
    run = tmp_path / "run"
    cfg = tiny(names_file, "train.loggers=[wandb]", "train.wandb_project=sedd-tests")
    events = []
    result = train(cfg, run_dir=run, device="cpu", on_step=events.append)
    assert _warnings(events) == []
    wandb_env.teardown()  # W&B's service writes the .wandb file in the background: wait for it
    assert result.loggers == ["wandb"]
    (offline,) = (run / "wandb").glob("offline-run-*")
    record, config, history = wandb_run(offline)
    wid = (run / "wandb_id").read_text().strip()
    assert record.run_id == wid and offline.name.endswith(wid)
    assert record.project == "sedd-tests" and record.display_name == "run"
    assert config["model"]["hidden_size"] == 64 and config["train"]["loggers"] == ["wandb"]
    assert config["run_dir"] == str(run)
    rows = read_metrics(run)
    assert sorted(history) == [1, 2, 3, 4]
    for m in rows:
        items = history[m["step"]]
        for key, value in m.items():
            if key in TRAIN_TAGS:
                assert items[TRAIN_TAGS[key]] == value  # JSON: the exact double
            elif key == "val_loss":
                assert items["val/loss"] == value
    for step in (2, 4):  # the samples table: its file holds the texts of the sample file
        assert history[step]["samples/_type"] == "table-file"
        table = json.loads((offline / "files" / history[step]["samples/path"]).read_text())
        assert table["columns"] == ["step", "sample"]
        assert table["data"] == [[step, t] for t in sample_texts(run, step)]
    assert "samples/_type" not in history[3]


# --- resume ------------------------------------------------------------------------------------


def test_resume_continues_both_dashboard_runs(names_file, tmp_path, wandb_env):
    """A run to step 4 whose last checkpoint is lost (a crash after step 4's metrics, before its
    checkpoint) resumes from step 2: TensorBoard's curve has each step once (steps 3 and 4 of the
    first session purged) and equals the new metrics.jsonl; W&B continues the same run id."""
    pytest.importorskip("tensorboard")
    import shutil

    run = tmp_path / "run"
    events = []
    train(
        tiny(names_file, "train.loggers=[tensorboard,wandb]"),
        run_dir=run,
        device="cpu",
        on_step=events.append,
    )
    shutil.rmtree(run / "checkpoints" / "step_00000004")
    again = tiny(names_file, "train.max_steps=5", "train.loggers=[tensorboard,wandb]")
    events = []
    result = train(again, resume=run, device="cpu", on_step=events.append)
    wandb_env.teardown()
    assert _warnings(events) == []  # neither session lost a logger
    assert result.resumed_from == 2 and result.loggers == ["tensorboard", "wandb"]

    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # the same folder
    rows = read_metrics(run)
    scalars = tb_scalars(run / "tensorboard")
    want = [(m["step"], m["loss"]) for m in rows if "loss" in m]
    assert [s for s, _ in scalars["train/loss"]] == [s for s, _ in want] == [1, 2, 3, 4, 5]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([v for _, v in want], rel=1e-6)
    assert [s for s, _ in scalars["val/loss"]] == [3, 5]

    first, second = sorted((run / "wandb").glob("offline-run-*"))
    (r1, _, h1), (r2, _, h2) = wandb_run(first), wandb_run(second)
    assert r1.run_id == r2.run_id == (run / "wandb_id").read_text().strip()
    assert sorted(h1) == [1, 2, 3, 4] and sorted(h2) == [3, 4, 5]
    assert h2[5]["train/loss"] == want[-1][1]


# --- failures ----------------------------------------------------------------------------------


def test_a_missing_extra_is_one_line_and_the_run_goes_on(names_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    events, run = [], tmp_path / "run"
    result = train(
        tiny(names_file, "train.loggers=[tensorboard]"), run_dir=run, device="cpu", on_step=events.append
    )
    assert _warnings(events) == [
        'the tensorboard logger needs the tensorboard package: pip install -e ".[tensorboard]" '
        "(or pip install tensorboard); training goes on with metrics.jsonl"
    ]
    assert result.steps == 4 and result.loggers == [] and not (run / "tensorboard").exists()
    assert [m["step"] for m in read_metrics(run) if "loss" in m] == [1, 2, 3, 4]


def test_a_missing_extra_with_logger_required_stops_before_the_run_folder(names_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    run = tmp_path / "run"
    r = CliRunner().invoke(
        app, ["train", "--model", "tiny", "--data", str(names_file), "--run-dir", str(run), "--device", "cpu",
              "--logger", "wandb", "--logger-required"],
    )  # fmt: skip
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        'error: the wandb logger needs the wandb package: pip install -e ".[wandb]" (or pip install wandb) '
        "(--logger-required)"
    )
    assert not run.exists()
    assert_checked_once("logger needs the ")


def _failing_scalars(from_step: int):
    original = TensorBoardLogger.scalars

    def scalars(self, step, row):
        if step >= from_step:
            raise OSError(28, "No space left on device")
        original(self, step, row)

    return scalars


def test_an_exception_inside_a_logger_is_one_warning_and_the_run_goes_on(names_file, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setattr(TensorBoardLogger, "scalars", _failing_scalars(3))
    events, run = [], tmp_path / "run"
    result = train(
        tiny(names_file, "train.loggers=[tensorboard]"), run_dir=run, device="cpu", on_step=events.append
    )
    assert _warnings(events) == [
        "the tensorboard logger failed at step 3 (OSError: [Errno 28] No space left on device); "
        "training goes on with metrics.jsonl"
    ]
    assert result.steps == 4 and result.loggers == []
    assert [m["step"] for m in read_metrics(run) if "loss" in m] == [1, 2, 3, 4]
    assert [s for s, _ in tb_scalars(run / "tensorboard")["train/loss"]] == [1, 2]  # closed at the failure


def test_wandb_without_a_network_is_one_warning(names_file, tmp_path, wandb_env, monkeypatch):
    def no_network(**kwargs):
        raise wandb_env.errors.CommError("Network error (ConnectionError), entering retry loop.")

    monkeypatch.setattr(wandb_env, "init", no_network)
    events = []
    result = train(
        tiny(names_file, "train.loggers=[wandb]"),
        run_dir=tmp_path / "run",
        device="cpu",
        on_step=events.append,
    )
    assert _warnings(events) == [
        "the wandb logger failed at step 0 (CommError: Network error (ConnectionError), entering retry "
        "loop.); training goes on with metrics.jsonl"
    ]
    assert result.steps == 4 and result.loggers == []


def test_logger_required_stops_with_one_line_and_the_run_resumes(names_file, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setattr(TensorBoardLogger, "scalars", _failing_scalars(3))
    run = tmp_path / "run"
    args = ["--model", "tiny", "--data", str(names_file), "--device", "cpu"]
    sets = [a for s in SETS for a in ("--set", s)]
    r = CliRunner().invoke(
        app, ["train", *args, *sets, "--run-dir", str(run), "--logger", "tensorboard", "--logger-required"]
    )
    assert r.exit_code == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last == (
        "error: the tensorboard logger failed at step 3 (OSError: [Errno 28] No space left on device); "
        f"--logger-required stops the run: the last good checkpoint step_00000002 is kept; then continue "
        f"with --resume {run}"
    )
    assert "warning" not in r.stderr and "Traceback" not in r.output
    assert [m["step"] for m in read_metrics(run) if "loss" in m] == [1, 2, 3]  # step 3's line came first
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002"]
    again = CliRunner().invoke(app, ["train", "--resume", str(run), "--set", "train.loggers=[]", "--json"])
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)
    assert doc["resumed_from"] == 2 and doc["steps"] == 4 and doc["loggers"] == []


# --- torchrun: rank 0 only ---------------------------------------------------------------------


@pytest.mark.slow
def test_only_rank_0_logs_under_torchrun(names_file, tmp_path):
    """`sedd train --nproc 2` (torchrun, gloo) with both loggers: one TensorBoard event file, one
    offline W&B run, and their scalars are the metrics.jsonl rank 0 wrote."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    run = tmp_path / "ddp"
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"), WANDB_MODE="offline",
        WANDB_SILENT="true", WANDB_CONFIG_DIR=str(tmp_path / "wbc"), WANDB_CACHE_DIR=str(tmp_path / "wbk"),
        WANDB_DATA_DIR=str(tmp_path / "wbd"),
    )  # fmt: skip
    env.pop("WANDB_DIR", None)
    sets = [a for s in (*SETS[:6], "train.sample_every=0") for a in ("--set", s)]
    proc = subprocess.run(
        [sys.executable, "-m", "sedd_cli", "train", "--model", "tiny", "--data", str(names_file), "--device",
         "cpu", *sets, "--nproc", "2", "--logger", "tensorboard", "--logger", "wandb", "--json",
         "--run-dir", str(run)],  # fmt: skip
        capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["world_size"] == 2 and doc["loggers"] == ["tensorboard", "wandb"]
    assert len(list((run / "tensorboard").iterdir())) == 1
    (offline,) = (run / "wandb").glob("offline-run-*")
    want = [(m["step"], m["loss"]) for m in read_metrics(run) if "loss" in m]
    assert (
        [s for s, _ in tb_scalars(run / "tensorboard")["train/loss"]] == [s for s, _ in want] == [1, 2, 3, 4]
    )
    _, _, history = wandb_run(offline)
    assert [history[s]["train/loss"] for s, _ in want] == [v for _, v in want]
