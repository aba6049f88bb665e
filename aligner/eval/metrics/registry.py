"""Every reported metric, declared once: its name in ``metrics_R.json``, display name, which direction is
better, and the per-sample field (in which per-sample file) whose mean it is.

Tasks aggregate their per-sample records through these declarations (``aggregate``); the tables, verdicts
("improved / regressed"), plots and paired bootstrap intervals in ``aligner.report`` read them too, so no
module guesses a direction from a metric's name.  Counts (``total``, ``n_questions`` ...) are declared with
``higher_is_better=None``: shown in the tables, never compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


def as_float(v) -> float | None:
    """A per-sample value as a float (booleans as 0/1); None when missing or not a finite number."""
    if v is None:
        return None
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Metric:
    name: str                                 # the key in metrics_R.json
    display: str                              # the row name in the tables
    higher_is_better: bool | None = True      # None: a count, shown but not compared
    per_sample: tuple[str, ...] = ()          # per-sample field spellings, the first one present is used
    derive: Callable[[dict], object] | None = None  # or: the per-sample value computed from the record
    files: tuple[str, ...] = ()               # kinds of aligner.core.paths.RESULT_FILES holding the records
    #: or: a per-sample *list* of verdicts pooled over all samples (hits / items, lm-eval's micro-average of
    #: IFEval's instruction-level accuracy).  Such a metric is a ratio of sums with no per-sample value whose
    #: mean it is, so the paired bootstrap (which resamples means of per-sample values) gives it no interval.
    pooled: str | None = None
    #: or: the mean over the samples this is true of (accuracy on the samples whose gold label is Yes); the others
    #: have no value, so the paired bootstrap resamples only these
    where: Callable[[dict], bool] | None = None

    @property
    def kind(self) -> str:
        """``higher`` / ``lower`` (which value is better) or ``count``."""
        if self.higher_is_better is None:
            return "count"
        return "higher" if self.higher_is_better else "lower"

    @property
    def has_per_sample(self) -> bool:
        return bool(self.per_sample or self.derive)

    def value(self, rec: dict) -> float | None:
        if self.where is not None and not self.where(rec):
            return None
        if self.derive is not None:
            try:
                return as_float(self.derive(rec))
            except (KeyError, TypeError):
                return None
        for f in self.per_sample:
            if f in rec:
                return as_float(rec[f])
        return None

    def aggregate(self, records: Sequence[dict]) -> float | None:
        """The mean of the per-sample values (pooled: of every item of every record's list); None when there are
        no records or any value is missing (a missing score is never averaged as 0)."""
        if self.pooled is not None:
            return pooled_mean(records, self.pooled)
        if self.where is not None:
            records = [r for r in records if self.where(r)]
        values = [self.value(r) for r in records]
        if not values or any(v is None for v in values):
            return None
        return math.fsum(values) / len(values)


def pooled_mean(records: Sequence[dict], field: str) -> float | None:
    """Share of true verdicts among all items of ``record[field]`` (lists), over all records; None when a record
    lacks the list, an item is not a number, or there are no items."""
    items = []
    for rec in records:
        verdicts = rec.get(field)
        if not isinstance(verdicts, (list, tuple)):
            return None
        items += [as_float(v) for v in verdicts]
    if not items or any(v is None for v in items):
        return None
    return math.fsum(items) / len(items)


def _count(name: str, display: str) -> Metric:
    return Metric(name, display, higher_is_better=None)


_SIM = ("detailed",)
_GEN = ("detailed_gen", "detailed")  # the study's TruthfulQA generation file was detailed_R.jsonl
_MC = ("detailed_mc",)

DECLARED: tuple[Metric, ...] = (
    # HaluEval, both flows (detailed_R.jsonl)
    Metric("hallucination_rate", "Hallucination Rate", False, ("is_hallucinated",), files=_SIM),
    Metric("avg_confidence_margin", "Avg Confidence Margin", True, derive=lambda r: r["sim_right"] - r["sim_halluc"],
           files=_SIM),
    Metric("avg_bert_score", "Avg BERT Score", True, ("bert_score",), files=_SIM),
    Metric("avg_bleu", "Avg BLEU", True, ("bleu",), files=_SIM),
    Metric("avg_rouge_l", "Avg ROUGE-L", True, ("rouge_l",), files=_SIM),
    Metric("avg_faithfulness", "Avg Faithfulness", True, ("faithfulness_score", "faithfulness"), files=_SIM),
    Metric("avg_bert_f1", "Avg BERT F1", True, ("bert_f1", "bert_score"), files=_SIM),
    # HaluEval similarity flow: the answer is the right / the hallucinated answer, once normalised
    Metric("match_right_rate", "Right-answer Match Rate", True, ("match_right",), files=_SIM),
    Metric("match_hallucinated_rate", "Hallucinated-answer Match Rate", False, ("match_hallucinated",), files=_SIM),
    # TruthfulQA: multiple choice (detailed_mc_R.jsonl), judged generation (detailed_gen_R.jsonl)
    Metric("mc1", "MC1", True, ("mc1_hit", "mc1", "mc1_correct"), files=_MC),
    Metric("mc2", "MC2", True, ("mc2_mass", "mc2", "mc2_score"), files=_MC),
    Metric("gen_truthfulness", "Gen Truthfulness", True, ("is_truthful",), files=_GEN),
    Metric("gen_avg_prob", "Gen Avg Prob", True, ("truth_prob",), files=_GEN),
    # IFEval (detailed_R.jsonl, lm-eval's names): prompt level = every instruction of a prompt followed (mean over
    # prompts); instruction level = followed instructions / all instructions, pooled over prompts
    Metric("prompt_level_strict_acc", "IFEval Prompt-level Strict", True, ("prompt_level_strict_acc",), files=_SIM),
    Metric("inst_level_strict_acc", "IFEval Instruction-level Strict", True, pooled="inst_level_strict_acc",
           files=_SIM),
    Metric("prompt_level_loose_acc", "IFEval Prompt-level Loose", True, ("prompt_level_loose_acc",), files=_SIM),
    Metric("inst_level_loose_acc", "IFEval Instruction-level Loose", True, pooled="inst_level_loose_acc",
           files=_SIM),
    # HaluEval hallucination detection (detailed_R.jsonl per split): the model's Yes/No against the gold label
    Metric("detection_accuracy", "Detection Accuracy", True, ("correct",), files=_SIM),
    Metric("accuracy_gold_yes", "Accuracy, Hallucinated Shown", True, ("correct",), files=_SIM,
           where=lambda r: r.get("label") == "Yes"),
    Metric("accuracy_gold_no", "Accuracy, Right Shown", True, ("correct",), files=_SIM,
           where=lambda r: r.get("label") == "No"),
    Metric("yes_rate", "Yes Rate", None, derive=lambda r: r["judgement"] == "Yes", files=_SIM),
    # counts
    _count("n_invalid", "Invalid Answers"),
    _count("n_bertscore_nan", "BERTScore NaN Set to 0"),
    _count("n_samples", "Samples"),
    _count("n_prompts", "Prompts"),
    _count("n_instructions", "Instructions"),
    _count("total_samples", "Total Samples"),
    _count("total", "Total Samples"),
    _count("n_questions", "Questions"),
    _count("n_mc_questions", "MC Questions"),
    _count("n_gen_questions", "Gen Questions"),
    _count("n_empty", "Empty Generations"),
)
METRICS: dict[str, Metric] = {m.name: m for m in DECLARED}
#: fields of a metrics file that are not results (run times, the seed a run drew its samples with), left out of every
#: table
NOT_RESULTS = ("seconds", "seed")


def declared(name: str) -> Metric | None:
    """The declaration of a metric (a nested key such as ``gen.mc1`` is looked up by its last part)."""
    return METRICS.get(name.split(".")[-1])


def metric_kind(name: str) -> str:
    """``higher`` / ``lower`` / ``count`` for a declared metric; ``undeclared`` otherwise."""
    m = declared(name)
    return m.kind if m is not None else "undeclared"


def display_name(name: str) -> str:
    m = declared(name)
    leaf = name.split(".")[-1]
    base = m.display if m is not None else leaf.replace("_", " ")
    prefix = ".".join(name.split(".")[:-1])
    return f"{prefix}.{base}" if prefix else base


def aggregate(records: Sequence[dict], names: Iterable[str]) -> dict[str, float | None]:
    """``{name: mean of its per-sample values}`` for the declared metrics ``names``."""
    return {n: METRICS[n].aggregate(records) for n in names}
