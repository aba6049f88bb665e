"""The checks every script's settings get when its command line is parsed (``aligner.core.cli.parse_config``),
before anything is read or loaded; a ``ValueError`` names the flag and becomes one ``error:`` line.

* Count limits: ``--limit`` and every ``--*_limit`` are N >= 0 or -1; ``--limit 0`` means all rows, as -1 does
  (the study's ``if limit > 0``), and is stored as -1.  ``--limit -5`` is a mistake, not "all".
* Paths: a ``--*_dir`` is not an existing file, and no path setting has an existing file among the folders above
  it (where a folder would have to be made).
* Models: every model or adapter the command line names is loadable: a folder that exists, or a hub id in the
  cache or on a hub that answers (one quick check, then offline mode: ``aligner.core.hub``).  Defaults are left
  to the loader, which fails as fast (a mode may not use them); an empty ``--data_path`` (a hub dataset) makes the
  same one check decide whether the hub is tried at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

NO_MODEL = ("", "none", "base", "auto")


@dataclass(frozen=True)
class Setting:
    flag: str               # the option string (--model_path)
    name: str               # the dataclass field
    elem: Any               # the element type (str for list[str])
    is_list: bool
    value: Any
    default: Any


def is_count_limit(name: str) -> bool:
    """``--limit`` and the other ``--*_limit`` counts (``--eval_limit``, ``--hard_limit``, ...)."""
    return name == "limit" or name.endswith("_limit")


def is_model_field(name: str) -> bool:
    """A setting naming a model or adapter (a folder or a hub id); spaCy's models are pip packages, not these."""
    return (name in ("model_path", "lora_path", "adapter_path", "load_adapter_path")
            or (name.endswith(("_model_path", "_model")) and not name.startswith("spacy")))


def _path_like(name: str) -> bool:
    return any(part in name for part in ("dir", "path", "file", "plot", "output"))


def _items(s: Setting) -> list:
    if s.value is None:
        return []
    return list(s.value) if s.is_list and isinstance(s.value, (list, tuple)) else [s.value]


def check_values(settings: list[Setting], values: dict) -> None:
    """The counts and paths of one config's settings; ``values`` (field -> value) gets the normalised ones."""
    for s in settings:
        if is_count_limit(s.name) and s.elem is int and not s.is_list and isinstance(s.value, int):
            values[s.name] = check_limit(s.flag, s.name, s.value)
        if s.elem is str and _path_like(s.name):
            for item in _items(s):
                check_path(s.flag, s.name, str(item))


def check_sources(settings: list[Setting]) -> None:
    """The models the settings name (what a run checks before it loads anything; not when only parsing, as the
    docs' tests do)."""
    for s in settings:
        if s.elem is str and is_model_field(s.name) and s.value != s.default:
            for item in _items(s):
                check_model(s.flag, str(item))
        if s.name == "data_path" and not s.value:
            from aligner.core import availability as hub

            if not hub.offline():
                hub.hub_reachable()


def check_limit(flag: str, name: str, value: int) -> int:
    if value < -1:
        raise ValueError(f"{flag} {value}: give a number of rows N >= 1, or 0 or -1 for all of them"
                         if name == "limit" else f"{flag} {value}: give a count N >= 0, or -1 for no limit")
    return -1 if name == "limit" and value == 0 else value


def file_in_the_way(path: Path) -> Path | None:
    """The existing file among the folders above ``path`` (``out.json/x``: ``out.json``); None when there is none."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_path(flag: str, name: str, value: str) -> None:
    if not value.strip() or "://" in value:
        return
    path = Path(value).expanduser()
    if name.endswith("_dir") and path.is_file():
        raise ValueError(f"{flag} '{value}' is a file; it names a folder: pass another path, or move the file")
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise ValueError(f"{flag} '{value}': '{blocker}' is a file, so no folder can be made there; pass another "
                         "path")


def check_model(flag: str, value: str) -> None:
    if value.strip().lower() in NO_MODEL:
        return
    from aligner.core import availability as hub

    reason = hub.unavailable_reason(value)
    if reason is not None:
        raise ValueError(f"{flag}: {reason}; pass a local folder (or download it where the hub is reachable, "
                         "scripts/download_model.py, and copy it over)")
