"""Is a model or dataset name loadable here, found out without loading it: a local folder, a download in
``models/``, the Hugging Face cache, or a hub that answers.

The hub clients retry an unreachable host for a minute or more (about 30 tries before a missing embedding model is
reported).  ``hub_reachable`` asks once per process, with a short timeout; when nothing answers, the process goes
offline (``go_offline``), so every later hub call fails at once, and names in the cache load from it.

``HF_HUB_OFFLINE=1`` (or ``ALIGNER_OFFLINE=1``) turns every download off, not only the hub's.
"""

from __future__ import annotations

import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

logger = logging.getLogger(__name__)

TRUTHY = ("1", "true", "yes", "on")
REACH_TIMEOUT = 3.0
_reachable: bool | None = None  # one check per process


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in TRUTHY for v in ("HF_HUB_OFFLINE", "ALIGNER_OFFLINE"))


def hub_silent() -> bool:
    """Whether this process went offline because the hub did not answer (not by the user's choice)."""
    return _reachable is False


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def looks_local(path: str) -> bool:
    """Whether a model argument names a folder rather than a hub id ("name" or "org/name"): ./x, /abs, ~/x,
    models/x, outputs/x, a/b/c, x/."""
    return path.startswith((".", "/", "~", "models/", "outputs/")) or path.count("/") > 1 or path.endswith("/")


def hub_reachable(timeout: float = REACH_TIMEOUT) -> bool:
    """One HEAD request to the hub, at most ``timeout`` seconds, once per process (any HTTP answer counts: the hub
    is there).  Offline mode (``HF_HUB_OFFLINE``) answers False without trying."""
    global _reachable
    if offline():
        return False
    if _reachable is None:
        request = urllib.request.Request(hub_endpoint() + "/api/whoami-v2", method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
            _reachable = True
        except urllib.error.HTTPError:
            _reachable = True
        except (urllib.error.URLError, OSError, ValueError):
            _reachable = False
        if not _reachable:
            logger.warning("the Hugging Face hub (%s) does not answer: working offline, from local folders and the "
                           "hub cache only", hub_endpoint())
            go_offline()
    return _reachable


def go_offline() -> None:
    """Offline mode for the hub clients of this process (huggingface_hub, transformers, datasets), whether or not
    they are imported yet: a name missing from the cache then fails at once instead of after a storm of retries."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    for module, attr in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE"),
                         ("datasets.config", "HF_DATASETS_OFFLINE")):
        if module in sys.modules:
            setattr(sys.modules[module], attr, True)


def hub_cache_dirs() -> list[Path]:
    """The hub cache and the datasets cache (where ``from_pretrained`` and ``load_dataset`` look offline)."""
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or str(home / "hub")
    data = os.environ.get("HF_DATASETS_CACHE") or str(home / "datasets")
    return [Path(hub).expanduser(), Path(data).expanduser()]


def in_hub_cache(repo_id: str, repo_type: str = "model") -> bool:
    """Whether a download of ``repo_id`` sits in the hub cache (a sentence-transformers short name such as
    ``all-mpnet-base-v2`` is looked up as ``sentence-transformers/all-mpnet-base-v2`` too)."""
    hub, data = hub_cache_dirs()
    names = [repo_id] + ([f"sentence-transformers/{repo_id}"] if "/" not in repo_id and repo_type == "model" else [])
    for name in names:
        snapshots = hub / f"{repo_type}s--{name.replace('/', '--')}" / "snapshots"
        if snapshots.is_dir() and any(snapshots.iterdir()):
            return True
        if repo_type == "dataset" and any(data.glob(name.replace("/", "___") + "*")):
            return True
    return False


def downloaded_copy(repo_id: str) -> Path | None:
    """``models/<name>`` for a hub id ``org/name`` when scripts/download_*.py put it there (it is used from there, so
    an offline GPU machine needs no extra flags); None otherwise."""
    from aligner.core.paths import REPO_ROOT

    if looks_local(repo_id):
        return None
    local = REPO_ROOT / "models" / repo_id.rstrip("/").split("/")[-1]
    return local if (local / "config.json").is_file() or (local / "modules.json").is_file() else None


def unavailable_reason(name: str, repo_type: str = "model") -> str | None:
    """Why ``name`` (a local folder or a hub id) cannot be loaded here, found without loading it; None when it can
    (a folder that exists, a hub id in the cache, or a hub that answers)."""
    if Path(name).expanduser().exists() or downloaded_copy(name) is not None:
        return None
    if looks_local(name):
        return f"folder '{name}' does not exist"
    if in_hub_cache(name, repo_type):
        if not offline():
            hub_reachable()  # a cached name loads from the cache: offline mode when the hub does not answer
        return None
    if offline():
        return (f"'{name}' is neither a local folder nor in the Hugging Face cache, and offline mode is on "
                "(HF_HUB_OFFLINE)")
    if not hub_reachable():
        return (f"'{name}' is neither a local folder nor in the Hugging Face cache, and the hub ({hub_endpoint()}) "
                "does not answer")
    return None
