"""Command lines generated from config dataclasses, and the one error-exit wrapper of every script.

A setting is declared once, as a dataclass field (TRL's style)::

    beta: float = field(default=0.3, metadata={"help": "DPO temperature beta", "group": "DPOP loss"})

and every script's parser is generated from the dataclasses it exposes (``parse_config``).  The pipeline
builds stage commands from the same fields (``to_argv``), so a renamed flag cannot drift between the script,
the driver and the docs.  Metadata keys:

``help``     what the setting does (required); "(default: X)" is appended unless the text states its default
``aliases``  more option strings for the same setting (the study's ``--model-path`` spellings)
``flag``     the option string when it is not ``--<name>``; for a bool that defaults to True, a ``--no_x``
             flag that turns it off
``choices``, ``nargs``, ``metavar``, ``group`` (an argparse group title)
``sep``      a list given as one string joined by ``sep`` ("q_proj,v_proj")
``action``   ``extend`` for a list flag that may be repeated (``--query a --query b c`` gives all three)
``append``   a list given by repeating the flag, one item each (``--train_log a=x --train_log b=y``)
``parse``    a function turning the command-line string into the value
``boolean_optional``  a bool given as ``--x`` / ``--no-x`` (argparse.BooleanOptionalAction)
``cli``      False: not on the command line

Settings several stages share are declared once in a base dataclass (``aligner.lm.settings``) that the stage
configs extend; a stage with another default re-declares the field with ``override(Base, name, default)``,
which keeps the base's help text and spellings.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from aligner.core.io import AlignerError

_MISSING = dataclasses.MISSING


# ---------------------------------------------------------------------------------------------
# dataclass -> argparse
# ---------------------------------------------------------------------------------------------

def override(cls, name: str, default: Any, **metadata) -> Any:
    """A field of ``cls`` with another default (and optionally other metadata), for a subclass; the help text and
    flag spellings stay those declared in ``cls``."""
    base = {f.name: f for f in dataclasses.fields(cls)}[name]
    meta = {**base.metadata, **metadata}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _base_type(tp) -> tuple[Any, bool]:
    """(element type, is_list) of an annotation such as ``int | None`` or ``Sequence[str]``."""
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:
        return _base_type(args[0])
    if origin in (list, tuple, Sequence):
        return (args[0] if args else str), True
    return tp, False


def _field_default(f: dataclasses.Field, overrides: dict) -> Any:
    if f.name in overrides:
        return overrides[f.name]
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def _shown(value: Any, sep: str | None) -> str:
    if value == "":
        return "''"
    if isinstance(value, (list, tuple)):
        return (sep or " ").join(str(v) for v in value) if value else "none"
    return str(value)


def option_strings(f: dataclasses.Field) -> list[str]:
    meta = f.metadata
    return [meta.get("flag") or f"--{f.name}", *meta.get("aliases", ())]


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def add_dataclass_args(parser: argparse.ArgumentParser, cls, defaults: dict | None = None) -> None:
    """Add one option per command-line field of ``cls`` to ``parser``."""
    defaults = defaults or {}
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in cli_fields(cls):
        meta = f.metadata
        if "help" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text")
        target = parser
        if meta.get("group"):
            target = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        elem, is_list = _base_type(hints[f.name])
        default = _field_default(f, defaults)
        kwargs: dict[str, Any] = {"dest": f.name}
        help_text = meta["help"]
        if elem is bool and not is_list:
            if meta.get("boolean_optional"):
                kwargs.update(action=argparse.BooleanOptionalAction, default=default)
                help_text += f" (default: {str(default).lower()})"
            elif default is True:
                kwargs.update(action="store_false", default=True)
                help_text += " (default: on)" if "default" not in help_text.lower() else ""
            else:
                kwargs.update(action="store_true", default=bool(default) if default is not _MISSING else False)
                help_text += " (default: off)" if "default" not in help_text.lower() else ""
        else:
            convert = meta.get("parse")
            if convert is None and elem in (int, float):
                convert = elem
            if is_list and meta.get("sep"):
                sep = meta["sep"]
                item = convert or str
                kwargs["type"] = lambda s, _sep=sep, _item=item: [_item(x.strip()) for x in s.split(_sep) if x.strip()]
            elif is_list and meta.get("append"):
                kwargs["action"] = "append"
                if convert:
                    kwargs["type"] = convert
            elif is_list:
                kwargs["nargs"] = meta.get("nargs", "*")
                if meta.get("action"):  # "extend": a repeated flag adds its items to the earlier ones
                    kwargs["action"] = meta["action"]
                if convert:
                    kwargs["type"] = convert
            else:
                if convert:
                    kwargs["type"] = convert
                if meta.get("nargs"):
                    kwargs["nargs"] = meta["nargs"]
            if default is _MISSING:
                kwargs["required"] = True
                help_text += " (required)" if "required" not in help_text.lower() else ""
            else:
                kwargs["default"] = default
                if "default" not in help_text.lower():
                    help_text += f" (default: {_shown(default, meta.get('sep'))})"
            for key in ("choices", "metavar"):
                if key in meta:
                    kwargs[key] = meta[key]
        kwargs["help"] = help_text.replace("%", "%%")
        target.add_argument(*option_strings(f), **kwargs)


def build_parser(classes: Sequence[type], description: str | None = None,
                 defaults: dict | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    seen: set[str] = set()
    for cls in classes:
        clash = {f.name for f in cli_fields(cls)} & seen
        if clash:
            raise TypeError(f"{cls.__name__} repeats settings {sorted(clash)} of another config")
        seen |= {f.name for f in cli_fields(cls)}
        add_dataclass_args(parser, cls, defaults)
    return parser


def parse_config(classes, argv: Sequence[str] | None = None, description: str | None = None,
                 defaults: dict | None = None):
    """Parse ``argv`` into one instance of each class (a single class gives a single instance).

    ``defaults`` overrides field defaults for this script (what the script documents as its defaults).
    A ``ValueError`` from a dataclass's ``__post_init__`` is reported as a usage error."""
    single = isinstance(classes, type)
    classes = [classes] if single else list(classes)
    parser = build_parser(classes, description, defaults)
    ns = parser.parse_args(argv)
    out = []
    for cls in classes:
        values = {f.name: getattr(ns, f.name) for f in cli_fields(cls)}
        for f in dataclasses.fields(cls):
            if not f.metadata.get("cli", True) and defaults and f.name in defaults:
                values[f.name] = defaults[f.name]
        try:
            out.append(cls(**values))
        except ValueError as exc:
            parser.error(str(exc))
    return out[0] if single else tuple(out)


def to_argv(classes, **values) -> list[str]:
    """The command-line tokens that set ``values`` (field name -> value) of ``classes``; a name that is not a
    command-line field of one of them is an error, so a renamed setting breaks here, not at run time."""
    classes = [classes] if isinstance(classes, type) else list(classes)
    fields: dict[str, tuple[dataclasses.Field, Any]] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in cli_fields(cls):
            fields[f.name] = (f, hints[f.name])
    argv: list[str] = []
    for name, value in values.items():
        if name not in fields:
            raise KeyError(f"{name!r} is not a command-line setting of {[c.__name__ for c in classes]}")
        f, hint = fields[name]
        elem, is_list = _base_type(hint)
        flag = option_strings(f)[0]
        if value is None:
            continue
        if elem is bool and not is_list:
            if f.metadata.get("boolean_optional"):
                argv.append(flag if value else "--no-" + flag.lstrip("-"))
            elif f.metadata.get("flag", "").startswith("--no"):
                if not value:
                    argv.append(flag)
            elif value:
                argv.append(flag)
            continue
        if is_list and f.metadata.get("sep"):
            argv += [flag, f.metadata["sep"].join(str(v) for v in value)]
        elif is_list and f.metadata.get("append"):
            for v in value:
                argv += [flag, str(v)]
        elif is_list or (f.metadata.get("nargs") and isinstance(value, (list, tuple))):
            argv += [flag, *[str(v) for v in value]]
        else:
            argv += [flag, str(value)]
    return argv


# ---------------------------------------------------------------------------------------------
# running a script
# ---------------------------------------------------------------------------------------------

class ErrorExit(SystemExit):
    """Exit status 1 after the one-line error message (already printed to stderr); ``str()`` is that line."""

    def __init__(self, message: str):
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


def run_cli(main: Callable[..., Any], *args, **kwargs) -> Any:
    """``if __name__ == "__main__": run_cli(main)``: a bad input (a malformed line, a missing file or model, a
    wrong setting, an unreachable hub) ends the run with one ``error: ...`` line on stderr and exit status 1
    instead of a traceback (``ErrorExit``, a ``SystemExit`` whose text is that line).  ``ALIGNER_DEBUG=1`` shows
    the traceback."""
    try:
        return main(*args, **kwargs)
    except (AlignerError, FileNotFoundError, ValueError) as err:
        if os.environ.get("ALIGNER_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        raise ErrorExit(f"error: {err}") from None
