"""Every stage script's --help explains each flag and states its default (HF example-script style)."""

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    str(p.relative_to(REPO))
    for pattern in ("evaluation/*.py", "first_improvement/**/*.py", "further_improvement/**/*.py", "scripts/*.py",
                    "old_training/*.py", "benchmarks/*.py")
    for p in REPO.glob(pattern)
)


def _parser_of(script: str) -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location("help_" + Path(script).stem, REPO / script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert hasattr(mod, "parse_args") and hasattr(mod, "main"), f"{script}: parse_args()/main() expected"
    captured = {}

    def grab(self, args=None, namespace=None):
        captured["parser"] = self
        raise SystemExit(0)

    orig = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = grab
    try:
        mod.parse_args([])
    except SystemExit:
        pass
    finally:
        argparse.ArgumentParser.parse_args = orig
    return captured["parser"]


def test_there_are_stage_scripts():
    assert len(SCRIPTS) > 30


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_help_with_its_default(script):
    parser = _parser_of(script)
    assert parser.description, f"{script}: no description"
    flags = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.help, f"{script}: {name} has no help"
        explained = re.sub(r"\(default:[^)]*\)", "", action.help)
        assert len(re.findall(r"[A-Za-z]", explained)) >= 3, f"{script}: {name} help states only its default"
        if not action.required and not isinstance(action, flags):
            assert "default" in action.help.lower(), f"{script}: {name} does not state its default"
