"""A run's loss and validation curves as text plots (`textplot.TextPlot`), for the end-of-training
summary of `sedd train` and for `sedd info RUN`: both read the run's metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

TITLES = {
    "loss": "training loss (nats/sequence) by step",
    "val_loss": "validation loss (nats/sequence, EMA weights) by step",
}


def show_curves(run_dir: str | Path, width: int = 72) -> None:
    """Print the run's curves on stdout (nothing for a run without metrics)."""
    from rich.console import Console

    from ..textplot import TextPlot
    from ..training import curves, read_metrics

    console = Console(highlight=False)
    for key, (steps, values) in curves(read_metrics(run_dir)).items():
        if steps:
            console.print(TextPlot(steps, values, title=TITLES[key], width=width))
