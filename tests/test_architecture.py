"""The layout's rules, checked on the code: imports point down the layers, scripts carry no path hacks,
modules and functions stay small enough to read."""

import ast
import re
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


def _module_name(path: Path) -> tuple[str, bool]:
    """The dotted module name of a file under the repository, and whether it is a package's __init__."""
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _imports(src: str, module: str, is_package: bool = False):
    """Every module an ``import`` names, relative imports resolved against ``module``'s package; for ``from M
    import a, b`` also ``M.a`` and ``M.b`` (they may be submodules: ``from aligner import eval``)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".")
                if node.level - 1 >= len(up):
                    continue  # above the top-level package: not an import of ours
                base = ".".join(up[:len(up) - (node.level - 1)])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            yield mod
            yield from (f"{mod}.{a.name}" for a in node.names if a.name != "*")
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def _upward_imports(src: str, module: str, is_package: bool = False) -> list[str]:
    me = _layer(module)
    wrong = []
    for mod in _imports(src, module, is_package):
        other = _layer(mod)
        if me and other and other != me and LAYERS[other] >= LAYERS[me] and mod not in wrong:
            wrong.append(mod)
    return wrong


def test_imports_point_down_the_layers():
    wrong = []
    for f in _library_files():
        module, is_package = _module_name(f)
        wrong += [f"{f.relative_to(REPO)} imports {mod}"
                  for mod in _upward_imports(f.read_text(encoding="utf-8"), module, is_package)]
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_sees_relative_and_package_imports():
    """The checker itself: each way of importing a higher layer is caught, the allowed ones are not."""
    data = "aligner.data.sources.halueval"
    assert _upward_imports("from ...eval.tasks import halueval", data) == ["aligner.eval.tasks",
                                                                          "aligner.eval.tasks.halueval"]
    assert _upward_imports("from ... import train", data) == ["aligner.train"]
    assert _upward_imports("from .. import train", data) == []  # aligner.data.train: its own layer
    assert _upward_imports("from ..metrics import text", "aligner.eval.tasks", is_package=True) == []
    assert _upward_imports("from ...data.sources import halueval", "aligner.eval.tasks.halueval") == []  # down
    assert _upward_imports("from aligner import pipeline", data) == ["aligner.pipeline"]
    assert _upward_imports("import aligner.report.tables as t", data) == ["aligner.report.tables"]
    assert _upward_imports("from ..eval import metrics", "aligner.train.dpop") == ["aligner.eval",
                                                                                   "aligner.eval.metrics"]  # sibling
    assert _upward_imports("from . import io\nfrom aligner import __version__\nfrom ..lm import hf", data) == []
    assert _upward_imports("from ...eval import x", "aligner.data", is_package=True) == []  # above the package


PATH_EDIT = re.compile(r"sys\.path\.(insert|append|extend)|sys\.path\s*\[|sys\.path\s*\+?=")
NOT_OURS = {"tests", "models", "outputs", "final_data", "configs"}  # tests may edit sys.path; the rest is data


def _code_outside_tests():
    for top in sorted(REPO.iterdir()):
        if top.name.startswith(".") or top.name in NOT_OURS:
            continue
        if top.is_dir():
            yield from (p for p in sorted(top.rglob("*.py")) if not any(x.startswith(".") for x in p.parts))
        elif top.suffix == ".py":
            yield top


def test_scripts_import_the_package_without_path_edits():
    files = list(_code_outside_tests())
    assert {p.relative_to(REPO).parts[0] for p in files} >= {"aligner", *SCRIPT_DIRS}
    offenders = [str(p.relative_to(REPO)) for p in files if PATH_EDIT.search(p.read_text(encoding="utf-8"))]
    assert not offenders
    for edit in ("sys.path.insert(0, x)", "sys.path.append(x)", "sys.path.extend([x])", "sys.path[:0] = [x]",
                 "sys.path = [x, *sys.path]", "sys.path +=[x]"):
        assert PATH_EDIT.search(edit), edit
    assert not PATH_EDIT.search("print(sys.path_hooks, os.path.join(a, b))")


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
