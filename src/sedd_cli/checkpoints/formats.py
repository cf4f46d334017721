"""What every checkpoint format reduces to (`Located`), the registry of formats `locate` tries,
and the readers the formats share (a JSON file, a folder's tokenizer.json).

A format is one module with one locator, ``locator(path, weights) -> Located | None`` (None: the
path is not in this format), registered with `register_format` and a rank; `locate` tries the
registered locators in rank order and names every format's `described` when none matches. A new
format is one new module that registers itself, plus its import in ``checkpoints/__init__``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Config, read_text_file
from ..errors import SeddError
from ..tokenizers import TOKENIZER_FILE, Tokenizer, load_tokenizer

__all__ = ["Located", "Format", "FORMATS", "register_format", "read_json", "load_tokenizer_file"]


@dataclass
class Located:
    """A model found on disk or on the hub, before the network is built: what every source
    format reduces to. `shadow` holds EMA tensors in ``model.parameters()`` order (reference runs)
    that replace the parameters of `state` once the parameter names are known."""

    format: str
    config: Config
    tokenizer: Tokenizer
    state: dict[str, torch.Tensor]
    weights: str
    origin: dict[str, Any]
    step: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    shadow: list[torch.Tensor] | None = None
    source: str = ""


Locator = Callable[[Path, str], "Located | None"]


@dataclass(frozen=True)
class Format:
    """A registered format: its `rank` (lower is tried first), a phrase for error messages, and
    its locator."""

    rank: int
    described: str
    locator: Locator


FORMATS: list[Format] = []


def register_format(rank: int, described: str) -> Callable[[Locator], Locator]:
    """Decorator: add a format's locator to those `locate` tries (by `rank`, lowest first)."""

    def add(locator: Locator) -> Locator:
        FORMATS.append(Format(rank, described, locator))
        FORMATS.sort(key=lambda f: f.rank)
        return locator

    return add


def read_json(path: Path) -> Any:
    """The JSON document in `path`; a SeddError naming the file (byte offset of the first byte
    that is not UTF-8, or line and column of the JSON error) when it cannot be read."""
    text = read_text_file(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeddError(
            f"{str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
            "the file is damaged; restore it from a copy"
        ) from None


def load_tokenizer_file(folder: Path) -> Tokenizer:
    """`load_tokenizer(folder)`, with every failure a one-line SeddError naming tokenizer.json."""
    path = folder / TOKENIZER_FILE
    if path.is_file():
        read_text_file(path)  # not UTF-8: the message gives the byte offset
    try:
        return load_tokenizer(folder)
    except SeddError as exc:
        if str(path) in str(exc) or not path.is_file():
            raise
        raise SeddError(f"{str(path)!r}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise SeddError(
            f"{str(path)!r} is not a valid tokenizer description ({type(exc).__name__}: {first}): "
            "the file is damaged; restore it from a copy"
        ) from None
