"""The one evaluation runner: every benchmark (``aligner.eval.task.Task``) is run by ``evaluate``.

Order of work, the same for every task:

1. the documents are read and checked, the runs planned (the base and each adapter of ``--lora_path``, named by
   their folders, or the earlier files a judge reads) and every per-sample file checked: an earlier run's file
   is resumed (``--resume``) or replaced on purpose (``--overwrite``), else the run stops with one line.  Nothing
   is written before this, and before the first model has loaded;
2. the phases run in order, grouped by the model they need: the policy once, with every adapter on one loaded
   base (HF for exact log-likelihoods, the ``--backend`` for generation), then a judge; a model is released
   before the next one loads;
3. each phase appends its records through ``aligner.core.runner.run_per_sample`` with a fingerprint derived
   from the task's settings (every config field that can change a record, for that phase), the model and adapter
   identity, the data's hash, the prompt templates and the library versions: a resume with anything different is
   refused with one line naming what differs;
4. after each model, ``metrics_<tag>.json`` of every run (a phase not run now keeps its numbers from the run's
   earlier file; a phase whose inputs changed has none), with the degenerate-output check and timings, and
   ``run_config_<tag>.json`` beside it: one run record per run, never shared by two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from aligner.core.cli import note_saved, option_strings
from aligner.core.io import read_json, write_json_atomic
from aligner.core.models import parse_adapter_paths, planned_adapter_names, resolve_dtype
from aligner.core.paths import run_tag
from aligner.core.runinfo import PhaseTimer, package_versions, setup_logging, write_run_config
from aligner.core.runner import data_fingerprint, path_identity, refuse_to_overwrite, run_per_sample
from aligner.eval.checks import count_empty, degenerate_outputs, require_finite
from aligner.eval.task import Phase, Run, Task
from aligner.lm.interface import load_lm, release_lm, resolve_backend
from aligner.lm.settings import lm_kwargs

logger = logging.getLogger(__name__)

#: every fingerprint records these packages' versions (a task adds its own in ``Task.versions``)
BASE_VERSIONS = ("torch", "transformers", "peft")


# ---------------------------------------------------------------------------------------------
# runs and fingerprints
# ---------------------------------------------------------------------------------------------

def plan_runs(task: Task) -> list[Run]:
    """The task's runs: its own (a judge over earlier files), else the base and adapters of ``--lora_path``.  File
    tags carry the adapter's name whenever an adapter is given (``--no-adapter_in_name``: only with several)."""
    runs = task.runs()
    if runs is not None:
        return runs
    cfg = task.cfg
    names = planned_adapter_names(getattr(cfg, "lora_path", None))
    paths = parse_adapter_paths(getattr(cfg, "lora_path", None))
    tagged = len(names) > 1 or (names != [None] and cfg.adapter_in_name)
    return [Run(name or "base", path, run_tag(cfg.run_name, name, several=tagged)) for name, path in zip(names, paths)]


def _applies(f: dataclasses.Field, phase: Phase) -> bool:
    meta = f.metadata
    if meta.get("record", True) is False:
        return False
    only = meta.get("phases")
    return only is None or phase.name in only or phase.model in only


def _resolved(cfg, name: str, value):
    """A setting as the records see it: a local path absolute, ``auto`` resolved."""
    if name == "dtype" and hasattr(cfg, "device"):
        return str(resolve_dtype(value, cfg.device))
    if name == "backend":
        return resolve_backend(value)
    return value


def fingerprint(task: Task, phase: Phase, run: Run, backend: str | None) -> dict:
    """What ``phase``'s records of ``run`` depend on, derived from the declarations (no hand-written list)."""
    cfg = task.cfg
    fp: dict = {"task": f"{task.name}/{phase.name}"}
    for f in dataclasses.fields(cfg):
        if not _applies(f, phase):
            continue
        value = getattr(cfg, f.name)
        identity = f.metadata.get("identity")
        if identity == "path":
            value = path_identity(value)
        elif identity == "data":
            value = {"path": path_identity(value), "sha256": data_fingerprint(value)} if value else None
        else:
            value = _resolved(cfg, f.name, value)
        fp[f.name] = value
    if phase.model == "policy":
        fp["adapter"] = path_identity(run.adapter)
        fp["backend"] = backend
    fp.update(task.data_identity())
    fp.update(task.fingerprint_extras(phase))
    templates = task.templates()
    if templates:
        fp["templates_sha256"] = hashlib.sha256("\x1e".join(templates).encode("utf-8")).hexdigest()[:16]
    extra = ("vllm",) if backend == "vllm" else ()
    fp["versions"] = {k: v for k, v in package_versions((*BASE_VERSIONS, *task.versions, *extra)).items()
                      if k != "python"}
    return fp


# ---------------------------------------------------------------------------------------------
# the metrics file
# ---------------------------------------------------------------------------------------------

def _upstream(task: Task, name: str) -> list[str]:
    """The phase ``name`` and every phase it reads from, nearest first."""
    chain = [name]
    while task.phase(chain[-1]).inputs:
        chain.append(task.phase(chain[-1]).inputs)
    return chain


#: what a phase with generated text adds to the metrics: empty answers, and degenerate outputs (all or most empty or
#: one and the same answer: ``aligner.eval.checks.degenerate_outputs``, None when fine)
TEXT_KEYS = ("n_empty", "degenerate")


def phase_metrics(phase: Phase, records: list[dict]) -> dict:
    out = dict(phase.metrics(records)) if phase.metrics else {}
    if phase.text:
        out["n_empty"] = count_empty(records, phase.text)
        out["degenerate"] = degenerate_outputs([r.get(phase.text) for r in records], phase.text)
    return out


def assemble_metrics(task: Task, run: Run, done: dict[str, list[dict]], active: Sequence[str], path: Path,
                     seconds: dict) -> dict:
    """``metrics_<tag>.json``'s content: the run's fields, then each phase's part: computed from the records made
    now, None when an input it reads was made now but it was not (fresh answers not judged yet), else kept from
    the run's earlier file (a phase skipped now, e.g. --skip_mc)."""
    earlier = read_json(path) if path.is_file() else {}
    metrics = task.run_fields(run)
    computed: dict = {}
    for phase in task.phases():
        keys = phase.metric_keys + (TEXT_KEYS if phase.text else ())
        if phase.name in done:
            computed.update(phase_metrics(phase, done[phase.name]))
        elif any(p in active for p in _upstream(task, phase.name)[1:]):
            metrics.update({k: None for k in keys})
        else:
            kept = {k: earlier.get(k) for k in keys}
            if any(v is not None for v in kept.values()):
                logger.info("%s: keeping %s from the earlier run", path, ", ".join(k for k, v in kept.items() if v is not None))
            metrics.update(kept)
    metrics.update(computed)  # a field two phases report (a judge counts the answers too) is the one made now
    metrics = task.combine(metrics)
    metrics["seconds"] = seconds
    return metrics


# ---------------------------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------------------------

def _groups(task: Task, active: Sequence[str]) -> list[tuple[tuple[str, str | None], list[Phase]]]:
    """Consecutive active phases that run on the same model and backend."""
    cfg = task.cfg
    groups: list = []
    for phase in (p for p in task.phases() if p.name in active):
        backend = None
        if phase.model == "policy":
            backend = "hf" if phase.exact else resolve_backend(getattr(cfg, "backend", "hf"))
        key = (phase.model, backend)
        if groups and groups[-1][0] == key:
            groups[-1][1].append(phase)
        else:
            groups.append((key, [phase]))
    return groups


def _check_models(task: Task) -> None:
    """Every model the task's settings name (the policy, a judge, the scorers' models) is a local folder, in the
    cache or on a hub that answers: one line naming the flag otherwise, before any model loads."""
    from aligner.core.setting_checks import check_model, is_model_field

    for f in dataclasses.fields(task.cfg):
        value = getattr(task.cfg, f.name)
        if is_model_field(f.name) and isinstance(value, str) and value:
            check_model(option_strings(f)[0], value)


def _load(task: Task, role: str, backend: str | None):
    cfg = task.cfg
    if role == "policy":
        return load_lm(backend, cfg.model_path, getattr(cfg, "lora_path", None),
                       **{**lm_kwargs(cfg), **task.lm_settings()})
    if role == "judge":
        return task.load_judge()
    return None


def _activate(model, run: Run, role: str) -> None:
    if role != "policy":
        return
    wanted = None if run.adapter is None else run.name
    loaded = list(model.adapter_names)
    if wanted not in loaded:  # the backend names adapters as planned_adapter_names does
        raise RuntimeError(f"adapter {run.name!r} is not loaded; the backend has {loaded}")
    model.set_adapter(wanted)


def run_phase(task: Task, phase: Phase | str, model, items: Sequence, path: str | os.PathLike, resume: bool = False,
              progress: bool = False, fingerprint: dict | None = None) -> list[dict]:
    """One phase of ``task`` on ``items`` with ``model``, its records appended to ``path`` (resumable, keyed, checked
    for non-finite scores); what ``evaluate`` does per run, usable alone (tests, benchmarks)."""
    phase = task.phase(phase) if isinstance(phase, str) else phase
    chunk = phase.chunk(model) if callable(phase.chunk) else phase.chunk

    def make(part: list) -> list[dict]:
        made = phase.make(model, part)
        if len(made) != len(part):
            raise RuntimeError(f"{task.name} {phase.name}: {len(made)} records for {len(part)} items")
        # the key first, so that a non-finite score names its row
        records = [{phase.key: phase.item_key(item), **rec} for item, rec in zip(part, made)]
        require_finite(records, phase.finite, str(path), key=phase.key)
        return records

    return run_per_sample(path, items, make, key_of=phase.item_key, key=phase.key, chunk=chunk, resume=resume,
                          fingerprint=fingerprint, check=phase.check, desc=f"{task.name} {phase.name}",
                          unit=phase.unit, progress=progress)


class Evaluation:
    """One invocation of a task: its runs, the records made now, the timers."""

    def __init__(self, task: Task):
        self.task, self.cfg = task, task.cfg
        self.active = task.active()
        self.runs = plan_runs(task)
        self.docs = task.documents()
        self.records: dict[str, dict[str, list[dict]]] = {r.tag: {} for r in self.runs}
        self.shared = PhaseTimer()
        self.timers = {r.tag: PhaseTimer() for r in self.runs}
        self.recorded = False

    def check_outputs(self) -> None:
        out = self.task.output_dir
        for run in self.runs:
            for phase in (p for p in self.task.phases() if p.name in self.active):
                refuse_to_overwrite(run.file(out, phase.file), self.cfg.resume, self.cfg.overwrite)

    def items(self, phase: Phase, run: Run) -> Sequence:
        if phase.inputs is None:
            return self.docs[phase.docs]
        made = self.records[run.tag].get(phase.inputs)
        return made if made is not None else self.task.read_inputs(phase, run)

    def run_phase(self, model, phase: Phase, run: Run, backend: str | None) -> list[dict]:
        path = run.file(self.task.output_dir, phase.file)
        logger.info("%s %s: %s -> %s", self.task.name, phase.name, run.name, path)
        note_saved(f"{path} keeps the records written so far")  # what a Ctrl-C keeps; --resume continues
        with self.timers[run.tag](phase.name):
            records = run_phase(self.task, phase, model, self.items(phase, run), path, resume=self.cfg.resume,
                                progress=self.cfg.progress, fingerprint=fingerprint(self.task, phase, run, backend))
        self.records[run.tag][phase.name] = records
        degenerate = degenerate_outputs([r.get(phase.text) for r in records], phase.text) if phase.text else None
        if degenerate:
            logger.warning("%s %s, %s: %s (%s)", self.task.name, phase.name, run.name, degenerate["note"], path)
        return records

    def write_records(self, backends: dict) -> None:
        """``run_config_<tag>.json`` of every run (once, after the first model loaded)."""
        if self.recorded:
            return
        first = next(p for p in self.task.phases() if p.name in self.active)
        for run in self.runs:
            write_run_config(run.file(self.task.output_dir, first.file).parent, self.cfg,
                             filename=self.task.record_name(run),
                             extra={"task": self.task.name, "adapter": run.adapter, "tag": run.tag,
                                    "phases": list(self.active), "backends": backends,
                                    "n_documents": {k: len(v) for k, v in self.docs.items()},
                                    **self.task.data_identity(), **self.task.fingerprint_extras(first)})
        self.recorded = True

    def write_metrics(self) -> dict[str, dict]:
        out = {}
        for run in self.runs:
            if not any(p in self.records[run.tag] and self.task.phase(p).metrics for p in self.active):
                continue  # e.g. HaluEval's step 1: predictions only, the metrics are step 2's
            path = run.file(self.task.output_dir, "metrics")
            metrics = assemble_metrics(self.task, run, self.records[run.tag], self.active, path,
                                       {**self.shared.seconds, **self.timers[run.tag].seconds})
            write_json_atomic(path, metrics)
            out[run.name] = metrics
        return out


    def execute(self, held: dict) -> dict[str, dict]:
        """Every phase of every run, one model at a time (``held``: the model in memory, kept for the next task
        when it needs the same one); returns {run name: metrics}."""
        groups = _groups(self.task, self.active)
        backends = {p.name: b for (_, b), phases in groups for p in phases}
        Path(self.task.output_dir).mkdir(parents=True, exist_ok=True)
        results: dict[str, dict] = {}
        for (role, backend), phases in groups:
            key = (role, backend, id(self.cfg))
            if key not in held:
                release_held(held)
                with self.shared(f"load_{role}" if role != "policy" else f"load_model_{backend}"):
                    held[key] = _load(self.task, role, backend)
            model = held[key]
            self.write_records(backends)
            for run in self.runs:
                _activate(model, run, role)
                for phase in phases:
                    self.run_phase(model, phase, run, backend)
            results = self.write_metrics()
        for name, metrics in results.items():
            logger.info("%s %s: %s", self.task.name, name, self.task.summary(metrics))
        return results


def release_held(held: dict) -> None:
    """Release the models ``held`` and forget them (before another model loads, or at the end)."""
    for model in held.values():
        release_lm(model)
    held.clear()


def evaluate_tasks(tasks: Sequence[Task]) -> list[dict[str, dict]]:
    """Run ``tasks`` in turn (the module docstring, for each); every input and output of every task is checked
    before the first model loads, and consecutive tasks of one config share the loaded model (the detection
    benchmark's three splits on one loaded base).  Returns each task's {run name: metrics}."""
    setup_logging()
    evaluations = [Evaluation(task) for task in tasks]
    checked: set[int] = set()
    for ev in evaluations:
        ev.check_outputs()
        if id(ev.cfg) not in checked:  # the detection splits share one config: its models are checked once
            _check_models(ev.task)
            checked.add(id(ev.cfg))
    held: dict = {}
    try:
        return [ev.execute(held) for ev in evaluations]
    finally:
        release_held(held)


def evaluate(task: Task) -> dict[str, dict]:
    """Run ``task`` (see the module docstring); returns {run name: metrics} of the runs that report metrics."""
    return evaluate_tasks([task])[0]
