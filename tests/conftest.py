"""Test isolation: offline hub, the GPT-2 BPE files when they can be had, a temporary home for caches.

The reference facts the tests check live in the repository (`tests/fixtures/reference/`), so the
suite runs in a bare clone; only the GPT-2 BPE files come from outside (`TIKTOKEN_CACHE_DIR`, or
`../shared/tiktoken-cache` beside the clone), and the tests that need them skip when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TIKTOKEN_CACHE = SHARED / "tiktoken-cache"
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
if TIKTOKEN_CACHE.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Datasets, hub and sedd caches go to a per-session temp folder, never the user's home."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "hf" / "datasets"))
    monkeypatch.setenv("SEDD_CACHE_DIR", str(cache / "sedd"))


@pytest.fixture(scope="module")
def names_file(tmp_path_factory) -> Path:
    """A local text file of the test names (`helpers.NAMES`), one a line: training data with no hub."""
    from .helpers import NAMES

    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(NAMES) + "\n")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads and lose a lot to them on a busy 2-core
    machine: run the module with one torch thread, then restore the count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gpt2_available() -> bool:
    try:
        from sedd_cli.tokenizers import get_tokenizer

        get_tokenizer("gpt2").encode("hi")
        return True
    except Exception:
        return False


requires_gpt2 = pytest.mark.skipif(
    not gpt2_available(), reason="GPT-2 BPE files unavailable (no ../shared/tiktoken-cache, no network)"
)
