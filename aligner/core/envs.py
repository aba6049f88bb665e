"""The environment checks of ``scripts/check_envs.py`` (CI runs them): its settings (the script generates its
parser from ``CheckEnvsConfig``), the requirement-file and conda-file parsers the tests share, and the one
function the script calls, ``check_envs``.

* ``--resolve``: each conda environment file's pip section goes through ``pip install --dry-run
  --ignore-installed --use-feature=fast-deps --report`` for this interpreter (pip >= 26 reads wheel metadata by
  HTTP range requests, so even the vLLM env resolves with little traffic); a conflict, or a resolved version
  other than a pin, is an ``AlignerError`` with pip's message.
* ``--small_venv_requirements``: the pins of the second CI venv (the vLLM-facing tests without vllm or CUDA):
  the given packages at their requirements-vllm.txt versions, torch at requirements.txt's CPU pin.
"""

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import AlignerError
from aligner.core.paths import REPO_ROOT

SMALL_VENV_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "accelerate", "peft",
                       "numpy", "PyYAML", "tqdm", "pytest")
SHOWN = ("torch", "transformers", "numpy", "vllm", "tokenizers", "peft", "trl")
DEFAULT_ENV_FILES = ("aligner_env.yml", "vllm_env.yml")


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
            self.resolve = list(DEFAULT_ENV_FILES)


# ---------------------------------------------------------------------------------------------
# requirement files and conda environment files
# ---------------------------------------------------------------------------------------------

def requirement_name(line: str) -> str:
    """The normalised project name of a requirement line (``lm-eval[ifeval]==0.4.13`` -> ``lm-eval``)."""
    return re.split(r"[=<>!~\[ ;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirement_lines(path: str | Path) -> list[str]:
    """The requirement lines of a requirements file, comments and blank lines dropped."""
    lines = [ln.split("#", 1)[0].strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln]


def requirement_pins(lines: list[str]) -> dict[str, str]:
    """``{normalised name: line}`` of requirement lines."""
    return {requirement_name(ln): ln for ln in lines}


def env_pip_lines(path: str | Path) -> list[str]:
    """The pip section of a conda environment file."""
    import yaml

    env = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict) and "pip" in dep:
            return [str(x).strip() for x in dep["pip"]]
    raise AlignerError(f"{path}: no pip section under dependencies")


# ---------------------------------------------------------------------------------------------
# resolving with pip --dry-run
# ---------------------------------------------------------------------------------------------

def pip_major() -> int:
    import pip

    return int(pip.__version__.split(".")[0])


def require_pip_for_dry_run() -> None:
    """AlignerError unless this interpreter's pip can resolve without downloading wheels (pip >= 26)."""
    if pip_major() < 26:
        raise AlignerError(f"pip >= 26 is needed for a dry run without downloading wheels ({sys.executable} has an "
                           "older one): python -m pip install -U 'pip>=26'")


def pip_failure_tail(proc: subprocess.CompletedProcess, limit: int = 3000) -> str:
    """The end of pip's output, without its notes on ignored options and the fast-deps feature."""
    return "\n".join(ln for ln in (proc.stderr or proc.stdout).splitlines()
                     if "is ignored" not in ln and "fast-deps" not in ln)[-limit:]


def resolve(lines: list[str], report: Path) -> tuple[dict[str, str], float]:
    """pip's resolution of ``lines`` for this interpreter ({name: version}, seconds); AlignerError on a conflict.

    The lines go to ``<report>.requirements.txt`` beside the report, so that pip's messages name a real file."""
    require_pip_for_dry_run()
    report.parent.mkdir(parents=True, exist_ok=True)
    req = report.with_suffix(".requirements.txt")
    req.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--use-feature=fast-deps",
           "--quiet", "--report", str(report), "-r", str(req)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise AlignerError(f"pip could not resolve the set (exit {proc.returncode}, {seconds:.0f}s):\n"
                           f"{pip_failure_tail(proc)}")
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
    """Resolve one conda environment file's pip section and check its pins; one summary line."""
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


# ---------------------------------------------------------------------------------------------
# the second CI venv
# ---------------------------------------------------------------------------------------------

def small_venv_pins(packages: list[str]) -> list[str]:
    """``packages`` at their requirements-vllm.txt pins, torch at requirements.txt's (the CPU build here)."""
    vllm = requirement_pins(requirement_lines(REPO_ROOT / "requirements-vllm.txt"))
    cpu = requirement_pins(requirement_lines(REPO_ROOT / "requirements.txt"))
    out = []
    for name in packages:
        key = requirement_name(name)
        source, source_name = (cpu, "requirements.txt") if key == "torch" else (vllm, "requirements-vllm.txt")
        if key not in source:
            raise AlignerError(f"{name} is not pinned in {source_name}")
        out.append(source[key])
    return out


def write_small_venv_requirements(path: str | Path, packages: list[str]) -> list[str]:
    """Write ``small_venv_pins(packages)`` to ``path`` (a requirements file); returns the pins."""
    pins = small_venv_pins(packages)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(pins) + "\n", encoding="utf-8")
    return pins


# ---------------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------------

def check_envs(cfg: CheckEnvsConfig) -> dict:
    """What ``scripts/check_envs.py`` does: write the small venv's pins and/or resolve the environment files,
    printing one line for each; the first failure is an ``AlignerError``.  Returns ``{"small_venv_pins": [...]
    or None, "resolved": {env_file: summary line}}``."""
    done: dict = {"small_venv_pins": None, "resolved": {}}
    if cfg.small_venv_requirements:
        pins = write_small_venv_requirements(cfg.small_venv_requirements, cfg.small_venv_packages)
        print(f"{cfg.small_venv_requirements}: {' '.join(pins)}")
        done["small_venv_pins"] = pins
    for env_file in cfg.resolve or []:
        done["resolved"][env_file] = resolve_env(env_file, Path(cfg.report_dir))
        print(done["resolved"][env_file], flush=True)
    if not cfg.resolve and not cfg.small_venv_requirements:
        print("nothing to do: pass --resolve and/or --small_venv_requirements FILE", file=sys.stderr)
    return done
