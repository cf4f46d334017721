"""Models on the Hugging Face hub: hub ids, the hub cache, and downloading under the offline rules.

A hub id ``owner/name`` (e.g. ``louaaron/sedd-small``) names a repository in the published layout
(`published`), or in RADD's (`radd`, e.g. ``JingyangOu/radd-lambda-dce``): its ``config.json``
and weights are downloaded into the Hugging Face cache with huggingface_hub, or found there when
offline. With ``HF_HUB_OFFLINE`` set, or a hub that does not
answer the one short probe of core `sedd_cli.hub`, only the cache is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .. import hub as hub_probe
from ..errors import SeddError
from .formats import Located
from .published import HF_CONFIG_FILE, HF_WEIGHT_FILES, locate_published
from .radd import locate_radd
from .weights import load_weights

__all__ = ["is_hub_id", "hub_cache_dir", "hub_files", "locate_hub"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_hub_id(source: str | Path) -> bool:
    """True for ``owner/name`` strings that are not a local path: neither the path itself nor
    its first part exists (so a mistyped ``runs/nmae`` is reported as a missing local path)."""
    text = str(source)
    return bool(_HUB_ID.match(text)) and not Path(text).exists() and not Path(text.split("/")[0]).exists()


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (not at huggingface_hub import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _from_cache(hub: Any, repo_id: str, cache: Path) -> tuple[Path, Path] | None:
    """(config.json, weights) of `repo_id` when both are in the cache, else None."""

    def cached(name: str) -> Path | None:
        found = hub.try_to_load_from_cache(repo_id, name, cache_dir=cache)
        return Path(found) if isinstance(found, str) else None

    config = cached(HF_CONFIG_FILE)
    weight = next((p for p in map(cached, HF_WEIGHT_FILES) if p is not None), None)
    return (config, weight) if config is not None and weight is not None else None


def _download(hub: Any, repo_id: str, cache: Path) -> tuple[Path, Path]:
    """Download config.json and the first weight file the repository has."""
    config = Path(hub.hf_hub_download(repo_id, HF_CONFIG_FILE, cache_dir=cache))
    error: Exception | None = None
    for name in HF_WEIGHT_FILES:
        try:
            return config, Path(hub.hf_hub_download(repo_id, name, cache_dir=cache))
        except Exception as exc:  # not in the repo (EntryNotFound): try the next file
            error = error or exc
    raise error  # type: ignore[misc]


def hub_files(repo_id: str) -> tuple[Path, Path]:
    """(config.json, weights) of `repo_id`: downloaded when online, from the cache otherwise."""
    try:
        import huggingface_hub as hub
    except ImportError:  # pragma: no cover - a declared dependency
        raise SeddError("loading hub models needs huggingface_hub: pip install huggingface_hub") from None
    cache = hub_cache_dir()
    how = (
        f"download it where there is network (`hf download {repo_id} --local-dir DIR`) and pass the "
        "folder, or convert it there with `sedd convert`"
    )
    if hub_probe.offline_flag(("HF_HUB_OFFLINE",)):
        why = "HF_HUB_OFFLINE is set: unset it to download, or"
    elif not hub_probe.reachable():  # one short probe instead of the hub library's retries
        why = f"the hub ({hub_probe.endpoint()}) does not answer:"
    else:
        try:
            return _download(hub, repo_id, cache)
        except Exception as exc:
            found = _from_cache(hub, repo_id, cache)
            if found is not None:
                return found
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SeddError(
                f"could not download {repo_id!r} from the Hugging Face hub ({first[:160]}): {how}"
            ) from None
    found = _from_cache(hub, repo_id, cache)
    if found is None:
        raise SeddError(f"{repo_id!r} is not in the Hugging Face cache ({cache}) and {why} {how}")
    return found


def locate_hub(repo_id: str, weights: str) -> Located:
    """The published (or RADD) folder of `repo_id` in the hub cache (downloaded first when online)."""
    config_path, weight_path = hub_files(repo_id)
    snapshot = config_path.parent
    if weight_path.parent != snapshot:
        raise SeddError(
            f"hub cache for {repo_id!r} is inconsistent: config and weights in different snapshots"
        )
    origin = {"hub_id": repo_id, "revision": snapshot.name, "file": weight_path.name}
    found = locate_radd(snapshot, weights, origin) or locate_published(snapshot, weights, origin)
    assert found is not None
    found.format = "hub"
    # only the weight file we resolved, even if another one sits in the snapshot
    if found.origin["file"] != weight_path.name:
        found.state = load_weights(weight_path)
        found.origin.update(path=str(weight_path), file=weight_path.name)
    return found
