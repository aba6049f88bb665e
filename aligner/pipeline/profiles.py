"""The study as pipeline stages: the demo profile (tiny models, CPU), the study profile (GPU) and the study_eval
profile (the study's published adapters evaluated beside the base, against its published numbers), and their stage
commands; ``aligner.pipeline.driver`` runs them (``scripts/run_pipeline.py``).

Every stage is a real stage script (``aligner.pipeline.runner`` runs it and decides what to skip).  Its
flags are generated from the script's own config dataclasses (``aligner.core.cli.to_argv``), so a setting
renamed in a script fails when the stages are built, not halfway through a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.downloads import (
    STUDY_ADAPTERS,
    DownloadDataConfig,
    DownloadStudyAdaptersConfig,
    halueval_split_path,
)
from aligner.core.paths import (
    PAIR_FILES,
    TEACHER_PAIRS_FILE,
    ifeval_path,
    result_file,
    run_tag,
    seed_results_dir,
)
from aligner.data.sft import HaluEvalSquadSliceConfig, SquadConfig
from aligner.data.sources.halueval import DETECTION_FIELDS
from aligner.data.sources.truthfulqa import HUB_CONFIGS
from aligner.data.teacher import TeacherConfig, TeacherSFTView
from aligner.eval.tasks.halueval import HaluEvalSimilarityConfig
from aligner.eval.tasks.halueval_detection import HaluEvalDetectionConfig
from aligner.eval.tasks.halueval_twostep import HaluEvalStep1Config, HaluEvalStep2Config
from aligner.eval.tasks.ifeval import IFEvalConfig
from aligner.eval.tasks.truthfulqa import TruthfulQAEvalConfig
from aligner.pipeline.data_stages import MakeDataConfig
from aligner.pipeline.runner import Stage, script_command
from aligner.pipeline.world import WorldSettings, world_stages
from aligner.report.make_tables import TablesConfig
from aligner.testing.tiny import TinyModelConfig, TinyModelOutput
from aligner.train.config import CurriculumData, DPOPTrainingConfig, LatestRecipeData
from aligner.train.merge import MergeConfig
from aligner.train.sft import RagSFTConfig

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
    teacher_limit: int | None = None     # items sent to the teacher (None: the script's default, the study's 15000)
    train_args: dict = field(default_factory=dict)          # DPOPTrainingConfig settings of the best recipe
    latest_train_args: dict = field(default_factory=dict)   # ... and of the latest recipe
    eval_batch_size: int = 8
    halueval_batch_size: int | None = None   # HaluEval similarity flow (None: eval_batch_size; the study's 8)
    truthfulqa_backend: str | None = None    # TruthfulQA generation (None: backend; the study: HF)
    truthfulqa_gen_batch_size: int | None = None  # ... questions per generate call (None: eval_batch_size; study: 1)
    mc_batch: int = 64
    train_epochs: int | None = None      # curriculum stages of the best recipe (None: all four, as the study ran)
    tensor_parallel_size: int = 1
    warm_start: dict | None = None       # demo: RAG SFT settings of the warm start (None: the policy as it is)
    warm_rows: tuple[int, int] = (2000, 1000)   # demo: HaluEval rows [start, start + n) of the warm start
    policy_vocab_size: int | None = None  # demo: the tiny policy's BPE vocabulary (None: make_tiny_model's 2048)
    ifeval_path: Path | None = None      # IFEval's input_data.jsonl (None: the hub's google/IFEval)
    ifeval_limit: int = -1               # first N IFEval prompts (-1: all 541)
    ifeval_max_new_tokens: int = 1280    # lm-evaluation-harness's max_gen_toks
    study_adapters: bool = False         # study_eval: evaluate the study's published adapters (no training)
    published_dir: Path | None = None    # the study's metric files, compared in the tables
    study_compat: bool = False           # study profiles: every stage with --study_compat reproduces the study's code
    truthfulqa_download: Path | None = None  # study profiles: download_data.py --truthfulqa_dir; truthfulqa_path is
    #                                          its hf/ snapshot (the hub's multiple_choice + generation configs)
    detection_limit: int = -1            # HaluEval detection: first N samples of each split (-1: all 10,000)
    detection_scoring: str = "generate"  # ... the paper's scoring; the demo's tiny model: loglik
    world: WorldSettings | None = None   # demo, world: the open-book world section (aligner.pipeline.world)
    plumbing: bool = True                # False: the world section alone (--profile world)
    # both training stages: --layout, --loss, --max_tokens_per_batch (None: the trainer's defaults, packed / dpop)
    train_layout: str | None = None
    train_loss: str | None = None
    max_tokens_per_batch: int | None = None

    def training_choices(self) -> dict:
        """The layout, loss and forward size both training stages get, where the profile sets them."""
        chosen = dict(layout=self.train_layout, loss=self.train_loss, max_tokens_per_batch=self.max_tokens_per_batch)
        return {k: v for k, v in chosen.items() if v is not None}


def demo_profile(output_dir: Path, halueval: Path, truthfulqa: Path, final_data: Path) -> Profile:
    from aligner.core.paths import minilm_model_path

    minilm = str(minilm_model_path())
    return Profile(
        name="demo", output_dir=output_dir, halueval_path=halueval, truthfulqa_path=truthfulqa,
        final_data_dir=final_data, embed_model=minilm, bertscore_model=minilm, bertscore_num_layers=6,
        backend="hf", eval_limit=50, sft_start=1000, sft_rows=120, data_limit=120, max_new_tokens=48,
        fake_max_new_tokens=32, teacher_limit=40, eval_batch_size=25, mc_batch=64, train_epochs=4,
        warm_start=dict(full_finetune=True, max_length=160, epochs=1.0, per_device_batch_size=16, grad_accum_steps=1,
                        lr=5e-3, warmup_ratio=0.05, logging_steps=10, save_steps=100000),
        warm_rows=(2000, 1500), ifeval_path=ifeval_path(), ifeval_limit=20, ifeval_max_new_tokens=48,
        detection_limit=5, detection_scoring="loglik",  # a few samples per split; Yes/No log-probs, no parsing
        world=WorldSettings(),
        policy_vocab_size=8192,  # whole words as single tokens: a minute of SFT then gives word-level answers
        train_args=dict(max_length=256, per_device_batch_size=4, grad_accum_steps=1, lr=1e-3, warmup_steps=10,
                        logging_steps=5, save_every_steps=1000),
        latest_train_args=dict(max_length=256, per_device_batch_size=4, grad_accum_steps=1, lr=1e-3, warmup_steps=5,
                               logging_steps=5, save_every_steps=1000),
    )


def world_profile(output_dir: Path) -> Profile:
    """``--profile world``: the open-book world alone (``aligner.pipeline.world``), a few minutes on a CPU."""
    return Profile(name="world", output_dir=output_dir, halueval_path=Path(), truthfulqa_path=Path(),
                   final_data_dir=Path(), world=WorldSettings(), plumbing=False)


#: where ``scripts/download_data.py --what truthfulqa`` puts TruthfulQA (its --truthfulqa_dir default)
TRUTHFULQA_DOWNLOAD_DIR = Path(DownloadDataConfig.__dataclass_fields__["truthfulqa_dir"].default)


def study_profile(output_dir: Path, halueval: Path, truthfulqa: Path | None, final_data: Path, models_dir: Path,
                  squad_csv: Path | None = None, name: str = "study") -> Profile:
    """The study's models, data and settings.  TruthfulQA: ``truthfulqa`` when given, else the hub's
    ``truthful_qa`` as the study loaded it (``multiple_choice`` for MC1/MC2, ``generation`` for the answers),
    downloaded by the first evaluation stage."""
    local_ifeval = ifeval_path()
    download = TRUTHFULQA_DOWNLOAD_DIR if truthfulqa is None else None
    return Profile(
        name=name, output_dir=output_dir, halueval_path=halueval,
        truthfulqa_path=truthfulqa if download is None else download / "hf", truthfulqa_download=download,
        final_data_dir=final_data, policy=models_dir / "llama3-2-3b-instruct",
        truth_judge=models_dir / "truthfulqa-truth-judge-llama2-7B",
        faith_judge=models_dir / "hallucination_evaluation_model",
        teacher=models_dir / "Llama-3.1-8B-Instruct",
        embed_model=str(models_dir / "all-mpnet-base-v2"), bertscore_model=str(models_dir / "deberta-v3-large"),
        backend="auto", eval_limit=-1, squad_csv=squad_csv, max_new_tokens=128, fake_max_new_tokens=128,
        eval_batch_size=32, mc_batch=64, ifeval_path=local_ifeval if local_ifeval.is_file() else None,
        halueval_batch_size=8, truthfulqa_backend="hf", truthfulqa_gen_batch_size=1,  # the study's (E5, E9)
        published_dir=seed_results_dir() if seed_results_dir().is_dir() else None, study_compat=True,
    )


def study_eval_profile(output_dir: Path, halueval: Path, truthfulqa: Path | None, final_data: Path,
                       models_dir: Path) -> Profile:
    """``make reproduce-eval``: the study's published adapters (downloaded) and the base on every benchmark, ending
    in the published-vs-reproduced report; no data preparation, no training."""
    p = study_profile(output_dir, halueval, truthfulqa, final_data, models_dir, name="study_eval")
    p.study_adapters = True
    return p


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
    adapters_dir: Path | None = None      # study_eval: the downloaded adapters (dpop_best/, dpop_last/)

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
        return (self.adapters_dir or self.out / "train") / "dpop_best"

    @property
    def last(self) -> Path:
        return (self.adapters_dir or self.out / "train") / "dpop_last"


def _eval_rows(p: Profile) -> int:
    """How many leading HaluEval rows the evaluation takes (-1 evaluates every row: none is free for training)."""
    return p.eval_limit if p.eval_limit >= 0 else 1 << 40


def model_stages(p: Profile) -> tuple[list[Stage], Workspace]:
    """1. the models: built tiny ones (demo) or the downloaded ones of the profile."""
    out = p.output_dir
    if p.policy is not None:
        return [], Workspace(out, p.policy, p.truth_judge, p.faith_judge, p.teacher or p.policy)
    models = out / "models"
    policy, truth_judge, faith_judge = models / "tiny-policy", models / "tiny-truth-judge", models / "tiny-faith-judge"
    stages = [Stage(name, script_command("scripts/make_tiny_model.py", (TinyModelOutput, TinyModelConfig), output_dir=path,
                                  kind=kind, seed=seed, **extra),
                    outputs=[path / "config.json", path / "model.safetensors"])
              for name, path, kind, seed, extra in (
                  ("tiny_policy", policy, "causal", 0,
                   {} if p.policy_vocab_size is None else {"vocab_size": p.policy_vocab_size}),
                  ("tiny_truth_judge", truth_judge, "causal", 1, {}),
                  ("tiny_faith_judge", faith_judge, "seq_cls", 2, {}))]
    return stages, Workspace(out, policy, truth_judge, faith_judge, policy)


def warm_start_stages(p: Profile, ws: Workspace) -> list[Stage]:
    """1b. demo: the random tiny policy is fine-tuned first by the RAG SFT stage (old_training/train_rag_sft.py) on
    HaluEval rows disjoint from the evaluation rows, so that it answers in the right format; every later stage (the
    fakes, both recipes, the merge, the evaluations as the base) uses this warm-started policy."""
    if p.warm_start is None:
        return []
    start, n = p.warm_rows
    warm_dir = ws.data / "warm_start"
    csv_file, sft_file = warm_dir / "halueval_rows.csv", warm_dir / "sft.jsonl"
    random_policy, warm = ws.policy, ws.models / "tiny-policy-warm"
    eval_rows = _eval_rows(p)
    ws.policy = ws.teacher = warm
    return [
        Stage("warm_rows", script_command("scripts/halueval_to_squad.py", HaluEvalSquadSliceConfig, data_path=p.halueval_path,
                                   output_file=csv_file, start=start, n=n, eval_rows=eval_rows),
              outputs=[csv_file], inputs=[p.halueval_path], run_config=warm_dir / "halueval_to_squad_run_config.json",
              note=f"(warm-start rows = HaluEval rows [{start}, {start + n}), disjoint from the evaluation rows)"),
        Stage("warm_sft_set", script_command("first_improvement/data_prep/scripts/create_squad_training.py", SquadConfig,
                                      csv_file=csv_file, output_file=sft_file, n_answerable=-1, n_unanswerable=-1),
              outputs=[sft_file], inputs=[csv_file]),
        Stage("warm_sft", script_command("old_training/train_rag_sft.py", RagSFTConfig, model_path=random_policy,
                                  data_files=[sft_file], output_dir=warm, **p.warm_start),
              outputs=[warm / "config.json", warm / "model.safetensors"], inputs=[sft_file, random_policy],
              run_config=warm / "run_config.json",
              note="(RAG SFT of the random tiny policy, every weight: the warm-started base)"),
    ]


def data_stages(p: Profile, ws: Workspace) -> list[Stage]:
    """2. the preference pairs: built here (demo: from HaluEval rows; study: from --squad_csv) or downloaded;
    sets ``ws.pair_files`` and ``ws.teacher_pairs``."""
    downloaded = downloaded_pairs(p.final_data_dir)
    stages: list[Stage] = []
    squad_csv = p.squad_csv
    if p.name == "demo" and not downloaded:
        squad_csv = ws.data / "squad_from_halueval.csv"
        eval_rows = _eval_rows(p)
        stages.append(Stage(
            "sft_rows", script_command("scripts/halueval_to_squad.py", HaluEvalSquadSliceConfig, data_path=p.halueval_path,
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
        Stage("make_data", script_command("scripts/make_data.py", MakeDataConfig, squad_csv=squad_csv, model_path=ws.teacher,
                                   output_dir=prep, limit=p.data_limit, spacy_model="auto", backend=backend,
                                   max_new_tokens=p.fake_max_new_tokens, progress=False, study_compat=p.study_compat),
              outputs=[*ws.pair_files, teacher_input], inputs=[squad_csv, ws.teacher],
              run_config=prep / "make_data_run.json"),
        Stage("teacher_pairs", script_command("further_improvement/data_prep/hard_fake_gen_vllm.py",
                                       (TeacherConfig, TeacherSFTView), nq_jsonl="none", squad_jsonl=teacher_input,
                                       model_path=ws.teacher, backend=backend, output_dir=teacher_dir,
                                       limit=p.teacher_limit, max_new_tokens=96 if p.name == "demo" else 1024,
                                       progress=False, study_compat=p.study_compat),
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
        Stage("train_best", script_command("first_improvement/training/train_dpop.py", (CurriculumData, DPOPTrainingConfig),
                                    model_path=ws.policy, data_files=",".join(map(str, ws.pair_files)),
                                    output_dir=best, epochs=p.train_epochs, progress=False, overwrite_output_dir=True,
                                    study_compat=p.study_compat, **p.training_choices(), **p.train_args),
              outputs=[best / "adapter_config.json", best / "train_log.jsonl"], inputs=[*ws.pair_files, ws.policy],
              run_config=best / "run_config.json",
              note=f"({p.train_epochs or 'all four'} curriculum stages, "
                   + ("pairs from make_data)" if ws.built_pairs else "downloaded final_data/ pairs)")),
        Stage("train_latest", script_command("further_improvement/training/train_dpop.py", (LatestRecipeData, DPOPTrainingConfig),
                                      model_path=ws.policy, hard_file=ws.teacher_pairs, medium_file=medium,
                                      output_dir=last, progress=False, overwrite_output_dir=True,
                                      study_compat=p.study_compat, **p.training_choices(), **p.latest_train_args),
              outputs=[last / "adapter_config.json", last / "train_log.jsonl"],
              inputs=[ws.teacher_pairs, medium, ws.policy], run_config=last / "run_config.json"),
        Stage("merge", script_command("scripts/merge_adapter.py", MergeConfig, base_model_path=ws.policy, adapter_path=best,
                               output_path=merged),
              outputs=[merged / "config.json"], inputs=[ws.policy, best], run_config=merged / "run_config.json"),
    ]


def study_adapter_stages(p: Profile, ws: Workspace) -> list[Stage]:
    """study_eval: the study's published adapters from the hub, as the best / latest runs."""
    ws.adapters_dir = p.output_dir / "adapters"
    return [Stage("download_adapters", script_command("scripts/download_study_adapters.py", DownloadStudyAdaptersConfig,
                                               output_dir=ws.adapters_dir),
                  outputs=[ws.best / "adapter_config.json", ws.last / "adapter_config.json"],
                  note=f"({', '.join(f'{k} -> {v}' for k, v in STUDY_ADAPTERS.items())})")]


def truthfulqa_inputs(p: Profile) -> list[Path]:
    """What the TruthfulQA stage reads: the two config folders of a hub snapshot, or the one file."""
    path = Path(p.truthfulqa_path)
    if p.truthfulqa_download is not None or path.is_dir():
        return [path / c for c in HUB_CONFIGS]
    return [path]


def truthfulqa_data_stages(p: Profile) -> list[Stage]:
    """Study profiles: the hub's ``truthful_qa`` (both configs' parquet), as the study loaded it."""
    if p.truthfulqa_download is None:
        return []
    return [Stage("truthfulqa_data", script_command("scripts/download_data.py", DownloadDataConfig, what=["truthfulqa"],
                                                    source="hf", truthfulqa_dir=p.truthfulqa_download),
                  outputs=truthfulqa_inputs(p),
                  note="(the hub's truthful_qa: multiple_choice for MC1/MC2, generation for the answers, as the "
                       "study)")]


def halueval_split_stages(p: Profile) -> list[Stage]:
    """The detection benchmark's other two HaluEval splits, fetched beside the QA file when missing (verified by
    sha256; nothing is fetched when they are there)."""
    qa = Path(p.halueval_path)
    splits = [s for s in DETECTION_FIELDS if s != "qa"]
    others = [halueval_split_path(qa, split) for split in splits]
    if all(f.is_file() for f in others):
        return []
    return [Stage("halueval_splits", script_command("scripts/download_data.py", DownloadDataConfig, what=["halueval"],
                                                    halueval_splits=splits, halueval_path=qa),
                  outputs=others, note="(HaluEval's dialogue and summarization splits, for the detection benchmark)")]


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
    fidelity = dict(study_compat=p.study_compat)  # the study's own behaviour in the study profiles
    halueval = dict(generation, data_path=p.halueval_path, batch_size=p.eval_batch_size)
    truthfulqa = dict(generation, backend=p.truthfulqa_backend or p.backend,
                      gen_batch_size=p.truthfulqa_gen_batch_size or p.eval_batch_size)
    bertscore = dict(bertscore_model=p.bertscore_model, bertscore_num_layers=p.bertscore_num_layers)
    preds = p.output_dir / "predictions" / "HaluevalLLM"
    pred_files = [result_file(preds, "predictions", r) for r in runs]
    ifeval = dict(generation)
    ifeval.update(data_path=p.ifeval_path, limit=p.ifeval_limit, max_new_tokens=p.ifeval_max_new_tokens,
                  batch_size=p.eval_batch_size, output_dir=res / "IFEval")
    return [
        Stage("eval_truthfulqa", script_command("evaluation/eval_truthfulqa.py", TruthfulQAEvalConfig, **truthfulqa,
                                         **fidelity, judge_model_path=ws.truth_judge, output_dir=res / "TruthfulQA",
                                         data_path=p.truthfulqa_path, mc_batch=p.mc_batch),
              outputs=[result_file(res / "TruthfulQA", "metrics", r) for r in runs],
              inputs=[*models, ws.truth_judge, *truthfulqa_inputs(p)],
              run_config=res / "TruthfulQA" / f"run_config_{runs[0]}.json"),
        Stage("eval_halueval", script_command("evaluation/eval_halueval.py", HaluEvalSimilarityConfig,
                                       **dict(halueval, batch_size=p.halueval_batch_size or p.eval_batch_size),
                                       **fidelity, **bertscore, output_dir=res / "Halueval", embed_model=p.embed_model),
              outputs=[result_file(res / "Halueval", "metrics", r) for r in runs],
              inputs=[*models, p.halueval_path], run_config=res / "Halueval" / f"run_config_{runs[0]}.json"),
        Stage("eval_halueval_step1", script_command("evaluation/eval_haleval_llm_step1.py", HaluEvalStep1Config, **halueval,
                                             **fidelity,
                                             output_dir=preds),
              outputs=pred_files, inputs=[*models, p.halueval_path],
              run_config=preds / f"run_config_step1_{runs[0]}.json"),
        Stage("eval_halueval_step2", script_command("evaluation/eval_haleval_llm_step2.py", HaluEvalStep2Config,
                                             predictions_dir=preds, judge_model_path=ws.faith_judge,
                                             output_dir=res / "HaluevalLLM", progress=False, overwrite=True,
                                             **bertscore, **fidelity),
              outputs=[result_file(res / "HaluevalLLM", "metrics", r) for r in runs], inputs=[*pred_files, ws.faith_judge],
              run_config=res / "HaluevalLLM" / f"run_config_{runs[0]}.json"),
        Stage("eval_ifeval", script_command("evaluation/eval_ifeval.py", IFEvalConfig, **ifeval),
              outputs=[result_file(res / "IFEval", "metrics", r) for r in runs],
              inputs=[*models, *([p.ifeval_path] if p.ifeval_path else [])],
              run_config=res / "IFEval" / f"run_config_{runs[0]}.json",
              note=f"(first {p.ifeval_limit} prompts, {p.ifeval_max_new_tokens} new tokens)" if p.ifeval_limit >= 0
              else ""),
        detection_stage(p, ws, generation),
    ]


def detection_stage(p: Profile, ws: Workspace, generation: dict) -> Stage:
    """HaluEval's own benchmark, hallucination detection, on its three splits (one loaded base for all)."""
    out, runs, qa = ws.results / "HaluEvalDetection", run_names(p), Path(p.halueval_path)
    splits = list(DETECTION_FIELDS)
    settings = dict(generation, limit=p.detection_limit, scoring=p.detection_scoring, batch_size=p.eval_batch_size,
                    data_dir=qa.parent, output_dir=out)
    settings.pop("max_new_tokens")  # the answer is one word: the benchmark's own default
    return Stage("eval_halueval_detection", script_command("evaluation/eval_halueval_detection.py",
                                                           HaluEvalDetectionConfig, **settings),
                 outputs=[result_file(out / split, "metrics", r) for split in splits for r in runs],
                 inputs=[ws.policy, ws.best, ws.last, *(halueval_split_path(qa, split) for split in splits)],
                 run_config=out / splits[0] / f"run_config_{runs[0]}.json",
                 note=f"({p.detection_scoring} scoring" + (f", first {p.detection_limit} samples of each split)"
                                                           if p.detection_limit >= 0 else ")"))


def tables_stage(p: Profile, ws: Workspace) -> Stage:
    """6. the scoreboard and its trade-off figure, the tables and plots, and (study profiles) the published numbers
    beside the reproduced ones."""
    out, runs = p.output_dir, run_names(p)
    tables = out / "tables.md"
    logs = [] if p.study_adapters else [ws.best / "train_log.jsonl", ws.last / "train_log.jsonl"]
    extra = {} if p.published_dir is None else {"published": p.published_dir}
    return Stage(
        "tables", script_command("scripts/make_tables.py", TablesConfig, results_dir=ws.results, baseline=runs[0], runs=runs,
                          output=tables, plot=out / "metrics.png", tradeoff_plot=out / "tradeoff.png",
                          train_log=[f"{n}={log}" for n, log in zip(("best", "latest"), logs)], train_plot_dir=out,
                          exclude=["World"] if p.world is not None else None, **extra),
        outputs=[tables, out / "metrics.png", *(out / f"training_{n}.png" for n in ("best", "latest")[:len(logs)])],
        inputs=[ws.results, *logs, *([p.published_dir] if p.published_dir else [])])


def build_stages(p: Profile) -> list[Stage]:
    """Every stage of the study, in order, as real stage-script invocations passing files on disk.

    A stage's inputs are everything its outcome depends on (data files, model and adapter folders), so a
    change anywhere upstream (new weights, new data) re-runs it and the stages after it.
    """
    world = world_stages(p.world, p.output_dir) if p.world is not None else []
    if not p.plumbing:
        return world
    stages, ws = model_stages(p)
    stages = world + stages
    if p.study_adapters:
        stages += study_adapter_stages(p, ws)
    else:
        stages += warm_start_stages(p, ws)
        stages += data_stages(p, ws)
        stages += training_stages(p, ws)
    stages += truthfulqa_data_stages(p)
    stages += halueval_split_stages(p)
    stages += eval_stages(p, ws)
    stages.append(tables_stage(p, ws))
    return stages
