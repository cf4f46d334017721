"""What `sample` and `infill` return: the texts, their ids, and how they were made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class SampleResult:
    """Samples and how they were made. `ids` ``[num_samples, length]`` (CPU); `nfe` is the number
    of network evaluations per sample (steps + denoise)."""

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.source,
            "steps": self.steps,
            "predictor": self.predictor,
            "precision": self.precision,
            "nfe": self.nfe,
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
    the sample's text as ``(text, filled)`` pieces, in order."""

    spans: list[list[tuple[int, int]]] = field(default_factory=list)
    segments: list[list[tuple[str, bool]]] = field(default_factory=list)
    template: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["template"] = self.template
        for s, spans, segs in zip(out["samples"], self.spans, self.segments, strict=True):
            s["spans"] = [list(p) for p in spans]
            s["filled"] = [text for text, filled in segs if filled]
        return out
