"""Degenerate answers beside the numbers they make: a run whose answers are mostly empty or mostly one text
(``aligner.eval.checks.degenerate_outputs``) has its note printed next to every metric scored from those answers.

The note comes from the metrics file's ``"degenerate"`` entry (null when the answers are fine), at any depth of
the file; a metrics file written before that entry existed has it computed here from the run's per-sample file.
Multiple-choice metrics (MC1, MC2) score log-probabilities, not answers, so they carry no note.
"""

from __future__ import annotations

from pathlib import Path

from aligner.core.io import ReadStats, iter_jsonl
from aligner.core.paths import result_file
from aligner.eval.checks import degenerate_outputs
from aligner.eval.metrics.registry import declared

KEY = "degenerate"
#: per-sample files holding a run's answers, and the answer field, in the order they are looked for
ANSWER_FILES = (("generations", "generated"), ("detailed_gen", "generated"), ("predictions", "generated_text"),
                ("detailed", "generated"), ("detailed", "response"))


def notes_in(metrics: dict, prefix: str = "") -> list[str] | None:
    """The notes of every ``"degenerate"`` entry of a metrics file (a nested one named by its section: "gen: ...");
    None when the file has no such entry at all (an older file), [] when every entry is null."""
    found: list[str] | None = None
    for key, value in metrics.items():
        if key == KEY:
            found = found or []
            if isinstance(value, dict) and value.get("note"):
                found.append(f"{prefix}{value['note']}")
        elif isinstance(value, dict):
            sub = notes_in(value, f"{prefix}{key}: ")
            if sub is not None:
                found = (found or []) + sub
    return found


def notes_from_answers(folder: Path, run: str) -> list[str]:
    """The note computed from the run's own answers (the first answer file that exists and has the field)."""
    for kind, field in ANSWER_FILES:
        path = result_file(folder, kind, run)
        if not path.is_file():
            continue
        records = list(iter_jsonl(path, skip_invalid=True, stats=ReadStats()))
        if records and all(field in r for r in records):
            found = degenerate_outputs([r[field] for r in records], field)
            return [found["note"]] if found else []
    return []


def run_notes(metrics: dict, folder: Path, run: str) -> list[str]:
    notes = notes_in(metrics)
    return notes if notes is not None else notes_from_answers(folder, run)


def scored_from_answers(metric: str) -> bool:
    """Whether a metric scores the generated answers: every compared one but the multiple-choice ones (counts are
    not scores; an undeclared metric is not tabulated)."""
    spec = declared(metric)
    return spec is not None and spec.kind != "count" and "detailed_mc" not in spec.files
