"""Natural Questions: reading the (gzipped) JSON-lines shards, article text, titles and short/long answers."""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from aligner.core.io import DataError, check_types, iter_json_lines

logger = logging.getLogger(__name__)

# An NQ HTML token: <P>, </Td>, <Table border="1"> (the simplified format keeps attributes out, but be lenient).
_HTML_TOKEN = re.compile(r"^</?[A-Za-z][A-Za-z0-9]*(\s[^<>]*)?/?>$")


#: the fields the readers use, as they must be typed (original NQ: document_tokens; simplified: document_text)
_OPT = type(None)
NQ_TYPES = {"question_text": str, "document_text": str, "document_tokens": list, "document_title": (str, _OPT),
            "document_url": (str, _OPT), "example_id": (int, str), "annotations": (list, _OPT)}


def iter_nq_records(path: str | os.PathLike, skip_invalid: bool = False, stats: dict | None = None
                    ) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) from an NQ shard (.jsonl.gz or .jsonl).

    A line that is not JSON, or lacks ``question_text`` and a document (``document_tokens`` or
    ``document_text``), raises ``DataError`` naming the file and line (or is counted in
    ``stats['invalid']`` when ``skip_invalid``).
    """
    def check(rec, where, lineno):
        if not isinstance(rec, dict):
            raise DataError(where, "expected a JSON object", lineno)
        if "document_tokens" not in rec and "document_text" not in rec:
            raise DataError(where, "neither 'document_tokens' (original NQ) nor 'document_text' (simplified NQ) "
                                   "present", lineno)
        if "question_text" not in rec:
            raise DataError(where, "missing 'question_text'", lineno)
        check_types(rec, NQ_TYPES, where, lineno)

    def skipped(err: DataError, lineno: int) -> None:
        logger.warning("skipping: %s", err)
        if stats is not None:
            stats["invalid"] = stats.get("invalid", 0) + 1

    yield from iter_json_lines(path, check, skip_invalid=skip_invalid, on_skip=skipped)


def nq_tokens(rec: dict) -> list[tuple[str, bool]]:
    """The document as (token, is_html) pairs, in the order answer spans index them."""
    if "document_tokens" in rec:
        return [(t["token"], bool(t.get("html_token", False))) for t in rec["document_tokens"]]
    return [(t, bool(_HTML_TOKEN.match(t))) for t in rec["document_text"].split(" ")]


def span_text(tokens: Sequence[tuple[str, bool]], start: int, end: int) -> str:
    """Plain text of tokens[start:end] without the HTML tokens."""
    return " ".join(t for t, html in tokens[start:end] if not html and t).strip()


def strip_html_text(tokens: Sequence[tuple[str, bool]]) -> str:
    return span_text(tokens, 0, len(tokens))


def nq_title(rec: dict, tokens: Sequence[tuple[str, bool]] | None = None) -> str:
    """``document_title`` (original NQ); else the URL's ``title=`` parameter; else the first <H1> span."""
    title = rec.get("document_title")
    if title:
        return str(title).strip()
    url = (rec.get("document_url") or "").replace("&amp;", "&")
    if url:
        parsed = urlparse(url)
        q = parse_qs(parsed.query).get("title")
        if q and q[0]:
            return unquote(q[0]).replace("_", " ").strip()
        if "/wiki/" in parsed.path:
            return unquote(parsed.path.rsplit("/wiki/", 1)[1]).replace("_", " ").strip()
    tokens = tokens if tokens is not None else nq_tokens(rec)
    words: list[str] = []
    inside = False
    for tok, html in tokens:
        if html and tok.upper().startswith("<H1"):
            inside = True
            continue
        if html and inside:
            break
        if inside:
            words.append(tok)
    return " ".join(words).strip()


def nq_answers(rec: dict, tokens: Sequence[tuple[str, bool]] | None = None) -> tuple[list[str], str]:
    """Gold answers of the first annotation: its short answers, else its long answer text.

    Returns (answers, kind) with kind ``short``, ``long`` or ``none``.
    """
    tokens = tokens if tokens is not None else nq_tokens(rec)
    anns = rec.get("annotations") or []
    if not anns:
        return [], "none"
    first = anns[0]
    shorts = []
    for sa in first.get("short_answers") or []:
        s, e = sa.get("start_token", -1), sa.get("end_token", -1)
        if s is not None and s >= 0 and e > s:
            text = span_text(tokens, s, e)
            if text:
                shorts.append(text)
    if shorts:
        return shorts, "short"
    la = first.get("long_answer") or {}
    s, e = la.get("start_token", -1), la.get("end_token", -1)
    if s is not None and s >= 0 and e > s:
        text = span_text(tokens, s, e)
        if text:
            return [text], "long"
    return [], "none"


@dataclass
class Article:
    title: str
    text: str
    url: str


@dataclass
class CorpusStats:
    records: int = 0
    articles: int = 0
    duplicate_titles: int = 0
    untitled: int = 0
    too_short: int = 0
    invalid: int = 0
    per_file: dict = field(default_factory=dict)


def iter_articles(paths: Sequence[str | os.PathLike], stats: CorpusStats, min_chars: int = 200,
                  skip_invalid: bool = False, limit: int | None = None, progress: bool = True) -> Iterator[Article]:
    """Unique articles in first-seen order over ``paths`` (the first occurrence of each title wins), with the HTML
    tokens removed, streamed: only the titles seen are held.  Articles whose plain text is shorter than
    ``min_chars`` characters are dropped and counted, as are untitled records.  ``limit`` caps the NQ records read
    over all files (0, -1 or None: all, as the study's `if args.limit:`)."""
    from tqdm.auto import tqdm

    seen: set[str] = set()
    for path in paths:
        istats: dict = {}
        n_file = 0
        for _, rec in tqdm(iter_nq_records(path, skip_invalid, istats), desc=f"reading {Path(path).name}",
                           disable=not progress, unit="rec"):
            if limit is not None and 0 < limit <= stats.records:
                break
            stats.records += 1
            n_file += 1
            tokens = nq_tokens(rec)
            title = nq_title(rec, tokens)
            if not title:
                stats.untitled += 1
                continue
            if title in seen:
                stats.duplicate_titles += 1
                continue
            seen.add(title)
            text = strip_html_text(tokens)
            if len(text) < min_chars:
                stats.too_short += 1
                continue
            stats.articles += 1
            yield Article(title=title, text=text, url=rec.get("document_url", "") or "")
        stats.invalid += istats.get("invalid", 0)
        stats.per_file[str(path)] = n_file


def collect_articles(paths: Sequence[str | os.PathLike], min_chars: int = 200, skip_invalid: bool = False,
                     limit: int | None = None, progress: bool = True) -> tuple[list[Article], CorpusStats]:
    """``iter_articles`` as a list (small corpora and tests), with its counts."""
    stats = CorpusStats()
    articles = list(iter_articles(paths, stats, min_chars, skip_invalid, limit, progress))
    return articles, stats


def find_nq_shards(nq_dir: str | os.PathLike, split: str = "all") -> list[Path]:
    """NQ shards (*.jsonl.gz, else *.jsonl) under ``nq_dir``, train shards first; ``split`` train/dev picks the
    files whose name contains it (all files when none does)."""
    nq_dir = Path(nq_dir)
    if not nq_dir.is_dir():
        raise DataError(nq_dir, "NQ folder not found")
    files = sorted(nq_dir.rglob("*.jsonl.gz")) or sorted(nq_dir.rglob("*.jsonl"))
    if not files:
        raise DataError(nq_dir, "no *.jsonl.gz (or *.jsonl) NQ shards in this folder")
    # Train shards first (the study's order), so a --limit run indexes the articles its questions come from.
    files.sort(key=lambda f: ("train" not in f.name, str(f)))
    if split != "all":
        picked = [f for f in files if split in f.name]
        if picked:
            return picked
        logger.warning("%s: no shard name contains %r; using all %d shards", nq_dir, split, len(files))
    return files


def shard_name(path: Path) -> str:
    """``nq-train-00`` for ``.../nq-train-00.jsonl.gz``."""
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def select_nq_shards(nq_dir: str | os.PathLike, shards: Sequence[str], stats: dict | None = None) -> list[Path]:
    """The shards named in ``shards`` (names such as ``nq-train-00`` or patterns such as ``nq-train-*``, in that
    order; ``all`` = every shard under ``nq_dir``, train first).  A name with no file is logged and counted
    (``stats['missing_shards']``); none found at all is an error listing what the folder holds."""
    files = find_nq_shards(nq_dir)
    if not shards or list(shards) == ["all"]:
        return files
    picked: list[Path] = []
    missing = []
    for pattern in shards:
        hits = [f for f in files if fnmatch.fnmatch(shard_name(f), pattern) and f not in picked]
        if not hits:
            missing.append(pattern)
        picked += hits
    if not picked:
        raise DataError(nq_dir, f"none of the NQ shards {list(shards)} is here (found: "
                                f"{', '.join(shard_name(f) for f in files[:8])}); pass --nq_shards all or the names")
    if missing:
        logger.warning("%s: NQ shard(s) %s not found; using %d shard(s)", nq_dir, missing, len(picked))
        if stats is not None:
            stats["missing_shards"] = missing
    return picked


def nq_question_items(paths: Sequence[str | os.PathLike], skip_invalid: bool = False, limit: int | None = None,
                      stats: dict | None = None, keep_unanswered: bool = True) -> Iterator[dict]:
    """{example_id, question, answers, answer_kind} per NQ record, the first ``limit`` records (0, -1 or None: all).
    A record without a gold answer comes with ``answers: []`` (the study wrote those too); with
    ``keep_unanswered=False`` it is skipped and counted (``stats['no_answer']``)."""
    stats = stats if stats is not None else {}
    n = 0
    for path in paths:
        for lineno, rec in iter_nq_records(path, skip_invalid, stats):
            if limit is not None and 0 < limit <= n:
                return
            n += 1
            stats["read"] = stats.get("read", 0) + 1
            tokens = nq_tokens(rec)
            answers, kind = nq_answers(rec, tokens)
            stats[f"answer_{kind}"] = stats.get(f"answer_{kind}", 0) + 1
            if not answers and not keep_unanswered:
                stats["no_answer"] = stats.get("no_answer", 0) + 1
                continue
            question = str(rec["question_text"]).strip()
            if not question:
                raise DataError(path, "empty question_text", lineno)
            yield {"example_id": rec.get("example_id", f"{Path(path).name}:{lineno}"), "question": question,
                   "answers": answers, "answer_kind": kind}


#: the study's shards per stage: the index (retrieval/faiss_index_creator.py:18-28), the NQ RAG training set
#: (create_nq_training.py:12-18) and the validation set (create_nq_validation.py:12)
STUDY_TRAIN_SHARDS = tuple(f"nq-train-{i:02d}" for i in range(5))
STUDY_DEV_SHARDS = ("nq-dev-00",)
STUDY_INDEX_SHARDS = STUDY_TRAIN_SHARDS + STUDY_DEV_SHARDS


@dataclass(kw_only=True)
class NQShards:
    """Which Natural Questions shards a stage reads (the index and NQ RAG stages)."""

    nq_files: list[str] | None = field(default=None, metadata={
        "help": "NQ shard files (*.jsonl.gz or *.jsonl); overrides --nq_dir and --nq_shards (default: none)",
        "nargs": "*"})
    nq_dir: str | None = field(default=None, metadata={
        "help": "folder searched recursively for the --nq_shards (default: none)"})
    nq_shards: list[str] = field(default_factory=lambda: list(STUDY_INDEX_SHARDS), metadata={
        "help": "shard names (or patterns such as nq-train-*) read from --nq_dir, in order; 'all' = every shard "
                "(train first)", "nargs": "+"})

    def paths(self, stats: dict | None = None) -> list[Path]:
        return resolve_nq_paths(self.nq_files, self.nq_dir, self.nq_shards, stats)


def resolve_nq_paths(nq_files: Sequence[str] | None, nq_dir: str | None, shards: Sequence[str],
                     stats: dict | None = None) -> list[Path]:
    """Explicit ``--nq_files`` win; else the ``shards`` of ``--nq_dir``."""
    if nq_files:
        paths = [Path(p) for p in nq_files]
        for p in paths:
            if not p.is_file():
                raise DataError(p, "NQ shard not found")
        return paths
    if nq_dir:
        return select_nq_shards(nq_dir, shards, stats)
    raise ValueError("give --nq_files or --nq_dir")
