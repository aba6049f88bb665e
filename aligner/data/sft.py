"""SFT-style question/context/answer sets: SQuAD v2 from its CSV export, the NQ RAG records, and the unified
view every negative-sampling stage works on.

SQuAD v2 exported with pandas writes the ``answers`` cell as the repr of a dict of NumPy arrays,
``{'text': array(['Denver Broncos'], dtype=object), 'answer_start': array([177], dtype=int32)}``, which is
neither JSON nor a Python literal.  ``parse_answers_cell`` reads it with a small AST walker that accepts
literals and ``array(...)``-style calls only (never ``eval``).

Unanswerable SQuAD v2 questions are written with ``answers: []`` and ``has_answer: false`` (as the study wrote
them) and the view leaves them out, as every one of the study's fake generators did.  With
``--abstention_target TEXT`` they enter the view with that text as their ideal answer, marked ``abstention``:
such an item is only ever the chosen side of its own pairs (ideal > easy fake, the easy fake drawn from an
answerable item); it is never a donor of easy fakes, gets no medium or hard fake and is never sent to the teacher.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.fidelity import StudyCompat
from aligner.core.io import DataError, iter_json_lines, write_jsonl_atomic
from aligner.core.paths import halueval_path
from aligner.core.runinfo import finish_stage, start_stage, write_run_config
from aligner.core.runner import data_fingerprint
from aligner.data.sources.halueval import load_halueval
from aligner.data.sources.squad import SquadReadStats, SquadRow, read_squad_csv, sample_squad

logger = logging.getLogger(__name__)

#: a suggested text for ``--abstention_target`` (off by default: the study left unanswerable rows out)
NO_ANSWER_TARGET = "The provided context does not contain the answer to this question."


def squad_record(row: SquadRow) -> dict:
    """The SQuAD set's record: the gold answer list (empty for unanswerable rows, as the study wrote it)."""
    return {"id": row.id, "title": row.title, "question": row.question, "context": row.context,
            "answers": list(row.answers), "answer_starts": list(row.answer_starts), "has_answer": row.has_answer}


# ---------------------------------------------------------------------------------------------
# The unified SFT view
# ---------------------------------------------------------------------------------------------

def _optional_path(path) -> Path | None:
    if path is None:
        return None
    s = str(path).strip()
    if not s or s.lower() == "none":
        return None
    return Path(s)


NQ_RAG_DEFAULT = "data_prep/train_nq_rag.jsonl"
SQUAD_DEFAULT = "data_prep/squad_15k.jsonl"


@dataclass(kw_only=True)
class SFTView(StudyCompat):
    """The inputs of the unified SFT view (``load_sft_view``).  Every stage that numbers items by data_index
    builds the view from the same files, --limit, --abstention_target and --study_compat."""

    nq_jsonl: str = field(default=NQ_RAG_DEFAULT, metadata={
        "help": "NQ RAG records; '' or none = no NQ", "group": "SFT view"})
    squad_jsonl: str = field(default=SQUAD_DEFAULT, metadata={
        "help": "SQuAD records; '' or none = no SQuAD", "group": "SFT view"})
    limit: int = field(default=-1, metadata={
        "help": "use the first N items of the SFT view, -1 or 0 = all; every stage of a run needs the same value",
        "group": "SFT view"})
    abstention_target: str = field(default="", metadata={
        "help": "keep unanswerable SQuAD questions in the view with this answer (e.g. 'The provided context does not "
                "contain the answer to this question.'); they are only the chosen side of their own easy pairs. '' = "
                "leave them out, as the study did", "group": "SFT view"})


def load_view(cfg: SFTView) -> tuple[list[dict], dict]:
    """(view, counts) of ``cfg`` (see ``load_sft_view``)."""
    stats: dict = {}
    view = load_sft_view(cfg.nq_jsonl, cfg.squad_jsonl, cfg.limit, stats, abstention_target=cfg.abstention_target,
                         raw=cfg.study_compat)
    return view, stats


def view_fingerprint(cfg: SFTView) -> dict:
    """What the view's items depend on, for a resumable stage's run fingerprint: the input files' sha256 and the
    settings that change the items."""
    return {"nq_sha256": data_fingerprint(_optional_path(cfg.nq_jsonl)),
            "squad_sha256": data_fingerprint(_optional_path(cfg.squad_jsonl)),
            "abstention_target": cfg.abstention_target or None, "raw_view": cfg.study_compat or None}


def different_question(record: dict, question: str) -> str | None:
    """The per-record check of a resumable stage whose records carry their item's question: why ``record``
    does not belong to the item asking ``question`` (None when it does)."""
    if record.get("question") is not None and record["question"] != question:
        return f"holds a different question ({str(record['question'])[:60]!r})"
    return None


def is_abstention(item: dict) -> bool:
    """An unanswerable question kept with ``--abstention_target``: only the chosen side of its own pairs."""
    return bool(item.get("abstention"))


def record_answers(rec: dict, path, line: int) -> list:
    """The gold answers of a view record: a list, a string, or a Hugging Face style ``{"text": [...]}`` dict."""
    answers = rec.get("answers")
    if answers is None:
        return []
    if isinstance(answers, dict):
        if "text" not in answers:
            raise DataError(path, f"'answers' is a dict without 'text' (keys {sorted(answers)[:5]})", line)
        answers = answers["text"]
    if isinstance(answers, str):
        return [answers]
    if not isinstance(answers, (list, tuple)):
        raise DataError(path, f"'answers' must be a list of strings, got {type(answers).__name__}", line)
    return list(answers)


def record_context(rec: dict, path, line: int) -> str:
    """The first non-empty of ``context``, ``contexts`` (joined by a blank line) and ``knowledge``."""
    for key in ("context", "contexts", "knowledge"):
        value = rec.get(key)
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, str) for v in value):
                raise DataError(path, f"'{key}' must be a string or a list of strings", line)
            value = "\n\n".join(value)
        elif value is not None and not isinstance(value, str):
            raise DataError(path, f"'{key}' must be a string or a list of strings, got {type(value).__name__}", line)
        if value and value.strip():
            return value
    return ""


def view_item(rec: dict, path, line: int, raw: bool = False) -> tuple[dict | None, str]:
    """(question, context, ideal answer) of one record, or (None, why it is left out).  ``raw`` (the study):
    the texts unstripped and the first answer as the ideal one; else stripped, the first non-blank answer."""
    question = rec.get("question")
    if not isinstance(question, str):
        raise DataError(path, f"'question' must be a string, got {type(question).__name__}", line)
    answers = record_answers(rec, path, line)
    if not all(isinstance(a, str) for a in answers):
        raise DataError(path, "'answers' must hold strings only", line)
    context = record_context(rec, path, line)
    if raw:
        ideal = answers[0] if answers else ""
    else:
        question, context = question.strip(), context.strip()
        ideal = next((a.strip() for a in answers if a.strip()), "")
    if not question.strip() or not context.strip():
        return None, "no_context" if question.strip() else "no_question"
    if not ideal:
        return {"question": question, "context": context}, "no_answer"
    return {"question": question, "context": context, "ideal_answer": ideal}, "ok"


def load_sft_view(nq_path=None, squad_path=None, limit: int | None = None, stats: dict | None = None,
                  abstention_target: str = "", raw: bool = False) -> list[dict]:
    """NQ RAG records then SQuAD records as {question, context, ideal_answer, data_index, source, source_id}.

    ``data_index`` is the position in this list, so every stage that builds the view from the same files
    (and ``limit``) agrees on it.  The NQ context is its reranked passages joined by a blank line; the ideal
    answer is the first gold answer.  Records without a context or an answer are skipped and counted
    (``stats['skipped_<reason>_<source>']``), except unanswerable SQuAD questions with ``abstention_target``
    (they come with ``abstention: true``).  A record whose question or answers are not strings stops the read
    with the file and line.  An empty path or ``none`` means "no such source".
    """
    stats = stats if stats is not None else {}
    nq_path, squad_path = _optional_path(nq_path), _optional_path(squad_path)
    if nq_path is None and squad_path is None:
        raise ValueError("give at least one of the NQ RAG file and the SQuAD file")
    view: list[dict] = []
    for source, path in (("nq", nq_path), ("squad", squad_path)):
        if path is None:
            continue
        kept = 0
        for line, rec in iter_json_lines(path):
            if not isinstance(rec, dict):
                raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line)
            item, why = view_item(rec, path, line, raw)
            if why == "no_answer" and abstention_target and source == "squad":
                item, why = {**item, "ideal_answer": abstention_target, "abstention": True}, "ok"
                stats["abstention_items"] = stats.get("abstention_items", 0) + 1
            if why != "ok":
                stats[f"skipped_{why}_{source}"] = stats.get(f"skipped_{why}_{source}", 0) + 1
                continue
            view.append({**item, "data_index": len(view), "source": source,
                         "source_id": rec.get("example_id", rec.get("id"))})
            kept += 1
        stats[f"loaded_{source}"] = kept
        skipped = {k: v for k, v in stats.items() if k.startswith("skipped_") and k.endswith(f"_{source}")}
        if skipped:
            logger.warning("%s: left out %s", path, ", ".join(f"{v} ({k[8:]})" for k, v in skipped.items()))
    if limit is not None and limit > 0:
        view = view[:limit]
    stats["view_size"] = len(view)
    return view


@dataclass(kw_only=True)
class SquadConfig(StudyCompat):
    """Stage 3: the SQuAD v2 set (create_squad_training.py; create_squad_validation.py changes the defaults).
    ``--study_compat`` classifies rows with the study's answers parser (it misreads answers containing ")")."""

    csv_file: str = field(default="datasets/squad2/train.csv", metadata={
        "help": "SQuAD v2 CSV with columns question, context, answers (id, title optional)"})
    output_file: str = field(default="squad_15k.jsonl", metadata={"help": "normalised JSON lines"})
    n_answerable: int = field(default=10000, metadata={
        "help": "answerable rows sampled (when fewer exist, more unanswerable ones fill the total, as the study); "
                "-1 = all"})
    n_unanswerable: int = field(default=5000, metadata={"help": "unanswerable rows sampled, -1 = all"})
    whole_file_when_small: bool = field(default=False, metadata={
        "help": "a CSV of at most n_answerable + n_unanswerable rows is taken whole, shuffled in file order (the "
                "study's validation script)"})
    limit: int = field(default=-1, metadata={"help": "keep at most this many of the shuffled sample, -1 or 0 = all"})
    seed: int = field(default=42, metadata={"help": "the pandas random_state of the samples and the shuffle"})
    skip_invalid: bool = field(default=False, metadata={
        "help": "skip (and count) rows with unreadable answers instead of stopping"})


def make_squad_set(cfg: SquadConfig) -> dict:
    """SQuAD v2 CSV -> sampled, normalised JSON lines (see ``squad_record``), run_config.json beside them;
    returns the counts."""
    out_dir = start_stage(Path(cfg.output_file).resolve().parent, cfg)
    rstats = SquadReadStats()
    rows = read_squad_csv(cfg.csv_file, skip_invalid=cfg.skip_invalid, stats=rstats, study_parser=cfg.study_compat)
    if not rows:
        raise DataError(cfg.csv_file, "no usable rows")
    sampled, info = sample_squad(rows, cfg.n_answerable, cfg.n_unanswerable, cfg.seed, cfg.whole_file_when_small)
    if cfg.limit is not None and cfg.limit > 0:
        sampled = sampled[:cfg.limit]
    records = [squad_record(r) for r in sampled]
    write_jsonl_atomic(cfg.output_file, records)
    counts = {"csv_rows": rstats.rows, "bad_rows_skipped": rstats.skipped, "parser": "study" if cfg.study_compat
              else "aligner", "parsers_disagree": rstats.parsers_disagree, **info, "written": len(records),
              "written_answerable": sum(r["has_answer"] for r in records),
              "written_unanswerable": sum(not r["has_answer"] for r in records)}
    return finish_stage(out_dir, cfg, counts)


# --- HaluEval rows in SQuAD format (demo and tests: real text, no SQuAD download) ----------------

def numpy_repr_answers(texts: Sequence[str], starts: Sequence[int]) -> str:
    """The cell pandas writes for a SQuAD answers dict of NumPy arrays (what ``parse_answers_cell`` reads)."""
    t = ", ".join(repr(x) for x in texts)
    s = ", ".join(str(x) for x in starts)
    return f"{{'text': array([{t}], dtype=object), 'answer_start': array([{s}], dtype=int32)}}"


def halueval_to_squad_csv(rows: Sequence[dict], out_csv: str | os.PathLike, unanswerable_every: int = 0,
                          id_prefix: str = "h") -> list[dict]:
    """Write HaluEval rows as a SQuAD v2 CSV (question, context = knowledge, answers = right_answer).

    Every ``unanswerable_every``-th row gets an empty answers array (SQuAD v2's unanswerable case).
    Returns, per row, what the SQuAD reader should parse it to.
    """
    import io as _io

    from aligner.core.io import atomic_write_text

    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "title", "context", "question", "answers"])
    expected = []
    for i, r in enumerate(rows):
        ans = r["right_answer"].strip()
        unanswerable = bool(unanswerable_every) and i % unanswerable_every == unanswerable_every - 1
        cell = numpy_repr_answers([], []) if unanswerable else numpy_repr_answers([ans], [r["knowledge"].find(ans)])
        w.writerow([f"{id_prefix}{i}", f"title {i}", r["knowledge"], r["question"], cell])
        expected.append({"id": f"{id_prefix}{i}", "question": r["question"].strip(),
                         "context": r["knowledge"].strip(), "answers": [] if unanswerable else [ans]})
    atomic_write_text(out_csv, buf.getvalue())
    return expected


@dataclass(kw_only=True)
class HaluEvalSquadSliceConfig:
    """``scripts/halueval_to_squad.py``: which HaluEval rows become the SQuAD-format CSV."""

    data_path: str = field(default=str(halueval_path()), metadata={"help": "HaluEval qa_data.json"})
    output_file: str = field(metadata={"help": "the SQuAD-format CSV to write"})
    start: int = field(default=1000, metadata={"help": "first HaluEval row used (0-based)"})
    n: int = field(default=300, metadata={"help": "number of rows"})
    eval_rows: int = field(default=50, metadata={
        "help": "rows [0, eval_rows) are kept for evaluation; --start must not overlap them"})
    unanswerable_every: int = field(default=0, metadata={
        "help": "every k-th row gets an empty answer (SQuAD v2 unanswerable); 0 = none"})


def write_halueval_squad_slice(cfg: HaluEvalSquadSliceConfig) -> list[dict]:
    """HaluEval rows [start, start + n) as a SQuAD v2 CSV, with its run config beside it; returns what the
    SQuAD reader should parse each row to (``halueval_to_squad_csv``)."""
    if cfg.start < cfg.eval_rows:
        raise ValueError(f"--start {cfg.start} overlaps the evaluation rows [0, {cfg.eval_rows})")
    rows = load_halueval(cfg.data_path, cfg.start + cfg.n, required=("knowledge", "question", "right_answer"))
    rows = rows[cfg.start:]
    if len(rows) < cfg.n:
        raise DataError(cfg.data_path, f"has only {cfg.start + len(rows)} rows")
    expected = halueval_to_squad_csv(rows, cfg.output_file, unanswerable_every=cfg.unanswerable_every)
    write_run_config(Path(cfg.output_file).parent, cfg, filename="halueval_to_squad_run_config.json",
                     extra={"rows": [cfg.start, cfg.start + len(rows)]})
    print(f"wrote {len(rows)} HaluEval rows [{cfg.start}, {cfg.start + len(rows)}) as SQuAD CSV "
          f"{cfg.output_file} (disjoint from evaluation rows [0, {cfg.eval_rows}))")
    return expected
