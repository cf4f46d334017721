"""What `sample` and `infill` return: the texts, their ids, and how they were made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class SampleResult:
    """Samples and how they were made. `ids` ``[num_samples, length]`` (CPU); `nfe` is the number
    of network calls of a batch (the most any batch of the call made: steps + denoise for the
    step predictors without the cache, the masked positions / tokens_per_step for first-hitting),
    `rows` the sequence rows those calls ran, summed over all batches (num_samples x nfe without
    the cache). `steps` is the option as given (first-hitting ignores it)."""

    texts: list[str]
    ids: torch.Tensor
    steps: int
    predictor: str
    precision: str
    nfe: int
    seed: int
    wall_s: float
    source: str
    eps: float = 1e-5
    denoise: bool = True
    length: int = 0
    device: str = "cpu"
    temperature: float = 1.0
    top_p: float = 1.0
    rows: int = 0
    cache: bool = True
    tokens_per_step: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.source,
            "steps": self.steps,
            "predictor": self.predictor,
            "precision": self.precision,
            "nfe": self.nfe,
            "rows": self.rows,
            "cache": self.cache,
            "tokens_per_step": self.tokens_per_step,
            "seed": self.seed,
            "wall_s": round(self.wall_s, 4),
            "eps": self.eps,
            "denoise": self.denoise,
            "length": self.length,
            "device": self.device,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "num_samples": len(self.texts),
            "samples": [{"text": t, "ids": i} for t, i in zip(self.texts, self.ids.tolist(), strict=True)],
        }


@dataclass
class InfillResult(SampleResult):
    """`spans[k]`: the ``(start, end)`` token ranges that were filled in sample k; `segments[k]`:
    the sample's text as ``(text, filled)`` pieces, in order; `fill_lengths[k]`: the tokens of
    each filled span (a ``[MASK:A-B]`` gap's fill, pads removed, has A to B); `rounds`: the
    sampling rounds (1 + the re-samplings of fills shorter than their A)."""

    spans: list[list[tuple[int, int]]] = field(default_factory=list)
    fill_lengths: list[list[int]] = field(default_factory=list)
    rounds: int = 1
    segments: list[list[tuple[str, bool]]] = field(default_factory=list)
    template: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["template"] = self.template
        out["rounds"] = self.rounds
        lengths = self.fill_lengths or [[b - a for a, b in sp] for sp in self.spans]
        for s, spans, segs, n in zip(out["samples"], self.spans, self.segments, lengths, strict=True):
            s["spans"] = [list(p) for p in spans]
            s["filled"] = [text for text, filled in segs if filled]
            s["fill_lengths"] = list(n)
        return out
