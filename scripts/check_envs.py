#!/usr/bin/env python
"""Check that the conda environment files can be installed, without installing them (CI runs this).

--resolve: for each environment file, pip resolves its pip section (`pip install --dry-run --ignore-installed
--use-feature=fast-deps --report`) for this interpreter's Python and platform. With pip >= 26 and fast-deps,
pip reads each wheel's metadata by HTTP range requests instead of downloading it, so even the vLLM env (torch,
vllm, CUDA libraries: about 4 GiB of wheels) resolves with about 100 MiB of traffic in a minute or two. A
conflict (pip's ResolutionImpossible) fails the check with pip's message. Each resolved set is written to
--report_dir/resolve_<env>.json (pip's installation report) and summarised in one line.

--small_venv_requirements FILE: write the pins of the second CI venv, the one that runs the vLLM-facing tests
(pytest -m vllm_env) on the vLLM env's transformers version without vllm or CUDA: the packages of
--small_venv_packages at their requirements-vllm.txt versions, except torch, which keeps requirements.txt's CPU
pin (torch does not constrain transformers; the vLLM env's torch 2.14.0 exists here only as a CUDA wheel).

Both files must also agree with the requirement files: aligner_env.yml = requirements.txt + requirements-gpu.txt,
vllm_env.yml = requirements-vllm.txt (tests/test_runinfo_envs.py checks it offline).

Example:
    python scripts/check_envs.py --resolve aligner_env.yml vllm_env.yml
    python scripts/check_envs.py --resolve --small_venv_requirements .venv/vllm-tf/requirements.txt
"""


import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import parse_config, run_cli
from aligner.core.io import AlignerError
from aligner.core.paths import REPO_ROOT

SMALL_VENV_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "accelerate", "peft",
                       "numpy", "PyYAML", "tqdm", "pytest")
SHOWN = ("torch", "transformers", "numpy", "vllm", "tokenizers", "peft", "trl")


@dataclass(kw_only=True)
class CheckEnvsConfig:
    resolve: list[str] | None = field(default=None, metadata={
        "help": "resolve these conda environment files' pip sections with pip --dry-run; given without files: "
                "aligner_env.yml and vllm_env.yml (default: no resolving)", "nargs": "*", "metavar": "ENV.yml"})
    report_dir: str = field(default="outputs/ci", metadata={"help": "where pip's resolve reports go"})
    small_venv_requirements: str | None = field(default=None, metadata={
        "help": "write the second CI venv's pins to this file (default: none)"})
    small_venv_packages: list[str] = field(default_factory=lambda: list(SMALL_VENV_PACKAGES), metadata={
        "help": "the packages of the second CI venv", "sep": ","})

    def __post_init__(self):
        if self.resolve is not None and not self.resolve:
            self.resolve = ["aligner_env.yml", "vllm_env.yml"]


def requirement_name(line: str) -> str:
    """The normalised project name of a requirement line (``lm-eval[ifeval]==0.4.13`` -> ``lm-eval``)."""
    return re.split(r"[=<>!~\[ ;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirement_lines(path: str | Path) -> list[str]:
    """The requirement lines of a requirements file, comments and blank lines dropped."""
    lines = [ln.split("#", 1)[0].strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln]


def env_pip_lines(path: str | Path) -> list[str]:
    """The pip section of a conda environment file."""
    import yaml

    env = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict) and "pip" in dep:
            return [str(x).strip() for x in dep["pip"]]
    raise AlignerError(f"{path}: no pip section under dependencies")


def pip_major() -> int:
    import pip

    return int(pip.__version__.split(".")[0])


def resolve(lines: list[str], report: Path) -> tuple[dict[str, str], float]:
    """pip's resolution of ``lines`` for this interpreter ({name: version}, seconds); AlignerError on a conflict.

    The lines go to ``<report>.requirements.txt`` beside the report, so that pip's messages name a real file."""
    if pip_major() < 26:
        raise AlignerError(f"pip >= 26 is needed for a dry run without downloading wheels ({sys.executable} has an "
                           "older one): python -m pip install -U 'pip>=26'")
    report.parent.mkdir(parents=True, exist_ok=True)
    req = report.with_suffix(".requirements.txt")
    req.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--use-feature=fast-deps",
           "--quiet", "--report", str(report), "-r", str(req)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(ln for ln in (proc.stderr or proc.stdout).splitlines()
                         if "is ignored" not in ln and "fast-deps" not in ln)[-3000:]
        raise AlignerError(f"pip could not resolve the set (exit {proc.returncode}, {seconds:.0f}s):\n{tail}")
    installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {requirement_name(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}, seconds


def check_pins(lines: list[str], resolved: dict[str, str]) -> list[str]:
    """Pins (``name==version``) that the resolved set does not hold at that version."""
    wrong = []
    for ln in lines:
        if "==" in ln:
            want = ln.split("==", 1)[1].split(";")[0].strip()
            got = resolved.get(requirement_name(ln))
            if got is None or got.split("+")[0] != want:
                wrong.append(f"{ln} (resolved: {got})")
    return wrong


def resolve_env(env_file: str, report_dir: Path) -> str:
    lines = env_pip_lines(env_file)
    report = report_dir / f"resolve_{Path(env_file).stem}.json"
    try:
        resolved, seconds = resolve(lines, report)
    except AlignerError as exc:
        raise AlignerError(f"{env_file}: {exc}") from None
    wrong = check_pins(lines, resolved)
    if wrong:
        raise AlignerError(f"{env_file}: resolved, but not at the pinned versions: {', '.join(wrong)}")
    shown = ", ".join(f"{n} {resolved[n]}" for n in SHOWN if n in resolved)
    return f"{env_file}: resolves, {len(resolved)} packages in {seconds:.0f}s ({shown}); report {report}"


def small_venv_pins(packages: list[str]) -> list[str]:
    """``packages`` at their requirements-vllm.txt pins, torch at requirements.txt's (the CPU build here)."""
    vllm = {requirement_name(ln): ln for ln in requirement_lines(REPO_ROOT / "requirements-vllm.txt")}
    cpu = {requirement_name(ln): ln for ln in requirement_lines(REPO_ROOT / "requirements.txt")}
    out = []
    for name in packages:
        key = requirement_name(name)
        source = cpu if key == "torch" else vllm
        if key not in source:
            raise AlignerError(f"{name} is not pinned in {'requirements.txt' if key == 'torch' else 'requirements-vllm.txt'}")
        out.append(source[key])
    return out


def parse_args(argv=None) -> CheckEnvsConfig:
    return parse_config(CheckEnvsConfig, argv, description=__doc__)


def main(argv=None):
    cfg = parse_args(argv)
    if cfg.small_venv_requirements:
        pins = small_venv_pins(cfg.small_venv_packages)
        Path(cfg.small_venv_requirements).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.small_venv_requirements).write_text("\n".join(pins) + "\n", encoding="utf-8")
        print(f"{cfg.small_venv_requirements}: {' '.join(pins)}")
    for env_file in cfg.resolve or []:
        print(resolve_env(env_file, Path(cfg.report_dir)), flush=True)
    if not cfg.resolve and not cfg.small_venv_requirements:
        print("nothing to do: pass --resolve and/or --small_venv_requirements FILE", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
