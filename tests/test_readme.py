"""Every `python <script> ...` command in README.md and DatasetPrep.md is accepted by that script's
argparse block, so the documented commands and flags cannot drift from the code."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _commands(doc: Path):
    text = doc.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            m = re.match(r"^(?:accelerate launch .*?)?python (\S+\.py)(.*)$", line)
            if m and (REPO / m.group(1)).is_file():
                out.append((m.group(1), shlex.split(m.group(2).replace("...", ""))))
    return out


def _parse_args(script: str):
    spec = importlib.util.spec_from_file_location("doc_" + Path(script).stem, REPO / script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.parse_args


CASES = [(doc, script, args) for doc in ("README.md", "DatasetPrep.md") for script, args in _commands(REPO / doc)]


def test_the_docs_have_commands():
    scripts = {s for _, s, _ in CASES}
    for must in ("evaluation/eval_truthfulqa.py", "evaluation/eval_halueval.py", "evaluation/eval_haleval_llm_step1.py",
                 "evaluation/eval_haleval_llm_step2.py", "first_improvement/training/train_dpop.py",
                 "scripts/merge_adapter.py", "scripts/make_tables.py"):
        assert must in scripts


@pytest.mark.parametrize("doc,script,args", CASES, ids=[f"{d}:{s}:{i}" for i, (d, s, _) in enumerate(CASES)])
def test_documented_command_parses(doc, script, args):
    _parse_args(script)(args)
