"""Datasets -> token blocks: sources, hash splits, layouts, caching, detokenizers."""

from __future__ import annotations

import json
import math
import time
from itertools import chain

import numpy as np
import pytest
import torch

from sedd_cli import data
from sedd_cli.config import Config, DataConfig
from sedd_cli.errors import SeddError
from sedd_cli.tokenizers import CharTokenizer, get_tokenizer

from .conftest import requires_gpt2

BABYNAMES_DISTINCT = 97_310  # ecosystem.md §3.4: ds.unique("name"); unchanged by lowercasing
BABYNAMES_BIRTHS = 348_120_517  # ecosystem.md §3.4: sum of column n


def _cfg(name: str, *, tokenizer: str = "char", layout: str = "pack", length: int = 8, **data_kw) -> Config:
    cfg = Config()
    cfg.data.name = str(name)
    cfg.data.tokenizer = tokenizer
    cfg.data.layout = layout
    for k, v in data_kw.items():
        setattr(cfg.data, k, v)
    cfg.model.length = length
    return cfg


@pytest.fixture(scope="module")
def babynames_splits():
    d = DataConfig(name="babynames", tokenizer="char", lowercase=True, valid_fraction=0.05)
    return data.load_texts(d, "train"), data.load_texts(d, "validation")


# --- babynames ---------------------------------------------------------------------------------


def test_babynames_hash_split_is_disjoint_and_binomially_sized(babynames_splits):
    """N = 97,310 distinct names, valid_fraction p = 0.05. A sha1 prefix is uniform, so the
    validation count is Binomial(N, p): mean N p = 4865.5, sd sqrt(N p (1 - p)) = sqrt(4622.2)
    = 68.0. We accept |count - 4865.5| < 5 sd = 340 (a uniform hash fails this with prob. < 1e-6)."""
    train, valid = babynames_splits
    assert len(train) + len(valid) == BABYNAMES_DISTINCT
    assert len(set(train)) == len(train) and len(set(valid)) == len(valid)
    assert not set(train) & set(valid)
    n, p = BABYNAMES_DISTINCT, 0.05
    assert abs(len(valid) - n * p) < 5 * math.sqrt(n * p * (1 - p))
    assert train == sorted(train)  # deterministic order
    assert all(s == s.lower() for s in train[:1000] + valid)
    assert all(data.in_validation(s, 0.05) for s in valid[:200])
    assert not any(data.in_validation(s, 0.05) for s in train[:200])


def test_char_tokenizer_from_babynames_lowercase_has_28_ids():
    """26 letters + <pad> + <eos> (the names preset)."""
    cfg = _cfg("babynames", layout="pad", lowercase=True)
    tok = data.build_tokenizer(cfg)
    assert isinstance(tok, CharTokenizer)
    assert tok.vocab_size == 28
    assert "".join(tok.chars) == "abcdefghijklmnopqrstuvwxyz"


def test_babynames_pad_layout_and_count_weights(babynames_splits):
    """Pad layout: one name per row, no truncation (longest name has 15 letters < 32), pads fill
    the rest. Count weighting: the weights of both splits add up to all births in the file."""
    train_names, valid_names = babynames_splits
    cfg = _cfg("babynames", layout="pad", length=32, lowercase=True, valid_fraction=0.05, weighting="count")
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz", lowercase=True)
    valid = data.prepare_data(cfg, tok, "validation")
    assert valid.tokens.shape == (len(valid_names), 32)
    assert valid.n_truncated == 0 and valid.n_documents == len(valid_names)
    assert valid.n_tokens == sum(len(s) for s in valid_names)
    assert int((valid.tokens == tok.pad_id).sum()) == 32 * len(valid_names) - valid.n_tokens
    assert [tok.decode(r) for r in valid.batch(torch.arange(5)).tolist()] == valid_names[:5]
    train = data.prepare_data(cfg, tok, "train")
    assert len(train) == len(train_names)
    assert train.weights is not None and valid.weights is not None
    assert train.weights.shape == (len(train),)
    assert float(train.weights.sum() + valid.weights.sum()) == BABYNAMES_BIRTHS
    assert float(valid.weights.min()) >= 5  # SSA lists a name only with at least 5 births a year


# --- local files, layouts ----------------------------------------------------------------------


def test_pad_layout_truncates_and_pads(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("ab\n\nabcdefghij\n  \nc\n")
    cfg = _cfg(path, layout="pad", length=4, valid_fraction=0.0)
    tok = data.build_tokenizer(cfg)
    blocks = data.prepare_data(cfg, tok, "train")
    assert blocks.layout == "pad" and blocks.pad_id == 0
    assert blocks.tokens.shape == (3, 4)  # blank lines are not documents
    assert blocks.n_truncated == 1
    assert blocks.n_tokens == 2 + 4 + 1
    assert (blocks.tokens == 0).sum() == 2 + 0 + 3
    assert [tok.decode(r) for r in blocks.tokens.tolist()] == ["ab", "abcd", "c"]


def test_pack_layout_joins_documents_with_eos_and_drops_only_the_tail(tmp_path):
    docs = [f"doc{i} " + "xyz"[: i % 4] * (i % 7) for i in range(50)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(docs) + "\n")
    length = 16
    cfg = _cfg(path, layout="pack", length=length, valid_fraction=0.0)
    tok = data.build_tokenizer(cfg)
    blocks = data.prepare_data(cfg, tok, "train")
    stream = list(chain.from_iterable(tok.encode(d) + [tok.eos_id] for d in docs))
    n_blocks = len(stream) // length
    assert blocks.tokens.shape == (n_blocks, length)
    assert blocks.tokens.flatten().tolist() == stream[: n_blocks * length]
    assert int((blocks.tokens == tok.eos_id).sum()) == stream[: n_blocks * length].count(tok.eos_id)
    assert blocks.n_documents == 50 and blocks.n_tokens == n_blocks * length and blocks.pad_id is None
    assert data.prepare_data(cfg, tok, "train", max_blocks=2).tokens.tolist() == blocks.tokens[:2].tolist()


def test_txt_document_file_is_one_document(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("line one\nline two\n")
    cfg = _cfg(path, layout="pack", length=4, document="file", valid_fraction=0.0)
    assert data.load_texts(cfg.data, "train") == ["line one\nline two\n"]
    tok = get_tokenizer("byte")
    blocks = data.prepare_data(cfg, tok, "train")
    assert blocks.n_documents == 1
    assert blocks.tokens.shape == ((18 + 1) // 4, 4)


def test_structured_files_read_their_text_field(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["alpha beta", "gamma", "delta, epsilon"]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(texts)))
    csv = tmp_path / "a.csv"
    csv.write_text("id,body\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)))
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": [0, 1, 2], "body": texts}), parquet)
    for path in (jsonl, csv, parquet):
        d = DataConfig(name=str(path), text_field="body", valid_fraction=0.0)
        assert data.load_texts(d, "train") == texts, path.suffix
        d.text_field = "text"
        with pytest.raises(SeddError, match=r"no column 'text'.*id, body"):
            data.load_texts(d, "train")


def test_file_errors_are_one_line(tmp_path):
    with pytest.raises(SeddError, match="not found"):
        data.resolve_source(str(tmp_path / "missing.txt"))
    with pytest.raises(SeddError, match="must end in"):
        data.resolve_source(str(tmp_path / "notes.docx"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(SeddError, match="holds no text") as err:
        data.load_texts(DataConfig(name=str(empty)), "train")
    assert "\n" not in str(err.value)
    header_only = tmp_path / "h.csv"
    header_only.write_text("id,text\n")
    with pytest.raises(SeddError, match="holds no"):
        data.load_texts(DataConfig(name=str(header_only)), "train")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"\n')
    with pytest.raises(SeddError, match="cannot read .*bad.jsonl.* as json: JSON parse error") as err:
        data.load_texts(DataConfig(name=str(bad)), "train")
    assert "\n" not in str(err.value)
    one = tmp_path / "one.txt"
    one.write_text("hello\n")
    with pytest.raises(SeddError, match="valid_fraction"):
        data.load_texts(DataConfig(name=str(one), valid_fraction=0.0), "validation")
    with pytest.raises(SeddError, match="unknown split"):
        data.load_texts(DataConfig(name=str(one)), "valid")
    cfg = _cfg(one, length=64, valid_fraction=0.0)
    with pytest.raises(SeddError, match="fewer than one block"):
        data.prepare_data(cfg, data.build_tokenizer(cfg), "train")
    cfg.model.length = 1
    with pytest.raises(SeddError, match="model.length"):
        data.prepare_data(cfg, get_tokenizer("byte"), "train")


def test_hash_split_keeps_duplicates_together(tmp_path):
    """Every copy of a line, and with lowercase every case variant, lands in the same split."""
    words = [f"Word{i}" for i in range(300)]
    lines = words + words + [w.upper() for w in words]
    path = tmp_path / "dups.txt"
    path.write_text("\n".join(lines))
    d = DataConfig(name=str(path), valid_fraction=0.3, lowercase=True)
    train = {t.lower() for t in data.load_texts(d, "train")}
    valid = {t.lower() for t in data.load_texts(d, "validation")}
    assert train and valid and not train & valid
    assert train | valid == {w.lower() for w in words}
    assert data.load_texts(d, "test") == data.load_texts(d, "validation")


def test_cache_hit_skips_reading_and_file_change_invalidates(tmp_path, monkeypatch):
    path = tmp_path / "c.txt"
    path.write_text("the cat sat\non the mat\n" * 20)
    cfg = _cfg(path, length=8, valid_fraction=0.0)
    tok = data.build_tokenizer(cfg)
    first = data.prepare_data(cfg, tok, "train")
    assert list((tmp_path.parent).glob("**/*.tmp*")) == []

    def boom(*a, **k):
        raise AssertionError("the cache was missed")

    monkeypatch.setattr(data.prepare, "iter_records", boom)  # the reader prepare_data calls
    events = []
    again = data.prepare_data(cfg, tok, "train", on_step=events.append)
    assert torch.equal(first.tokens, again.tokens) and again.tokens.dtype == torch.int64
    assert again.n_tokens == first.n_tokens and events[0]["event"] == "cached"
    assert np.load(events[0]["path"]).dtype == np.uint16  # 13-id vocabulary stored as uint16
    path.write_text("the cat sat\non the mat\n" * 21)  # size and mtime change -> new key
    with pytest.raises(AssertionError, match="cache was missed"):
        data.prepare_data(cfg, tok, "train")


def test_memory_mapped_blocks_batch_as_int64(tmp_path, monkeypatch):
    path = tmp_path / "m.txt"
    path.write_text("abcdefgh\n" * 30)
    cfg = _cfg(path, length=6, valid_fraction=0.0)
    tok = data.build_tokenizer(cfg)
    in_memory = data.prepare_data(cfg, tok, "train")
    monkeypatch.setattr(data.cache, "_IN_MEMORY_MAX", 0)
    mapped = data.prepare_data(cfg, tok, "train")
    idx = torch.tensor([3, 0, 7])
    out = mapped.batch(idx)
    assert out.dtype == torch.int64 and torch.equal(out, in_memory.batch(idx))
    assert len(mapped) == len(in_memory)


@requires_gpt2
def test_gpt2_pack_appends_eos_50256(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("Hello world.\nSecond line here, with more words in it.\n")
    cfg = _cfg(path, tokenizer="gpt2", length=4, valid_fraction=0.0)
    tok = data.build_tokenizer(cfg)
    blocks = data.prepare_data(cfg, tok, "train")
    stream = (
        tok.encode("Hello world.")
        + [50256]
        + tok.encode("Second line here, with more words in it.")
        + [50256]
    )
    assert blocks.tokens.flatten().tolist() == stream[: len(stream) // 4 * 4]


# --- names, hub --------------------------------------------------------------------------------


def test_unknown_dataset_suggests_closest():
    with pytest.raises(SeddError, match="did you mean 'babynames'"):
        data.resolve_source("babynams")
    with pytest.raises(SeddError, match="did you mean 'wikitext2'"):
        data.resolve_source("wikitext")
    src = data.resolve_source("hf:user/corpus:cfg1")
    assert (src.kind, src.hub_id, src.hub_config) == ("hub", "user/corpus", "cfg1")


@pytest.mark.parametrize("name", ["wikitext2", "owt", "hf:user/corpus"])
def test_hub_dataset_offline_fails_at_once(name):
    start = time.monotonic()
    with pytest.raises(SeddError, match="on the Hugging Face hub and this machine is offline") as err:
        data.load_texts(DataConfig(name=name), "validation")
    assert time.monotonic() - start < 2.0
    assert "--data PATH" in str(err.value) and "\n" not in str(err.value)


def test_folder_as_data_says_it_is_a_folder(tmp_path):
    (tmp_path / "corpus").mkdir()
    with pytest.raises(SeddError, match="is a folder: pass one file") as err:
        data.resolve_source(str(tmp_path / "corpus"))
    assert "not found" not in str(err.value)


def _silent_port() -> tuple[object, str]:
    """A listening socket that accepts and never answers, as a black-holed proxy would: an HTTP
    client waits out its timeout there. Returns (socket, URL)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_hub_without_offline_flag_fails_at_once_without_the_hub_library(kind, monkeypatch):
    """No HF_HUB_OFFLINE, but the endpoint is dead: one probe decides, `datasets.load_dataset`
    (whose retries printed 30 s of chatter) is never called, and the error names the endpoint."""
    import socket

    import datasets

    from sedd_cli import hub

    if kind == "refused":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        probe.close()  # nothing listens there now: connection refused
        server = None
    else:
        server, url = _silent_port()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hub, "PROBE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(hub, "_probed", {})

    def never(*a, **k):
        raise AssertionError("load_dataset was called although the hub does not answer")

    monkeypatch.setattr(datasets, "load_dataset", never)
    try:
        with pytest.raises(SeddError, match=r"on the Hugging Face hub and the hub \(http://127") as err:
            data.load_texts(DataConfig(name="owt"), "train")
    finally:
        if server is not None:
            server.close()
    assert "does not answer" in str(err.value) and "\n" not in str(err.value)


def test_hub_probe_sees_a_live_endpoint(monkeypatch):
    """A local HTTP server that answers (even 404) counts as reachable."""
    import http.server
    import threading

    from sedd_cli import hub

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(hub, "_probed", {})
    try:
        assert hub.reachable(2.0) is True
    finally:
        server.server_close()


def test_lambada_has_no_train_split():
    with pytest.raises(SeddError, match="no train split"):
        data.load_texts(DataConfig(name="lambada"), "train")


# --- detokenizers ------------------------------------------------------------------------------


def test_wikitext_detokenizer():
    raw = (
        ' = = Early life = = \n The 1 @,@ 000 @-@ year old ( born 1990 ) said " yes " ; it is 3 @.@ 5 m . \n'
    )
    assert data.detokenize("wikitext2", raw) == (
        ' == Early life ==\nThe 1,000-year old (born 1990) said "yes"; it is 3.5 m.\n'
    )
    assert data.wikitext_detokenize("cost N dollars , then") == "cost 1 dollars, then"


def test_ptb_detokenizer():
    raw = "the company 's chief said it wo n't pay $ N or N \\/ N of <unk> shares"
    assert data.detokenize("ptb", raw) == "the company's chief said it won't pay $1 or 1 / 1 of ? shares"


def test_lm1b_detokenizer():
    raw = 'He said " it is fine " , see http : / / example.com ( today ) for $ 5 .'
    assert data.detokenize("lm1b", raw) == 'He said "it is fine", see http://example.com (today) for $5.'


def test_lambada_detokenizer():
    assert data.detokenize("lambada", " \u201cHi,\u201d she said ") == '\n"Hi," she said'
    assert data.detokenize("owt", " unchanged ") == " unchanged "
