"""SFT-style question/context/answer sets: SQuAD v2 from its CSV export, the NQ RAG records, and the unified
view every negative-sampling stage works on.

SQuAD v2 exported with pandas writes the ``answers`` cell as the repr of a dict of NumPy arrays,
``{'text': array(['Denver Broncos'], dtype=object), 'answer_start': array([177], dtype=int32)}``, which is
neither JSON nor a Python literal.  ``parse_answers_cell`` reads it with a small AST walker that accepts
literals and ``array(...)``-style calls only (never ``eval``).

Unanswerable SQuAD v2 questions (no answer text) get the fixed target ``NO_ANSWER_TARGET`` as their answer,
so the unified view teaches abstention instead of silently dropping them; ``has_answer`` keeps the flag.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import DataError, read_jsonl, read_records, write_jsonl_atomic
from aligner.core.paths import halueval_path
from aligner.core.runinfo import finish_stage, start_stage, write_run_config
from aligner.core.runner import data_fingerprint
from aligner.data.sources.squad import SquadReadStats, SquadRow, read_squad_csv, sample_squad

logger = logging.getLogger(__name__)

NO_ANSWER_TARGET = "The provided context does not contain the answer to this question."


def squad_record(row: SquadRow, no_answer_target: str = NO_ANSWER_TARGET) -> dict:
    """The normalised SFT record: answers is the gold list, or [no_answer_target] for unanswerable rows."""
    return {"id": row.id, "title": row.title, "question": row.question, "context": row.context,
            "answers": list(row.answers) if row.has_answer else [no_answer_target],
            "answer_starts": list(row.answer_starts) if row.has_answer else [],
            "has_answer": row.has_answer}


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
class SFTView:
    """The inputs of the unified SFT view (``load_sft_view``).  Every stage that numbers items by data_index
    builds the view from the same files and --limit."""

    nq_jsonl: str = field(default=NQ_RAG_DEFAULT, metadata={
        "help": "NQ RAG records; '' or none = no NQ", "group": "SFT view"})
    squad_jsonl: str = field(default=SQUAD_DEFAULT, metadata={
        "help": "SQuAD records; '' or none = no SQuAD", "group": "SFT view"})
    limit: int = field(default=-1, metadata={
        "help": "use the first N items of the SFT view, -1 = all; every stage of a run needs the same value",
        "group": "SFT view"})


def load_view(cfg: SFTView) -> tuple[list[dict], dict]:
    """(view, counts) of ``cfg`` (see ``load_sft_view``)."""
    stats: dict = {}
    view = load_sft_view(cfg.nq_jsonl, cfg.squad_jsonl, cfg.limit, stats)
    return view, stats


def view_fingerprint(cfg: SFTView) -> dict:
    """What the view's items depend on, for a resumable stage's run fingerprint: the input files' sha256."""
    return {"nq_sha256": data_fingerprint(_optional_path(cfg.nq_jsonl)),
            "squad_sha256": data_fingerprint(_optional_path(cfg.squad_jsonl))}


def different_question(record: dict, question: str) -> str | None:
    """The per-record check of a resumable stage whose records carry their item's question: why ``record``
    does not belong to the item asking ``question`` (None when it does)."""
    if record.get("question") is not None and record["question"] != question:
        return f"holds a different question ({str(record['question'])[:60]!r})"
    return None


def load_sft_view(nq_path=None, squad_path=None, limit: int | None = None, stats: dict | None = None) -> list[dict]:
    """NQ RAG records then SQuAD records as {question, context, ideal_answer, data_index, source, source_id}.

    ``data_index`` is the position in this list, so every stage that builds the view from the same files
    (and ``limit``) agrees on it.  The NQ context is its reranked passages joined by a blank line; the ideal
    answer is the first gold answer.  Records without a context or an answer are skipped and counted
    (``stats['skipped_<source>']``).  An empty path or ``none`` means "no such source".
    """
    stats = stats if stats is not None else {}
    nq_path, squad_path = _optional_path(nq_path), _optional_path(squad_path)
    if nq_path is None and squad_path is None:
        raise ValueError("give at least one of the NQ RAG file and the SQuAD file")
    view: list[dict] = []
    for source, path in (("nq", nq_path), ("squad", squad_path)):
        if path is None:
            continue
        kept = skipped = 0
        for rec in read_jsonl(path, required=["question"]):
            ctx = rec.get("context")
            if not ctx and rec.get("contexts"):
                ctx = "\n\n".join(rec["contexts"])
            if isinstance(ctx, list):
                ctx = "\n\n".join(ctx)
            answers = rec.get("answers") or []
            answers = [answers] if isinstance(answers, str) else answers
            ideal = next((a.strip() for a in answers if isinstance(a, str) and a.strip()), "")
            if not ctx or not str(ctx).strip() or not ideal:
                skipped += 1
                continue
            view.append({"question": rec["question"].strip(), "context": str(ctx).strip(), "ideal_answer": ideal,
                         "data_index": len(view), "source": source,
                         "source_id": rec.get("example_id", rec.get("id"))})
            kept += 1
        stats[f"loaded_{source}"] = kept
        stats[f"skipped_{source}"] = skipped
        if skipped:
            logger.warning("%s: skipped %d record(s) without context or answer", path, skipped)
    if limit is not None and limit >= 0:
        view = view[:limit]
    stats["view_size"] = len(view)
    return view


@dataclass(kw_only=True)
class SquadConfig:
    """Stage 3: the SQuAD v2 set (create_squad_training.py; create_squad_validation.py changes the defaults)."""

    csv_file: str = field(default="datasets/squad2/train.csv", metadata={
        "help": "SQuAD v2 CSV with columns question, context, answers (id, title optional)"})
    output_file: str = field(default="squad_15k.jsonl", metadata={"help": "normalised JSON lines"})
    n_answerable: int = field(default=10000, metadata={"help": "answerable rows sampled, -1 = all"})
    n_unanswerable: int = field(default=5000, metadata={"help": "unanswerable rows sampled, -1 = all"})
    no_answer_target: str = field(default=NO_ANSWER_TARGET, metadata={
        "help": "answer given to unanswerable questions"})
    limit: int = field(default=-1, metadata={"help": "keep at most this many of the shuffled sample, -1 = all"})
    seed: int = field(default=42, metadata={"help": "sampling and shuffling seed"})
    skip_invalid: bool = field(default=False, metadata={
        "help": "skip (and count) rows with unreadable answers instead of stopping"})


def make_squad_set(cfg: SquadConfig) -> dict:
    """SQuAD v2 CSV -> sampled, normalised JSON lines (see ``squad_record``), run_config.json beside them;
    returns the counts."""
    out_dir = start_stage(Path(cfg.output_file).resolve().parent, cfg)
    rstats = SquadReadStats()
    rows = read_squad_csv(cfg.csv_file, skip_invalid=cfg.skip_invalid, stats=rstats)
    if not rows:
        raise DataError(cfg.csv_file, "no usable rows")
    sampled, info = sample_squad(rows, cfg.n_answerable, cfg.n_unanswerable, cfg.seed)
    if cfg.limit is not None and cfg.limit >= 0:
        sampled = sampled[:cfg.limit]
    records = [squad_record(r, cfg.no_answer_target) for r in sampled]
    write_jsonl_atomic(cfg.output_file, records)
    counts = {"csv_rows": rstats.rows, "bad_rows_skipped": rstats.skipped, **info,
              "written": len(records), "written_answerable": sum(r["has_answer"] for r in records),
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
    rows = read_records(cfg.data_path, ["knowledge", "question", "right_answer"], limit=cfg.start + cfg.n)[cfg.start:]
    if len(rows) < cfg.n:
        raise DataError(cfg.data_path, f"has only {cfg.start + len(rows)} rows")
    expected = halueval_to_squad_csv(rows, cfg.output_file, unanswerable_every=cfg.unanswerable_every)
    write_run_config(Path(cfg.output_file).parent, cfg, filename="halueval_to_squad_run_config.json",
                     extra={"rows": [cfg.start, cfg.start + len(rows)]})
    print(f"wrote {len(rows)} HaluEval rows [{cfg.start}, {cfg.start + len(rows)}) as SQuAD CSV "
          f"{cfg.output_file} (disjoint from evaluation rows [0, {cfg.eval_rows}))")
    return expected
