"""The settings of the three HaluEval scripts (their parsers are generated from these dataclasses) and the
fields their files hold.  ``--study_compat`` turns on what the study's code did where this project corrects
it (README: Differences from the study):

* similarity flow (study ``evaluation/eval_halueval.py``): fp16 weights (``:91-95``), the chat text tokenised
  with the special tokens again, i.e. two BOS (``:167-170``), HF ``generate`` (the script ran on HF);
* step 1 (``eval_haleval_llm_step1.py:40-72``): fp16, text prompts, so two BOS as well;
* step 2 (``eval_haleval_llm_step2.py:91,105``): BLEU never computed (``if bleu_metric:`` is false for an
  ``evaluate`` module), so every row's ``bleu`` is 0.0 and the metrics have no ``avg_bleu``.

Settings (not bugs) follow the study by default: the similarity flow decodes with the model's own
generation_config (``--generation_config model``: Llama-3.2-Instruct samples at temperature 0.6, top-p 0.9,
top-k 50; the study called ``generate`` without ``do_sample=False``), step 1 runs vLLM eagerly with
``max_model_len`` 4096, the HHEM judge runs in fp32.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from aligner.core.cli import override
from aligner.core.fidelity import StudyCompat
from aligner.data.sources.halueval import DEFAULT_DATA_PATH, PREDICTION_FIELDS
from aligner.eval.checks import OverwriteSettings, all_rows
from aligner.lm.settings import (
    AdapterCheckSettings,
    BackendSettings,
    ChatSettings,
    ModelSettings,
    SamplingSettings,
)

DETAILED_FIELDS = ("index", "question", "generated", "right_answer", "sim_right", "sim_halluc", "bert_score", "bleu",
                   "rouge_l", "is_hallucinated")
#: a step-1 record: the data row's index, then the fields step 2 reads (``PREDICTION_FIELDS``)
PREDICTION_RECORD_FIELDS = ("index", *PREDICTION_FIELDS)
SIMILARITY_METHOD = "sentence_transformer_similarity"
FAITHFULNESS_THRESHOLD = 0.5
HHEM = "vectara/hallucination_evaluation_model"
#: the declared metrics (aligner.eval.metrics.registry) each flow reports, besides its counts
SIMILARITY_METRICS = ("hallucination_rate", "avg_confidence_margin", "avg_bert_score", "avg_bleu", "avg_rouge_l")
FAITHFULNESS_METRICS = ("hallucination_rate", "avg_faithfulness", "avg_bert_f1", "avg_bleu")


@dataclass(kw_only=True)
class BertScoreSettings:
    """The BERTScore scorer both flows report beside their own metric."""

    bertscore_model: str = field(default="microsoft/deberta-v3-large", metadata={
        "help": "BERTScore backbone; 'none' skips BERTScore (reported as null)", "group": "scorers"})
    bertscore_num_layers: int | None = field(default=None, metadata={
        "help": "BERTScore layer; needed for backbones bert_score does not know (default: none, bert_score's "
                "choice for the model)", "group": "scorers"})


@dataclass(kw_only=True)
class HaluEvalGenerationConfig(ModelSettings, BackendSettings, ChatSettings, AdapterCheckSettings, StudyCompat,
                               OverwriteSettings):
    """What both generating flows share: the data, the generation and the resumable output."""

    model_path: str = override(ModelSettings, "model_path", dataclasses.MISSING, help="generator model folder or hub id")
    run_name: str | None = field(default=None, metadata={
        "help": "names the output files (metrics_RUN.json, detailed_RUN.jsonl, predictions_RUN.jsonl)"})
    output_dir: str = field(default="evaluation/results/Halueval", metadata={"help": "where the output files go"})
    data_path: str = field(default=DEFAULT_DATA_PATH, metadata={"help": "HaluEval qa_data.json (JSON lines)"})
    limit: int = field(default=-1, metadata={"help": "evaluate the first N rows only; 0 or -1 = all (as the study)"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate call (HF backend)"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation length limit"})
    double_bos: bool = field(default=False, metadata={
        "help": "tokenise the chat-rendered prompt with the special tokens again, giving two BOS as the study's code "
                "did (on with --study_compat)", "group": "fidelity"})
    chunk_size: int = field(default=0, metadata={
        "help": "samples done between two appends to the per-sample file; 0 = what suits the backend "
                "(at least 128; 1024 for vLLM)"})
    resume: bool = field(default=False, metadata={
        "help": "continue an interrupted run from its per-sample file, skipping the rows it holds (default: off; an "
                "existing file then needs --overwrite)"})
    progress: bool = field(default=True, metadata={"flag": "--no_progress", "help": "no progress bars"})

    def __post_init__(self):
        self.limit = all_rows(self.limit)
        if self.study_compat:
            self.double_bos = True
            self.dtype = "fp16" if self.dtype == "auto" else self.dtype


@dataclass(kw_only=True)
class HaluEvalSimilarityConfig(HaluEvalGenerationConfig, BertScoreSettings, SamplingSettings):
    """``evaluation/eval_halueval.py``."""

    model_path: str | None = override(ModelSettings, "model_path", None,
                                      help="generator model folder or hub id (required unless --from_detailed)")
    run_name: str | None = override(HaluEvalGenerationConfig, "run_name", None, help=(
        "names the output files metrics_RUN.json / detailed_RUN.jsonl (required unless --from_detailed, where it "
        "defaults to the detailed file's name + '_rescored')"))
    batch_size: int = override(HaluEvalGenerationConfig, "batch_size", 8,
                               help="generation batch size (HF backend); also the embedding/BERTScore batch")
    generation_config: str = override(SamplingSettings, "generation_config", "model", help=(
        "model (the study's: its generate call had no do_sample=False, so the model's generation_config.json "
        "applied: Llama-3.2-Instruct samples at temperature 0.6, top-p 0.9, top-k 50), or greedy"))
    embed_model: str = field(default="all-mpnet-base-v2", metadata={
        "help": "sentence-transformers model for sim_right/sim_halluc", "group": "scorers"})
    gpu_memory_utilization: float = override(BackendSettings, "gpu_memory_utilization", 0.7,
                                             help="vLLM GPU memory share, leaving room for the scorers")
    from_detailed: str | None = field(default=None, metadata={
        "help": "re-score an existing detailed file (BLEU, ROUGE-L, hallucination rate, margin) without any model, "
                "and write metrics for it (default: none)"})

    def __post_init__(self):
        super().__post_init__()
        if self.from_detailed is None and (not self.model_path or not self.run_name):
            raise ValueError("--model_path and --run_name are required (unless --from_detailed)")
        if self.study_compat and self.backend == "auto":
            self.backend = "hf"  # the study's similarity flow generated with HF


@dataclass(kw_only=True)
class HaluEvalStep1Config(HaluEvalGenerationConfig):
    """``evaluation/eval_haleval_llm_step1.py``."""

    output_dir: str = override(HaluEvalGenerationConfig, "output_dir", "evaluation/results/HaluevalLLM",
                               help="where predictions_RUN.jsonl goes")
    run_name: str | None = override(HaluEvalGenerationConfig, "run_name", None,
                                    help="names the predictions file; required unless --output_file is given")
    enforce_eager: bool = override(BackendSettings, "enforce_eager", True)
    output_file: str | None = field(default=None, metadata={
        "help": "explicit predictions file, instead of OUTPUT_DIR/predictions_RUN.jsonl; one adapter only "
                "(default: none)"})

    def __post_init__(self):
        super().__post_init__()
        if not self.run_name and not self.output_file:
            raise ValueError("give --run_name (or --output_file)")


@dataclass(kw_only=True)
class HaluEvalStep2Config(BertScoreSettings, StudyCompat, OverwriteSettings):
    """``evaluation/eval_haleval_llm_step2.py``."""

    predictions_dir: str | None = field(default=None, metadata={
        "help": "folder whose predictions_*.jsonl files are all judged (default: none)"})
    input_file: str | None = field(default=None, metadata={
        "help": "one predictions file to judge instead (default: none)"})
    judge_model_path: str = field(default=HHEM, metadata={
        "help": "HHEM or an NLI sequence classifier, folder or hub id", "group": "judge"})
    output_dir: str = field(default="evaluation/results/HaluevalLLM", metadata={
        "help": "where metrics_RUN.json / detailed_RUN.jsonl go"})
    run_name: str | None = field(default=None, metadata={
        "help": "output name for --input_file (default: none, the predictions file's name without 'predictions_')"})
    batch_size: int = field(default=32, metadata={"help": "judge and BERTScore batch size"})
    trust_remote_code: bool = field(default=True, metadata={
        "help": "let the judge run its own code, as HHEM needs; --no-trust_remote_code refuses",
        "boolean_optional": True, "group": "judge"})
    judge_label: str | None = field(default=None, metadata={
        "help": "the judge's label meaning consistent/entailment, when id2label does not make it plain (default: "
                "none, found from id2label)", "group": "judge"})
    threshold: float = field(default=FAITHFULNESS_THRESHOLD, metadata={
        "help": "faithfulness below this counts as hallucinated", "group": "judge"})
    dtype: str = field(default="fp32", metadata={
        "help": "judge dtype: fp32 (the study's HHEM: loaded without a dtype, which transformers 4 made fp32), auto "
                "(bf16 on CUDA, fp32 on CPU), fp16, bf16", "group": "judge"})
    resume: bool = field(default=False, metadata={
        "help": "continue interrupted judging from the detailed files (default: off; an existing file then needs "
                "--overwrite)"})
    progress: bool = field(default=True, metadata={"flag": "--no_progress", "help": "no progress bars"})

    def __post_init__(self):
        if bool(self.predictions_dir) == bool(self.input_file):
            raise ValueError("give exactly one of --predictions_dir and --input_file")
