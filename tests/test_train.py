"""`sedd train` and `sedd_cli.train`: schedule, EMA, data order, exact resume, crash safety,
two-process DDP against one process, and the command line's errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sedd_cli.cli import app
from sedd_cli.config import load_config
from sedd_cli.errors import SeddError
from sedd_cli.training import EMA, DataOrder, lr_at, read_metrics, resume_config, train

REPO = Path(__file__).resolve().parents[1]

NAMES = (
    "emma olivia ava isabella sophia mia charlotte amelia harper evelyn abigail emily elizabeth "
    "sofia avery ella scarlett grace chloe victoria riley aria lily aubrey zoey penelope lillian "
    "addison layla natalie camila hannah brooklyn zoe nora leah savannah audrey claire eleanor "
    "skylar ellie samantha stella paisley violet mila allison alexa anna hazel aaliyah ariana "
    "liam noah william james oliver benjamin elijah lucas mason logan alexander ethan jacob michael "
    "daniel henry jackson sebastian aiden matthew samuel david joseph carter owen wyatt john jack "
    "luke jayden dylan grayson levi isaac gabriel julian mateo anthony jaxon lincoln joshua "
    "christopher andrew theodore caleb ryan asher nathan thomas leo isaiah charles josiah hudson"
).split()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def names_file(tmp_path_factory) -> Path:
    """This module's longer name list (conftest's `names_file` holds `helpers.NAMES`)."""
    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(NAMES) + "\n")
    return path


def tiny(names_file: Path, *sets: str):
    """The tiny preset (2 blocks, width 64, L 16, batch 8) on the local names file."""
    return load_config(
        "tiny",
        sets=[
            f"data.name={names_file}",
            "data.valid_fraction=0.1",
            "train.log_every=1",
            "train.eval_every=3",
            "train.checkpoint_every=2",
            "train.keep_checkpoints=2",
            "train.sample_every=0",
            *sets,
        ],
    )


def losses(run_dir) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in read_metrics(run_dir) if "loss" in m}


def weights(ckpt: str | Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(ckpt) / name))


# --- pieces with closed forms ------------------------------------------------------------------


def test_lr_schedule_counts_the_first_update_as_step_1():
    # lr * min(step / warmup, 1): 3e-4 * 1/2500 = 1.2e-7 on the first update (sedd-spec §4.2)
    assert lr_at(1, 3e-4, 2500) == pytest.approx(1.2e-7, rel=1e-12)
    assert lr_at(1250, 3e-4, 2500) == pytest.approx(1.5e-4, rel=1e-12)
    assert lr_at(2500, 3e-4, 2500) == 3e-4
    assert lr_at(10_000, 3e-4, 2500) == 3e-4  # no decay
    assert lr_at(1, 2e-3, 0) == 2e-3  # no warm-up
    # decays after warm-up, from lr to floor * lr at max_steps
    assert lr_at(100, 1e-3, 100, "cosine", 1100, 0.1) == pytest.approx(1e-3)
    assert lr_at(600, 1e-3, 100, "cosine", 1100, 0.1) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(1100, 1e-3, 100, "cosine", 1100, 0.1) == pytest.approx(1e-4)
    assert lr_at(600, 1e-3, 100, "linear", 1100, 0.0) == pytest.approx(5e-4)
    assert lr_at(5000, 1e-3, 100, "linear", 1100, 0.2) == pytest.approx(2e-4)  # past the end: floor


def test_ema_decay_follows_the_reference_warmup():
    """Update n uses d = min(decay, (1+n)/(10+n)): from shadow 0 and param 1 the shadow after the
    first update is 1 - 2/11 = 9/11, after the second 1 - (2/11)(3/12)."""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert ema.shadow["weight"].item() == pytest.approx(9 / 11, abs=1e-7)
    ema.update(model)
    assert ema.shadow["weight"].item() == pytest.approx(1 - (2 / 11) * (3 / 12), abs=1e-7)
    # with decay 0.5 the cap binds from n = 9 on ((1+n)/(10+n) > 0.5 iff n > 8): with a constant
    # param 1 the shadow is 1 - prod_n d_n
    with torch.no_grad():
        model.weight.fill_(0.0)
    capped = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(12):
        capped.update(model)
    prod = 1.0
    for n in range(1, 13):
        prod *= min(0.5, (1 + n) / (10 + n))
    assert capped.shadow["weight"].item() == pytest.approx(1 - prod, abs=1e-6)
    with capped.applied(model):  # the EMA weights go in, and the live ones come back after
        assert model.weight.item() == pytest.approx(1 - prod, abs=1e-6)
    assert model.weight.item() == 1.0


def test_data_order_is_a_permutation_per_epoch_and_resumable():
    order = DataOrder(10, seed=3)
    first = order.next(7)
    second = order.next(7)  # crosses into epoch 1
    seen = torch.cat([first, second[:3]])
    assert sorted(seen.tolist()) == list(range(10))  # epoch 0 visits every row exactly once
    assert order.state() == {"epoch": 1, "offset": 4}
    # a fresh order restored from (epoch, offset) continues with the same indices
    again = DataOrder(10, seed=3)
    again.next(14)
    restored = DataOrder(10, seed=3, **again.state())
    assert torch.equal(restored.next(9), again.next(9))
    assert not torch.equal(DataOrder(10, seed=4).next(10), DataOrder(10, seed=3).next(10))


def test_weighted_data_order_draws_rows_by_weight():
    """Weights 1:3 over two rows: the share of row 1 in 40,000 draws has standard deviation
    sqrt(0.75 * 0.25 / 40000) = 0.0022; 0.75 +- 0.015 is a 7-sigma band."""
    order = DataOrder(2, seed=0, weights=torch.tensor([1.0, 3.0]))
    draws = order.next(40_000)
    assert abs(draws.float().mean().item() - 0.75) < 0.015


# --- the loop ----------------------------------------------------------------------------------


RADD_LAMBDA = ("model.time_conditioning=false", "train.loss=lambda-dce")
INSERT_PADS = ("data.insert_pads=0.5",)
INSERT_PADS_PACK = ("data.insert_pads=0.5", "data.layout=pack")


@pytest.mark.parametrize(
    "objective",
    [(), RADD_LAMBDA, INSERT_PADS, INSERT_PADS_PACK],
    ids=["dse", "lambda-dce", "insert-pads", "insert-pads-pack"],
)
def test_resume_after_interrupt_reaches_the_same_losses(names_file, tmp_path, objective):
    """Stopped by SIGINT at step 2 and resumed to step 4: every logged loss equals the
    uninterrupted run's, and so do the final weights, bit for bit (CPU, same threads); for
    today's dse, for a time-independent model trained with lambda-dce (its lambda draws come
    from the same saved generator) and with pad insertion (drawn from that generator too)."""
    sets = ("train.max_steps=4", "train.checkpoint_every=0", *objective)
    full = train(tiny(names_file, *sets), run_dir=tmp_path / "full", device="cpu")
    assert full.stopped_reason == "max_steps" and full.steps == 4

    def interrupt(event):
        if event.kind == "step" and event.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    part = train(tiny(names_file, *sets), run_dir=tmp_path / "part", device="cpu", on_step=interrupt)
    assert part.stopped_reason == "interrupted" and part.steps == 2
    assert (tmp_path / "part/checkpoints/step_00000002/meta.json").is_file()

    more = resume_config(tmp_path / "part", {"train": {"max_steps": 4}})
    rest = train(more, resume=tmp_path / "part", device="cpu")
    assert rest.resumed_from == 2 and rest.steps == 4
    a, b = losses(tmp_path / "full"), losses(tmp_path / "part")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert a == b  # exact equality of float losses
    wa, wb = weights(full.checkpoint), weights(rest.checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ea, eb = weights(full.checkpoint, "ema.safetensors"), weights(rest.checkpoint, "ema.safetensors")
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    assert full.val_loss == rest.val_loss


def test_pack_insertion_reaches_the_rows(names_file, tmp_path, monkeypatch):
    """Pack-layout training with data.insert_pads widens its windows: the rows the loss sees hold
    pads (the tokenizer's, id 0 for char) in about p of them, and none without the option."""
    from sedd_cli.training import step as step_mod

    seen = []

    def record_draw(objective, graph, noise, x0, *rest):
        seen.append(x0.clone())
        return original_draw(objective, graph, noise, x0, *rest)

    original_draw = step_mod.draw
    monkeypatch.setattr(step_mod, "draw", record_draw)
    for pads in ("0", "0.5"):
        seen.clear()
        sets = (
            "train.max_steps=6",
            "train.checkpoint_every=0",
            "data.layout=pack",
            f"data.insert_pads={pads}",
        )
        train(tiny(names_file, *sets), run_dir=tmp_path / f"run{pads}", device="cpu")
        rows = torch.cat(seen)
        share = (rows == 0).any(1).float().mean().item()
        assert share == 0.0 if pads == "0" else 0.25 < share < 0.75, (pads, share)


@pytest.mark.parametrize("loss", ["t-dce", "lambda-dce"])
def test_time_independent_model_trains_with_the_dce_losses(names_file, tmp_path, loss):
    """`train.loss` reaches the optimisation step: a time-independent model trained for 40 steps
    with t-DCE or lambda-DCE logs finite losses that fall (mean of the last 8 below the first 8),
    and a finite validation figure."""
    sets = (
        "model.time_conditioning=false",
        f"train.loss={loss}",
        "train.max_steps=40",
        "train.eval_every=20",
    )
    res = train(tiny(names_file, *sets, "train.checkpoint_every=0"), run_dir=tmp_path / "run", device="cpu")
    got = losses(tmp_path / "run")
    values = [got[k] for k in sorted(got)]
    assert len(values) == 40 and all(math.isfinite(v) for v in values)
    assert sum(values[-8:]) < sum(values[:8])
    assert res.val_loss is not None and math.isfinite(res.val_loss)


def test_time_independent_validation_estimates_the_lambda_bound(names_file):
    """For a time-independent model `validate` logs the lambda-DCE loss, an unbiased estimate of the
    lambda-form bound of its rows: over 48 seeds of its draw generator (same weights), the mean of
    the validation figure matches the bound of the same 8 rows (32 independent estimates with
    K = 32 stratified draws each, `evaluation.lambda_bound`) within 5 combined standard errors."""
    from sedd_cli.checkpoints import build_components
    from sedd_cli.evaluation import lambda_bound
    from sedd_cli.training.distributed import Dist
    from sedd_cli.training.validation import validate, validation_loss

    cfg = tiny(names_file, *RADD_LAMBDA, "train.eval_batches=1")
    cfg.model.vocab_size = 28
    assert validation_loss(cfg).name == "lambda-dce"
    assert validation_loss(tiny(names_file)).name == "dse"
    torch.manual_seed(0)
    model, graph, noise = build_components(cfg, 28)
    x0 = torch.randint(0, 28, (8, cfg.model.length), generator=torch.Generator().manual_seed(1))

    class Rows:
        def __len__(self):
            return len(x0)

        def batch(self, idx):
            return x0[idx]

    figures = []
    for seed in range(48):
        cfg.train.seed = seed
        figures.append(validate(model, graph, noise, EMA(model, 0.99), Rows(), cfg, "cpu", Dist("cpu")))
    v = torch.tensor(figures, dtype=torch.float64)
    # 32 independent estimates of the 8 rows' mean bound, K = 32 each
    reps = lambda_bound(model.eval(), graph, x0.repeat(32, 1), 32, torch.Generator().manual_seed(2)).view(
        32, 8
    )
    b = reps.mean(dim=1)  # [32]
    se = math.sqrt(float(v.var()) / len(v) + float(b.var()) / len(b))
    assert abs(float(v.mean()) - float(b.mean())) < 5 * se


def test_run_directory_layout_and_loadable_checkpoint(names_file, tmp_path):
    from sedd_cli.checkpoints import load_pretrained, read_config

    result = train(tiny(names_file, "train.max_steps=5"), run_dir=tmp_path / "run", device="cpu")
    run = tmp_path / "run"
    assert read_config(run / "config.yaml").model.vocab_size is not None
    assert (run / "tokenizer.json").is_file() and (run / "samples").is_dir()
    # checkpoint_every 2, keep 2: steps 2 and 4 saved, then the final 5; only 4 and 5 kept
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000004", "step_00000005"]
    state = torch.load(run / "checkpoints/step_00000005/trainer.pt", weights_only=True)
    assert state["step"] == 5 and state["ema_num_updates"] == 5
    # the data position counts the rows consumed: 5 steps x batch 8 = epoch * N + offset
    from sedd_cli.data import prepare_data
    from sedd_cli.tokenizers import load_tokenizer

    n_train = len(prepare_data(read_config(run / "config.yaml"), load_tokenizer(run), "train"))
    assert state["data"]["epoch"] * n_train + state["data"]["offset"] == 40
    meta = json.loads((run / "checkpoints/step_00000005/meta.json").read_text())
    assert meta["step"] == 5 and meta["loss"] == pytest.approx(result.loss)
    rows = read_metrics(run)
    assert {"step", "loss", "loss_per_token", "lr", "grad_norm", "tokens_per_s", "elapsed"} <= set(rows[0])
    assert rows[0]["loss_per_token"] == pytest.approx(rows[0]["loss"] / 16)
    assert any("val_loss" in r for r in rows)
    pre = load_pretrained(run, device="cpu")
    assert pre.step == 5 and pre.weights == "ema"


def test_gradient_accumulation_matches_one_big_batch(names_file, tmp_path):
    """accum 2 x 4 rows and 1 x 8 rows see the same 8 sequences and the same draws: the loss of
    every step and the weights after 2 steps agree to float rounding."""
    sets = ("train.max_steps=2", "train.eval_every=0")
    one = train(tiny(names_file, *sets), run_dir=tmp_path / "one", device="cpu")
    two = train(tiny(names_file, *sets, "train.accum=2"), run_dir=tmp_path / "two", device="cpu")
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-5)
    wa, wb = weights(one.checkpoint), weights(two.checkpoint)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-5)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(names_file, tmp_path, monkeypatch):
    from sedd_cli import losses as losses_mod

    real = losses_mod.LOSSES["dse"]
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        if torch.is_grad_enabled():  # a training step, not validation
            calls["n"] += 1
            if calls["n"] == 3:  # the third micro-batch = step 3 (accum 1)
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setitem(losses_mod.LOSSES, "dse", losses_mod.TrainingLoss("dse", poisoned, real.draw, False))
    with pytest.raises(SeddError, match="non-finite loss at step 3"):
        train(tiny(names_file, "train.max_steps=6"), run_dir=tmp_path / "run", device="cpu")
    ckpts = sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir())
    assert ckpts == ["step_00000002"]  # nothing written after the bad step
    good = weights(tmp_path / "run/checkpoints/step_00000002")
    assert all(torch.isfinite(v).all() for v in good.values())


def test_resume_refuses_a_different_model(names_file, tmp_path):
    train(tiny(names_file, "train.max_steps=2"), run_dir=tmp_path / "run", device="cpu")
    before = (tmp_path / "run/config.yaml").read_text()
    other = tiny(names_file, "train.max_steps=4", "model.hidden_size=32")
    with pytest.raises(SeddError, match=r"model\.hidden_size \(run 64, given 32\)"):
        train(other, resume=tmp_path / "run", device="cpu")
    assert (tmp_path / "run/config.yaml").read_text() == before


def test_snapshot_samples_are_the_ema_weights_draws(names_file, tmp_path):
    """samples/step_00000002.txt holds, one per line (pad layout), exactly what the step-2 EMA
    weights draw with the snapshot's seed (train.seed + 20011) and the config's sample settings:
    recomputed here from the saved ema.safetensors, and different from the live weights' draws
    of the same seed. Each line is a name of at most L = 16 letters of the training alphabet,
    and the `sample` event reports the same texts."""
    pytest.importorskip("sedd_cli.sampling")
    from sedd_cli.checkpoints import load_pretrained
    from sedd_cli.sampling import generate

    cfg = tiny(
        names_file,
        "train.max_steps=2",
        "train.sample_every=2",
        "sample.steps=8",
        "sample.num_samples=6",
        "train.lr=3e-2",  # a large step, so that the EMA and the live weights differ visibly
        "train.warmup=0",
    )
    events = []
    train(cfg, run_dir=tmp_path / "run", device="cpu", on_step=events.append)
    lines = (tmp_path / "run/samples/step_00000002.txt").read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 7  # six samples, each ended by a newline
    lines = lines[:-1]
    [event] = [e for e in events if e.kind == "sample"]
    assert event.step == 2 and event.samples == lines
    alphabet = set("".join(NAMES))
    assert all(len(line) <= 16 and set(line) <= alphabet for line in lines), lines

    def draws(weights: str) -> list[str]:
        pre = load_pretrained(tmp_path / "run/checkpoints/step_00000002", device="cpu", weights=weights)
        sc = pre.config.sample
        ids = generate(
            pre.model,
            pre.graph,
            pre.noise,
            batch_size=6,
            length=16,
            steps=8,
            predictor=sc.predictor if sc.predictor != "none" else "analytic",
            eps=sc.eps,
            denoise=sc.denoise,
            precision=sc.precision,
            device="cpu",
            generator=torch.Generator().manual_seed(cfg.train.seed + 20_011),
            temperature=sc.temperature,
            top_p=sc.top_p,
        )
        return [pre.tokenizer.decode(row.tolist(), skip_special=True) for row in ids]

    assert draws("ema") == lines
    assert draws("model") != lines


# --- command line ------------------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def test_cli_json_summary(names_file, tmp_path):
    r = invoke(
        "--model", "tiny", "--data", str(names_file), "--max-steps", "3", "--batch-size", "4",
        "--lr", "5e-4", "--run-dir", str(tmp_path / "run"), "--seed", "7", "--json", "--device", "cpu",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["steps"] == 3 and doc["stopped_reason"] == "max_steps" and doc["world_size"] == 1
    assert doc["checkpoint"].endswith("step_00000003")
    saved = (tmp_path / "run/config.yaml").read_text()
    assert "batch_size: 4" in saved and "lr: 0.0005" in saved and "seed: 7" in saved
    assert "step 3/3" in r.stderr  # plain progress lines when stderr is not a terminal


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "tinyy"], "unknown preset 'tinyy'"),
        (["--data", "/nonexistent/names.txt"], "not found"),
        (["--model", "tiny", "--batch-size", "7", "--nproc", "2"], "not divisible"),
        (["--set", "model.length=1"], "model.length must be at least 2"),
        (["--resume", "/nonexistent/run"], "not a sedd run"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path):
    r = invoke(*args, "--run-dir", str(tmp_path / "r")) if "--resume" not in args else invoke(*args)
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_refuses_non_empty_run_dir_and_mismatched_resume(names_file, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    r = invoke("--model", "tiny", "--data", str(names_file), "--run-dir", str(run))
    assert r.exit_code == 1 and "already holds files" in r.stderr
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]

    ok = tmp_path / "ok"
    assert (
        invoke(
            "--model", "tiny", "--data", str(names_file), "--max-steps", "1", "--run-dir", str(ok)
        ).exit_code
        == 0
    )
    before = sorted(p.name for p in (ok / "checkpoints").iterdir())
    r = invoke("--resume", str(ok), "--model", "names")
    assert r.exit_code == 1 and "model.hidden_size (run 64, given 96)" in r.stderr
    r = invoke("--resume", str(ok), "--set", "model.n_blocks=3")
    assert r.exit_code == 1 and "model.n_blocks" in r.stderr
    assert sorted(p.name for p in (ok / "checkpoints").iterdir()) == before


def test_two_processes_match_one_process(names_file, tmp_path):
    """`sedd train --nproc 2` (torchrun, gloo, 2 CPU processes x 4 rows) and one process with the
    same global batch of 8: equal losses at every step and equal weights after 3 steps."""
    common = ["--model", "tiny", "--data", str(names_file), "--max-steps", "3", "--device", "cpu",
              "--set", "data.valid_fraction=0.1", "--set", "train.log_every=1"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [sys.executable, "-m", "sedd_cli", "train", *common, "--nproc", "2", "--json",
         "--run-dir", str(tmp_path / "ddp")],  # fmt: skip
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["world_size"] == 2 and doc["steps"] == 3
    single = invoke(*common, "--run-dir", str(tmp_path / "one"), "--json")
    assert single.exit_code == 0, single.output
    a, b = losses(tmp_path / "ddp"), losses(tmp_path / "one")
    assert sorted(a) == [1, 2, 3]
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-5)
    wa = weights(tmp_path / "ddp/checkpoints/step_00000003")
    wb = weights(tmp_path / "one/checkpoints/step_00000003")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-5)
