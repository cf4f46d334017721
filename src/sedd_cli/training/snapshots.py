"""Periodic samples: every ``train.sample_every`` steps, rank 0 draws ``sample.num_samples``
sequences with the EMA weights (generator seeded with ``train.seed + 20011``, the config's
sample settings) into ``samples/step_XXXXXXXX.txt``: one per line for the pad layout, else
separated by a line of 80 ``=``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..runtime import atomic_write_text
from .events import TrainEvent
from .run_dir import SAMPLES_DIR


def snapshot(
    model, graph, noise, ema, tokenizer, config, dev, run_dir: Path, step, emit, max_steps
) -> list[str] | None:
    """Sample `sample.num_samples` sequences with the EMA weights into samples/step_XXXXXXXX.txt;
    returns their texts (for the dashboards)."""
    try:
        from ..sampling import generate
    except ImportError:
        return None
    sc = config.sample
    gen = torch.Generator(device=dev).manual_seed(config.train.seed + 20_011)
    model.eval()
    with ema.applied(model):
        ids = generate(
            model,
            graph,
            noise,
            batch_size=sc.num_samples,
            length=config.model.length,
            steps=sc.steps,
            predictor=sc.predictor if sc.predictor != "none" else "analytic",
            eps=sc.eps,
            denoise=sc.denoise,
            precision=sc.precision,
            device=dev,
            generator=gen,
            temperature=sc.temperature,
            top_p=sc.top_p,
        )
    texts = [tokenizer.decode(row.tolist(), skip_special=True) for row in ids.cpu()]
    if config.data.layout == "pad":
        body = "".join(t.replace("\n", " ") + "\n" for t in texts)
    else:
        body = "".join(t + "\n" + "=" * 80 + "\n" for t in texts)
    path = run_dir / SAMPLES_DIR / f"step_{step:08d}.txt"
    atomic_write_text(path, body)
    emit(TrainEvent("sample", step, max_steps, path=str(path), samples=texts))
    return texts
