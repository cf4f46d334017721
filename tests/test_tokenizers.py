"""Tokenizers: known GPT-2 ids, char vocabulary and unknown-character policy, byte round trips,
mask rendering, save/load, and the one-line errors."""

from __future__ import annotations

import json

import pytest

from sedd_cli import tokenizers as tk
from sedd_cli.errors import SeddError
from sedd_cli.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    GPT2Tokenizer,
    Tokenizer,
    get_tokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
    tok = GPT2Tokenizer()
    try:
        _ = tok.encoding
    except SeddError as exc:
        pytest.skip(f"GPT-2 tokenizer files unavailable (set TIKTOKEN_CACHE_DIR): {exc}")
    return tok


# --- gpt2 ---------------------------------------------------------------------------------------


def test_gpt2_known_ids(gpt2):
    assert gpt2.vocab_size == 50257
    assert gpt2.eos_id == gpt2.pad_id == 50256
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(" the cat") == [262, 3797]
    assert gpt2.encoding.n_vocab == gpt2.vocab_size


def test_gpt2_special_string_is_ordinary_text(gpt2):
    ids = gpt2.encode("a<|endoftext|>b")
    assert 50256 not in ids
    assert gpt2.decode(ids) == "a<|endoftext|>b"


def test_gpt2_unicode_round_trip_and_split_pieces(gpt2):
    text = "naïve café 日本"
    assert gpt2.decode(gpt2.encode(text)) == text
    ids = gpt2.encode("日本")
    # "日" (e6 97 a5) is split over two tokens: b"\xe6\x97" and b"\xa5"
    assert ids == [33768, 98, 17312, 105]
    assert gpt2.pieces(ids) == ["\\xe6\\x97", "\\xa5", "\\xe6\\x9c", "\\xac"]
    assert gpt2.decode(ids) == "日本"
    # a lone partial character decodes with the replacement character
    assert gpt2.decode(ids[:1]) == "\ufffd"


def test_gpt2_mask_and_eos(gpt2):
    ids = gpt2.encode("Hello world")
    mask = gpt2.vocab_size
    assert gpt2.decode([ids[0], mask, ids[1]]) == "Hello world"
    assert gpt2.decode([ids[0], mask, ids[1]], mask="_") == "Hello_ world"
    assert gpt2.pieces([ids[0], mask, 50256]) == ["Hello", "[MASK]", "<|endoftext|>"]
    assert gpt2.decode(ids + [50256]) == "Hello world<|endoftext|>"
    assert gpt2.decode(ids + [50256, 50256], skip_special=True) == "Hello world"


def test_gpt2_load_failure_is_one_line(monkeypatch):
    import tiktoken

    def boom(name):
        raise ConnectionError("no network")

    tk._gpt2_encoding.cache_clear()
    monkeypatch.setattr(tiktoken, "get_encoding", boom)
    try:
        with pytest.raises(SeddError) as info:
            GPT2Tokenizer().encode("hi")
        msg = str(info.value)
        assert "\n" not in msg
        assert "TIKTOKEN_CACHE_DIR" in msg
        assert isinstance(info.value.__cause__, ConnectionError)
    finally:
        tk._gpt2_encoding.cache_clear()  # the failure is not cached, but start clean anyway


# --- char ---------------------------------------------------------------------------------------


def test_char_vocab_lowercase():
    tok = get_tokenizer("char", ["Mary", "john"], lowercase=True)
    chars = sorted(set("maryjohn"))
    assert tok.vocab_size == 2 + len(chars)
    assert tok.pad_id == 0 and tok.eos_id == 1
    assert tok.encode("MARY") == [2 + chars.index(c) for c in "mary"]
    assert tok.decode(tok.encode("John")) == "john"


def test_char_full_alphabet_size():
    tok = CharTokenizer.from_texts(["abcdefghijklm", "NOPQRSTUVWXYZ"], lowercase=True)
    assert tok.vocab_size == 28


def test_char_unknown_policies():
    texts = ["abc"]
    err = CharTokenizer.from_texts(texts)
    with pytest.raises(SeddError, match="'z'; it knows 3 characters: 'abc'"):
        err.encode("abz")
    assert err.encode("abc") == [2, 3, 4]

    skip = CharTokenizer.from_texts(texts, unknown="skip")
    assert skip.vocab_size == 5
    assert skip.encode("azb") == [2, 3]

    unk = CharTokenizer.from_texts(texts, unknown="unk")
    assert unk.vocab_size == 6 and unk.unk_id == 2
    assert unk.encode("azb") == [3, 2, 4]
    assert unk.pieces(unk.encode("azb")) == ["a", "<unk>", "b"]
    assert unk.decode(unk.encode("azb")) == "a\ufffdb"

    with pytest.raises(SeddError, match="did you mean 'skip'"):
        CharTokenizer(["a"], unknown="skipp")


def test_char_specials_and_mask():
    tok = CharTokenizer.from_texts(["ab\ncd"])
    assert "\n" in tok.chars
    ids = [0, *tok.encode("ab"), tok.vocab_size, 1, 0]
    assert tok.decode(ids) == "ab"
    assert tok.decode(ids, mask="?") == "ab?"
    assert tok.decode(ids, skip_special=True) == "ab"
    assert tok.pieces(ids) == ["<pad>", "a", "b", "[MASK]", "<eos>", "<pad>"]


# --- byte ---------------------------------------------------------------------------------------


def test_byte_round_trip_and_pieces():
    tok = ByteTokenizer()
    text = "naïve café 日本\n"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.vocab_size == 256 and tok.eos_id == tok.pad_id == 0
    assert tok.pieces(tok.encode("aï\n")) == ["a", "\\xc3", "\\xaf", "\\x0a"]
    assert tok.decode([97, 256, 98], mask="_") == "a_b"
    assert tok.pieces([97, 256]) == ["a", "[MASK]"]
    assert tok.decode([97, 0, 98]) == "a\x00b"
    assert tok.decode([97, 0, 98], skip_special=True) == "ab"
    # a multibyte character cut by a mask: each side decodes on its own, with replacement characters
    assert tok.decode([0xE6, 256, 0x97, 0xA5]) == "\ufffd" + "\ufffd\ufffd"


# --- save / load and construction ----------------------------------------------------------------


def test_saved_tokenizer_file_has_the_mode_of_the_runs_other_files(tmp_path):
    """tokenizer.json is written through mkstemp (0600); it must end 0666 less the umask, like
    config.yaml and metrics.jsonl (0644 under the usual umask 022), not private."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = CharTokenizer.from_texts(["abc"]).save(tmp_path / "run")
        plain = tmp_path / "run" / "config.yaml"
        plain.write_text("x: 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


def _tokenizers(gpt2_ok: bool) -> list[Tokenizer]:
    toks: list[Tokenizer] = [
        ByteTokenizer(),
        CharTokenizer.from_texts(["Mary", "john\n"], lowercase=True, unknown="unk"),
    ]
    if gpt2_ok:
        toks.append(GPT2Tokenizer())
    return toks


@pytest.mark.parametrize("kind", ["byte", "char", "gpt2"])
def test_save_load_round_trip(tmp_path, kind, request):
    if kind == "gpt2":
        request.getfixturevalue("gpt2")
    tok = next(t for t in _tokenizers(kind == "gpt2") if t.kind == kind)
    assert isinstance(tok, Tokenizer)
    path = tok.save(tmp_path / "model")
    assert path == tmp_path / "model" / "tokenizer.json"
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp file left
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == tok.to_dict() and data["kind"] == kind
    loaded = load_tokenizer(path.parent)
    assert type(loaded) is type(tok)
    assert loaded.to_dict() == tok.to_dict()
    text = "mary had a little lamb\n"
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.vocab_size == tok.vocab_size
    assert tokenizer_from_dict(tok.to_dict()).encode(text) == tok.encode(text)


def test_load_missing_and_bad(tmp_path):
    with pytest.raises(SeddError, match="tokenizer.json") as info:
        load_tokenizer(tmp_path)
    assert "\n" not in str(info.value)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(SeddError, match="cannot read"):
        load_tokenizer(tmp_path)
    with pytest.raises(SeddError, match="corrupt"):
        tokenizer_from_dict({"kind": "char", "chars": ["a"], "vocab_size": 5})
    with pytest.raises(SeddError, match="did you mean 'byte'"):
        tokenizer_from_dict({"kind": "bytes"})


def test_get_tokenizer_errors():
    with pytest.raises(SeddError, match="did you mean 'gpt2'") as info:
        get_tokenizer("gpt-2")
    assert "gpt2, char, byte" in str(info.value)
    with pytest.raises(SeddError, match="texts"):
        get_tokenizer("char")
    assert get_tokenizer("byte").kind == "byte"
    assert get_tokenizer("gpt2").kind == "gpt2"  # constructing does not load the BPE files


def test_negative_id_rejected():
    with pytest.raises(SeddError, match="negative"):
        ByteTokenizer().decode([-1])


def test_gpt2_pad_of_its_own_is_recorded_and_rebuilt(tmp_path):
    """A pack-layout GPT-2 model trained with pad insertion gets pad id 50257 after the real tokens
    (vocabulary 50258), distinct from end-of-text; tokenizer.json records it and rebuilds it; the
    published vocabulary (50257, pad = end-of-text) is unchanged. No BPE files are needed."""
    from sedd_cli.config import load_preset
    from sedd_cli.data import build_tokenizer
    from sedd_cli.tokenizers import load_tokenizer, tokenizer_from_dict

    plain, padded = GPT2Tokenizer(), GPT2Tokenizer(pad=True)
    assert (plain.vocab_size, plain.pad_id, plain.eos_id) == (50257, 50256, 50256)
    assert (padded.vocab_size, padded.pad_id, padded.eos_id) == (50258, 50257, 50256)
    assert "pad_id" not in plain.to_dict() and padded.to_dict()["pad_id"] == 50257
    padded.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert (again.vocab_size, again.pad_id) == (50258, 50257)
    assert tokenizer_from_dict(plain.to_dict()).vocab_size == 50257
    with pytest.raises(SeddError, match="pad_id 7: only 50257"):
        tokenizer_from_dict(padded.to_dict() | {"pad_id": 7})
    cfg = load_preset("small")  # gpt2, pack
    assert build_tokenizer(cfg).vocab_size == 50257
    cfg.data.insert_pads = 0.5
    assert build_tokenizer(cfg).pad_id == 50257


def test_gpt2_added_pad_decodes_to_nothing(gpt2):
    padded = GPT2Tokenizer(pad=True)
    ids = gpt2.encode("Hello world")
    assert padded.decode(ids[:1] + [50257, 50257] + ids[1:]) == "Hello world"
    assert padded.pieces([50257]) == ["<pad>"]
