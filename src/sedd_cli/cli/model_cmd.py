"""`sedd convert, info`: turn any supported checkpoint into our model folder; describe a model.

MODEL everywhere means: a run directory, a checkpoint folder, a model folder, a folder in the
published Hugging Face layout (config.json + weights; the reference's or RADD's), a reference
training run, or a hub id such as ``louaaron/sedd-small`` or ``JingyangOu/radd-lambda-dce``
(docs/checkpoints.md). Heavy imports stay inside the bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import JsonOpt, command, print_json

ModelArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[MODEL]",
        help="Run directory, checkpoint, model folder, published folder, reference run or hub id "
        "(owner/name). Default: the newest run under ./runs.",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    str,
    typer.Option(
        "--weights",
        help="ema (the default, as the paper samples with them) or model (the raw training weights), "
        "where a checkpoint holds both.",
    ),
]


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _origin_text(origin: dict) -> str:
    layout = f"{origin['family']}'s published layout" if origin.get("family") else ""
    if origin.get("hub_id"):
        rev = origin.get("revision")
        text = f"hub {origin['hub_id']}" + (f"@{rev[:12]}" if rev else "") + f" / {origin.get('file')}"
    else:
        text = str(origin.get("path", "?"))
    if origin.get("converted_from"):
        return text + f" (converted from {origin['converted_from']}" + (f", {layout})" if layout else ")")
    return text + (f" ({layout})" if layout else "")


def _network_text(m: dict) -> str:
    if not m.get("time_conditioning", True):
        return (
            f"DDiT without time input (RADD's time-independent network), hidden {m['hidden_size']}, "
            f"{m['n_blocks']} blocks, {m['n_heads']} heads, mlp x{m['mlp_ratio']}, dropout {m['dropout']:g}"
        )
    return (
        f"DDiT, hidden {m['hidden_size']}, {m['n_blocks']} blocks, {m['n_heads']} heads, "
        f"cond {m['cond_dim']}, mlp x{m['mlp_ratio']}, dropout {m['dropout']:g}, "
        f"scale_by_sigma {str(m['scale_by_sigma']).lower()}"
    )


@command(
    "info",
    help_examples=(
        "sedd info",
        "sedd info runs/names",
        "sedd info louaaron/sedd-small",
        "sedd info ./sedd-small --json",
        "sedd info runs/names/checkpoints/step_00005000 --weights model",
    ),
)
def info(model: ModelArg = None, weights: WeightsOpt = "ema", as_json: JsonOpt = False) -> None:
    """Show a model's configuration, size, vocabulary, graph, schedule, step and weight origin;
    for a training run, its loss and validation curves (from metrics.jsonl) as text plots."""
    from ..checkpoints import load_pretrained

    pre = load_pretrained(model, device="cpu", weights=weights)
    s = pre.summary()
    if as_json:
        print_json(s)
        return
    m, g, nz = s["model"], s["graph"], s["noise"]
    noise = ", ".join(f"{k} {v:g}" for k, v in nz.items() if k != "type")
    mask = f", mask id {pre.tokenizer.vocab_size}" if g["type"] == "absorb" else ""
    rows = [
        ("model", f"{s['source']}  ({s['format']}, name {s['name']})"),
        ("weights", f"{s['weights']}, from {_origin_text(s['origin'])}"),
        ("step", "unknown" if s["step"] is None else f"{s['step']:,}"),
        ("parameters", f"{s['parameters']:,} ({_fmt_bytes(4 * s['parameters'])} in float32)"),
        ("network", _network_text(m)),
        ("length", str(m["length"])),
        ("vocabulary", f"{s['vocab_size']:,} ({s['tokenizer']} tokenizer)"),
        ("graph", f"{g['type']} (D = {g['dim']:,}{mask})"),
        ("noise", f"{nz['type']} ({noise})"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:<{width}}  {value}")
    if s["origin"].get("run_dir"):  # a run: its loss and validation curves from metrics.jsonl
        from ._curves import show_curves

        show_curves(s["origin"]["run_dir"])


@command(
    "convert",
    help_examples=(
        "sedd convert louaaron/sedd-small ./sedd-small",
        "sedd convert ./downloaded-sedd-medium ./sedd-medium",
        "sedd convert ./reference-run/ ./my-model --weights ema",
        "sedd convert runs/names ./names-model --force --json",
    ),
)
def convert(
    source: Annotated[
        str,
        typer.Argument(
            help="Model to convert: published folder (config.json + model.safetensors | pytorch_model.bin), "
            "hub id (owner/name), reference run (.hydra/config.yaml + checkpoints-meta/checkpoint.pth) "
            "or any sedd run/checkpoint/model folder.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Argument(help="Folder to write (our model folder format).", show_default=False)
    ],
    weights: WeightsOpt = "ema",
    force: Annotated[bool, typer.Option("--force", help="Replace OUT even if it is not empty.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write any supported checkpoint as a sedd model folder: model.safetensors, config.yaml,
    tokenizer.json and meta.json (source, step, weights). Loading is strict."""
    from ..checkpoints import convert_model

    def loading() -> None:  # after the library's refusals, before the model loads
        typer.echo(f"loading {source} ...", err=True)

    result = convert_model(source, out, weights=weights, force=force, on_loading=loading)
    if as_json:
        print_json(
            {
                "out": str(result.out),
                "source": result.source,
                "format": result.format,
                "weights": result.weights,
                "step": result.step,
                "parameters": result.parameters,
                "files": result.files,
            }
        )
        return
    step = "" if result.step is None else f", step {result.step:,}"
    typer.echo(
        f"wrote {result.out} ({', '.join(result.files)}) from {result.source} "
        f"[{result.format}, {result.weights} weights{step}, {result.parameters:,} parameters]"
    )
