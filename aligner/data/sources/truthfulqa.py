"""TruthfulQA questions for MC and generation: the Hugging Face ``truthful_qa`` dataset, the TruthfulQA CSV
(mc1 = [Best Answer] + Incorrect Answers; mc2 = Correct Answers + Incorrect Answers) or JSON/JSONL/parquet
rows in the HF schema, and answers to judge."""

from __future__ import annotations

import logging
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

from aligner.core.io import AlignerError, DataError, read_csv, read_jsonl, read_records

logger = logging.getLogger(__name__)

HF_DATASET = "truthfulqa/truthful_qa"  # the hub's current home of `truthful_qa` (the old name redirects there)


CSV_COLUMNS = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")


ANSWER_SEP = ";"

#: the HF schema's fields as they must be typed (mc*_targets are checked by ``_check_targets``)
RECORD_TYPES = {"question": str, "mc1_targets": dict, "mc2_targets": dict, "best_answer": (str, type(None)),
                "category": (str, type(None))}
GENERATION_TYPES = {"question": str, "generated": (str, type(None)), "index": int}


class DatasetUnavailableError(AlignerError, RuntimeError):
    """The Hugging Face dataset could not be loaded (offline, no cache); the message says what to pass."""


@dataclass
class MCItem:
    index: int
    question: str
    mc1_choices: list[str]
    mc1_labels: list[int]
    mc2_choices: list[str]
    mc2_labels: list[int]


@dataclass
class GenItem:
    index: int
    question: str
    best_answer: str | None = None
    correct_answers: list[str] | None = None
    incorrect_answers: list[str] | None = None
    category: str | None = None


@dataclass
class TruthfulQAData:
    mc: list[MCItem]
    gen: list[GenItem]
    source: str


def split_answers(text: str | None) -> list[str]:
    """Split a CSV answer cell on its "; " separator.  Some cells end with "; " or a bare ";" (a trailing
    separator: no answer in the file holds a ";"), so the split is on ";" with each answer stripped and
    blanks dropped."""
    return [a.strip() for a in (text or "").split(ANSWER_SEP) if a.strip()]


def _limited(limit: int | None) -> int | None:
    return None if limit is None or limit < 0 else limit


def _sequence(value) -> list | None:
    """A JSON list, or the array a parquet column holds, as a list; None for anything else (a string, a number)."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        return None
    return list(value)


def _check_targets(path, row_desc: str, name: str, targets, exactly_one: bool) -> tuple[list[str], list[int]]:
    if not isinstance(targets, dict) or "choices" not in targets or "labels" not in targets:
        raise DataError(path, f"{row_desc}: {name} must be an object with 'choices' and 'labels'")
    choices, labels = _sequence(targets["choices"]), _sequence(targets["labels"])
    if choices is None or not all(isinstance(c, str) for c in choices):
        raise DataError(path, f"{row_desc}: {name}.choices must be a list of strings")
    if labels is None or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in labels):
        raise DataError(path, f"{row_desc}: {name}.labels must be a list of 0/1 integers")
    labels = [int(v) for v in labels]
    if len(choices) != len(labels) or not choices:
        raise DataError(path, f"{row_desc}: {name} has {len(choices)} choices and {len(labels)} labels")
    if any(v not in (0, 1) for v in labels):
        raise DataError(path, f"{row_desc}: {name} labels must be 0 or 1, got {sorted(set(labels))}")
    n_true = sum(labels)
    if (exactly_one and n_true != 1) or n_true < 1:
        want = "exactly one" if exactly_one else "at least one"
        raise DataError(path, f"{row_desc}: {name} needs {want} label 1, has {n_true}")
    return choices, labels


def data_from_csv(path: str | os.PathLike, limit: int | None = None) -> TruthfulQAData:
    """The TruthfulQA CSV (``Question, Best Answer, Correct Answers, Incorrect Answers`` among its columns)."""
    rows = read_csv(path, CSV_COLUMNS, limit=_limited(limit))
    mc, gen = [], []
    for i, row in enumerate(rows):
        desc = f"data row {i + 1} ({row.get('Question', '')[:60]!r})"
        question = (row["Question"] or "").strip()
        best = (row["Best Answer"] or "").strip()
        correct = split_answers(row["Correct Answers"])
        incorrect = split_answers(row["Incorrect Answers"])
        for what, ok in (("Question", question), ("Best Answer", best), ("Correct Answers", correct),
                         ("Incorrect Answers", incorrect)):
            if not ok:
                raise DataError(path, f"{desc}: empty '{what}'")
        mc.append(MCItem(index=i, question=question,
                         mc1_choices=[best, *incorrect], mc1_labels=[1] + [0] * len(incorrect),
                         mc2_choices=[*correct, *incorrect], mc2_labels=[1] * len(correct) + [0] * len(incorrect)))
        gen.append(GenItem(index=i, question=question, best_answer=best, correct_answers=correct,
                           incorrect_answers=incorrect, category=(row.get("Category") or None)))
    return TruthfulQAData(mc=mc, gen=gen, source=str(path))


def data_from_records(path: str | os.PathLike, limit: int | None = None, need_mc: bool = True) -> TruthfulQAData:
    """JSON / JSONL / parquet rows in the HF schema.  Without ``need_mc`` rows of the HF ``generation``
    config (question, best_answer, ...) are enough."""
    required = ["question", "mc1_targets", "mc2_targets"] if need_mc else ["question"]
    rows = read_records(path, required, limit=_limited(limit), types=RECORD_TYPES)
    mc, gen = [], []
    for i, row in enumerate(rows):
        desc = f"record {i + 1} ({str(row['question'])[:60]!r})"
        question = str(row["question"]).strip()
        if "mc1_targets" in row and "mc2_targets" in row:
            c1, l1 = _check_targets(path, desc, "mc1_targets", row["mc1_targets"], exactly_one=True)
            c2, l2 = _check_targets(path, desc, "mc2_targets", row["mc2_targets"], exactly_one=False)
            mc.append(MCItem(i, question, c1, l1, c2, l2))
        elif need_mc:
            raise DataError(path, f"{desc}: no mc1_targets/mc2_targets")
        ca, ia = row.get("correct_answers"), row.get("incorrect_answers")
        for name, answers in (("correct_answers", ca), ("incorrect_answers", ia)):
            if answers is not None and (_sequence(answers) is None or not all(isinstance(a, str) for a in answers)):
                raise DataError(path, f"{desc}: {name} must be a list of strings")
        gen.append(GenItem(index=i, question=question, best_answer=row.get("best_answer"),
                           correct_answers=list(ca) if ca is not None else None,
                           incorrect_answers=list(ia) if ia is not None else None, category=row.get("category")))
    return TruthfulQAData(mc=mc, gen=gen, source=str(path))


def _load_hub_config(name: str, config: str):
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is in requirements
        raise DatasetUnavailableError("the `datasets` package is needed to load truthful_qa from the hub; "
                                      "pass --data_path with a local file instead") from exc
    try:
        return datasets.load_dataset(name, config, split="validation")
    except Exception as exc:  # offline, unreachable, gated, a missing cache: all mean "use a local file"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetUnavailableError(
            f"could not load the Hugging Face dataset '{name}' ({config}): {first}. Offline? Pass --data_path "
            f"with the TruthfulQA CSV (e.g. ../shared/data/truthfulqa/TruthfulQA.csv) or a JSON/JSONL/parquet "
            f"file in the HF schema (question, mc1_targets, mc2_targets).") from None


def data_from_hub(limit: int | None = None, need_mc: bool = True, need_gen: bool = True,
                  name: str = HF_DATASET) -> TruthfulQAData:
    n = _limited(limit)
    mc, gen = [], []
    if need_mc:
        ds = _load_hub_config(name, "multiple_choice")
        rows = ds if n is None else ds.select(range(min(n, len(ds))))
        for i, row in enumerate(rows):
            desc = f"row {i + 1}"
            c1, l1 = _check_targets(name, desc, "mc1_targets", row["mc1_targets"], exactly_one=True)
            c2, l2 = _check_targets(name, desc, "mc2_targets", row["mc2_targets"], exactly_one=False)
            mc.append(MCItem(i, row["question"].strip(), c1, l1, c2, l2))
    if need_gen:
        ds = _load_hub_config(name, "generation")
        rows = ds if n is None else ds.select(range(min(n, len(ds))))
        for i, row in enumerate(rows):
            gen.append(GenItem(index=i, question=row["question"].strip(), best_answer=row.get("best_answer"),
                               correct_answers=list(row.get("correct_answers") or []),
                               incorrect_answers=list(row.get("incorrect_answers") or []),
                               category=row.get("category")))
    return TruthfulQAData(mc=mc, gen=gen, source=f"hf:{name}")


def load_truthfulqa(data_path: str | os.PathLike | None = None, limit: int | None = None, need_mc: bool = True,
                    need_gen: bool = True, hf_name: str = HF_DATASET) -> TruthfulQAData:
    """Questions for MC and generation: the HF dataset by default, ``data_path`` (CSV / JSON / JSONL /
    parquet) when given.  ``limit`` < 0 or None takes all, else the first ``limit``."""
    if data_path is None or str(data_path) == "":
        logger.info("loading %s from the Hugging Face hub (pass --data_path for a local file)", hf_name)
        return data_from_hub(limit, need_mc, need_gen, hf_name)
    path = Path(data_path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.suffix.lower() == ".csv":
        return data_from_csv(path, limit)
    if path.suffix.lower() in (".json", ".jsonl", ".parquet"):
        return data_from_records(path, limit, need_mc=need_mc)
    raise DataError(path, "unknown data file type; use the TruthfulQA .csv or .json/.jsonl/.parquet (HF schema)")


def read_generations(path: str | os.PathLike) -> list[dict]:
    """Answers to judge: JSONL records with ``question`` and ``generated`` (``index`` = position if absent)."""
    recs = read_jsonl(path, required=["question", "generated"], allow_empty=True, types=GENERATION_TYPES)
    out, seen = [], set()
    for i, r in enumerate(recs):
        idx = r.get("index", i)
        if idx in seen:
            raise DataError(path, f"index {idx} appears twice", i + 1)
        seen.add(idx)
        out.append({"index": idx, "question": str(r["question"]), "generated": str(r["generated"] or "")})
    return out
