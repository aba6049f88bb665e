"""IFEval (Zhou et al. 2023): instruction following, scored with lm-evaluation-harness's own checkers.

Not in the study, which names the trade-off ("less reliably instructable") without measuring it.  Each of the
541 prompts carries one to three verifiable instructions ("no commas", "at least 300 words", "wrap the answer
in JSON" ...).  The model answers every prompt as one user turn of its chat template (the date fixed by
``ChatSettings.date_string``), greedy, up to 1280 new tokens (the harness's ``max_gen_toks``), no stop string
but EOS.

Scoring is ``lm_eval.tasks.ifeval.utils.process_results`` itself (the ``lm-eval[ifeval]`` package; nothing is
re-implemented here), which reports, per prompt:

* ``prompt_level_strict_acc``: every instruction followed by the response as it is;
* ``prompt_level_loose_acc``: the same, where an instruction also counts as followed when one of lm-eval's
  seven loose variants of the response follows it (markdown ``*`` removed, first and/or last line dropped);
* ``inst_level_strict_acc`` / ``inst_level_loose_acc``: one verdict per instruction.

The metrics are lm-eval's: the prompt-level ones the mean over prompts, the instruction-level ones followed /
all instructions pooled over prompts (``aligner.eval.metrics.registry``: ``pooled``).  The sentence checks
need NLTK's ``punkt_tab`` data, found before lm-eval is imported (its import would otherwise try a download);
langdetect, behind the language checks, is seeded (lm-eval leaves it unseeded, so a borderline text could get
another verdict from run to run).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.io import AlignerError, DataError
from aligner.core.paths import nltk_data_dir
from aligner.data.sources.ifeval import HF_DATASET, IFEvalItem, load_ifeval
from aligner.eval.checks import all_rows
from aligner.eval.evaluate import evaluate
from aligner.eval.metrics.registry import aggregate
from aligner.eval.task import EvalSettings, Phase, Run, Task
from aligner.lm.interface import LM, resolve_backend
from aligner.lm.settings import AdapterCheckSettings, BackendSettings, ChatSettings, ModelSettings
from aligner.prompts import ifeval_messages

logger = logging.getLogger(__name__)

#: the declared metrics (lm-eval's names), in lm-eval's order
IFEVAL_METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
LM_EVAL_MAX_GEN_TOKS = 1280
INSTALL_HINT = "pip install 'lm-eval[ifeval]' (lm-eval with langdetect and immutabledict)"
PUNKT = "tokenizers/punkt_tab/english/"


class IFEvalSetupError(AlignerError, RuntimeError):
    """lm-eval's IFEval checkers or NLTK's Punkt data are missing; the message says what to install."""


@dataclass(kw_only=True)
class IFEvalConfig(EvalSettings, ModelSettings, BackendSettings, ChatSettings, AdapterCheckSettings):
    """``evaluation/eval_ifeval.py``."""

    model_path: str = override(ModelSettings, "model_path", dataclasses.MISSING, help="model folder or hub id")
    run_name: str = override(EvalSettings, "run_name", dataclasses.MISSING)
    output_dir: str = override(EvalSettings, "output_dir", "evaluation/results/IFEval")
    data_path: str | None = field(default=None, metadata={
        "help": "IFEval's input_data.jsonl (key, prompt, instruction_id_list, kwargs) instead of the hub dataset, "
                "e.g. ../shared/data/ifeval/input_data.jsonl (default: none = the hub)", "identity": "data"})
    hf_dataset: str = field(default=HF_DATASET, metadata={"help": "hub dataset (train split)"})
    limit: int = override(EvalSettings, "limit", -1, help="the first N prompts only; 0 or -1 = all 541")
    batch_size: int = field(default=8, metadata={"help": "prompts per generate call (HF backend)", "record": False})
    max_new_tokens: int = field(default=LM_EVAL_MAX_GEN_TOKS, metadata={
        "help": "greedy tokens per response (lm-eval's max_gen_toks)"})
    chunk_size: int = field(default=0, metadata={
        "help": "responses made between two appends to the per-sample file; 0 = one generate call's worth",
        "record": False})
    nltk_data: str | None = field(default=None, metadata={
        "help": "folder holding NLTK's tokenizers/punkt_tab, searched first (default: none = NLTK_DATA and NLTK's "
                "own folders, then ../shared/data/nltk_data when it exists)", "group": "scorers", "record": False})

    def __post_init__(self):
        self.limit = all_rows(self.limit)


# ---------------------------------------------------------------------------------------------
# lm-eval's checkers
# ---------------------------------------------------------------------------------------------

def prepare_nltk(nltk_data: str | os.PathLike | None = None) -> str:
    """Put ``nltk_data`` (and the shared data folder, when it exists) on NLTK's search path and find Punkt's
    English ``punkt_tab`` there; returns where.  Raises ``IFEvalSetupError`` saying what to install."""
    try:
        import nltk
    except ImportError as exc:
        raise IFEvalSetupError(f"IFEval scoring needs nltk: {INSTALL_HINT}") from exc
    extra = [str(p) for p in (nltk_data, nltk_data_dir()) if p and Path(p).is_dir()]
    if nltk_data and not Path(nltk_data).is_dir():
        raise IFEvalSetupError(f"--nltk_data {nltk_data}: no such folder")
    for p in reversed(extra):
        if p not in nltk.data.path:
            nltk.data.path.insert(0, p)
    try:
        return str(nltk.data.find(PUNKT))
    except LookupError:
        raise IFEvalSetupError(
            "IFEval's sentence-count checks need NLTK's Punkt English data ('punkt_tab'), not found in "
            f"{nltk.data.path[:4]}... Install it with `python -m nltk.downloader punkt_tab`, or pass --nltk_data "
            "(or set NLTK_DATA to) a folder holding tokenizers/punkt_tab, e.g. ../shared/data/nltk_data") from None


def load_checkers(nltk_data: str | os.PathLike | None = None):
    """lm-eval's ``lm_eval.tasks.ifeval.utils`` (``process_results``, ``agg_inst_level_acc``), imported once NLTK's
    data is found, with langdetect seeded."""
    prepare_nltk(nltk_data)
    try:
        import langdetect
        from lm_eval.tasks.ifeval import utils
    except ImportError as exc:
        raise IFEvalSetupError(f"IFEval is scored with lm-evaluation-harness's checkers ({exc}): {INSTALL_HINT}") \
            from exc
    langdetect.DetectorFactory.seed = 0
    return utils


def check_instructions(items: Sequence[IFEvalItem], source: str) -> None:
    """Every instruction id has a checker in lm-eval's registry (before any response is generated)."""
    from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT

    for i, it in enumerate(items, start=1):
        unknown = [x for x in it.instruction_id_list if x not in INSTRUCTION_DICT]
        if unknown:
            raise DataError(source, f"key {it.key}: instruction(s) {unknown} have no checker in lm-eval "
                                    f"{lm_eval_version()}", i)


def lm_eval_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return None


def score_responses(checkers, items: Sequence[IFEvalItem], responses: Sequence[str]) -> list[dict]:
    """One detailed record per (prompt, response): key, prompt, response, instruction ids, and lm-eval's four
    verdicts (``process_results``: two booleans per prompt, two lists with one boolean per instruction)."""
    if len(items) != len(responses):
        raise ValueError(f"{len(items)} prompts but {len(responses)} responses")
    records = []
    for it, response in zip(items, responses):
        verdicts = checkers.process_results(it.doc(), [response])
        records.append({"key": it.key, "prompt": it.prompt, "response": response,
                        "instruction_id_list": list(it.instruction_id_list),
                        **{k: (list(verdicts[k]) if k.startswith("inst") else bool(verdicts[k]))
                           for k in IFEVAL_METRICS}})
    return records


def ifeval_metrics(records: Sequence[dict]) -> dict:
    """lm-eval's four IFEval metrics (as declared in the registry) and the counts."""
    if not records:
        raise ValueError("no IFEval records to aggregate")
    return {**aggregate(records, IFEVAL_METRICS), "n_prompts": len(records),
            "n_instructions": sum(len(r["inst_level_strict_acc"]) for r in records)}


# ---------------------------------------------------------------------------------------------
# generation and the resumable run
# ---------------------------------------------------------------------------------------------

def ifeval_prompts(lm: LM, items: Sequence[IFEvalItem]) -> list[str]:
    return [lm.chat_prompt(ifeval_messages(it.prompt)) for it in items]


def _same_prompt(rec: dict, item: IFEvalItem) -> str | None:
    if rec.get("prompt") != item.prompt:
        return f"holds another prompt ({str(rec.get('prompt'))[:60]!r})"
    return None


class IFEval(Task):
    name = "ifeval"
    versions = ("lm-eval",)

    def phases(self) -> list[Phase]:
        cfg = self.cfg

        def respond(lm, items):
            responses = lm.generate_until(ifeval_prompts(lm, items), max_new_tokens=cfg.max_new_tokens,
                                          temperature=0.0, progress=False)
            return score_responses(self.checkers, items, responses)

        return [Phase("ifeval", "detailed", respond, key="key", unit="prompt", check=_same_prompt, text="response",
                      chunk=lambda lm: cfg.chunk_size or lm.generation_chunk, metrics=ifeval_metrics,
                      metric_keys=(*IFEVAL_METRICS, "n_prompts", "n_instructions"))]

    def documents(self) -> dict:
        cfg = self.cfg
        self.checkers = load_checkers(cfg.nltk_data)  # fail before the model loads
        items, self.source = load_ifeval(cfg.data_path, cfg.limit, cfg.hf_dataset)
        check_instructions(items, self.source)
        logger.info("%d IFEval prompts (%d instructions) from %s", len(items),
                    sum(len(it.instruction_id_list) for it in items), self.source)
        return {"docs": items}

    def data_identity(self) -> dict:
        return {"data": getattr(self, "source", None) or self.cfg.data_path or f"hf:{self.cfg.hf_dataset}"}

    def run_fields(self, run: Run) -> dict:
        return {**super().run_fields(run), "backend": resolve_backend(self.cfg.backend), "date_string": self.cfg.date_string,
                "lm_eval": lm_eval_version()}


def run_ifeval(cfg: IFEvalConfig) -> dict[str, dict]:
    """IFEval for the base model and/or each adapter on one loaded base: detailed_R.jsonl and metrics_R.json per
    run, run_config_R.json; returns {adapter name or "base": metrics}."""
    return evaluate(IFEval(cfg))
