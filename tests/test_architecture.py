"""The layout's rules, checked on the code: imports point down the layers, scripts carry no path hacks,
modules and functions stay small enough to read."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# lower number = lower layer; a module may import its own layer's modules and any lower layer
LAYERS = {"aligner.core": 0, "aligner.prompts": 1, "aligner.testing": 1, "aligner.lm": 2, "aligner.data": 3,
          "aligner.train": 4, "aligner.eval": 4, "aligner.report": 5, "aligner.pipeline": 6}
SCRIPT_DIRS = ("evaluation", "first_improvement", "further_improvement", "old_training", "scripts", "benchmarks")


def _layer(module: str) -> str | None:
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def _library_files():
    return sorted((REPO / "aligner").rglob("*.py"))


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_imports_point_down_the_layers():
    wrong = []
    for f in _library_files():
        me = _layer(".".join(f.relative_to(REPO).with_suffix("").parts))
        for mod in _imports(f):
            other = _layer(mod)
            if me and other and other != me and LAYERS[other] >= LAYERS[me]:
                wrong.append(f"{f.relative_to(REPO)} imports {mod}")
    assert not wrong, "\n".join(wrong)


def test_scripts_import_the_package_without_path_edits():
    offenders = [str(p.relative_to(REPO)) for d in SCRIPT_DIRS for p in (REPO / d).rglob("*.py")
                 if "sys.path.insert" in p.read_text(encoding="utf-8")]
    offenders += [str(p.relative_to(REPO)) for p in _library_files() if "sys.path.insert" in p.read_text()]
    assert not offenders


def test_modules_and_functions_stay_small():
    too_big = []
    for f in _library_files():
        src = f.read_text(encoding="utf-8")
        if len(src.splitlines()) > 500:
            too_big.append(f"{f.relative_to(REPO)}: {len(src.splitlines())} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 65:
                too_big.append(f"{f.relative_to(REPO)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1}")
    assert not too_big, "\n".join(too_big)
