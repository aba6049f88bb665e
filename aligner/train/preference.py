"""Preference pairs: loading (both field spellings), the levels of each recipe, and held-out implicit rewards.

Field spellings accepted (the study's files use both):

    prompt   <- prompt | question
    context  <- context | knowledge | contexts (a list, joined by blank lines)      (optional)
    chosen   <- chosen | ideal_answer | right_answer
    rejected <- rejected | fake_answer | hallucinated_answer

Each field is the first spelling the record holds (the context: the first non-empty one).  ``PairRules`` holds the
study's other readings: the context by its recipe's rule (``--context_fields study``), empty or missing fields kept
as "" (``--keep_empty_fields``), identical answers kept (``--keep_identical``).

Tokenization (prompt formats, response span, over-long pairs): ``aligner.train.pair_tokens``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from aligner.core.io import DataError, check_types, json_error, read_json
from aligner.core.models import use_adapter
from aligner.core.paths import LEVELS, PAIR_FILES, PUBLISHED_TEACHER_PAIRS_FILE, TEACHER_PAIRS_FILE, pair_file
from aligner.train.config import CurriculumData, LatestRecipeData
from aligner.train.curriculum import shuffled_mix
from aligner.train.pair_tokens import (  # noqa: F401  (re-exported: the trainer, scripts and tests import them here)
    PROMPT_FORMATS,
    TRUNCATION_MODES,
    PairTokenizer,
    TokenizedPair,
    TokenizeStats,
)

logger = logging.getLogger(__name__)

FIELD_SPELLINGS: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "question"),
    "context": ("context", "knowledge", "contexts"),
    "chosen": ("chosen", "ideal_answer", "right_answer"),
    "rejected": ("rejected", "fake_answer", "hallucinated_answer"),
}
#: the types a pair record's fields may have (null = absent); checked for every spelling the record holds
PAIR_FIELD_TYPES = {key: ((str, list, type(None)) if name == "context" else (str, type(None)))
                    for name, keys in FIELD_SPELLINGS.items() for key in keys}
#: --context_fields study: the keys each recipe's script read the context from, the first the record holds winning
#: even when empty: the first and improved scripts ``j.get("context", "")`` (FI:44, FII:44), the latest
#: ``e.get("context", e.get("knowledge", ""))`` (FU:46)
STUDY_CONTEXT_KEYS = {"first": ("context",), "improved": ("context",), "latest": ("context", "knowledge")}


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------

@dataclass
class PreferencePair:
    prompt: str
    context: str
    chosen: str
    rejected: str
    source: str = ""   # file the pair came from
    line: int = 0      # 1-based line in that file


@dataclass
class LoadStats:
    n_read: int = 0
    n_skipped: int = 0          # invalid lines skipped (skip_invalid=True)
    n_identical: int = 0        # chosen == rejected: no preference to learn; skipped unless keep_identical
    n_empty: int = 0            # kept with an empty or missing prompt or answer (keep_empty)
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PairRules:
    """How records become pairs where the study read them otherwise (README, Differences from the study: T11, T19,
    T20).  ``context_keys``: None = the first non-empty context spelling; else the keys read, the first one the
    record holds giving the context (``STUDY_CONTEXT_KEYS``)."""
    keep_identical: bool = False
    keep_empty: bool = False
    context_keys: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, cfg) -> PairRules:
        keys = STUDY_CONTEXT_KEYS[cfg.recipe] if cfg.context_fields == "study" else None
        return cls(keep_identical=bool(cfg.keep_identical), keep_empty=bool(cfg.keep_empty_fields),
                   context_keys=keys)


def _pick(record: dict, name: str) -> tuple[str | None, object]:
    """(key, value) of the first spelling of ``name`` the record holds, (None, None) when none."""
    for key in FIELD_SPELLINGS[name]:
        value = record.get(key)
        # an empty context under one spelling must not hide a filled one under another ("context": "" + knowledge)
        if value is not None and not (name == "context" and value in ("", [])):
            return key, value
    return None, None


def _context(record: dict, keys: tuple[str, ...] | None) -> tuple[str | None, object]:
    if keys is None:
        return _pick(record, "context")
    return next(((k, record[k]) for k in keys if k in record), (None, None))


def normalize_pair(record, path: str | os.PathLike, line: int, rules: PairRules = PairRules()) -> PreferencePair:
    """Map one record in either spelling to a ``PreferencePair``; ``DataError`` (file, line, field) when invalid."""
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line)
    check_types(record, PAIR_FIELD_TYPES, path, line)
    values = {}
    for name in ("prompt", "chosen", "rejected"):
        _, v = _pick(record, name)
        if v is None and not rules.keep_empty:
            raise DataError(path, f"missing field '{name}' (accepted spellings: {', '.join(FIELD_SPELLINGS[name])})",
                            line)
        if not (v or "").strip() and not rules.keep_empty:
            raise DataError(path, f"empty field '{name}'", line)
        values[name] = v or ""  # keep_empty: the study's ``(entry.get('chosen') or "")`` (FU:109-110,148-149)
    key, ctx = _context(record, rules.context_keys)
    if isinstance(ctx, list):
        if not all(isinstance(c, str) for c in ctx):
            raise DataError(path, f"field '{key}' must be a string or a list of strings", line)
        ctx = "\n\n".join(ctx)
    return PreferencePair(prompt=values["prompt"], context=ctx or "", chosen=values["chosen"],
                          rejected=values["rejected"], source=str(path), line=line)


def load_pairs(path: str | os.PathLike, limit: int | None = None, skip_invalid: bool = False,
               stats: LoadStats | None = None, allow_empty: bool = False,
               rules: PairRules = PairRules()) -> list[PreferencePair]:
    """Read preference pairs from a JSON-lines file (or a .json array).

    ``limit`` keeps the first N valid pairs (None or < 0: all).  A malformed line raises ``DataError`` naming
    the file and line, or is counted and skipped with ``skip_invalid``.  Pairs whose chosen and rejected
    answers are identical carry no preference and are skipped (counted, logged) unless ``rules.keep_identical``
    (the study keeps them; they are still counted, and ``limit`` then counts them as the study's ``raw[:N]``
    does); pairs with an empty or missing prompt or answer are invalid unless ``rules.keep_empty`` (then kept as
    "", counted, logged).  A file with no usable pair is a ``DataError`` unless ``allow_empty`` (then a logged
    warning).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    stats = stats if stats is not None else LoadStats()
    out: list[PreferencePair] = []
    for lineno, record in _numbered_records(path):
        if limit is not None and limit >= 0 and len(out) >= limit:
            break
        try:
            if isinstance(record, DataError):
                raise record
            pair = normalize_pair(record, path, lineno, rules)
        except DataError as err:
            if not skip_invalid:
                raise
            stats.n_skipped += 1
            stats.reasons.append(str(err))
            continue
        if pair.chosen.strip() == pair.rejected.strip():
            stats.n_identical += 1
            if not rules.keep_identical:
                continue
        stats.n_empty += int(not all(v.strip() for v in (pair.prompt, pair.chosen, pair.rejected)))
        stats.n_read += 1
        out.append(pair)
    _log_counts(path, stats, rules)
    if not out:
        if not allow_empty:
            raise DataError(path, "no usable preference pairs in the file")
        logger.warning("%s: no usable preference pairs", path)
    return out


def _log_counts(path: Path, stats: LoadStats, rules: PairRules) -> None:
    if stats.n_skipped:
        logger.warning("%s: skipped %d invalid line(s), first: %s", path, stats.n_skipped, stats.reasons[0])
    if stats.n_identical:
        logger.warning("%s: %s %d pair(s) whose chosen and rejected answers are identical", path,
                       "kept" if rules.keep_identical else "skipped", stats.n_identical)
    if stats.n_empty:
        logger.warning("%s: kept %d pair(s) with an empty or missing prompt or answer (--keep_empty_fields)", path,
                       stats.n_empty)


def _numbered_records(path: Path):
    """(line number, record or DataError) for a JSON-lines file; (element number, record) for a JSON array."""
    with path.open("r", encoding="utf-8") as fh:
        head = fh.read(4096).lstrip()
    if path.suffix.lower() == ".json" and head.startswith("["):
        rows = read_json(path)
        if not isinstance(rows, list):
            raise DataError(path, "expected a JSON array of pair objects")
        yield from enumerate(rows, start=1)
        return
    with path.open("r", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw.rstrip("\r\n"))  # a cut line then fails where it ends, not on line 2
            except json.JSONDecodeError as exc:
                yield lineno, DataError(path, json_error(exc, raw), lineno)


def stats_dict(obj) -> dict:
    d = asdict(obj)
    d.pop("reasons", None)
    return d


@dataclass
class PairLevel:
    """One difficulty level: its pairs and the file they came from (the per-pair reference cache is stored beside
    it)."""
    name: str
    pairs: list[PreferencePair]
    data_path: Path
    load_stats: dict = field(default_factory=dict)


def load_level(path: str | os.PathLike, name: str | None = None, limit: int | None = None,
               skip_invalid: bool = False, allow_empty: bool = False, rules: PairRules = PairRules()) -> PairLevel:
    stats = LoadStats()
    pairs = load_pairs(path, limit=limit, skip_invalid=skip_invalid, stats=stats, allow_empty=allow_empty,
                       rules=rules)
    return PairLevel(name or Path(path).stem, pairs, Path(path), stats_dict(stats))


def load_levels(paths: Sequence[str | os.PathLike], skip_invalid: bool = False,
                rules: PairRules = PairRules()) -> list[PairLevel]:
    names = list(LEVELS) if len(paths) <= len(LEVELS) else [Path(p).stem for p in paths]
    return [load_level(p, names[i], skip_invalid=skip_invalid, rules=rules) for i, p in enumerate(paths)]


def resolve_data_files(data_files: str | Sequence[str] | None, data_dir: str | None,
                       default_names: Sequence[str]) -> list[Path]:
    """``--data_files a,b,c`` (in level order) or ``--data_dir`` holding ``default_names``."""
    if data_files:
        items = data_files.split(",") if isinstance(data_files, str) else list(data_files)
        paths = [Path(p.strip()) for p in items if str(p).strip()]
    elif data_dir:
        paths = [Path(data_dir) / n for n in default_names]
    else:
        raise ValueError("give --data_files a,b,c or --data_dir DIR")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"data file(s) not found: {', '.join(missing)}")
    return paths


def curriculum_levels(data: CurriculumData, rules: PairRules = PairRules()) -> list[PairLevel]:
    """The best-model recipe's levels: ``--data_files`` in order, or the three pair files in ``--data_dir``."""
    files = resolve_data_files(data.data_files, data.data_dir, PAIR_FILES)
    return load_levels(files, skip_invalid=data.skip_invalid, rules=rules)


def latest_recipe_levels(data: LatestRecipeData, rules: PairRules = PairRules()) -> list[PairLevel]:
    """The latest recipe's data: the first ``hard_limit`` teacher pairs and ``medium_limit`` medium pairs, as one
    level shuffled with ``mix_seed``, or (``curriculum``) as two levels, medium first."""
    data_dir = Path(data.data_dir)
    hard_path = Path(data.hard_file) if data.hard_file else data_dir / TEACHER_PAIRS_FILE
    if not data.hard_file and not hard_path.is_file() and (data_dir / PUBLISHED_TEACHER_PAIRS_FILE).is_file():
        hard_path = data_dir / PUBLISHED_TEACHER_PAIRS_FILE  # the downloaded final_data/ holds the published name
        logger.info("teacher pairs: %s (no %s in %s)", hard_path, TEACHER_PAIRS_FILE, data_dir)
    medium_path = Path(data.medium_file) if data.medium_file else data_dir / pair_file("medium")
    # The teacher may produce no usable pair (a small teacher writing no valid JSON): train on what there is.
    hard = load_level(hard_path, "hard", limit=data.hard_limit, skip_invalid=data.skip_invalid, allow_empty=True,
                      rules=rules)
    medium = load_level(medium_path, "medium", limit=data.medium_limit, skip_invalid=data.skip_invalid,
                        allow_empty=True, rules=rules)
    print(f"selection: {len(hard.pairs)} hard + {len(medium.pairs)} medium pairs")
    if not hard.pairs and not medium.pairs:
        raise DataError(hard_path, f"no usable pairs here or in {medium_path}")
    return [medium, hard] if data.curriculum else [mixed_level([hard, medium], seed=data.mix_seed)]


@torch.no_grad()
def pair_logps(model, pad_id: int, pairs: Sequence[TokenizedPair], adapter: str | None = "default",
               batch_size: int = 16) -> tuple[list[float], list[float]]:
    """Summed log-probs of the chosen and rejected responses with ``adapter`` active (None: the base model)."""
    from aligner.core.logprobs import encoded_response_logprobs

    was_training = model.training
    model.eval()
    with use_adapter(model, adapter):
        values = encoded_response_logprobs(model, pad_id, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                                           batch_size=batch_size)
    model.train(was_training)
    return values[: len(pairs)], values[len(pairs):]


def implicit_reward_report(model, pad_id: int, pairs: Sequence[TokenizedPair], beta: float,
                           adapter: str = "default", batch_size: int = 16) -> dict:
    """DPO's implicit reward on held-out pairs: r(y) = beta * (log pi(y|x) - log pi_ref(y|x)), reference = base.

    ``reward_accuracy``: share of pairs with r(chosen) > r(rejected); ``policy_prefers_chosen`` /
    ``reference_prefers_chosen``: share with log pi(chosen) > log pi(rejected) under the adapter / the base;
    ``chosen_logp_delta``: mean log pi(chosen) - log pi_ref(chosen) (negative = the DPOP failure mode)."""
    pc, pr = pair_logps(model, pad_id, pairs, adapter, batch_size)
    rc, rr = pair_logps(model, pad_id, pairs, None, batch_size)
    n = max(1, len(pairs))
    margins = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc, pr, rc, rr)]
    return {
        "n_pairs": len(pairs),
        "reward_accuracy": sum(m > 0 for m in margins) / n,
        "reward_margin": sum(margins) / n,
        "policy_prefers_chosen": sum(a > b for a, b in zip(pc, pr)) / n,
        "reference_prefers_chosen": sum(c > d for c, d in zip(rc, rr)) / n,
        "chosen_logp_delta": sum(a - c for a, c in zip(pc, rc)) / n,
        "chosen_logp_delta_min": min((a - c for a, c in zip(pc, rc)), default=0.0),
    }



def mixed_level(levels: Sequence[PairLevel], seed: int, name: str = "mix") -> PairLevel:
    """All pairs of several levels as one level, shuffled with ``seed`` (the further_improvement recipe)."""
    first = levels[0].data_path
    stem = "+".join(lv.data_path.stem for lv in levels)
    return PairLevel(name, shuffled_mix([lv.pairs for lv in levels], seed), first.parent / f"{stem}.mix{first.suffix}",
                     {lv.name: lv.load_stats for lv in levels})
