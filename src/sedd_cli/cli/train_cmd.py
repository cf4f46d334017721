"""`sedd train`: train a model into a run directory (docs/training.md)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import SeddError
from ._app import ConfigOpt, DeviceOpt, JsonOpt, SetOpt, command, print_json, stderr_is_terminal

_EXAMPLES = (
    "sedd train",
    "sedd train --max-time 600 --name names-10min",
    "sedd train --data my_corpus.txt --tokenizer char --model tiny --max-steps 2000",
    "sedd train --data reviews.jsonl --text-field body --layout pack --model small --batch-size 32",
    "sedd train --resume runs/names-20250101-120000 --max-steps 6000",
    "sedd train --logger tensorboard   # then: tensorboard --logdir runs",
    "WANDB_MODE=offline sedd train --logger wandb --set train.wandb_project=names",
    "sedd train --nproc 2 --model tiny --max-steps 100",
    "torchrun --nproc-per-node 8 -m sedd_cli train --data owt --model small",
)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """`a` updated with `b`, recursively; None values in `b` are ignored."""
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict):
            out[key] = _merge(out[key] if isinstance(out.get(key), dict) else {}, value)
        elif value is not None:
            out[key] = value
    return out


def _overrides(config_file: Path | None, options: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """--config FILE < typed options < --set, as one nested dict of overrides."""
    from ..config import check_values, parse_set, read_yaml_file

    data: dict[str, Any] = {}
    if config_file is not None:
        data = _merge(data, read_yaml_file(config_file))
    check_values(options)  # a bad typed option is refused even when --set overrides it
    data = _merge(data, options)
    return _merge(data, parse_set(sets))


@command("train", help_examples=_EXAMPLES)
def train_command(
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="babynames | owt | wikitext103 | wikitext2 | ptb | lambada | lm1b | hf:NAME[:CONFIG] | "
            "a .txt/.jsonl/.json/.csv/.parquet file.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Preset: tiny | names | names-infill | small | medium (default names)."),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many steps.")] = None,
    max_time: Annotated[
        float | None, typer.Option("--max-time", help="Stop cleanly after this many seconds of training.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Global sequences per optimizer step.")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (after warm-up).")] = None,
    text_field: Annotated[
        str | None, typer.Option("--text-field", help="Column holding the text in json/csv/parquet files.")
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option("--layout", help="pack (join documents, cut into blocks) | pad (one record per row)."),
    ] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="gpt2 | char | byte.")] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Run directory (default runs/<preset>-<time>).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name: the run goes to runs/NAME.")] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run directory from its newest checkpoint.")
    ] = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: the preset's).")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the network.")] = False,
    nproc: Annotated[
        int, typer.Option("--nproc", help="Processes to launch through torchrun (DDP; gloo on CPU).")
    ] = 1,
    logger: Annotated[
        list[str] | None,
        typer.Option(
            "--logger",
            help="Also log to a dashboard (repeatable): tensorboard (RUN/tensorboard/) | wandb. "
            "metrics.jsonl is always written.",
        ),
    ] = None,
    logger_required: Annotated[
        bool,
        typer.Option(
            "--logger-required", help="A logger that fails stops the run (default: one line, go on)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a SEDD model. With no options: the [bold]names[/bold] preset on the embedded US
    baby-names data, on the CPU in minutes. Writes runs/NAME/ (config, tokenizer, metrics.jsonl,
    samples/, checkpoints/); Ctrl-C saves a checkpoint and exits with status 130; --resume
    continues exactly."""
    from ..training import check_batch_split, processes, resolve_run_dir

    run_dir = resolve_run_dir(run_dir, name, resume)
    world = int(os.environ.get("WORLD_SIZE", 1))
    procs = processes(nproc, world)
    options = {
        "data": {"name": data, "text_field": text_field, "layout": layout, "tokenizer": tokenizer},
        "train": {
            "max_steps": max_steps,
            "max_time": max_time,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "compile": True if compile_ else None,
            "loggers": list(logger) if logger else None,
            "logger_required": True if logger_required else None,
        },
    }
    overrides = _overrides(config, options, list(set_ or []))
    cfg = _config(model, resume, overrides)
    check_batch_split(cfg.train.batch_size, procs, cfg.train.accum)

    if nproc > 1 and world == 1:
        _launch(nproc, cfg, model, resume, run_dir, device, json_out, bool(compile_), overrides)
        return

    _run(cfg, run_dir, resume, device, json_out, bool(compile_) or cfg.train.compile, world)


def _config(model: str | None, resume: Path | None, overrides: dict[str, Any]):
    """The run's config: the resumed run's with the overrides (its model kept), or the preset's."""
    from ..config import config_from_dict, load_preset

    if resume is None:
        return config_from_dict(overrides, load_preset(model or "names"))
    from ..training import check_same_model, resume_config

    cfg = resume_config(resume, overrides)
    if model is not None:
        check_same_model(resume, cfg, load_preset(model), f"--model {model}")
    return cfg


def _run(cfg, run_dir, resume, device, json_out, compile_, world) -> None:
    """Train in this process (alone, or as one rank under torchrun) and render the result."""
    from ..training import check_run_dir, default_run_dir
    from ..training import train as run_train

    rank = int(os.environ.get("RANK", 0))
    if resume is None and world == 1:
        # under torchrun the trainer's rank 0 checks (another rank may already be writing)
        run_dir = check_run_dir(run_dir if run_dir is not None else default_run_dir(cfg))

    show = rank == 0
    view = _View(enabled=show, live=show and stderr_is_terminal())
    try:
        with view:
            result = run_train(
                cfg, run_dir=run_dir, resume=resume, device=device, on_step=view.on_event, compile=compile_
            )
    except SeddError:
        if rank != 0:  # rank 0 prints the message; the others exit quietly
            raise typer.Exit(1) from None
        raise
    interrupted = result.stopped_reason == "interrupted"
    if rank == 0:
        if json_out:
            print_json(result.to_dict())
        else:
            _summary(result)
    if interrupted:  # the checkpoint is saved; 130 tells `sedd train && ...` not to go on
        raise typer.Exit(130)


def _summary(result) -> None:
    val = f", validation {result.val_loss:.3f}" if result.val_loss is not None else ""
    loss = (
        f"loss {result.loss:.3f} nats/sequence ({result.loss_per_token:.3f}/token){val}"
        if result.loss
        else ""
    )
    typer.echo(
        f"{result.stopped_reason}: {result.steps} steps in {result.elapsed:.0f} s "
        f"({result.tokens_per_s:,.0f} tokens/s); {loss}"
    )
    typer.echo(f"run: {result.run_dir}")
    if result.checkpoint:
        typer.echo(f"checkpoint: {result.checkpoint}")
        typer.echo(f"sample from it: sedd sample {result.run_dir}")
    if result.loggers:
        typer.echo(f"logged to: {', '.join(result.loggers)}")
    if "tensorboard" in result.loggers:
        typer.echo(f"see the curves: tensorboard --logdir {result.run_dir}")
    from ._curves import show_curves

    show_curves(result.run_dir)


def _launch(nproc, cfg, model, resume, run_dir, device, json_out, compile_, overrides) -> None:
    """Re-run this command under torchrun: ``--nproc-per-node N --standalone -m sedd_cli train``.

    The parent resolves the run directory (one timestamp for all processes) and passes the fully
    resolved settings as ``--set`` items, so every process builds the same Config."""
    from ..training import check_run_dir, default_run_dir

    args = ["train", "--device", device]
    if resume is not None:
        args += ["--resume", str(resume)]
    else:
        run_dir = check_run_dir(run_dir if run_dir is not None else default_run_dir(cfg))
        args += ["--run-dir", str(run_dir), "--model", model or "names"]
    for item in _flatten(overrides):
        args += ["--set", item]
    if compile_:
        args.append("--compile")
    if json_out:
        args.append("--json")

    from torch.distributed import run as torchrun

    argv = ["--nproc-per-node", str(nproc), "--standalone", "-m", "sedd_cli", *args]
    try:
        torchrun.main(argv)
    except SystemExit as exc:
        if exc.code:
            raise typer.Exit(int(exc.code) if isinstance(exc.code, int) else 1) from None
    except Exception as exc:  # ChildFailedError: the failing rank printed its own message
        if os.environ.get("SEDD_DEBUG"):
            raise
        codes = {getattr(f, "exitcode", None) for f in getattr(exc, "failures", {}).values()}
        if codes == {130}:  # every process was interrupted and saved: the interrupt's status
            raise typer.Exit(130) from None
        print(f"error: {nproc} training processes did not finish ({type(exc).__name__})", file=sys.stderr)
        raise typer.Exit(1) from None


def _flatten(d: dict[str, Any], prefix: str = "") -> list[str]:
    """Nested overrides -> ``section.key=value`` items (values as YAML flow scalars)."""
    import yaml

    out = []
    for key, value in d.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        elif value is not None:
            text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            out.append(f"{prefix}{key}={text}")
    return out


class _View:
    """Training progress on stderr: a Rich progress bar on a terminal, plain lines otherwise."""

    def __init__(self, enabled: bool, live: bool):
        self.enabled = enabled
        self.live = live
        self.progress = None
        self.task = None
        self.last_val: float | None = None
        self.t0 = time.perf_counter()

    def __enter__(self):
        if self.enabled and self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train[/bold]"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def _print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def on_event(self, event) -> None:
        if not self.enabled:
            return
        kind = event.kind
        if kind == "start":
            self._print(f"run {event.path}: {event.message}")
            if self.progress is not None:
                self.task = self.progress.add_task(
                    "train", total=event.max_steps, completed=event.step, stats="starting"
                )
        elif kind == "step":
            val = f"  val {self.last_val:.2f}" if self.last_val is not None else ""
            if self.progress is not None:
                stats = f"loss {event.loss:.2f}  lr {event.lr:.1e}  {event.tokens_per_s:,.0f} tok/s{val}"
                self.progress.update(self.task, completed=event.step, stats=stats)
            elif event.logged:
                self._print(
                    f"step {event.step}/{event.max_steps}  loss {event.loss:8.3f} "
                    f"({event.loss_per_token:.3f}/tok)  lr {event.lr:.2e}  grad {event.grad_norm:.3g}  "
                    f"{event.tokens_per_s:,.0f} tok/s{val}  {event.elapsed:.0f}s"
                )
        elif kind == "eval":
            self.last_val = event.val_loss
            if self.progress is None:
                self._print(
                    f"step {event.step}/{event.max_steps}  val_loss {event.val_loss:.3f} (EMA weights)"
                )
        elif kind == "sample":
            shown = ", ".join(s.strip()[:40] for s in event.samples[:8])
            self._print(f"step {event.step} samples -> {event.path}: {shown}")
        elif kind == "checkpoint":
            if self.progress is None:
                self._print(f"step {event.step}  checkpoint {event.path}")
        elif kind == "warning":
            self._print(f"warning: {event.message}")
        elif kind == "end" and event.message == "interrupted":
            self._print(f"interrupted at step {event.step}: checkpoint saved")
