"""TruthfulQA questions for MC and generation: the Hugging Face ``truthful_qa`` dataset (from the hub, or a
downloaded snapshot folder of its parquet files), the TruthfulQA CSV (mc1 = [Best Answer] + Incorrect Answers;
mc2 = Correct Answers + Incorrect Answers) or JSON/JSONL/parquet rows in the HF schema, and answers to judge.

The two sources are not the same data.  The hub's ``multiple_choice`` config is the TruthfulQA repository's
``data/mc_task.json``: every choice ends with a period, a choice the CSV lists twice appears once, and the
questions come in another order.  Its ``generation`` config is the CSV itself, questions unstripped.  The study
scored MC on ``multiple_choice`` and generated from ``generation`` (README: Differences from the study)."""

from __future__ import annotations

import logging
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

from aligner.core.io import AlignerError, DataError, read_csv, read_jsonl, read_records

logger = logging.getLogger(__name__)

HF_DATASET = "truthfulqa/truthful_qa"  # the hub's current home of `truthful_qa` (the old name redirects there)
#: the config folders of a downloaded snapshot of the hub dataset (scripts/download_data.py --what truthfulqa)
HUB_CONFIGS = ("multiple_choice", "generation")


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


def _question(text, strip: bool) -> str:
    text = str(text or "")
    return text.strip() if strip else text


def data_from_csv(path: str | os.PathLike, limit: int | None = None, strip_questions: bool = True
                  ) -> TruthfulQAData:
    """The TruthfulQA CSV (``Question, Best Answer, Correct Answers, Incorrect Answers`` among its columns).
    ``strip_questions`` False keeps a question's outer whitespace, as the hub's ``generation`` config does."""
    rows = read_csv(path, CSV_COLUMNS, limit=_limited(limit))
    mc, gen = [], []
    for i, row in enumerate(rows):
        desc = f"data row {i + 1} ({row.get('Question', '')[:60]!r})"
        question = _question(row["Question"], strip_questions)
        best = (row["Best Answer"] or "").strip()
        correct = split_answers(row["Correct Answers"])
        incorrect = split_answers(row["Incorrect Answers"])
        for what, ok in (("Question", question.strip()), ("Best Answer", best), ("Correct Answers", correct),
                         ("Incorrect Answers", incorrect)):
            if not ok:
                raise DataError(path, f"{desc}: empty '{what}'")
        mc.append(MCItem(index=i, question=question,
                         mc1_choices=[best, *incorrect], mc1_labels=[1] + [0] * len(incorrect),
                         mc2_choices=[*correct, *incorrect], mc2_labels=[1] * len(correct) + [0] * len(incorrect)))
        gen.append(GenItem(index=i, question=question, best_answer=best, correct_answers=correct,
                           incorrect_answers=incorrect, category=(row.get("Category") or None)))
    return TruthfulQAData(mc=mc, gen=gen, source=str(path))


def data_from_records(path: str | os.PathLike, limit: int | None = None, need_mc: bool = True,
                      strip_questions: bool = True) -> TruthfulQAData:
    """JSON / JSONL / parquet rows in the HF schema.  Without ``need_mc`` rows of the HF ``generation``
    config (question, best_answer, ...) are enough."""
    required = ["question", "mc1_targets", "mc2_targets"] if need_mc else ["question"]
    rows = read_records(path, required, limit=_limited(limit), types=RECORD_TYPES)
    mc, gen = [], []
    for i, row in enumerate(rows):
        desc = f"record {i + 1} ({str(row['question'])[:60]!r})"
        question = _question(row["question"], strip_questions)
        if "mc1_targets" in row and "mc2_targets" in row:
            c1, l1 = _check_targets(path, desc, "mc1_targets", row["mc1_targets"], exactly_one=True)
            c2, l2 = _check_targets(path, desc, "mc2_targets", row["mc2_targets"], exactly_one=False)
            mc.append(MCItem(i, question, c1, l1, c2, l2))
        elif need_mc:
            raise DataError(path, f"{desc}: no mc1_targets/mc2_targets")
        for name in ("correct_answers", "incorrect_answers"):
            answers = row.get(name)
            if answers is not None and (_sequence(answers) is None or not all(isinstance(x, str) for x in answers)):
                raise DataError(path, f"{desc}: {name} must be a list of strings")
        gen.append(_gen_item(i, question, row))
    return TruthfulQAData(mc=mc, gen=gen, source=str(path))


def _gen_item(index: int, question: str, row: dict) -> GenItem:
    ca, ia = row.get("correct_answers"), row.get("incorrect_answers")
    return GenItem(index=index, question=question, best_answer=row.get("best_answer"),
                   correct_answers=[str(a) for a in ca] if ca is not None else None,
                   incorrect_answers=[str(a) for a in ia] if ia is not None else None, category=row.get("category"))


def _mc_items(where, rows, strip_questions: bool) -> list[MCItem]:
    """MC items from rows in the hub's ``multiple_choice`` schema (a snapshot's parquet or the loaded dataset)."""
    items = []
    for i, row in enumerate(rows):
        desc = f"multiple_choice row {i + 1} ({str(row['question'])[:60]!r})"
        c1, l1 = _check_targets(where, desc, "mc1_targets", row["mc1_targets"], exactly_one=True)
        c2, l2 = _check_targets(where, desc, "mc2_targets", row["mc2_targets"], exactly_one=False)
        items.append(MCItem(i, _question(row["question"], strip_questions), c1, l1, c2, l2))
    return items


def _config_rows(folder: Path, config: str, required: list[str], limit: int | None) -> tuple[list[dict], list[str]]:
    """The rows of one config of a snapshot folder (its parquet shards in name order) and the shards' names."""
    shards = sorted((folder / config).glob("*.parquet"))
    if not shards:
        raise DataError(folder, f"no {config}/*.parquet in this folder: download the hub dataset with "
                                "scripts/download_data.py --what truthfulqa --source hf, or pass the TruthfulQA CSV")
    rows: list[dict] = []
    for shard in shards:
        left = None if limit is None else limit - len(rows)
        if left is not None and left <= 0:
            break
        rows += read_records(shard, required, limit=left)
    return rows, [f"{config}/{s.name}" for s in shards]


def data_from_hub_snapshot(folder: str | os.PathLike, limit: int | None = None, need_mc: bool = True,
                           need_gen: bool = True, strip_questions: bool = True) -> TruthfulQAData:
    """A downloaded snapshot of the hub dataset: MC from ``multiple_choice/*.parquet``, generation from
    ``generation/*.parquet``, the first ``limit`` rows of each (as the study's ``select(range(limit))``); the
    two configs hold the same 817 questions in different orders."""
    folder, n = Path(folder), _limited(limit)
    mc, gen, read = [], [], []
    if need_mc:
        rows, shards = _config_rows(folder, "multiple_choice", ["question", "mc1_targets", "mc2_targets"], n)
        read += shards
        mc = _mc_items(folder, rows, strip_questions)
    if need_gen:
        rows, shards = _config_rows(folder, "generation", ["question"], n)
        read += shards
        gen = [_gen_item(i, _question(row["question"], strip_questions), row) for i, row in enumerate(rows)]
    return TruthfulQAData(mc=mc, gen=gen, source=f"hf snapshot {folder} ({', '.join(read)})")


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
                  name: str = HF_DATASET, strip_questions: bool = True) -> TruthfulQAData:
    n = _limited(limit)
    mc, gen = [], []
    if need_mc:
        ds = _load_hub_config(name, "multiple_choice")
        mc = _mc_items(name, ds if n is None else ds.select(range(min(n, len(ds)))), strip_questions)
    if need_gen:
        ds = _load_hub_config(name, "generation")
        rows = ds if n is None else ds.select(range(min(n, len(ds))))
        gen = [_gen_item(i, _question(row["question"], strip_questions), row) for i, row in enumerate(rows)]
    return TruthfulQAData(mc=mc, gen=gen, source=f"hf:{name}")


def load_truthfulqa(data_path: str | os.PathLike | None = None, limit: int | None = None, need_mc: bool = True,
                    need_gen: bool = True, hf_name: str = HF_DATASET, strip_questions: bool = True) -> TruthfulQAData:
    """Questions for MC and generation: the HF dataset by default, ``data_path`` when given: a downloaded
    snapshot folder of the HF dataset (``multiple_choice/`` and ``generation/`` parquet), or one CSV / JSON /
    JSONL / parquet file.  ``limit`` < 0 or None takes all, else the first ``limit``.  ``strip_questions``
    False keeps the questions' outer whitespace (the study's: one CSV / ``generation`` question ends in a
    space)."""
    if data_path is None or str(data_path) == "":
        logger.info("loading %s from the Hugging Face hub (pass --data_path for a local file)", hf_name)
        return data_from_hub(limit, need_mc, need_gen, hf_name, strip_questions)
    path = Path(data_path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        return data_from_hub_snapshot(path, limit, need_mc, need_gen, strip_questions)
    if path.suffix.lower() == ".csv":
        return data_from_csv(path, limit, strip_questions)
    if path.suffix.lower() in (".json", ".jsonl", ".parquet"):
        return data_from_records(path, limit, need_mc=need_mc, strip_questions=strip_questions)
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
