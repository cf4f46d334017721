"""Is the Hugging Face hub reachable? The offline switches, and one short probe (no torch).

The hub libraries retry a dead connection for tens of seconds and print a line per retry. Before
any download `sedd` asks once, with a short timeout, whether the endpoint answers at all, and
gives its one-line error at once when it does not.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

__all__ = ["offline_flag", "endpoint", "reachable", "PROBE_TIMEOUT_S"]

_OFFLINE_VALUES = ("1", "on", "yes", "true")
PROBE_TIMEOUT_S = 3.0  # one probe per process; a live hub answers well within it
_probed: dict[str, bool] = {}


def offline_flag(names: tuple[str, ...] = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")) -> bool:
    """True when the user switched the hub off through one of the variables `names` (datasets
    honour both; hub models only ``HF_HUB_OFFLINE``)."""
    return any(os.environ.get(k, "").strip().lower() in _OFFLINE_VALUES for k in names)


def endpoint() -> str:
    """The hub's base URL (``HF_ENDPOINT`` when set, as the hub libraries read it)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _answers(url: str, timeout: float) -> bool:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:  # any HTTP status means something answered
        return True
    except (OSError, ValueError):  # DNS failure, refused, timed out, unreachable, bad URL
        return False


def reachable(timeout: float | None = None) -> bool:
    """Whether the hub endpoint answers an HTTP request within `timeout` seconds (default
    `PROBE_TIMEOUT_S`, read at call time; cached per process and endpoint). The probe runs in a
    thread joined with the same timeout, so a name lookup that hangs (which `urlopen`'s timeout
    does not cover) cannot stall the caller."""
    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    url = endpoint()
    if url in _probed:
        return _probed[url]
    result: list[bool] = []
    worker = threading.Thread(target=lambda: result.append(_answers(url, timeout)), daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    _probed[url] = bool(result and result[0])
    return _probed[url]
