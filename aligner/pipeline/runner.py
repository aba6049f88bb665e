"""A small file-based pipeline runner: every stage is a real stage script run as a subprocess.

A stage is skipped when the manifest says it completed with the same command and the same input
hashes and all its outputs are still there; ``force`` redoes everything.  The manifest records, per
stage, the command, its run_config.json, input/output sha256, wall time, package versions and the
git commit; it is rewritten atomically after every stage, so a crash loses at most the running stage."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import note_saved, to_argv
from aligner.core.io import file_digest, read_json, write_json_atomic
from aligner.core.paths import REPO_ROOT
from aligner.core.runinfo import git_commit, now_iso, package_versions


@dataclass
class Stage:
    name: str
    cmd: list[str]                      # argv; a leading "python" is replaced by this interpreter
    outputs: list[Path]                 # files or folders that must exist when the stage is complete
    inputs: list[Path] = field(default_factory=list)
    note: str = ""                      # printed with the stage line (e.g. what data it used)
    run_config: Path | None = None      # the stage's run_config.json, copied into the manifest
    when: Callable[[], bool] | None = None  # evaluated at run time; False skips the stage ("not applicable")


def path_digest(path: Path) -> str | None:
    """sha256 of a file, or of a folder's files (names and contents, sorted); None when missing."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            rel = p.relative_to(path)
            if p.name.startswith("run_config") or any(part.startswith("checkpoint") for part in rel.parts):
                continue  # run records hold times; checkpoints are scratch
            h.update(str(rel).encode())
            h.update(file_digest(p).encode())
        return h.hexdigest()
    return None


class Pipeline:
    def __init__(self, output_dir: Path, force: bool = False, log=print, env: dict | None = None,
                 manifest_name: str = "manifest.json", echo: bool = False, dry_run: bool = False,
                 heartbeat: float = 30.0):
        self.output_dir = Path(output_dir)
        if not dry_run:  # a dry run only reads the manifest (``plan``)
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.output_dir / manifest_name
        self.force = force
        self.log = log
        self.env = env
        self.echo = echo  # also stream each stage's output to stdout (make data), not only to its log file
        self.heartbeat = heartbeat  # seconds between two progress lines of a running stage (without echo)
        old = read_json(self.manifest_path) if self.manifest_path.is_file() else {}
        self.previous: dict = old.get("stages", {}) if isinstance(old, dict) else {}
        self.manifest = {
            "created": now_iso(), "python": sys.executable, "git": git_commit(), "versions": package_versions(),
            "stages": dict(self.previous),
        }
        self.timings: list[tuple[str, float, str]] = []

    def _argv(self, cmd: Sequence[str]) -> list[str]:
        argv = [str(c) for c in cmd]
        if argv and argv[0] == "python":
            argv[0] = sys.executable
            # Stage scripts are named relative to the repository; the caller's folder stays the cwd so
            # that relative data paths keep their meaning.
            if len(argv) > 1 and not Path(argv[1]).is_absolute() and (REPO_ROOT / argv[1]).is_file():
                argv[1] = str(REPO_ROOT / argv[1])
        return argv

    def _complete(self, stage: Stage, argv: list[str], inputs: dict) -> bool:
        prev = self.previous.get(stage.name)
        if self.force or not prev or prev.get("status") != "done":
            return False
        if prev.get("command") != argv or prev.get("inputs") != inputs:
            return False
        for out in stage.outputs:
            digest = path_digest(out)
            if digest is None or prev.get("outputs", {}).get(str(out)) != digest:
                return False
        return True

    def plan(self, stage: Stage) -> tuple[str, str]:
        """What ``run`` would do with ``stage`` now, running nothing: ("skip" | "run" | "n/a" | "missing input",
        why).  Inputs an earlier stage of the same run would make are the caller's to account for."""
        if stage.when is not None and not stage.when():
            return "n/a", "not applicable"
        argv = self._argv(stage.cmd)
        inputs = {str(p): path_digest(p) for p in stage.inputs}
        missing = [k for k, v in inputs.items() if v is None]
        if missing:
            return "missing input", ", ".join(missing)
        if self._complete(stage, argv, inputs):
            return "skip", "complete, inputs unchanged"
        prev = self.previous.get(stage.name)
        if self.force:
            return "run", "--force"
        if not prev:
            return "run", "never ran here"
        if prev.get("status") != "done":
            return "run", f"last run {prev.get('status', 'unfinished')}"
        if prev.get("command") != argv:
            return "run", "command changed"
        if prev.get("inputs") != inputs:
            return "run", "inputs changed"
        return "run", "outputs changed or missing"

    def run(self, stage: Stage) -> str:
        if stage.when is not None and not stage.when():
            self.log(f"[{stage.name:<24}] not applicable {stage.note}".rstrip())
            self.timings.append((stage.name, 0.0, "n/a"))
            return "n/a"
        argv = self._argv(stage.cmd)
        inputs = {str(p): path_digest(p) for p in stage.inputs}
        missing = [k for k, v in inputs.items() if v is None]
        if missing:
            raise FileNotFoundError(f"stage {stage.name}: input(s) missing: {missing}")
        if self._complete(stage, argv, inputs):
            self.log(f"[{stage.name:<24}] skipped (complete, inputs unchanged)")
            last = self.previous[stage.name].get("wall_seconds", 0.0)
            self.timings.append((stage.name, 0.0, f"skipped (last run {last:.1f}s)"))
            return "skipped"
        logs = self.output_dir / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{stage.name}.log"
        done = [name for name, entry in self.manifest["stages"].items() if entry.get("status") == "done"]
        note_saved(f"{len(done)} completed stage(s) kept in {self.output_dir} (manifest {self.manifest_path}); "
                   f"stage {stage.name} was running (log {log_path}) and is redone")
        t0 = time.perf_counter()
        with log_path.open("w", encoding="utf-8") as fh:
            fh.write("$ " + " ".join(argv) + "\n")
            fh.flush()
            env = dict(os.environ, **(self.env or {}))
            try:
                proc = self._execute(stage, argv, env, fh, log_path, t0)
            except KeyboardInterrupt:
                self.manifest["stages"][stage.name] = {"command": argv, "inputs": inputs, "status": "interrupted",
                                                       "log": str(log_path), "finished": now_iso()}
                self.write_manifest()
                raise
        wall = time.perf_counter() - t0
        entry = {"command": argv, "inputs": inputs, "wall_seconds": round(wall, 2), "log": str(log_path),
                 "finished": now_iso()}
        if proc.returncode != 0:
            entry["status"] = "failed"
            self.manifest["stages"][stage.name] = entry
            self.write_manifest()
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
            raise RuntimeError(f"stage {stage.name} failed (exit {proc.returncode}); log: {log_path}\n"
                               + "\n".join(tail))
        entry["status"] = "done"
        entry["outputs"] = {str(p): path_digest(p) for p in stage.outputs}
        absent = [k for k, v in entry["outputs"].items() if v is None]
        if absent:
            entry["status"] = "failed"
            self.manifest["stages"][stage.name] = entry
            self.write_manifest()
            raise RuntimeError(f"stage {stage.name} exited 0 but did not write {absent}; log: {log_path}")
        if stage.run_config is not None and Path(stage.run_config).is_file():
            entry["run_config"] = read_json(stage.run_config)
        self.manifest["stages"][stage.name] = entry
        self.write_manifest()
        self.log(f"[{stage.name:<24}] done in {wall:6.1f}s {stage.note}".rstrip())
        self.timings.append((stage.name, wall, "done"))
        return "done"

    def _execute(self, stage: Stage, argv: list[str], env: dict, fh, log_path: Path, t0: float):
        """Run the stage's command, its output into ``fh`` (and to stdout with ``echo``); without ``echo`` a line
        every ``heartbeat`` seconds says how long it has run, how far it got (the last line of its log: a tqdm
        bar, a log line) and where the log is, so a long stage is never a silent console."""
        if self.echo:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                    bufsize=1)
            try:
                for line in proc.stdout:
                    fh.write(line)
                    sys.stdout.write(line)
                sys.stdout.flush()
                proc.wait()
            except KeyboardInterrupt:
                _stop(proc)
                raise
            return proc
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
        self.log(f"[{stage.name:<24}] running; log {log_path}")
        try:
            while True:
                try:
                    proc.wait(timeout=self.heartbeat)
                    return proc
                except subprocess.TimeoutExpired:
                    fh.flush()
                    self.log(f"[{stage.name:<24}] {_minutes(time.perf_counter() - t0)}: {last_progress(log_path)}")
        except KeyboardInterrupt:
            _stop(proc)
            raise

    def write_manifest(self) -> None:
        self.manifest["updated"] = now_iso()
        write_json_atomic(self.manifest_path, self.manifest)


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """After Ctrl-C (which the stage received too, and answers by saving and exiting): wait for it briefly, then
    end it."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait()


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def last_progress(log_path: Path, width: int = 110) -> str:
    """The last thing a stage wrote to its log: the latest state of a tqdm bar (which rewrites its line with
    carriage returns) or the last log line, cut to ``width`` characters."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log yet)"
    pieces = [p.strip() for p in tail.replace("\r", "\n").split("\n") if p.strip()]
    if not pieces:
        return "(nothing written yet)"
    last = " ".join(pieces[-1].split())
    return last if len(last) <= width else last[:width - 3] + "..."


def script_command(path: str, config, **values) -> list[str]:
    """``python <path> <flags>``, the flags generated from the script's config dataclass(es): a setting renamed
    there fails here, when the stages are built, not halfway through a run."""
    return ["python", path, *to_argv(config, **values)]
