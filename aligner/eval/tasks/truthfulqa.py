"""TruthfulQA: exact MC1/MC2 scoring, greedy generation and judged truthfulness (``evaluation/eval_truthfulqa.py``).

Definitions (the same as lm-evaluation-harness where it defines them):

* Choice score: summed log p(" {choice}" | "Q: {question}\\nA:"), the text read with the tokenizer's special
  tokens (BOS); the continuation tokens are those of the full text after the context's tokens
  (``aligner.core.logprobs.encode_prompt_response``).  A question's distinct choices are one group of
  continuations (``LM.loglikelihood_groups``, packed behind one copy of the question on HF).
* MC1: share of questions whose highest-scoring mc1 choice (first one on a tie, as numpy's argmax) is the
  labelled one.  MC2: mean over questions of the softmax mass of the mc2 scores on the true choices.
* Generation: greedy from "Q: {question}\\nA:", optionally cut at stop sequences; judged by the truth judge
  (``aligner.eval.tasks.truthfulqa_scoring.judge_truthfulness``: P(true) > 0.5 counts as truthful).

Three phases: ``mc`` (exact HF log-likelihoods, every adapter), ``generation`` (HF or vLLM) and ``judge`` (the judge
model, loaded after the policy is released; ``--judge_only FILE`` judges an earlier run's answers).  The study's
own inputs (``--study_compat``) are the variant declared here: its MC tokenisation
(``aligner.eval.tasks.truthfulqa_study``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.fidelity import StudyCompat
from aligner.core.io import read_json
from aligner.core.text import clean_up_tokenization_spaces
from aligner.data.sft import different_question
from aligner.data.sources.truthfulqa import HF_DATASET, load_truthfulqa, read_generations
from aligner.eval.checks import all_rows, count_empty, different_answer
from aligner.eval.evaluate import evaluate
from aligner.eval.metrics.registry import aggregate
from aligner.eval.task import EvalSettings, Phase, Run, Task, apply_variant
from aligner.eval.tasks.truthfulqa_scoring import (
    JUDGE_CONTINUATIONS,
    MC_INPUTS,
    chunk_by_choices,
    judge_truthfulness,
    score_mc,
)
from aligner.lm.interface import load_lm, resolve_backend
from aligner.lm.settings import AdapterCheckSettings, BackendSettings, ModelSettings
from aligner.prompts import (
    TRUTHFULQA_JUDGE_TEMPLATE,
    TRUTHFULQA_PROMPT_STYLES,
    TRUTHFULQA_QA_TEMPLATE,
    truthfulqa_mc_template,
    truthfulqa_prompt,
)

#: ``--study_compat`` (README: Differences from the study): the study's MC inputs (E1/E2), the adapter merged into the
#: weights (E4), HF generation one question at a time (E5), questions as the hub holds them (E25), answers decoded
#: with transformers 4's clean-up (E26)
logger = logging.getLogger(__name__)
STUDY_VARIANT = {"mc_inputs": "study", "merge_adapter": True, "backend": "hf", "gen_batch_size": 1,
                 "keep_question_whitespace": True, "clean_up_decode": True}


def decode_escapes(text: str) -> str:
    """Shells pass '\\n' literally; stop sequences such as '\\nQ:' mean a newline."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


@dataclass(kw_only=True)
class TruthfulQAEvalConfig(EvalSettings, ModelSettings, BackendSettings, AdapterCheckSettings, StudyCompat):
    run_name: str = override(EvalSettings, "run_name", None)
    model_path: str | None = override(ModelSettings, "model_path", None,
                                      help="policy model folder or hub id (required unless --judge_only)")
    judge_model_path: str | None = field(default=None, metadata={
        "help": "truth judge (allenai/truthfulqa-truth-judge-llama2-7B style causal LM); without it answers are "
                "generated but not judged", "group": "model", "identity": "path", "phases": ("judge",)})
    output_dir: str = override(EvalSettings, "output_dir", "evaluation/results/TruthfulQA")
    data_path: str | None = field(default=None, metadata={
        "help": "local data instead of the Hugging Face dataset: a downloaded snapshot folder of it "
                "(multiple_choice/ and generation/ parquet, read config by config as the study did), the TruthfulQA "
                "CSV, or one JSON/JSONL/parquet file in the HF schema (question, mc1_targets, mc2_targets) (default: "
                "none = hub)", "identity": "data"})
    hf_dataset: str = field(default=HF_DATASET, metadata={
        "help": "hub dataset with the multiple_choice and generation configs"})
    mc_inputs: str = field(default="continuation", metadata={
        "choices": list(MC_INPUTS), "group": "fidelity", "phases": ("mc",),
        "help": "MC tokens: continuation = the context with BOS, the choice's tokens those after the context's; "
                "study = the study's inputs: build_inputs_with_special_tokens (no BOS for Llama-3's tokenizer), the "
                "span found by searching the choice's standalone tokens (on with --study_compat)"})
    judge_continuation: str = field(default="study", metadata={
        "choices": list(JUDGE_CONTINUATIONS), "group": "fidelity", "phases": ("judge",),
        "help": "how the judge's ' yes'/' no' are tokenised: study = alone, appended to the prompt's ids, as the "
                "study (transformers 4 on the Llama-2 judge: '▁' then '▁yes', the form the judge puts its mass "
                "on); in_context = within the whole text ('▁yes')"})
    mc_batch: int = field(default=64, metadata={"help": "MC choices scored per forward pass, across questions",
                                                "record": False})
    prompt_style: str = field(default="study", metadata={
        "choices": list(TRUTHFULQA_PROMPT_STYLES), "phases": ("mc",),
        "help": "MC context: study = the study's 0-shot 'Q: ...\\nA:'; lm_eval = lm-evaluation-harness's "
                "truthfulqa_mc1/mc2 prompt (the TruthfulQA paper's 6-shot QA preamble, then the same), the one "
                "comparable with leaderboard numbers. Generation always uses the study's prompt"})
    share_prefix: bool = field(default=True, metadata={
        "flag": "--no_share_prefix", "record": False,
        "help": "score every (question, choice) as its own sequence instead of packing a question's choices behind "
                "one copy of its prefix (same numbers; default: off)"})
    gen_batch_size: int = field(default=32, metadata={"help": "prompts per generate call, left padded (HF backend)",
                                                      "record": False})
    max_new_tokens: int = field(default=128, metadata={"help": "greedy answer length", "phases": ("generation",)})
    stop_sequences: list[str] | None = field(default=None, metadata={
        "help": "cut answers at these strings; '\\n' is a newline, e.g. --stop_sequences '\\nQ:' (default: none, as "
                "the study)", "nargs": "*", "phases": ("generation",)})
    judge_batch_size: int = field(default=32, metadata={"help": "judge sequences per forward (two per answer)",
                                                        "record": False})
    backend: str = override(BackendSettings, "backend", "auto",
                            help="generation backend; auto = vLLM when installed with a GPU. MC log-likelihoods and "
                                 "the judge always use the exact HF path")
    gpu_memory_utilization: float = override(BackendSettings, "gpu_memory_utilization", 0.85)
    seed: int = override(BackendSettings, "seed", 0, help="vLLM seed (greedy decoding)")
    keep_question_whitespace: bool = field(default=False, metadata={
        "help": "questions as the data holds them, outer whitespace kept (the hub's generation config has one with a "
                "trailing space; on with --study_compat); default: stripped", "group": "fidelity"})
    clean_up_decode: bool = field(default=False, metadata={
        "help": "apply transformers 4's decode clean-up (' .' -> '.', \" n't\" -> \"n't\" ...) to the answers, as the "
                "study's HF decode on transformers 4.56 did (on with --study_compat)", "group": "fidelity",
        "phases": ("generation",)})
    skip_mc: bool = field(default=False, metadata={"help": "no MC scoring", "record": False})
    skip_generation: bool = field(default=False, metadata={"help": "no generation and no judging", "record": False})
    judge_only: str | None = field(default=None, metadata={
        "metavar": "DETAILED.jsonl", "record": False,
        "help": "only judge the answers in this JSONL (question, generated), e.g. generations_R.jsonl of an earlier "
                "run; writes detailed_gen_R.jsonl and gen fields of metrics_R.json"})

    def __post_init__(self):
        if not self.run_name:
            raise ValueError("--run_name is required")
        if not self.judge_only and not self.model_path:
            raise ValueError("--model_path is required (unless --judge_only)")
        if self.skip_mc and self.skip_generation:
            raise ValueError("--skip_mc and --skip_generation together leave nothing to do")
        if self.judge_only and not self.judge_model_path:
            raise ValueError("--judge_only needs --judge_model_path")
        self.limit = all_rows(self.limit)
        if self.study_compat:
            apply_variant(self, STUDY_VARIANT)
        if self.stop_sequences:
            self.stop_sequences = [decode_escapes(s) for s in self.stop_sequences]


def _same_question(rec: dict, item) -> str | None:
    return different_question(rec, item["question"] if isinstance(item, dict) else item.question)


def _same_answer(rec: dict, item: dict) -> str | None:
    return different_answer(rec, item["question"], item["generated"])


class TruthfulQA(Task):
    name = "truthfulqa"

    def phases(self) -> list[Phase]:
        cfg = self.cfg
        per_save = max(1, cfg.mc_batch) * 4

        def mc(lm, items):
            return [r.record() for r in score_mc(lm, items, prompt_style=cfg.prompt_style, mc_inputs=cfg.mc_inputs)]

        def generate(lm, items):
            answers = lm.generate_until([truthfulqa_prompt(it.question) for it in items], temperature=0.0,
                                        max_new_tokens=cfg.max_new_tokens, stop=cfg.stop_sequences, progress=False)
            if cfg.clean_up_decode:
                answers = [clean_up_tokenization_spaces(a) for a in answers]
            return [{"question": it.question, "generated": a} for it, a in zip(items, answers)]

        def judge(lm, items):
            verdicts = judge_truthfulness(lm, [g["question"] for g in items], [g["generated"] for g in items],
                                          progress=False, continuation=cfg.judge_continuation)
            return [{"question": g["question"], "generated": g["generated"], "truth_prob": v.truth_prob,
                     "is_truthful": v.is_truthful, "logp_yes": v.logp_yes, "logp_no": v.logp_no}
                    for g, v in zip(items, verdicts)]

        return [
            Phase("mc", "detailed_mc", mc, exact=True, docs="mc", unit="question", check=_same_question,
                  chunk=lambda lm: (lambda todo: chunk_by_choices(todo, per_save)), finite=("mc1_scores", "mc2_scores"),
                  metrics=lambda recs: {**aggregate(recs, ("mc1", "mc2")), "n_mc_questions": len(recs)},
                  metric_keys=("mc1", "mc2", "n_mc_questions")),
            Phase("generation", "generations", generate, docs="gen", unit="question", check=_same_question,
                  chunk=lambda lm: lm.generation_chunk, text="generated",
                  metrics=lambda recs: {"n_gen_questions": len(recs)}, metric_keys=("n_gen_questions",)),
            Phase("judge", "detailed_gen", judge, model="judge", inputs="generation", unit="answer",
                  check=_same_answer, chunk=max(1, cfg.judge_batch_size), finite=("truth_prob", "logp_yes", "logp_no"),
                  metrics=lambda recs: {**aggregate(recs, ("gen_truthfulness", "gen_avg_prob")),
                                        "n_gen_questions": len(recs), "n_empty": count_empty(recs)},
                  metric_keys=("gen_truthfulness", "gen_avg_prob")),
        ]

    def active(self) -> list[str]:
        cfg = self.cfg
        if cfg.judge_only:
            return ["judge"]
        return ([] if cfg.skip_mc else ["mc"]) + \
            ([] if cfg.skip_generation else ["generation"] + (["judge"] if cfg.judge_model_path else []))

    def documents(self) -> dict:
        cfg = self.cfg
        if cfg.judge_only:
            self.data = None
            return {}
        self.data = load_truthfulqa(cfg.data_path, cfg.limit, need_mc=not cfg.skip_mc,
                                    need_gen=not cfg.skip_generation, hf_name=cfg.hf_dataset,
                                    strip_questions=not cfg.keep_question_whitespace)
        return {"mc": self.data.mc, "gen": self.data.gen}

    def data_identity(self) -> dict:
        data = getattr(self, "data", None)
        return {"data": data.source if data is not None else self.cfg.judge_only}

    def templates(self) -> tuple[str, ...]:
        return (TRUTHFULQA_QA_TEMPLATE, truthfulqa_mc_template(self.cfg.prompt_style), TRUTHFULQA_JUDGE_TEMPLATE)

    def runs(self) -> list[Run] | None:
        cfg = self.cfg
        if not cfg.judge_only:
            return None
        run = Run(name="judged", adapter=None, tag=cfg.run_name, source=Path(cfg.judge_only))
        if run.source.resolve() == run.file(cfg.output_dir, "detailed_gen").resolve():
            raise ValueError(f"--judge_only reads {run.source}, which is the file this run would write; pass another "
                             "--run_name (or the generations_*.jsonl file)")
        return [run]

    def read_inputs(self, phase: Phase, run: Run) -> list[dict]:
        generations = read_generations(run.source or run.file(self.cfg.output_dir, "generations"))
        return generations[: self.cfg.limit] if self.cfg.limit > 0 else generations

    def lm_settings(self) -> dict:
        cfg = self.cfg
        return {"batch_size": cfg.mc_batch, "gen_batch_size": cfg.gen_batch_size, "share_prefix": cfg.share_prefix}

    def load_judge(self):
        # The judge reads two short continuations per answer: the exact HF log-likelihood path on every backend,
        # loaded only after the policy has been released (a 7B judge beside a 3B policy would not fit every card).
        cfg = self.cfg
        return load_lm("hf", cfg.judge_model_path, dtype=cfg.dtype, device=cfg.device, batch_size=cfg.judge_batch_size)

    def run_fields(self, run: Run) -> dict:
        cfg = self.cfg
        fields = {**super().run_fields(run), "judge_model": cfg.judge_model_path,
                  "backend": resolve_backend(cfg.backend),
                  "prompt_style": cfg.prompt_style, "mc_inputs": cfg.mc_inputs,
                  "judge_continuation": cfg.judge_continuation}
        if cfg.judge_only:  # the answers' model and adapter, as the earlier metrics file of this run names them
            earlier = run.file(cfg.output_dir, "metrics")
            old = read_json(earlier) if earlier.is_file() else {}
            fields.update({k: old.get(k) for k in ("model", "lora_path", "adapter", "backend")})
        return fields

    def combine(self, metrics: dict) -> dict:
        metrics["n_questions"] = max(metrics.get("n_mc_questions") or 0, metrics.get("n_gen_questions") or 0)
        return metrics


def run_truthfulqa_eval(cfg: TruthfulQAEvalConfig) -> dict[str, dict]:
    """MC1/MC2 and judged generation for the base model and/or each adapter; returns metrics per run."""
    if not cfg.skip_generation and not cfg.judge_model_path and not cfg.judge_only:
        logger.warning(
            "no --judge_model_path: answers are generated but not judged; judge them later with --judge_only "
            "<generations file>")
    return evaluate(TruthfulQA(cfg))
