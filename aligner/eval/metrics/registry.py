"""Which reported metric is which: display name, direction, per-sample field."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

DISPLAY_NAMES = {
    "hallucination_rate": "Hallucination Rate",
    "avg_confidence_margin": "Avg Confidence Margin",
    "avg_bert_score": "Avg BERT Score",
    "avg_bleu": "Avg BLEU",
    "avg_rouge_l": "Avg ROUGE-L",
    "total_samples": "Total Samples",
    "avg_faithfulness": "Avg Faithfulness",
    "avg_bert_f1": "Avg BERT F1",
    "total": "Total Samples",
    "mc1": "MC1",
    "mc2": "MC2",
    "gen_truthfulness": "Gen Truthfulness",
    "gen_avg_prob": "Gen Avg Prob",
    "n_questions": "Questions",
    "n_mc_questions": "MC Questions",
    "n_gen_questions": "Gen Questions",
}


# Metrics where a smaller value is the better one; everything else that is not a count is "higher is better".
LOWER_IS_BETTER = re.compile(r"halluc|error|loss|perplexity|(^|_)ppl($|_)|contradict")


# Counts are shown in the summary but not compared; timings are not results and are left out altogether.
COUNT_KEYS = re.compile(r"^(total|total_samples|n|count|num_\w+|n_\w+|\w+_count|\w+_total)$")


TIMING_KEYS = re.compile(r"second|(^|_)time($|_)|elapsed|duration|per_s($|_)|throughput|timestamp")


@dataclass(frozen=True)
class PerSampleField:
    """Where a metric's per-sample values live: the detailed file (first pattern that exists) and the field.

    ``fields`` are alternatives (the first present in a record is used); ``derive`` computes the value from
    the record instead (the confidence margin is sim_right - sim_halluc).
    """

    files: tuple[str, ...]
    fields: tuple[str, ...] = ()
    derive: Callable[[dict], float] | None = None

    def value(self, rec: dict) -> float | None:
        if self.derive is not None:
            try:
                return _as_float(self.derive(rec))
            except (KeyError, TypeError):
                return None
        for f in self.fields:
            if f in rec:
                return _as_float(rec[f])
        return None


_DETAILED = ("detailed_{run}.jsonl",)


_GEN = ("detailed_gen_{run}.jsonl", "detailed_{run}.jsonl")


_MC = ("detailed_mc_{run}.jsonl",)


# metric name in metrics_<run>.json -> its per-sample values in the detailed files, as written by
# aligner/halueval.py (similarity flow: DETAILED_FIELDS; two-step flow: score_faithfulness) and
# aligner/truthfulqa.py (detailed_mc_R: mc1_hit, mc2_mass; detailed_gen_R: truth_prob, is_truthful).
# The mean of the per-sample values is the metric; alternatives cover the study's own spellings.
PER_SAMPLE_FIELDS: dict[str, PerSampleField] = {
    # HaluEval similarity flow (detailed_R.jsonl) and the two-step LLM-judge flow (detailed_R.jsonl)
    "hallucination_rate": PerSampleField(_DETAILED, ("is_hallucinated",)),
    "avg_confidence_margin": PerSampleField(_DETAILED, derive=lambda r: r["sim_right"] - r["sim_halluc"]),
    "avg_bert_score": PerSampleField(_DETAILED, ("bert_score",)),
    "avg_bleu": PerSampleField(_DETAILED, ("bleu",)),
    "avg_rouge_l": PerSampleField(_DETAILED, ("rouge_l",)),
    "avg_faithfulness": PerSampleField(_DETAILED, ("faithfulness_score", "faithfulness")),
    "avg_bert_f1": PerSampleField(_DETAILED, ("bert_f1", "bert_score")),
    # TruthfulQA: generation judged (detailed_gen_R.jsonl), multiple choice (detailed_mc_R.jsonl)
    "gen_truthfulness": PerSampleField(_GEN, ("is_truthful",)),
    "gen_avg_prob": PerSampleField(_GEN, ("truth_prob",)),
    "mc1": PerSampleField(_MC, ("mc1_hit", "mc1", "mc1_correct")),
    "mc2": PerSampleField(_MC, ("mc2_mass", "mc2", "mc2_score")),
}


def _as_float(v) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
