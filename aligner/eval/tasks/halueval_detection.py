"""HaluEval's own benchmark: hallucination detection (Li et al. 2023; HaluEval's ``evaluation/evaluate.py``).

Per sample a seeded coin picks the right or the hallucinated answer (response, summary), as HaluEval's script does
(``random.random() > 0.5``: the hallucinated one, gold "Yes"); the model reads the split's instruction and system
prompt (``aligner.prompts.halueval_detection``) and says whether the shown text is hallucinated.  ``--scoring
generate`` is the paper's: greedy, the answer parsed as the script parses it (dots removed; both or neither of
"Yes"/"No" in it: invalid, which counts as wrong); ``loglik`` compares log p(" Yes") with log p(" No") after the
prompt.  Each split is a task of its own (``OUTPUT_DIR/<split>/``); the splits share one loaded model.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.runner import data_fingerprint
from aligner.data.sources.halueval import DEFAULT_DATA_DIR, DETECTION_FIELDS, load_detection_split, split_file
from aligner.eval.checks import all_rows
from aligner.eval.evaluate import evaluate_tasks
from aligner.eval.metrics.registry import aggregate
from aligner.eval.task import EvalSettings, Phase, Task
from aligner.lm.settings import AdapterCheckSettings, BackendSettings, ChatSettings, ModelSettings
from aligner.prompts.halueval_detection import (
    HALUEVAL_DETECTION_INSTRUCTION,
    HALUEVAL_DETECTION_SYSTEM,
    halueval_detection_messages,
)

SCORINGS = ("generate", "loglik")
LOGLIK_CONTINUATIONS = (" Yes", " No")
DETECTION_METRICS = ("detection_accuracy", "accuracy_gold_yes", "accuracy_gold_no", "yes_rate")


@dataclass(kw_only=True)
class HaluEvalDetectionConfig(EvalSettings, ModelSettings, BackendSettings, ChatSettings, AdapterCheckSettings):
    """``evaluation/eval_halueval_detection.py``."""

    model_path: str = override(ModelSettings, "model_path", dataclasses.MISSING, help="model folder or hub id")
    run_name: str = override(EvalSettings, "run_name", dataclasses.MISSING)
    output_dir: str = override(EvalSettings, "output_dir", "evaluation/results/HaluEvalDetection",
                               help="where the files go, one folder per split")
    data_dir: str = field(default=DEFAULT_DATA_DIR, metadata={
        "help": "folder of HaluEval's <split>_data.json files", "record": False})  # each split's file: data_identity
    split: list[str] = field(default_factory=lambda: list(DETECTION_FIELDS), metadata={
        "help": "comma-separated splits: qa, dialogue, summarization", "sep": ","})
    scoring: str = field(default="generate", metadata={
        "help": "generate = the paper's (greedy answer, parsed as HaluEval's script does); loglik = log p(' Yes') "
                "against log p(' No') after the prompt", "choices": list(SCORINGS)})
    seed: int = override(BackendSettings, "seed", 0, help="seeds the coin that picks the right or the hallucinated text "
                                                         "of each sample")
    max_new_tokens: int = field(default=32, metadata={"help": "answer length with --scoring generate"})
    batch_size: int = field(default=8, metadata={"help": "prompts per forward or generate call", "record": False})

    def __post_init__(self):
        self.limit = all_rows(self.limit)
        unknown = [s for s in self.split if s not in DETECTION_FIELDS]
        if unknown or not self.split:
            raise ValueError(f"--split {','.join(self.split)}: use some of {list(DETECTION_FIELDS)}")


def parse_judgement(response: str) -> str:
    """HaluEval's parse: dots removed, then "Yes" or "No" when exactly one of them occurs (anywhere, case as is),
    else "invalid" (the script's "failed!")."""
    answer = response.replace(".", "")
    yes, no = "Yes" in answer, "No" in answer
    return "invalid" if yes == no else ("Yes" if yes else "No")


def draw_samples(rows: list[dict], split: str, seed: int) -> list[dict]:
    """One sample per row: the shown text (the hallucinated one when the coin says so: gold "Yes") and its source
    text.  The coin is seeded per split, so a sample's draw does not depend on --limit or on the other splits."""
    source, right, hallucinated = DETECTION_FIELDS[split]
    coin = random.Random(f"halueval-detection/{split}/{seed}")
    samples = []
    for i, row in enumerate(rows):
        halluc = coin.random() > 0.5
        samples.append({"index": i, "source": row[source], "shown": row[hallucinated if halluc else right],
                        "label": "Yes" if halluc else "No"})
    return samples


def detection_metrics(records: list[dict]) -> dict:
    return {**aggregate(records, DETECTION_METRICS), "n_invalid": sum(r["judgement"] == "invalid" for r in records),
            "n_samples": len(records)}


class HaluEvalDetection(Task):
    name = "halueval/detection"

    def __init__(self, cfg: HaluEvalDetectionConfig, split: str):
        super().__init__(cfg)
        self.split = split
        self._identity: dict | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.output_dir) / self.split

    def phases(self) -> list[Phase]:
        cfg, split = self.cfg, self.split
        loglik = cfg.scoring == "loglik"

        def prompts(lm, items):
            return [lm.chat_prompt(halueval_detection_messages(split, it["source"], it["shown"])) for it in items]

        def make(lm, items):
            if loglik:
                scores = lm.loglikelihood_groups([(p, LOGLIK_CONTINUATIONS) for p in prompts(lm, items)])
                verdicts = [{"logp_yes": y, "logp_no": n, "judgement": "Yes" if y > n else "No"} for y, n in scores]
            else:
                responses = lm.generate_until(prompts(lm, items), max_new_tokens=cfg.max_new_tokens, temperature=0.0,
                                              progress=False)
                verdicts = [{"response": r, "judgement": parse_judgement(r)} for r in responses]
            return [{"shown": it["shown"], "label": it["label"], **v, "correct": v["judgement"] == it["label"]}
                    for it, v in zip(items, verdicts)]

        # degenerate outputs: the raw answers, or with log-likelihoods the verdicts (all "No" is as telling)
        return [Phase("detect", "detailed", make, exact=loglik, check=_same_shown, text="judgement" if loglik else "response",
                      chunk=max(cfg.batch_size * 8, 32), finite=("logp_yes", "logp_no"), metrics=detection_metrics,
                      metric_keys=(*DETECTION_METRICS, "n_invalid", "n_samples"))]

    def documents(self) -> dict:
        rows = load_detection_split(self.cfg.data_dir, self.split, self.cfg.limit)
        return {"docs": draw_samples(rows, self.split, self.cfg.seed)}

    def data_identity(self) -> dict:
        if self._identity is None:  # asked for by every fingerprint and record: the file is hashed once
            path = split_file(self.cfg.data_dir, self.split)
            self._identity = {"split": self.split, "data": str(path), "data_sha256": data_fingerprint(path)}
        return self._identity

    def templates(self) -> tuple[str, ...]:
        return (HALUEVAL_DETECTION_SYSTEM[self.split], HALUEVAL_DETECTION_INSTRUCTION[self.split])

    def run_fields(self, run) -> dict:
        return {**super().run_fields(run), "scoring": self.cfg.scoring, "seed": self.cfg.seed}


def _same_shown(rec: dict, item: dict) -> str | None:
    if rec.get("shown") != item["shown"] or rec.get("label") != item["label"]:
        return f"judged another text ({str(rec.get('shown'))[:60]!r}); another seed or data file"
    return None


def run_halueval_detection(cfg: HaluEvalDetectionConfig) -> dict[str, dict[str, dict]]:
    """Every split of ``cfg.split`` for the base and/or each adapter, one loaded model for all; returns
    {split: {run name: metrics}}."""
    results = evaluate_tasks([HaluEvalDetection(cfg, split) for split in cfg.split])
    return dict(zip(cfg.split, results))
