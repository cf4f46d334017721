"""Rich renderables for sampling: the live denoising view, frame files and infill highlighting.

The live view redraws on stderr while `generate` runs: masked tokens as a dim placeholder (``_``
for char and byte models, ``░`` for GPT-2 tokens), tokens that changed in this step highlighted,
and a header with the step, t, sigma and the share of positions still masked. When stderr is not
a terminal it prints each shown state as plain lines instead (``step 3/10 t=0.700 sigma=1.2
masked=41% [0]: text``). Torch tensors arrive in the events; this module only calls ``.tolist()``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from .files import open_mode_chmod

__all__ = [
    "placeholder",
    "state_text",
    "state_line",
    "DenoiseView",
    "FrameWriter",
    "infill_text",
    "infill_plain",
]

MASK_STYLE = "dim"
CHANGED_STYLE = "bold black on yellow"
FILLED_STYLE = "bold green"


def placeholder(tokenizer: Any) -> str:
    """One display character for a masked position."""
    return "░" if getattr(tokenizer, "kind", "") == "gpt2" else "_"


def _piece(tokenizer: Any, i: int) -> str:
    """A token's display text: specials (pad, end-of-text) as a dim middle dot."""
    if i == tokenizer.pad_id or i == tokenizer.eos_id:
        return "·"
    return tokenizer.pieces([i])[0].replace("\n", "↵")


def state_text(ids: list[int], changed: list[bool], tokenizer: Any, mask_id: int) -> Text:
    """A Rich Text of one sequence: masks dim, changed tokens highlighted."""
    out = Text()
    mark = placeholder(tokenizer)
    for i, c in zip(ids, changed, strict=True):
        if i >= mask_id:
            out.append(mark, style=MASK_STYLE)
        elif i == tokenizer.pad_id or i == tokenizer.eos_id:
            out.append("·", style=CHANGED_STYLE if c else MASK_STYLE)
        else:
            out.append(_piece(tokenizer, i), style=CHANGED_STYLE if c else "")
    return out


def state_line(ids: list[int], tokenizer: Any, mask_id: int) -> str:
    """One sequence as plain text on one line (masks as the placeholder, newlines as ↵)."""
    mark = placeholder(tokenizer)
    return "".join(mark if i >= mask_id else _piece(tokenizer, i) for i in ids)


def _header(event: Any, masked: float) -> str:
    if event.phase == "final":
        return "kept samples, the pads in their [MASK:A-B] gaps removed"
    step = f"step {event.step}/{event.steps}" if event.phase != "denoise" else "denoised"
    return f"{step} t={event.t:.3f} sigma={event.sigma:.3g} masked={masked:.0%}"


class DenoiseView:
    """Show `StepEvent`s: a Rich Live redraw on a terminal, plain lines otherwise.

    Use as a context manager; pass ``view.update`` (or call it from an ``on_step``) for every
    event. `every` K shows every K-th step plus the start and the denoised state.
    """

    def __init__(self, tokenizer: Any, mask_id: int, *, every: int = 1, console: Console | None = None):
        self.tokenizer = tokenizer
        self.mask_id = mask_id
        self.every = max(1, every)
        self.console = console or Console(stderr=True)
        self.live: Live | None = None

    def __enter__(self) -> DenoiseView:
        if self.console.is_terminal:
            self.live = Live(Text(""), console=self.console, auto_refresh=False, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None

    def wants(self, event: Any) -> bool:
        return event.phase != "step" or event.step % self.every == 0 or event.step == event.steps

    def update(self, event: Any) -> None:
        if not self.wants(event):
            return
        ids = event.x.tolist()
        masked = float((event.x >= self.mask_id).float().mean())
        head = f"[batch {event.batch + 1}] " if event.batch else ""
        head += _header(event, masked)
        if self.live is not None:
            changed = event.changed.tolist()
            rows = [state_text(r, c, self.tokenizer, self.mask_id) for r, c in zip(ids, changed, strict=True)]
            self.live.update(Group(Text(head, style="bold"), *rows), refresh=True)
        else:
            lines = [
                f"{head} [{event.offset + k}]: {state_line(r, self.tokenizer, self.mask_id)}"
                for k, r in enumerate(ids)
            ]
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()


class FrameWriter:
    """Every state as JSON lines (batch, step, steps, phase, t, sigma, ids, texts), written to a
    temporary file beside `path` and renamed into place on a clean close (nothing half-written)."""

    def __init__(self, path: str | Path, tokenizer: Any, mask_id: int):
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.mask_id = mask_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        open_mode_chmod(fd)  # 0644 like any file the user asks for, not mkstemp's 0600
        self._fh = os.fdopen(fd, "w", encoding="utf-8")

    def update(self, event: Any) -> None:
        ids = event.x.tolist()
        rec = {
            "batch": event.batch,
            "step": event.step,
            "steps": event.steps,
            "phase": event.phase,
            "t": event.t,
            "sigma": event.sigma,
            "ids": ids,
            "texts": [self.tokenizer.decode(r, mask=placeholder(self.tokenizer)) for r in ids],
        }
        self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def close(self, ok: bool = True) -> None:
        self._fh.close()
        if ok:
            os.replace(self._tmp, self.path)
        else:
            Path(self._tmp).unlink(missing_ok=True)


def infill_text(segments: list[tuple[str, bool]]) -> Text:
    """An infilled sample with the filled spans highlighted."""
    out = Text()
    for text, filled in segments:
        out.append(text, style=FILLED_STYLE + " underline" if filled else "")
    return out


def infill_plain(segments: list[tuple[str, bool]]) -> str:
    """An infilled sample with ``[...]`` around the filled spans (for pipes and files)."""
    return "".join(f"[{text}]" if filled else text for text, filled in segments)
