#!/usr/bin/env python
"""The open-book world experiment (a prototype of the demo's world section): does curriculum DPOP lower the rate of
answers from memory on knowledge conflicts?

Every step is a real stage script run as a subprocess on the world's files (``aligner.pipeline.runner``):

1. ``scripts/make_world.py``: the world, its warm-start rows, fakes, teacher pairs, held-out HaluEval rows, vocabulary;
2. ``scripts/make_tiny_model.py --word_vocab``: a random 2-layer Llama with one token per world word;
3. ``old_training/train_rag_sft.py``: the warm start (every weight), whose conflict targets are the memory answer for
   a fixed share of the people, so that the base answers from memory a measurable part of the time;
4. the curriculum pairs: ``create_dataset.py`` on the world's fakes (easy = another item's answer, medium = the answer
   with another value, hard = the memory answer), or with ``--pairs stages`` the project's own stages 3-5 and 7-8
   on ``squad.csv`` (SQuAD set, easy fakes, NER medium fakes, context restore, pairs) with the memory answers as the
   hard fakes;
5. ``train_dpop_improved.py`` on the ideal-vs-fake pairs (ideal > easy, medium, hard fake): curriculum DPOP, plain
   DPO (``--lam 0``) and DPOP on one shuffled stage holding exactly the pairs the curriculum visits (same pairs, same
   steps, only the order differs); and curriculum DPOP on every pair ``create_dataset.py`` writes, whose
   fake-vs-fake pairs (hard > easy, hard > medium) prefer the memory answer to the other fakes;
6. ``evaluation/eval_halueval.py`` (greedy) on the held-out rows: the base and the adapters in one process.

The chat template of the world's tokenizer has no system turn, so the warm start, the trainer (which send a system
prompt) and the HaluEval similarity flow (which sends none) all render the same prompt text.

Then, from the ``detailed_*.jsonl`` files joined to the held-out rows by index: the memory-answer rate on conflict
items (the answer equals the hallucinated answer after lower-casing and removing punctuation and extra spaces), the
exact-match rate of the right answer, the similarity flow's metrics, each with a bootstrap 95% interval and, for the
adapters, a paired bootstrap interval of the change against the base (``aligner.report.bootstrap``).  The DPOP and DPO
train logs give the chosen answers' reward trend (the DPOP paper's falling chosen likelihood).  Every step's wall
time and CPU time (user + sys of its process) are recorded.  Output: ``OUTPUT/world_report.{json,md}``.

Example:
    python benchmarks/world_experiment.py --output_dir outputs/world
"""

import random
import re
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from aligner.core.cli import parse_config, run_cli
from aligner.core.io import read_jsonl, write_json_atomic, write_jsonl_atomic
from aligner.core.paths import LEVELS, PAIR_FILES, minilm_model_path, result_file
from aligner.data.negatives import EasyFakeConfig, RestoreContextConfig
from aligner.data.ner import MediumFakeConfig
from aligner.data.pairs import CurriculumPairsConfig
from aligner.data.sft import SFTView, SquadConfig
from aligner.data.sources.world import WorldConfig
from aligner.data.world_files import (
    FAKES_DIR,
    HELDOUT_FILE,
    ITEMS_FILE,
    SFT_FILE,
    SQUAD_FILE,
    VOCAB_FILE,
    WorldFilesConfig,
    memory_fakes_for_view,
)
from aligner.eval.tasks.halueval import HaluEvalSimilarityConfig
from aligner.pipeline.runner import Pipeline, Stage, script_command
from aligner.report.bootstrap import bootstrap_ci, mean_ci
from aligner.testing.tiny import TinyModelConfig, TinyModelOutput
from aligner.train.config import CurriculumData, DPOPTrainingConfig
from aligner.train.curriculum import CurriculumSchedule
from aligner.train.sft import RagSFTConfig

#: the trainings: curriculum DPOP, plain DPO (lambda 0), DPOP on one shuffled stage of the same pairs, and curriculum
#: DPOP on every pair create_dataset.py writes (its fake-vs-fake pairs too); the base model is evaluated beside them
TRAININGS = ("dpop", "dpo", "shuffled", "dpop_study_pairs")
_NEG = "first_improvement/data_prep/negative_sampling/scripts"


@dataclass(kw_only=True)
class WorldExperimentConfig:
    output_dir: str = field(default="outputs/world", metadata={"help": "where everything goes"})
    seed: int = field(default=0, metadata={"help": "seed of the world, the model init and every stage"})
    threads: int = field(default=2, metadata={"help": "torch threads of every stage (OMP/MKL_NUM_THREADS)"})
    resume: bool = field(default=False, metadata={
        "help": "keep the steps that completed before with the same command and inputs"})
    pairs: str = field(default="world", metadata={
        "help": "world: pairs from the world's own fakes; stages: easy and medium fakes by the project's data stages "
                "on squad.csv", "choices": ["world", "stages"]})
    trainings: list[str] = field(default_factory=lambda: list(TRAININGS), metadata={
        "help": "which trainings run: dpop, dpo and shuffled on the ideal-vs-fake pairs of the curriculum files "
                "(ideal>easy, ideal>medium, ideal>hard), dpop_study_pairs on every pair create_dataset.py writes (also "
                "hard>easy, hard>medium, medium>easy, which prefer the memory answer to the other fakes)",
                "sep": ","})
    # the world
    n_people: int = field(default=60, metadata={"help": "known people"})
    n_sft: int = field(default=12000, metadata={"help": "warm-start rows"})
    n_pair_items: int = field(default=400, metadata={"help": "items the preference pairs are made from"})
    n_heldout: str = field(default="300,50,50", metadata={"help": "held-out conflict, agree, novel items"})
    # the model and its warm start
    num_layers: int = field(default=2, metadata={"help": "decoder layers of the tiny policy"})
    hidden_size: int = field(default=128, metadata={"help": "width of the tiny policy"})
    initializer_range: float = field(default=0.06, metadata={"help": "init standard deviation"})
    warm_steps: int = field(default=1500, metadata={"help": "warm-start optimizer steps"})
    warm_batch: int = field(default=16, metadata={"help": "warm-start batch size"})
    warm_lr: float = field(default=3e-3, metadata={"help": "warm-start peak learning rate"})
    # DPOP
    lr: float = field(default=5e-3, metadata={"help": "DPOP learning rate"})
    beta: float = field(default=0.3, metadata={"help": "DPO beta"})
    lam: float = field(default=50.0, metadata={"help": "DPOP lambda of the DPOP runs (the DPO run has 0)"})
    batch: int = field(default=8, metadata={"help": "pairs per optimizer step"})
    warmup_steps: int = field(default=10, metadata={"help": "DPOP warmup steps"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (q_proj, v_proj)"})
    # evaluation
    max_new_tokens: int = field(default=24, metadata={"help": "answer length limit"})
    eval_batch: int = field(default=64, metadata={"help": "generation batch"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples"})

    def __post_init__(self):
        unknown = [t for t in self.trainings if t not in TRAININGS]
        if unknown or not self.trainings:
            raise ValueError(f"--trainings: unknown {unknown}; choose from {list(TRAININGS)}")


# ---------------------------------------------------------------------------------------------
# the stages
# ---------------------------------------------------------------------------------------------

@dataclass
class Layout:
    out: Path

    def __getattr__(self, name):
        folders = {"data": "data", "base": "models/tiny-world", "warm": "models/tiny-world-warm", "prep": "prep",
                   "train": "train", "results": "results/World"}
        if name in folders:
            return self.out / folders[name]
        raise AttributeError(name)


def world_stages(cfg: WorldExperimentConfig, d: Layout) -> list[Stage]:
    world = script_command("scripts/make_world.py", (WorldFilesConfig, WorldConfig), output_dir=d.data, seed=cfg.seed,
                           n_people=cfg.n_people, n_sft=cfg.n_sft, n_pair_items=cfg.n_pair_items,
                           n_heldout=[int(x) for x in cfg.n_heldout.split(",")])
    model = script_command("scripts/make_tiny_model.py", (TinyModelOutput, TinyModelConfig), output_dir=d.base,
                           word_vocab=d.data / VOCAB_FILE, num_layers=cfg.num_layers, hidden_size=cfg.hidden_size,
                           initializer_range=cfg.initializer_range, seed=cfg.seed)
    warm = script_command("old_training/train_rag_sft.py", RagSFTConfig, model_path=d.base,
                          data_files=[d.data / SFT_FILE], output_dir=d.warm, full_finetune=True, max_length=160,
                          max_steps=cfg.warm_steps, per_device_batch_size=cfg.warm_batch, grad_accum_steps=1,
                          lr=cfg.warm_lr, warmup_ratio=0.05, logging_steps=100, save_steps=100000, seed=cfg.seed)
    return [Stage("make_world", world, outputs=[d.data / SFT_FILE, d.data / HELDOUT_FILE, d.data / VOCAB_FILE],
                  run_config=d.data / "run_config.json"),
            Stage("tiny_model", model, outputs=[d.base / "model.safetensors"], inputs=[d.data / VOCAB_FILE]),
            Stage("warm_start", warm, outputs=[d.warm / "model.safetensors"], inputs=[d.base, d.data / SFT_FILE],
                  run_config=d.warm / "run_config.json")]


def pair_stages_world(cfg: WorldExperimentConfig, d: Layout) -> list[Stage]:
    cmd = script_command(f"{_NEG}/create_dataset.py", CurriculumPairsConfig, input_dir=d.data / FAKES_DIR,
                         output_dir=d.prep, seed=cfg.seed)
    return [Stage("pairs", cmd, outputs=[d.prep / n for n in PAIR_FILES], inputs=[d.data / FAKES_DIR],
                  run_config=d.prep / "run_config.json")]


def pair_stages_project(cfg: WorldExperimentConfig, d: Layout, pipe: Pipeline) -> list[Stage]:
    """Stages 3, 4, 5 of ``make data`` on squad.csv, then the memory answers as hard fakes, then stages 7 and 8."""
    squad, view_file = d.prep / "squad" / "squad.jsonl", d.prep / "easy" / "sft_view.jsonl"
    easy, medium, hard = d.prep / "easy" / "easy_fakes.jsonl", d.prep / "medium" / "medium_fakes.jsonl", \
        d.prep / "hard" / "memory_fakes.jsonl"
    view = dict(nq_jsonl="", squad_jsonl=squad)
    restored = d.prep / "with_context"
    stages = [
        Stage("squad_set", script_command("first_improvement/data_prep/scripts/create_squad_training.py", SquadConfig,
                                          csv_file=d.data / SQUAD_FILE, output_file=squad, n_answerable=-1,
                                          n_unanswerable=-1, seed=cfg.seed), outputs=[squad]),
        Stage("easy_fakes", script_command(f"{_NEG}/generate_easy_fakes.py", (SFTView, EasyFakeConfig), **view,
                                           output_file=easy, view_file=view_file, seed=cfg.seed),
              outputs=[easy, view_file], inputs=[squad]),
        Stage("medium_fakes", script_command(f"{_NEG}/generate_medium_fakes.py", (SFTView, MediumFakeConfig), **view,
                                             output_file=medium, spacy_model="auto", seed=cfg.seed, progress=False),
              outputs=[medium], inputs=[squad]),
    ]
    for stage in stages:
        pipe.run(stage)
    hard.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(hard, memory_fakes_for_view(read_jsonl(view_file), read_jsonl(d.data / ITEMS_FILE)))
    return [
        Stage("fix_fakes", script_command(f"{_NEG}/fix_fakes.py", (SFTView, RestoreContextConfig), **view,
                                          easy_file=easy, medium_file=medium, hard_file=hard, output_dir=restored,
                                          seed=cfg.seed), outputs=[restored], inputs=[easy, medium, hard]),
        Stage("pairs", script_command(f"{_NEG}/create_dataset.py", CurriculumPairsConfig, input_dir=restored,
                                      output_dir=d.prep, seed=cfg.seed),
              outputs=[d.prep / n for n in PAIR_FILES], inputs=[restored]),
    ]


def ideal_pair_files(pair_files: list[Path], out_dir: Path) -> dict:
    """The ideal-vs-fake pairs of each curriculum file (``pair_type`` ideal>...), in their order; returns counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path in pair_files:
        rows = [r for r in read_jsonl(path) if str(r.get("pair_type", "")).startswith("ideal>")]
        write_jsonl_atomic(out_dir / path.name, rows)
        counts[path.stem] = len(rows)
    return counts


def shuffled_stage_file(pair_files: list[Path], out: Path, seed: int, epochs: int = 4) -> int:
    """One file holding every pair the curriculum's ``epochs`` stages visit (the same pairs, as often), shuffled:
    the curriculum ablation differs from the curriculum in the order alone."""
    levels = [read_jsonl(p) for p in pair_files]
    schedule = CurriculumSchedule([len(x) for x in levels], seed=seed)
    visited = [levels[lv][i] for s in range(1, epochs + 1) for lv, i in schedule.stage_items(s)]
    random.Random(seed).shuffle(visited)
    write_jsonl_atomic(out, visited)
    return len(visited)


def training_stages(cfg: WorldExperimentConfig, d: Layout, ideal: list[Path], study: list[Path],
                    shuffled: Path) -> list[Stage]:
    common = dict(model_path=d.warm, beta=cfg.beta, lr=cfg.lr, per_device_batch_size=cfg.batch, grad_accum_steps=1,
                  warmup_steps=cfg.warmup_steps, max_length=160, lora_r=cfg.lora_r, lora_alpha=2 * cfg.lora_r,
                  logging_steps=5, save_every_steps=0, seed=cfg.seed, progress=False, overwrite_output_dir=True)
    runs = {"dpop": ([*ideal], cfg.lam, 4), "dpo": ([*ideal], 0.0, 4), "shuffled": ([shuffled], cfg.lam, 1),
            "dpop_study_pairs": ([*study], cfg.lam, 4)}
    return [Stage(f"train_{name}", script_command("first_improvement/training/train_dpop_improved.py",
                                                  (CurriculumData, DPOPTrainingConfig), output_dir=d.train / name,
                                                  data_files=",".join(map(str, files)), lam=lam, epochs=epochs,
                                                  **common),
                  outputs=[d.train / name / "adapter_config.json", d.train / name / "train_log.jsonl"],
                  inputs=[d.warm, *files], run_config=d.train / name / "run_config.json")
            for name, (files, lam, epochs) in runs.items() if name in cfg.trainings]


def eval_stage(cfg: WorldExperimentConfig, d: Layout) -> Stage:
    minilm = str(minilm_model_path())
    adapters = ["none", *(str(d.train / r) for r in cfg.trainings)]
    cmd = script_command("evaluation/eval_halueval.py", HaluEvalSimilarityConfig, model_path=d.warm, lora_path=adapters,
                         data_path=d.data / HELDOUT_FILE, run_name="world", output_dir=d.results, backend="hf",
                         generation_config="greedy", max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch,
                         embed_model=minilm, bertscore_model=minilm, bertscore_num_layers=6, progress=False,
                         overwrite=True, seed=cfg.seed)
    return Stage("eval_halueval", cmd, outputs=[result_file(d.results, "detailed", f"world_{r}")
                                                for r in ("base", *cfg.trainings)],
                 inputs=[d.warm, d.data / HELDOUT_FILE, *(d.train / r for r in cfg.trainings)],
                 run_config=d.results / "run_config.json")


# ---------------------------------------------------------------------------------------------
# the analysis
# ---------------------------------------------------------------------------------------------

def normalise_answer(text: str) -> str:
    """Lower case, punctuation removed, runs of whitespace made one space."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def answer_matches(generated: str, row: dict) -> dict:
    """``match_right`` / ``match_hallucinated``: the answer equals the right / the hallucinated answer after
    ``normalise_answer`` (the lead's similarity-flow fields will replace this)."""
    g = normalise_answer(generated)
    return {"match_right": g == normalise_answer(row["right_answer"]),
            "match_hallucinated": g == normalise_answer(row["hallucinated_answer"])}


def per_sample(d: Layout, rows: list[dict], runs: list[str]) -> dict[str, list[dict]]:
    """Per run, one record per held-out row (in row order): kind, matches and the flow's per-sample metrics."""
    out = {}
    for run in runs:
        recs = read_jsonl(result_file(d.results, "detailed", f"world_{run}"))
        by_index = {r["index"]: r for r in recs}
        if sorted(by_index) != list(range(len(rows))):
            raise ValueError(f"world_{run}: the detailed file does not hold every held-out row once")
        out[run] = [{"kind": rows[i]["kind"], **answer_matches(by_index[i]["generated"], rows[i]),
                     **{k: by_index[i][k] for k in ("is_hallucinated", "bleu", "rouge_l", "bert_score")}}
                    for i in range(len(rows))]
    return out


METRICS = {  # name -> (kinds it is measured on, per-sample value)
    "memory_answer_rate": (("conflict",), lambda r: r["match_hallucinated"]),
    "right_answer_rate": (("conflict",), lambda r: r["match_right"]),
    "other_answer_rate": (("conflict",), lambda r: not (r["match_right"] or r["match_hallucinated"])),
    "right_answer_rate_agree": (("agree",), lambda r: r["match_right"]),
    "right_answer_rate_novel": (("novel",), lambda r: r["match_right"]),
    "hallucination_rate": (("conflict", "agree", "novel"), lambda r: r["is_hallucinated"]),
    "hallucination_rate_conflict": (("conflict",), lambda r: r["is_hallucinated"]),
    "avg_bleu": (("conflict", "agree", "novel"), lambda r: r["bleu"]),
    "avg_rouge_l": (("conflict", "agree", "novel"), lambda r: r["rouge_l"]),
    "avg_bert_score": (("conflict", "agree", "novel"), lambda r: r["bert_score"]),
}


def metric_table(samples: dict[str, list[dict]], n_boot: int, seed: int) -> dict:
    """Per metric and run: the value, its bootstrap 95% interval, and (adapters) the paired interval of the change."""
    table = {}
    for name, (kinds, value) in METRICS.items():
        vals = {run: np.array([float(value(r)) for r in recs if r["kind"] in kinds]) for run, recs in samples.items()}
        row = {}
        for run, v in vals.items():
            lo, hi = mean_ci(v, n_boot=n_boot, seed=seed)
            row[run] = {"value": float(v.mean()), "ci": [lo, hi], "n": int(v.size)}
            if run != "base":
                dlo, dhi, _, _ = bootstrap_ci(vals["base"], v, n_boot=n_boot, seed=seed)
                row[run].update(change=float(v.mean() - vals["base"].mean()), change_ci=[dlo, dhi],
                                change_excludes_zero=bool(dlo > 0 or dhi < 0))
        table[name] = row
    return table


def chosen_trend(log: Path) -> dict:
    """The chosen answers' reward beta * (log pi(y_w) - log pi_ref(y_w)) and log-prob over training: first and last
    logged values, mean of the last fifth, and the lowest."""
    lines = read_jsonl(log)
    rewards = [x["rewards/chosen"] for x in lines if "rewards/chosen" in x]
    logps = [x["logps/chosen"] for x in lines if "logps/chosen" in x]
    tail = rewards[-max(1, len(rewards) // 5):]
    return {"steps_logged": len(rewards), "reward_first": rewards[0], "reward_last": rewards[-1],
            "reward_last_fifth_mean": float(np.mean(tail)), "reward_min": min(rewards),
            "logp_first": logps[0], "logp_last": logps[-1], "logp_last_fifth_mean": float(np.mean(logps[-len(tail):]))}


# ---------------------------------------------------------------------------------------------
# the run and its report
# ---------------------------------------------------------------------------------------------

def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class TimedPipeline(Pipeline):
    """The pipeline runner, also recording each stage's CPU time (user + sys of its finished process)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    def run(self, stage: Stage) -> str:
        c0, t0 = _children_cpu(), time.perf_counter()
        status = super().run(stage)
        if status == "done":
            self.cpu[stage.name], self.wall[stage.name] = _children_cpu() - c0, time.perf_counter() - t0
        return status

    def timed(self, name: str, fn):
        """Run an in-process step, recording its wall time (its CPU time is this process's)."""
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        self.wall[name], self.cpu[name] = time.perf_counter() - t0, time.process_time() - c0
        return result


def _fmt(x: float, pct: bool) -> str:
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def report_markdown(table: dict, trends: dict, pipe: TimedPipeline, cfg: WorldExperimentConfig) -> str:
    runs = ["base", *cfg.trainings]
    lines = ["# The open-book world: held-out evaluation", "",
             "Rates in percent (BLEU, ROUGE-L, BERTScore as fractions); [95% bootstrap interval]; change = the adapter "
             "minus the base, paired bootstrap interval; * = the change's interval excludes 0.", "",
             "| metric | n | " + " | ".join(runs) + " |", "| --- | --- |" + " --- |" * len(runs)]
    for name, row in table.items():
        pct = not name.startswith("avg_")
        cells = []
        for run in runs:
            r = row[run]
            cell = f"{_fmt(r['value'], pct)} [{_fmt(r['ci'][0], pct)}, {_fmt(r['ci'][1], pct)}]"
            if run != "base":
                cell += (f"; {'+' if r['change'] >= 0 else ''}{_fmt(r['change'], pct)} "
                         f"[{_fmt(r['change_ci'][0], pct)}, {_fmt(r['change_ci'][1], pct)}]"
                         f"{'*' if r['change_excludes_zero'] else ''}")
            cells.append(cell)
        lines.append(f"| {name} | {row['base']['n']} | " + " | ".join(cells) + " |")
    lines += ["", "Chosen answers during training (rewards/chosen = beta x (log pi - log pi_ref) of the chosen "
              "answer; logps/chosen = its summed log-prob):", "",
              "| run | reward first | reward last | reward mean, last fifth | reward min | logp first | logp last |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for run, t in trends.items():
        lines.append(f"| {run} | {t['reward_first']:.3f} | {t['reward_last']:.3f} | {t['reward_last_fifth_mean']:.3f} "
                     f"| {t['reward_min']:.3f} | {t['logp_first']:.2f} | {t['logp_last']:.2f} |")
    lines += ["", f"Time per step ({cfg.threads} torch threads):", "", "| step | wall s | CPU s (user+sys) |",
              "| --- | --- | --- |"]
    for name in pipe.wall:
        lines.append(f"| {name} | {pipe.wall[name]:.1f} | {pipe.cpu[name]:.1f} |")
    lines.append(f"| total | {sum(pipe.wall.values()):.1f} | {sum(pipe.cpu.values()):.1f} |")
    return "\n".join(lines) + "\n"


def run_world_experiment(cfg: WorldExperimentConfig) -> dict:
    out = Path(cfg.output_dir)
    d = Layout(out)
    env = {"OMP_NUM_THREADS": str(cfg.threads), "MKL_NUM_THREADS": str(cfg.threads), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": str(cfg.seed)}
    pipe = TimedPipeline(out, force=not cfg.resume, env=env, manifest_name="world_manifest.json")
    for stage in world_stages(cfg, d):
        pipe.run(stage)
    pairs = pair_stages_world(cfg, d) if cfg.pairs == "world" else pair_stages_project(cfg, d, pipe)
    for stage in pairs:
        pipe.run(stage)
    study = [d.prep / n for n in PAIR_FILES]
    ideal = [d.prep / "ideal" / n for n in PAIR_FILES]
    pipe.timed("ideal_pairs", lambda: ideal_pair_files(study, d.prep / "ideal"))
    shuffled = d.prep / "ideal" / "dpo_pairs_shuffled_stage.jsonl"
    n_shuffled = pipe.timed("shuffled_file", lambda: shuffled_stage_file(ideal, shuffled, cfg.seed))
    for stage in [*training_stages(cfg, d, ideal, study, shuffled), eval_stage(cfg, d)]:
        pipe.run(stage)
    rows = read_jsonl(d.data / HELDOUT_FILE)
    runs = ["base", *cfg.trainings]
    table = pipe.timed("analysis", lambda: metric_table(per_sample(d, rows, runs), cfg.n_boot, cfg.seed))
    trends = {run: chosen_trend(d.train / run / "train_log.jsonl") for run in cfg.trainings}
    pair_counts = {f"{rule}_{lv}": len(read_jsonl(p)) for rule, files in (("ideal", ideal), ("study", study))
                   for lv, p in zip(LEVELS, files)}
    report = {"config": asdict(cfg), "pairs": {**pair_counts, "shuffled_stage": n_shuffled}, "metrics": table,
              "chosen_trend": trends, "wall_seconds": pipe.wall, "cpu_seconds": pipe.cpu}
    write_json_atomic(out / "world_report.json", report)
    md = report_markdown(table, trends, pipe, cfg)
    (out / "world_report.md").write_text(md, encoding="utf-8")
    print(md)
    return report


def parse_args(argv=None) -> WorldExperimentConfig:
    return parse_config(WorldExperimentConfig, argv, description=__doc__)


def main(argv=None):
    return run_world_experiment(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
