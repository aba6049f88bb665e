"""What a benchmark declares: lm-evaluation-harness's idea of a task, written in Python.

A task is a small class (``aligner/eval/tasks/<name>.py``) that declares

* its settings: a config dataclass extending ``EvalSettings`` (and the model settings it needs); fields that do
  not change a record say so in their metadata (``"record": False``), fields that change only some phases name
  them (``"phases": ("mc",)`` or a model role, ``("judge",)``);
* its documents (``documents``), read and checked before any model is loaded;
* its phases (``phases``): each makes one per-sample file per run from a chunk of documents, through the model
  interface (``loglikelihood``, ``loglikelihood_groups``, ``generate_until``) or a judge model, and declares the
  part of ``metrics_R.json`` it reports;
* its study-compat variant: the settings ``--study_compat`` gives (a ``STUDY_VARIANT`` dict next to the task, applied
  by its config with ``apply_variant``).

``aligner.eval.evaluate.evaluate`` owns everything else: the planned runs (base and adapters on one loaded base),
refusing to overwrite and resuming, the fingerprint of each per-sample file (derived from the settings, the model
and adapter, the data and the library versions), loading and releasing models, the metrics files, the run
records, timings and progress.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aligner.core.paths import result_file

#: a model role: the evaluated model (once per adapter), the task's judge, or no model (scorers only)
ROLES = ("policy", "judge", "none")


@dataclass(kw_only=True)
class EvalSettings:
    """What every evaluation script has: where its files go, which rows, resume or overwrite, progress bars."""

    run_name: str | None = field(default=None, metadata={
        "help": "names the output files (metrics_RUN.json, detailed_RUN.jsonl ...; with an adapter "
                "metrics_RUN_<adapter>.json)", "record": False})
    output_dir: str = field(default="evaluation/results", metadata={"help": "where the output files go",
                                                                    "record": False})
    limit: int = field(default=-1, metadata={"help": "the first N rows only; 0 or -1 = all (as the study)",
                                             "record": False})
    adapter_in_name: bool = field(default=True, metadata={
        "help": "put the adapter's name in the file names whenever an adapter is given, a single one too "
                "(--no-adapter_in_name: the study's names, the run name alone, for one adapter)",
        "boolean_optional": True, "record": False})
    resume: bool = field(default=False, metadata={
        "help": "continue an interrupted run from its per-sample files, skipping the rows they hold (checked "
                "against their fingerprint; without it an existing file needs --overwrite)", "record": False})
    overwrite: bool = field(default=False, metadata={
        "help": "start afresh over per-sample files an earlier run left (without it, and without --resume, such a "
                "file stops the run with one line instead of being overwritten)", "record": False})
    progress: bool = field(default=True, metadata={"flag": "--no_progress", "help": "no progress bars",
                                                   "record": False})


@dataclass
class Run:
    """One set of output files: a run name and adapter (``name`` is the adapter's, ``base`` for none), or the
    records of an earlier invocation (``source``: the file a phase not run now reads its inputs from)."""

    name: str
    adapter: str | None
    tag: str
    source: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)  # explicit paths of some kinds (step 1's --output_file)

    def file(self, output_dir: str | os.PathLike, kind: str) -> Path:
        return self.files.get(kind) or result_file(output_dir, kind, self.tag)


@dataclass(frozen=True)
class Phase:
    """One pass over documents that writes one per-sample file per run.

    ``make(model, items)`` returns one record per item, in order (the runner adds the key).  ``inputs`` names an
    earlier phase whose records are this phase's items (a judge reads the answers); otherwise the items are the
    task's documents named ``docs``.  ``metrics(records)`` is this phase's part of the metrics file, with
    ``metric_keys`` its keys (kept from an earlier file when the phase is not run now).
    """

    name: str
    file: str                                        # kind of aligner.core.paths.RESULT_FILES
    make: Callable[[Any, list], list[dict]]
    model: str = "policy"                            # one of ROLES
    exact: bool = False                              # True: the HF backend whatever --backend says
    docs: str = "docs"
    inputs: str | None = None
    key: str = "index"
    key_of: Callable[[Any], Any] | None = None       # the item's key (default: item[key] or item.key)
    unit: str = "sample"
    chunk: int | Callable[[Any], int | Callable] = 64  # items per append, or f(model) -> that
    check: Callable[[dict, Any], str | None] | None = None
    finite: tuple[str, ...] = ()                     # scores that must be finite (a NaN stops the run, naming the row)
    text: str | None = None                          # the generated text's field: empty and degenerate outputs
    metrics: Callable[[list[dict]], dict] | None = None
    metric_keys: tuple[str, ...] = ()

    def __post_init__(self):
        if self.model not in ROLES:
            raise ValueError(f"phase {self.name}: model role {self.model!r} is not one of {ROLES}")

    def item_key(self, item) -> Any:
        if self.key_of is not None:
            return self.key_of(item)
        return item[self.key] if isinstance(item, dict) else getattr(item, self.key)


class Task:
    """A benchmark (see the module docstring); subclasses fill in the declarations."""

    name: str = ""                       # fingerprints and logs: "truthfulqa", "halueval/similarity" ...
    versions: tuple[str, ...] = ()       # packages whose version the records depend on, beyond torch/transformers/peft

    def __init__(self, cfg):
        self.cfg = cfg

    @property
    def output_dir(self) -> Path:
        """Where this task's files go (a benchmark of several parts gives each a folder of its own)."""
        return Path(self.cfg.output_dir)

    # --- declarations -------------------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def active(self) -> list[str]:
        """The phases this invocation runs (all by default)."""
        return [p.name for p in self.phases()]

    def documents(self) -> dict[str, Sequence]:
        """Every document list the phases read, loaded and checked before any model is."""
        raise NotImplementedError

    def data_identity(self) -> dict:
        """What identifies the data (source, file hash); part of every fingerprint and metrics file."""
        return {}

    def templates(self) -> tuple[str, ...]:
        """The prompt templates the records depend on (their hash is part of the fingerprint)."""
        return ()

    def fingerprint_extras(self, phase: Phase) -> dict:
        """Settings as resolved at run time that the records depend on (the sampling a model's
        generation_config gives ...)."""
        return {}

    def record_name(self, run: Run) -> str:
        """The run record's file name, beside the run's files: one per run, never shared."""
        return f"run_config_{run.tag}.json"

    def runs(self) -> list[Run] | None:
        """Runs not made from ``--lora_path`` (a judge over earlier files); None: the planned adapters."""
        return None

    def read_inputs(self, phase: Phase, run: Run) -> list[dict]:
        """The items of ``phase`` when the phase it reads (``phase.inputs``) is not run now: its file."""
        from aligner.core.io import read_jsonl

        source = run.source or run.file(self.output_dir, self.phase(phase.inputs).file)
        return read_jsonl(source, allow_empty=True)

    # --- models ---------------------------------------------------------------------------------------
    def lm_settings(self) -> dict:
        """Settings handed to ``load_lm`` for the policy beyond the shared ones (batch sizes ...)."""
        return {}

    def load_judge(self):
        raise NotImplementedError(f"{type(self).__name__} has no judge")

    # --- the metrics file -------------------------------------------------------------------------------
    def run_fields(self, run: Run) -> dict:
        """The fields a metrics file starts with (model, adapter, data ...)."""
        cfg = self.cfg
        return {"model": getattr(cfg, "model_path", None), "lora_path": run.adapter, "adapter": run.name,
                "run_name": cfg.run_name, **self.data_identity()}

    def combine(self, metrics: dict) -> dict:
        """Fields computed from several phases' metrics."""
        return metrics

    def summary(self, metrics: dict) -> str:
        """The log line of a run's metrics: every declared metric and count it holds."""
        from aligner.eval.metrics.registry import declared

        shown = [(declared(k), v) for k, v in metrics.items() if declared(k) is not None and v is not None]
        return ", ".join(f"{m.display} {v:.4f}" if isinstance(v, float) else f"{m.display} {v}" for m, v in shown)

    # --- helpers --------------------------------------------------------------------------------------
    def phase(self, name: str) -> Phase:
        for p in self.phases():
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no phase {name!r}")


def apply_variant(cfg, settings: dict[str, Any]) -> None:
    """Set ``cfg``'s fields to a variant's values where they still hold their declared default (an explicit flag
    wins: ``--study_compat --dtype bf16`` keeps bf16)."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for name, value in settings.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if getattr(cfg, name) == default:
            setattr(cfg, name, value)
