"""HaluEval QA, two-step flow: one task of two phases.  ``step1`` (``eval_haleval_llm_step1.py``) answers with a
system prompt asking for the shortest correct answer and writes predictions; ``step2``
(``eval_haleval_llm_step2.py``) scores each answer's faithfulness to the knowledge with a classifier judge (HHEM or
NLI); faithfulness < 0.5 counts as a hallucination.  Each step is its own invocation; step 2's runs are the
predictions files it finds.

``--study_compat``: step 1 as the similarity flow's variant (fp16, two BOS; study ``eval_haleval_llm_step1.py:40-72``);
step 2 without BLEU (``eval_haleval_llm_step2.py:91,105``: ``if bleu_metric:`` is false for an ``evaluate`` module,
so every row's ``bleu`` is 0.0 and the metrics have no ``avg_bleu``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.fidelity import StudyCompat
from aligner.core.io import DataError
from aligner.core.models import parse_adapter_paths, planned_adapter_names
from aligner.core.paths import RESULT_FILES, tag_from_file
from aligner.data.sources.halueval import PREDICTION_FIELDS, STEP1_FIELDS, load_predictions
from aligner.eval.checks import all_rows, count_empty, different_answer
from aligner.eval.evaluate import evaluate, plan_runs
from aligner.eval.metrics.text import sentence_bleu
from aligner.eval.task import EvalSettings, Phase, Run, apply_variant
from aligner.eval.tasks.halueval import (
    BertScoreSettings,
    HaluEvalGeneration,
    HaluEvalGenerationConfig,
    bertscore_nan,
    flow_metrics,
    generate_answers,
    nan_count,
    same_question,
)
from aligner.lm.settings import BackendSettings
from aligner.prompts import CONTEXT_QUESTION_TEMPLATE, HALUEVAL_STEP1_SYSTEM

#: a step-1 record: the data row's index, then the fields step 2 reads (``PREDICTION_FIELDS``)
PREDICTION_RECORD_FIELDS = ("index", *PREDICTION_FIELDS)
FAITHFULNESS_THRESHOLD = 0.5
HHEM = "vectara/hallucination_evaluation_model"
FAITHFULNESS_METRICS = ("hallucination_rate", "avg_faithfulness", "avg_bert_f1", "avg_bleu")
#: ``--study_compat`` of step 2 (README: Differences from the study): no BLEU (E10), a NaN BERTScore F1 set to 0 (E16)
STEP2_STUDY_VARIANT = {"bleu": False, "nan_bertscore": "zero"}


@dataclass(kw_only=True)
class HaluEvalStep1Config(HaluEvalGenerationConfig):
    """``evaluation/eval_haleval_llm_step1.py``."""

    output_dir: str = override(EvalSettings, "output_dir", "evaluation/results/HaluevalLLM",
                               help="where predictions_RUN.jsonl goes")
    run_name: str | None = override(EvalSettings, "run_name", None,
                                    help="names the predictions file; required unless --output_file is given")
    enforce_eager: bool = override(BackendSettings, "enforce_eager", True)
    output_file: str | None = field(default=None, metadata={
        "help": "explicit predictions file, instead of OUTPUT_DIR/predictions_RUN.jsonl; one adapter only "
                "(default: none)", "record": False})

    def __post_init__(self):
        super().__post_init__()
        if not self.run_name and not self.output_file:
            raise ValueError("give --run_name (or --output_file)")


@dataclass(kw_only=True)
class HaluEvalStep2Config(EvalSettings, BertScoreSettings, StudyCompat):
    """``evaluation/eval_haleval_llm_step2.py``."""

    predictions_dir: str | None = field(default=None, metadata={
        "help": "folder whose predictions_*.jsonl files are all judged (default: none)", "record": False})
    input_file: str | None = field(default=None, metadata={
        "help": "one predictions file to judge instead (default: none)", "record": False})
    judge_model_path: str = field(default=HHEM, metadata={
        "help": "HHEM or an NLI sequence classifier, folder or hub id", "group": "judge", "identity": "path"})
    output_dir: str = field(default="evaluation/results/HaluevalLLM", metadata={
        "help": "where metrics_RUN.json / detailed_RUN.jsonl go", "record": False})
    run_name: str | None = field(default=None, metadata={
        "help": "output name for --input_file (default: none, the predictions file's name without 'predictions_')",
        "record": False})
    batch_size: int = field(default=32, metadata={"help": "judge and BERTScore batch size", "record": False})
    trust_remote_code: bool = field(default=True, metadata={
        "help": "let the judge run its own code, as HHEM needs; --no-trust_remote_code refuses",
        "boolean_optional": True, "group": "judge", "record": False})
    judge_label: str | None = field(default=None, metadata={
        "help": "the judge's label meaning consistent/entailment, when id2label does not make it plain (default: "
                "none, found from id2label)", "group": "judge"})
    threshold: float = field(default=FAITHFULNESS_THRESHOLD, metadata={
        "help": "faithfulness below this counts as hallucinated", "group": "judge"})
    dtype: str = field(default="fp32", metadata={
        "help": "judge dtype: fp32 (the study's HHEM: loaded without a dtype, which transformers 4 made fp32), auto "
                "(bf16 on CUDA, fp32 on CPU), fp16, bf16", "group": "judge"})
    bleu: bool = field(default=True, metadata={
        "help": "sentence BLEU of each answer against the right one (--no-bleu: 0.0 per row and no avg_bleu, as the "
                "study's step 2 computed it; off with --study_compat)", "boolean_optional": True,
        "group": "fidelity"})

    def __post_init__(self):
        if bool(self.predictions_dir) == bool(self.input_file):
            raise ValueError("give exactly one of --predictions_dir and --input_file")
        self.limit = all_rows(self.limit)
        if self.study_compat:
            apply_variant(self, STEP2_STUDY_VARIANT)


def score_faithfulness(predictions, judge, bertscorer=None, threshold: float = FAITHFULNESS_THRESHOLD,
                       bleu: bool = True) -> list[dict]:
    """Per-sample records of step 2: faithfulness of the answer to the knowledge, BERTScore and BLEU
    against the right answer (``bleu=False``: 0.0, what the study's step 2 stored for every row)."""
    from aligner.eval.metrics.judges import judge_faithfulness

    gen = [p["generated_text"] for p in predictions]
    right = [p["right_answer"] for p in predictions]
    faith = judge_faithfulness(judge, [p["knowledge"] for p in predictions], gen, progress=False)
    bert = bertscorer.score(gen, right) if bertscorer is not None else [None] * len(gen)
    return [{"question": p["question"], "right_answer": r, "generated": g, "faithfulness_score": f,
             "is_hallucinated": bool(f < threshold), "bert_score": b, "bleu": sentence_bleu(g, r) if bleu else 0.0}
            for p, g, r, f, b in zip(predictions, gen, right, faith, bert)]


def aggregate_faithfulness(records, bleu: bool = True, nan_rule: str = "stop") -> dict:
    """Step 2's metrics: hallucination_rate, avg_faithfulness, avg_bert_f1, avg_bleu (not with ``bleu=False``: the
    study's step 2 reported none), total, n_empty (and n_bertscore_nan with ``--nan_bertscore zero``)."""
    return {**flow_metrics(records, _faithfulness_metrics(bleu), "total"), "n_empty": count_empty(records),
            **nan_count(records, nan_rule)}


def _faithfulness_metrics(bleu: bool) -> tuple[str, ...]:
    return FAITHFULNESS_METRICS if bleu else tuple(m for m in FAITHFULNESS_METRICS if m != "avg_bleu")


def _same_prediction(rec: dict, prediction: dict) -> str | None:
    return different_answer(rec, prediction["question"], prediction["generated_text"])


class HaluEvalTwoStep(HaluEvalGeneration):
    name = "halueval/twostep"
    versions = ("bert-score",)
    required = STEP1_FIELDS

    def phases(self) -> list[Phase]:
        cfg = self.cfg

        def answer(lm, items):
            rows = [row for _, row in items]
            generated = generate_answers(lm, rows, max_new_tokens=cfg.max_new_tokens, system=HALUEVAL_STEP1_SYSTEM)
            return [{"question": r["question"], "knowledge": r["knowledge"], "right_answer": r["right_answer"],
                     "generated_text": g} for r, g in zip(rows, generated)]

        def judge(model, items):
            return bertscore_nan(score_faithfulness(items, model, self.bertscorer, cfg.threshold, cfg.bleu),
                                 cfg.nan_bertscore)

        return [
            Phase("step1", "predictions", answer, key_of=lambda it: it[0], check=same_question,
                  chunk=self.chunk, text="generated_text"),
            Phase("step2", "detailed", judge, model="judge", inputs="step1", check=_same_prediction,
                  chunk=lambda model: max(cfg.batch_size * 8, 64), finite=("faithfulness_score", "bert_score"),
                  text="generated", metrics=lambda recs: aggregate_faithfulness(recs, cfg.bleu, cfg.nan_bertscore),
                  metric_keys=(*FAITHFULNESS_METRICS, "total")),
        ]

    def active(self) -> list[str]:
        return ["step2"] if isinstance(self.cfg, HaluEvalStep2Config) else ["step1"]

    def documents(self) -> dict:
        return {} if self.active() == ["step2"] else super().documents()

    def data_identity(self) -> dict:
        return {} if self.active() == ["step2"] else super().data_identity()

    def templates(self) -> tuple[str, ...]:
        return () if self.active() == ["step2"] else (CONTEXT_QUESTION_TEMPLATE, HALUEVAL_STEP1_SYSTEM)

    def runs(self) -> list[Run] | None:
        cfg = self.cfg
        if self.active() == ["step2"]:
            return [Run(tag, None, tag, source=path) for path, tag in prediction_files(cfg)]
        if cfg.output_file:
            adapters = parse_adapter_paths(cfg.lora_path)
            if len(adapters) > 1:
                raise ValueError("--output_file takes one adapter; with several, use --output_dir and --run_name")
            name = planned_adapter_names(cfg.lora_path)[0] or "base"  # as the backends name the loaded adapter
            return [Run(name, adapters[0], Path(cfg.output_file).stem, files={"predictions": Path(cfg.output_file)})]
        return None

    def read_inputs(self, phase: Phase, run: Run) -> list[dict]:
        predictions = load_predictions(run.source)
        # keyed by the prediction's index: its position in the file for the study's predictions, which carry none
        items = [{**p, "index": p.get("index", i)} for i, p in enumerate(predictions)]
        return items[: self.cfg.limit] if self.cfg.limit > 0 else items

    def record_name(self, run: Run) -> str:
        return f"run_config_step1_{run.tag}.json" if self.active() == ["step1"] else super().record_name(run)

    def load_judge(self):
        from aligner.eval.metrics.judges import load_faithfulness_judge
        from aligner.eval.metrics.similarity import load_bertscorer

        cfg = self.cfg
        judge = load_faithfulness_judge(cfg.judge_model_path, batch_size=cfg.batch_size, dtype=cfg.dtype,
                                        trust_remote_code=cfg.trust_remote_code, positive_label=cfg.judge_label)
        self.bertscorer = load_bertscorer(cfg.bertscore_model, cfg.bertscore_num_layers, batch_size=cfg.batch_size)
        return judge

    def run_fields(self, run: Run) -> dict:
        if self.active() == ["step2"]:  # the study's step-2 metrics carry no run fields
            return {"predictions": str(run.source), "judge_model": self.cfg.judge_model_path}
        return super().run_fields(run)


def prediction_files(cfg: HaluEvalStep2Config) -> list[tuple[Path, str]]:
    """(predictions file, run tag) pairs to judge: ``input_file``, or every predictions_*.jsonl of the folder."""
    if cfg.input_file:
        path = Path(cfg.input_file)
        if not path.is_file():
            raise DataError(path, "--input_file does not exist")
        return [(path, cfg.run_name or tag_from_file(path, "predictions"))]
    files = sorted(Path(cfg.predictions_dir).glob(RESULT_FILES["predictions"].format(tag="*")))
    if not files:
        raise DataError(cfg.predictions_dir, "no predictions_*.jsonl here; run eval_haleval_llm_step1.py first")
    return [(f, tag_from_file(f, "predictions")) for f in files]


def run_halueval_step1(cfg: HaluEvalStep1Config) -> dict[str, str]:
    """Step 1 for the base model and/or each adapter: predictions_R.jsonl (or ``output_file``) each, and
    run_config_step1_R.json beside them; returns {adapter name or "base": predictions file}."""
    task = HaluEvalTwoStep(cfg)
    evaluate(task)
    return {run.name: str(run.file(cfg.output_dir, "predictions")) for run in plan_runs(task)}


def run_halueval_step2(cfg: HaluEvalStep2Config) -> dict[str, dict]:
    """Step 2 over every predictions file: detailed_R.jsonl and metrics_R.json each; returns {R: metrics}."""
    return evaluate(HaluEvalTwoStep(cfg))

