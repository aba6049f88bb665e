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
import logging
import os
import re
import shlex
import sys
import types
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aligner.core.io import AlignerError
from aligner.core.setting_checks import Setting, check_sources, check_values

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
    if value is None:
        return "none"
    if value == "":
        return "''"
    if isinstance(value, (list, tuple)):
        return (sep or " ").join(str(v) for v in value) if value else "none"
    return str(value)


#: one wording for a flag many stages declare
FLAG_HELP = {"--no_progress": "turn progress bars off"}


def _states_default(help_text: str) -> bool:
    """Whether a help text gives its default itself ("(default: none = ...)"); "torch's default 0.01" does not."""
    return re.search(r"\bdefault:", help_text, flags=re.IGNORECASE) is not None


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
                # a --no_x flag: its help says what giving it does; a "(default: on)" would read backwards
                kwargs.update(action="store_false", default=True)
                help_text = FLAG_HELP.get(option_strings(f)[0], help_text)
            else:
                kwargs.update(action="store_true", default=bool(default) if default is not _MISSING else False)
                help_text += "" if _states_default(help_text) else " (default: off)"
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
                if not _states_default(help_text):
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
    if "verbose" not in seen:
        parser.add_argument("-v", "--verbose", action="store_true", dest="verbose",
                            help="also show the INFO lines of the libraries underneath (accelerate, datasets, the hub "
                                 "client, transformers); without it the console holds the project's own lines")
    return parser


def parse_config(classes, argv: Sequence[str] | None = None, description: str | None = None,
                 defaults: dict | None = None):
    """Parse ``argv`` into one instance of each class (a single class gives a single instance).

    ``defaults`` overrides field defaults for this script (what the script documents as its defaults).
    A ``ValueError`` from the checks every script shares (``aligner.core.setting_checks``: counts and paths; under
    ``run_cli`` the models too) or from a dataclass's ``__post_init__`` ends the run with one ``error:`` line
    naming the flag, exit status 1.  The parsed settings are remembered for ``run_cli`` (which flag held a path
    in an error; the command that continues a run)."""
    single = isinstance(classes, type)
    classes = [classes] if single else list(classes)
    parser = build_parser(classes, description, defaults)
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = parser.parse_args(argv)
    quiet_libraries(bool(getattr(ns, "verbose", False)))
    values, settings = [], []
    for cls in classes:
        v = {f.name: getattr(ns, f.name) for f in cli_fields(cls)}
        for f in dataclasses.fields(cls):
            if not f.metadata.get("cli", True) and defaults and f.name in defaults:
                v[f.name] = defaults[f.name]
        values.append(v)
        settings.append(_settings(cls, v, defaults or {}))
    out = []
    try:
        for v, s in zip(values, settings):  # the cheap checks of every config first, then the models
            check_values(s, v)
        for s in settings if _SESSION.running else ():
            check_sources(s)
        for cls, v in zip(classes, values):
            out.append(cls(**v))
    except ValueError as exc:
        _usage_error(str(exc))
    _SESSION.update(configs=out, argv=argv)
    return out[0] if single else tuple(out)


def _settings(cls, values: dict, defaults: dict) -> list[Setting]:
    hints = typing.get_type_hints(cls)
    return [Setting(option_strings(f)[0], f.name, *_base_type(hints[f.name]), values.get(f.name),
                    _field_default(f, defaults)) for f in cli_fields(cls)]


def _usage_error(message: str):
    if os.environ.get("ALIGNER_DEBUG"):
        raise ValueError(message)
    print(f"error: {message}", file=sys.stderr)
    raise ErrorExit(f"error: {message}")


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
    """Exit status 1 (130 after an interrupt) after the one-line message (already printed to stderr); ``str()``
    is that line."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _Session:
    """What ``parse_config`` parsed in this run (the settings, the argv) and what the run has saved so far
    (``saved``): ``run_cli`` names the flag behind a path in an error and, after Ctrl-C, the command that
    continues."""

    def __init__(self):
        self.reset()

    def reset(self, running: bool = False) -> None:
        self.running = running  # under run_cli: a real run, whose models are checked before anything loads
        self.configs: list = []
        self.argv: list[str] | None = None
        self.saved: str | None = None
        self.continue_argv: list[str] | None = None

    def update(self, **kw) -> None:
        for k, v in kw.items():
            setattr(self, k, v)

    def fields(self) -> list[tuple[str, str, Any]]:
        """(flag, field name, value) of every command-line setting parsed."""
        return [(option_strings(f)[0], f.name, getattr(cfg, f.name)) for cfg in self.configs
                for f in cli_fields(type(cfg))]


_SESSION = _Session()


def note_saved(what: str, continue_argv: Sequence[str] | None = None) -> None:
    """Tell ``run_cli`` what an interrupted run keeps ("stages 1-6 done (manifest outputs/demo/manifest.json)")
    and, when continuing needs other flags than the ones given plus ``--resume``, the arguments that continue."""
    _SESSION.update(saved=what, continue_argv=None if continue_argv is None else list(continue_argv))


_QUIET_LOGGERS = ("accelerate", "datasets", "huggingface_hub", "sentence_transformers", "peft", "urllib3", "httpx",
                  "filelock", "torch.distributed")


def quiet_libraries(verbose: bool = False) -> None:
    """The libraries' INFO lines (accelerate prints ~40 on a resume) and their known, harmless deprecation warnings
    stay off the console unless ``-v``."""
    level = logging.INFO if verbose else logging.WARNING
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(level)
    if verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info")
        return
    # peft reads transformers' deprecated alias on every adapter it wraps; nothing to act on here
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def _flag_for(err: BaseException) -> str | None:
    """The flag whose value is the path or name the error is about (``--model_path`` for 'models/typo'): the error's
    own ``path`` (``DataError``, ``ModelLoadError``) or ``filename`` (``OSError``), never a guess from its text (an
    error may quote several paths)."""
    named = [str(n) for n in (getattr(err, a, None) for a in ("path", "filename")) if n]
    settings = [(flag, str(v)) for flag, _, value in _SESSION.fields() if value not in (None, "", True, False)
                for v in (value if isinstance(value, (list, tuple)) else [value])]
    for flag, value in settings:
        if value in named or any(Path(n) == Path(value) for n in named):
            return flag
    for flag, value in settings:  # a file written under a folder setting (--output_dir out: out/x.json)
        if value not in (".", "") and any(Path(value) in Path(n).parents for n in named):
            return flag
    return None


def error_line(err: BaseException) -> str:
    """``err`` as one line: an ``OSError`` as its path and reason, with the flag that held the path when one did
    (unless the message names a flag itself)."""
    if isinstance(err, OSError) and not isinstance(err, AlignerError) and err.filename is not None:
        reason = {FileExistsError: "a file is where a folder must be made",
                  NotADirectoryError: "a file is where a folder must be",
                  IsADirectoryError: "a folder is where a file must be"}.get(type(err), err.strerror or str(err))
        message = f"'{err.filename}': {reason}"
    else:
        message = " ".join(str(err).split()) if isinstance(err, OSError) else str(err)
    flag = None if re.search(r"(^|\W)--\w", message) else _flag_for(err)  # a message naming a flag is left
    if flag:
        message = f"{flag}: {message}"
    return message


def continue_command() -> str | None:
    """The command that continues this run: the same arguments with ``--resume`` (and without the flags that
    start afresh) where the script has ``--resume``; the same command where a rerun skips what is done."""
    if _SESSION.argv is None:
        return None
    argv = list(_SESSION.continue_argv if _SESSION.continue_argv is not None else _SESSION.argv)
    names = {name: flag for flag, name, _ in _SESSION.fields()}
    if "resume" in names and _SESSION.continue_argv is None:
        fresh = {s for cfg in _SESSION.configs for f in cli_fields(type(cfg)) if f.name.startswith("overwrite")
                 or f.name == "force" for s in option_strings(f)}
        argv = [a for a in argv if a not in fresh]
        if names["resume"] not in argv:
            argv.append(names["resume"])
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0].endswith(".py") else sys.argv[0]
    return shlex.join(["python", script, *argv])


def interrupted_line() -> str:
    saved = _SESSION.saved
    names = {name: value for _, name, value in _SESSION.fields()}
    if saved is None and names.get("output_dir"):
        saved = f"what was written to {names['output_dir']} is kept"
    command = continue_command()
    parts = ["interrupted", saved or "nothing was saved"]
    if command:
        parts.append(("continue with: " if "resume" in names or _SESSION.saved else "run again: ") + command)
    return "; ".join(parts)


def run_cli(main: Callable[..., Any], *args, **kwargs) -> Any:
    """``if __name__ == "__main__": run_cli(main)``: a bad input (a malformed line, a missing file or model, a
    wrong setting, an unreachable hub, a file where a folder goes) ends the run with one ``error: ...`` line on
    stderr, naming the flag that held the path, and exit status 1 instead of a traceback (``ErrorExit``, a
    ``SystemExit`` whose text is that line); Ctrl-C ends it with one line saying what was kept and the command
    that continues, exit status 130.  ``ALIGNER_DEBUG=1`` shows the traceback.  The torch settings of a
    reproducible run (``aligner.core.determinism``) are applied first."""
    from aligner.core.determinism import apply_from_env

    _SESSION.reset(running=True)
    apply_from_env()
    try:
        return main(*args, **kwargs)
    except KeyboardInterrupt:
        if os.environ.get("ALIGNER_DEBUG"):
            raise
        line = interrupted_line()
        print(f"\n{line}", file=sys.stderr)
        raise ErrorExit(line, code=130) from None
    except (AlignerError, FileNotFoundError, ValueError, FileExistsError, NotADirectoryError,
            IsADirectoryError) as err:
        if os.environ.get("ALIGNER_DEBUG"):
            raise
        line = f"error: {error_line(err)}"
        print(line, file=sys.stderr)
        raise ErrorExit(line) from None
    finally:
        _SESSION.running = False
