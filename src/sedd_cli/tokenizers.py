"""Tokenizers: text <-> lists of token ids, behind one small interface. Imports no torch.

Three kinds, chosen by ``data.tokenizer``:

- ``gpt2``: tiktoken's GPT-2 BPE (V = 50257; ``<|endoftext|>`` = 50256 is both end and pad).
- ``char``: one id per character seen in the training texts (``<pad>`` = 0, ``<eos>`` = 1, then
  ``<unk>`` = 2 when ``unknown="unk"``, then the characters in sorted order).
- ``byte``: the UTF-8 bytes of the text (V = 256; the NUL byte 0 serves as end and pad).

Ids run from 0 to ``vocab_size - 1``. The absorbing graph's mask id is ``vocab_size``; it belongs
to the model, not the tokenizer, but ``decode`` and ``pieces`` accept it (and any id above it) and
render it as the mask string and ``[MASK]``. A tokenizer is saved next to a model as
``tokenizer.json`` (`Tokenizer.save`, `load_tokenizer`).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import SeddError
from .files import open_mode_chmod

__all__ = [
    "UnencodableText",
    "Tokenizer",
    "GPT2Tokenizer",
    "CharTokenizer",
    "ByteTokenizer",
    "TOKENIZERS",
    "UNKNOWN_POLICIES",
    "MASK_PIECE",
    "TOKENIZER_FILE",
    "get_tokenizer",
    "tokenizer_from_dict",
    "load_tokenizer",
]


class UnencodableText(SeddError):
    """Text with characters a char vocabulary does not hold (callers may prefix the model)."""


TOKENIZERS = ("gpt2", "char", "byte")
UNKNOWN_POLICIES = ("error", "skip", "unk")
MASK_PIECE = "[MASK]"
TOKENIZER_FILE = "tokenizer.json"
_FORMAT = 1


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer offers. Ids are plain ints in ``0 .. vocab_size - 1``."""

    kind: str
    vocab_size: int
    eos_id: int | None
    pad_id: int | None

    def encode(self, text: str) -> list[int]:
        """The ids of `text` (no end-of-text id is added)."""
        ...

    def decode(self, ids: Sequence[int], *, mask: str = "", skip_special: bool = False) -> str:
        """The text of `ids`; ids >= vocab_size become `mask`."""
        ...

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """One display string per id; ids >= vocab_size become ``[MASK]``."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description, with "kind"; `tokenizer_from_dict` inverts it."""
        ...

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` into `directory` atomically; return its path."""
        ...


def _check_id(i: int) -> int:
    i = int(i)
    if i < 0:
        raise SeddError(f"token id {i} is negative: ids must be 0 or more")
    return i


def _save(tok: Tokenizer, directory: str | Path) -> Path:
    """Write ``tok.to_dict()`` as ``directory/tokenizer.json`` via a temporary file and os.replace."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TOKENIZER_FILE
    fd, tmp = tempfile.mkstemp(prefix=".tokenizer.", suffix=".json.tmp", dir=directory)
    try:
        open_mode_chmod(fd)  # mkstemp makes it 0600; the run's other files are 0644
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(tok.to_dict(), fh, ensure_ascii=False, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- gpt2 ---------------------------------------------------------------------------------------

_GPT2_OFFLINE = (
    "GPT-2 tokenizer files are not available offline: set TIKTOKEN_CACHE_DIR to a folder holding "
    "tiktoken's gpt2 cache files (see docs/troubleshooting.md)"
)


@functools.cache
def _gpt2_encoding() -> Any:
    """tiktoken's "gpt2" Encoding, loaded once (failures are not cached, so a retry can succeed)."""
    try:
        import tiktoken
    except ImportError:
        raise SeddError("the gpt2 tokenizer needs tiktoken: pip install tiktoken") from None
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as exc:  # network errors arrive as requests/urllib exceptions, bad files as others
        raise SeddError(_GPT2_OFFLINE) from exc


class GPT2Tokenizer:
    """GPT-2 byte-level BPE via tiktoken; the encoding loads on first use.

    `encode` treats all input as ordinary text: the string ``<|endoftext|>`` in user text is
    encoded as ordinary tokens, never as the special id 50256.
    """

    kind = "gpt2"
    vocab_size = 50257
    eos_id: int | None = 50256
    pad_id: int | None = 50256
    EOS_TEXT = "<|endoftext|>"

    def __init__(self, pad: bool = False) -> None:
        """`pad`: add a pad id after the real tokens (50257, vocabulary 50258), distinct from
        end-of-text, for pack-layout models trained with pad insertion (``data.insert_pads``).
        Without it the pad id is end-of-text, as GPT-2 and the published checkpoints have it."""
        self.extra_pad = bool(pad)
        if self.extra_pad:
            self.vocab_size = 50258
            self.pad_id = 50257

    @property
    def encoding(self) -> Any:
        """The cached tiktoken Encoding; SeddError (one line) when its files cannot be loaded."""
        return _gpt2_encoding()

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` (``encode_ordinary``: special-token strings are plain text)."""
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Sequence[int], *, mask: str = "", skip_special: bool = False) -> str:
        """Text of `ids`: runs of ordinary ids are joined as bytes, then decoded as UTF-8
        (errors="replace"), so a character split over tokens decodes whole. Ids >= vocab_size
        become `mask`; the end-of-text id becomes ``<|endoftext|>`` unless `skip_special`."""
        enc = self.encoding
        out: list[str] = []
        run: list[int] = []

        def flush() -> None:
            if run:
                out.append(enc.decode_bytes(run).decode("utf-8", errors="replace"))
                run.clear()

        for i in map(_check_id, ids):
            if i >= self.vocab_size:
                flush()
                out.append(mask)
            elif i == self.eos_id:
                flush()
                if not skip_special:
                    out.append(self.EOS_TEXT)
            elif i == self.pad_id:  # the added pad renders as "" (as the char tokenizer's)
                flush()
            else:
                run.append(i)
        flush()
        return "".join(out)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Each token's bytes as UTF-8, bytes that are not valid UTF-8 on their own shown as
        ``\\xNN`` (e.g. ``\\xe6\\x97``); ``<|endoftext|>`` for end-of-text, ``[MASK]`` for ids >= V."""
        enc = self.encoding
        out = []
        for i in map(_check_id, ids):
            if i >= self.vocab_size:
                out.append(MASK_PIECE)
            elif i == self.eos_id:
                out.append(self.EOS_TEXT)
            elif i == self.pad_id:
                out.append("<pad>")
            else:
                out.append(enc.decode_single_token_bytes(i).decode("utf-8", errors="backslashreplace"))
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "format": _FORMAT, "encoding": "gpt2", "vocab_size": self.vocab_size}
        return out | ({"pad_id": self.pad_id} if self.extra_pad else {})

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` (the BPE files are not copied; tiktoken supplies them)."""
        return _save(self, directory)

    def __repr__(self) -> str:
        return "GPT2Tokenizer(pad=True)" if self.extra_pad else "GPT2Tokenizer()"


# --- char ---------------------------------------------------------------------------------------


def _check_unknown(unknown: str) -> str:
    if unknown not in UNKNOWN_POLICIES:
        close = difflib.get_close_matches(str(unknown), UNKNOWN_POLICIES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SeddError(
            f"unknown-character policy must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}{hint}"
        )
    return unknown


class CharTokenizer:
    """One id per character: ``<pad>`` = 0, ``<eos>`` = 1, ``<unk>`` = 2 (only when
    ``unknown="unk"``), then `chars` in the order given (`from_texts` sorts them).

    `lowercase` lowercases text before encoding. `unknown` decides what `encode` does with a
    character outside the vocabulary: "error" raises SeddError naming it, "skip" drops it, "unk"
    maps it to ``<unk>``. In `decode`, pad and eos render as "" (they are not text) and
    ``<unk>`` as U+FFFD; `pieces` shows them as ``<pad>``, ``<eos>``, ``<unk>``.
    """

    kind = "char"
    PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"

    def __init__(self, chars: Sequence[str], *, lowercase: bool = False, unknown: str = "error") -> None:
        self.lowercase = bool(lowercase)
        self.unknown = _check_unknown(unknown)
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise SeddError(f"a char tokenizer's vocabulary holds single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise SeddError("a char tokenizer's vocabulary lists a character twice")
        self.chars: list[str] = chars
        specials = [self.PAD, self.EOS] + ([self.UNK] if unknown == "unk" else [])
        self.pad_id: int | None = 0
        self.eos_id: int | None = 1
        self.unk_id: int | None = 2 if unknown == "unk" else None
        self._n_special = len(specials)
        self._specials = specials
        self._stoi = {c: n + self._n_special for n, c in enumerate(chars)}
        self.vocab_size: int = self._n_special + len(chars)

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], *, lowercase: bool = False, unknown: str = "error"
    ) -> CharTokenizer:
        """Build the vocabulary from the distinct characters of `texts` (lowercased first when
        `lowercase`), sorted by code point."""
        seen: set[str] = set()
        for text in texts:
            seen.update(text.lower() if lowercase else text)
        if not seen:
            raise SeddError("cannot build a char tokenizer from empty training text: check the dataset")
        return cls(sorted(seen), lowercase=lowercase, unknown=unknown)

    def encode(self, text: str) -> list[int]:
        """One id per character of `text` (lowercased first when `lowercase`); characters outside
        the vocabulary follow the `unknown` policy."""
        if self.lowercase:
            text = text.lower()
        stoi = self._stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        if self.unknown == "skip":
            return [stoi[c] for c in text if c in stoi]
        if self.unknown == "unk":
            return [stoi.get(c, self.unk_id) for c in text]  # type: ignore[misc]
        missing = list(dict.fromkeys(c for c in text if c not in stoi))
        shown = ", ".join(repr(c) for c in missing[:10]) + (", ..." if len(missing) > 10 else "")
        known = "".join(self.chars)
        known = repr(known if len(known) <= 80 else known[:80]) + ("..." if len(known) > 80 else "")
        raise UnencodableText(
            f"the model's vocabulary lacks the character(s) {shown}; it knows {len(self.chars)} "
            f"characters: {known}. Remove the others from the text "
            "(or build the char tokenizer with data.unknown=skip or unk)"
        )

    def decode(self, ids: Sequence[int], *, mask: str = "", skip_special: bool = False) -> str:
        """Text of `ids`: pad and eos render as "" (whatever `skip_special`), ``<unk>`` as U+FFFD,
        ids >= vocab_size as `mask`."""
        n, chars, out = self._n_special, self.chars, []
        for i in map(_check_id, ids):
            if i >= self.vocab_size:
                out.append(mask)
            elif i >= n:
                out.append(chars[i - n])
            elif i == self.unk_id:
                out.append("\ufffd")
        return "".join(out)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Each id's character; ``<pad>``, ``<eos>``, ``<unk>`` for specials, ``[MASK]`` for ids >= V."""
        n, out = self._n_special, []
        for i in map(_check_id, ids):
            if i >= self.vocab_size:
                out.append(MASK_PIECE)
            elif i >= n:
                out.append(self.chars[i - n])
            else:
                out.append(self._specials[i])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format": _FORMAT,
            "vocab_size": self.vocab_size,
            "lowercase": self.lowercase,
            "unknown": self.unknown,
            "chars": list(self.chars),
        }

    def save(self, directory: str | Path) -> Path:
        return _save(self, directory)

    def __repr__(self) -> str:
        return (
            f"CharTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
            f"unknown={self.unknown!r})"
        )


# --- byte ---------------------------------------------------------------------------------------


class ByteTokenizer:
    """The UTF-8 bytes of the text, one id per byte (V = 256).

    There are no extra special ids: the NUL byte (id 0) serves as end-of-text and pad, so a NUL
    in the input text is indistinguishable from them.
    """

    kind = "byte"
    vocab_size = 256
    eos_id: int | None = 0
    pad_id: int | None = 0

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of `text`."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int], *, mask: str = "", skip_special: bool = False) -> str:
        """Runs of bytes decoded as UTF-8 (errors="replace"); ids >= 256 become `mask`; NUL bytes
        are dropped when `skip_special`, else kept as "\\x00"."""
        out: list[str] = []
        run = bytearray()
        for i in map(_check_id, ids):
            if i >= self.vocab_size:
                if run:
                    out.append(run.decode("utf-8", errors="replace"))
                    run.clear()
                out.append(mask)
            elif i or not skip_special:
                run.append(i)
        if run:
            out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Printable ASCII bytes as themselves, other bytes as ``\\xNN``, ids >= 256 as ``[MASK]``."""
        out = []
        for i in map(_check_id, ids):
            if i >= self.vocab_size:
                out.append(MASK_PIECE)
            elif 0x20 <= i < 0x7F:
                out.append(chr(i))
            else:
                out.append(f"\\x{i:02x}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "format": _FORMAT, "vocab_size": self.vocab_size}

    def save(self, directory: str | Path) -> Path:
        return _save(self, directory)

    def __repr__(self) -> str:
        return "ByteTokenizer()"


# --- construction and loading -------------------------------------------------------------------


def _unknown_kind(name: str) -> SeddError:
    close = difflib.get_close_matches(str(name).lower(), TOKENIZERS, n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return SeddError(f"unknown tokenizer {name!r} (choose from {', '.join(TOKENIZERS)}){hint}")


def get_tokenizer(
    name: str,
    texts: Iterable[str] | None = None,
    *,
    lowercase: bool = False,
    unknown: str = "error",
    gpt2_pad: bool = False,
) -> Tokenizer:
    """A new tokenizer of kind `name` (gpt2 | char | byte).

    ``char`` builds its vocabulary from `texts` (required) and uses `lowercase` and `unknown`;
    the other kinds ignore all three. `gpt2_pad` gives gpt2 its own pad id (`GPT2Tokenizer`).
    """
    _check_unknown(unknown)
    if name == "gpt2":
        return GPT2Tokenizer(pad=gpt2_pad)
    if name == "byte":
        return ByteTokenizer()
    if name == "char":
        if texts is None:
            raise SeddError("the char tokenizer builds its vocabulary from training texts: pass texts")
        return CharTokenizer.from_texts(texts, lowercase=lowercase, unknown=unknown)
    raise _unknown_kind(name)


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """The tokenizer that `to_dict` described; SeddError when `d` is not such a description."""
    if not isinstance(d, dict) or "kind" not in d:
        raise SeddError("invalid tokenizer description: expected a mapping with a 'kind' key")
    kind = d["kind"]
    if int(d.get("format", _FORMAT)) > _FORMAT:
        raise SeddError(
            f"tokenizer description has format {d['format']}, newer than this sedd-cli: upgrade it"
        )
    tok: Tokenizer
    if kind == "gpt2":
        if d.get("encoding", "gpt2") != "gpt2":
            raise SeddError(f"unsupported tiktoken encoding {d['encoding']!r}: only 'gpt2' is supported")
        if d.get("pad_id", 50257) != 50257:
            raise SeddError(f"gpt2 tokenizer description has pad_id {d['pad_id']!r}: only 50257 is supported")
        tok = GPT2Tokenizer(pad="pad_id" in d)
    elif kind == "byte":
        tok = ByteTokenizer()
    elif kind == "char":
        if not isinstance(d.get("chars"), list):
            raise SeddError("invalid char tokenizer description: missing its 'chars' list")
        tok = CharTokenizer(
            d["chars"], lowercase=bool(d.get("lowercase", False)), unknown=d.get("unknown", "error")
        )
    else:
        raise _unknown_kind(kind)
    if "vocab_size" in d and int(d["vocab_size"]) != tok.vocab_size:
        raise SeddError(
            f"tokenizer description says vocab_size {d['vocab_size']} but rebuilds to {tok.vocab_size}: "
            "the tokenizer file is corrupt"
        )
    return tok


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer saved in ``directory/tokenizer.json``."""
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise SeddError(
            f"no {TOKENIZER_FILE} in {str(directory)!r}: pass the model directory that training wrote "
            "(it holds tokenizer.json next to the weights)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SeddError(f"cannot read {str(path)!r}: {exc}".splitlines()[0]) from None
    return tokenizer_from_dict(data)
