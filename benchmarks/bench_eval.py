#!/usr/bin/env python
"""Evaluation speed: batched TruthfulQA MC scoring and batched generation against the one-question-at-a-time
way, on the same model in the same run, with the outputs checked to agree.

* MC, one at a time: every (question, choice) its own forward pass (mc1 then mc2 choices, as a plain loop).
  Batched: ``aligner.truthfulqa.score_mc`` (distinct choices once, packed behind a shared question prefix,
  ``--mc_batch`` choices per forward); also shown without prefix sharing.
* Generation, one at a time: one prompt per ``generate`` call.  Batched: ``--gen_batch_size`` prompts per
  call, left padded.  Greedy, so the answers must be identical.
* ``--vs lm_eval``: the same MC1/MC2 with lm-evaluation-harness's HF backend, wrapping the very model object
  loaded here, on the same questions (its installed ``truthfulqa_mc1`` / ``truthfulqa_mc2`` task files with the
  data swapped for a local JSON-lines file; ``--prompt_style study`` swaps its prompt for the 0-shot one).
  Timed: lm-eval's ``evaluate`` (requests, scoring, metrics) against ours (``score_mc``); printed as
  questions/s with the ratio, and the numbers' difference (MC1, MC2, largest per-choice log-likelihood gap).

Example:
    python benchmarks/bench_eval.py                       # tiny model built on the fly, CPU
    python benchmarks/bench_eval.py --model_path models/llama3-2-3b-instruct --n_questions 100
    python benchmarks/bench_eval.py --vs lm_eval --prompt_style lm_eval --skip_generation
"""

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import parse_config, run_cli
from aligner.core.io import AlignerError
from aligner.core.paths import truthfulqa_csv_path
from aligner.prompts import TRUTHFULQA_PROMPT_STYLES

PEERS = ("lm_eval",)


class PeerUnavailableError(AlignerError, RuntimeError):
    """The peer library to compare against is not installed."""


@dataclass(kw_only=True)
class BenchEvalConfig:
    model_path: str | None = field(default=None, metadata={
        "help": "policy model (default: a tiny model built in a temp folder)"})
    data_path: str = field(default=str(truthfulqa_csv_path()), metadata={"help": "TruthfulQA CSV or HF-schema file"})
    n_questions: int = field(default=40, metadata={"help": "questions timed per phase"})
    mc_batch: int = field(default=64, metadata={"help": "MC choices per forward, batched way"})
    gen_batch_size: int = field(default=16, metadata={"help": "prompts per generate call, batched way"})
    max_new_tokens: int = field(default=32, metadata={"help": "greedy tokens per answer"})
    dtype: str = field(default="auto", metadata={"help": "auto = bf16 on CUDA, fp32 on CPU"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto"})
    repeats: int = field(default=2, metadata={
        "help": "timed runs of each way, interleaved; the fastest counts (shared machines are noisy)"})
    skip_generation: bool = field(default=False, metadata={"help": "time MC only"})
    prompt_style: str = field(default="study", metadata={
        "choices": list(TRUTHFULQA_PROMPT_STYLES),
        "help": "MC context of every MC timing: study = 0-shot 'Q: ...\\nA:', lm_eval = the harness's 6-shot preamble"})
    vs: str | None = field(default=None, metadata={
        "choices": list(PEERS), "help": "also time this peer on the same model and questions: lm_eval = "
                                        "lm-evaluation-harness's HF backend (default: none)"})
    lm_eval_batch_size: int = field(default=0, metadata={
        "help": "lm-eval's batch size (sequences per forward); 0 = --mc_batch, the choices ours puts in one forward"})
    output_json: str | None = field(default=None, metadata={"help": "also write the numbers here (default: none)"})


def parse_args(argv=None) -> BenchEvalConfig:
    return parse_config(BenchEvalConfig, argv, description=__doc__)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def fastest(fns, repeats):
    """Run each function ``repeats`` times, interleaved; return each one's output and fastest time."""
    outs, best = [None] * len(fns), [float("inf")] * len(fns)
    for _ in range(max(1, repeats)):
        for i, fn in enumerate(fns):
            outs[i], t = timed(fn)
            best[i] = min(best[i], t)
    return list(zip(outs, best))


def mc_one_at_a_time(lm, items, prompt_style="study"):
    """The straightforward loop: each choice of each question in its own forward pass."""
    from aligner.eval.metrics.mc import mc1_hit, mc2_mass
    from aligner.prompts import truthfulqa_choice, truthfulqa_mc_prompt

    hits, masses = [], []
    for it in items:
        ctx = truthfulqa_mc_prompt(it.question, prompt_style)
        s1 = [lm.loglikelihood([(ctx, truthfulqa_choice(c))], progress=False)[0] for c in it.mc1_choices]
        s2 = [lm.loglikelihood([(ctx, truthfulqa_choice(c))], progress=False)[0] for c in it.mc2_choices]
        hits.append(mc1_hit(s1, it.mc1_labels))
        masses.append(mc2_mass(s2, it.mc2_labels))
    return sum(hits) / len(hits), sum(masses) / len(masses), masses


def mc_batched(lm, items, prompt_style="study"):
    from aligner.eval.tasks.truthfulqa import score_mc

    res = score_mc(lm, items, prompt_style=prompt_style)
    masses = [r.mc2_mass for r in res]
    return sum(r.mc1_hit for r in res) / len(res), sum(masses) / len(masses), masses


def generate(lm, prompts, max_new_tokens, one_call_per_prompt):
    if one_call_per_prompt:
        return [lm.generate_until([p], max_new_tokens=max_new_tokens, progress=False)[0] for p in prompts]
    return lm.generate_until(prompts, max_new_tokens=max_new_tokens, progress=False)


def load_models(cfg: BenchEvalConfig):
    """The model three ways (batched with prefix sharing, one sequence per forward, batched without sharing),
    loaded once; and the temp folder of a tiny model built for the run (None with --model_path)."""
    from aligner.lm.hf import HFLM

    tmp = None
    model_path = cfg.model_path
    if model_path is None:
        from aligner.testing.tiny import TinyModelConfig, build_tiny_model

        tmp = tempfile.TemporaryDirectory(prefix="bench-eval-")
        model_path = str(build_tiny_model(tmp.name, TinyModelConfig(kind="causal", seed=0)))
    lm = HFLM(model_path, dtype=cfg.dtype, device=cfg.device, batch_size=cfg.mc_batch,
              gen_batch_size=cfg.gen_batch_size)

    def same_model(**settings):  # the loaded model with other batching settings
        return HFLM(model_path, model=lm.model, tokenizer=lm.tokenizer, **settings)

    return lm, same_model(batch_size=1), same_model(batch_size=cfg.mc_batch, share_prefix=False), tmp


def time_mc(cfg: BenchEvalConfig, lm, single, flat, items) -> tuple[list, dict]:
    """MC one choice per forward vs batched (with and without prefix sharing): table rows and numbers."""
    import torch

    n = len(items)
    # Warm-up (allocator, kernels), then the timed runs.
    style = cfg.prompt_style
    mc_batched(lm, items[:2], style)
    mc_one_at_a_time(single, items[:1], style)
    ((n1, n2, naive_mass), t_naive), ((b1, b2, packed_mass), t_packed), ((f1, f2, flat_mass), t_flat) = fastest(
        [lambda: mc_one_at_a_time(single, items, style), lambda: mc_batched(lm, items, style),
         lambda: mc_batched(flat, items, style)], cfg.repeats)
    diff = max(max(abs(a - b) for a, b in zip(naive_mass, packed_mass)),
               max(abs(a - b) for a, b in zip(naive_mass, flat_mass)))
    rows = [("MC one choice per forward", n / t_naive, None),
            ("MC batched, shared prefix", n / t_packed, t_naive / t_packed),
            ("MC batched, no prefix sharing", n / t_flat, t_naive / t_flat)]
    result = {"device": str(lm.device), "n_questions": n, "mc_batch": cfg.mc_batch, "repeats": cfg.repeats,
              "prompt_style": style,
              "torch_threads": torch.get_num_threads(),
              "mc_seconds": {"one_at_a_time": t_naive, "batched_shared_prefix": t_packed, "batched_flat": t_flat},
              "mc_speedup": t_naive / t_packed, "mc_speedup_flat": t_naive / t_flat,
              "mc_max_abs_diff_mc2_mass": diff, "mc_same_mc1": n1 == b1 == f1,
              "mc1": b1, "mc2": b2, "mc1_one_at_a_time": n1, "mc2_one_at_a_time": n2}
    return rows, result


def time_generation(cfg: BenchEvalConfig, lm, single, items) -> tuple[list, dict]:
    """Greedy generation one prompt per call vs batched: table rows and numbers."""
    from aligner.prompts import truthfulqa_prompt

    n = len(items)
    prompts = [truthfulqa_prompt(g.question) for g in items]
    generate(lm, prompts[:2], 4, False)
    (naive, t_gn), (batched, t_gb) = fastest(
        [lambda: generate(single, prompts, cfg.max_new_tokens, True),
         lambda: generate(lm, prompts, cfg.max_new_tokens, False)], cfg.repeats)
    rows = [("generation one prompt per call", n / t_gn, None),
            (f"generation batched ({cfg.gen_batch_size} per call)", n / t_gb, t_gn / t_gb)]
    return rows, {"gen_batch_size": cfg.gen_batch_size, "max_new_tokens": cfg.max_new_tokens,
                  "gen_seconds": {"one_at_a_time": t_gn, "batched": t_gb}, "gen_speedup": t_gn / t_gb,
                  "gen_identical_answers": sum(a == b for a, b in zip(naive, batched)), "gen_answers": n}


# ---------------------------------------------------------------------------------------------
# --vs lm_eval: lm-evaluation-harness's HF backend on the same model object and questions
# ---------------------------------------------------------------------------------------------

def write_lm_eval_tasks(folder: Path, items, prompt_style: str) -> list[str]:
    """``items`` as HF-schema JSON lines and two task files including lm-eval's installed TruthfulQA tasks (their
    prompt, choices and scoring), reading that file; the study style swaps in the 0-shot prompt."""
    import lm_eval.tasks

    data = folder / "truthfulqa_mc.jsonl"
    data.write_text("".join(json.dumps({"question": it.question,
                                        "mc1_targets": {"choices": it.mc1_choices, "labels": it.mc1_labels},
                                        "mc2_targets": {"choices": it.mc2_choices, "labels": it.mc2_labels}}) + "\n"
                            for it in items))
    builtin = Path(lm_eval.tasks.__file__).parent / "truthfulqa"
    doc_to_text = 'doc_to_text: "Q: {{question}}\\nA:"\n' if prompt_style == "study" else ""
    names = []
    for mc in ("mc1", "mc2"):
        name = f"bench_truthfulqa_{mc}"
        (folder / f"{name}.yaml").write_text(
            f"include: {builtin / f'truthfulqa_{mc}.yaml'}\ntask: {name}\ntag: []\ndataset_path: json\n"
            f"dataset_name: null\ndataset_kwargs:\n  data_files:\n    validation: {data}\n"
            f"  cache_dir: {folder / 'hf_cache'}\nvalidation_split: validation\n{doc_to_text}")
        names.append(name)
    return names


def lm_eval_runner(lm, items, cfg: BenchEvalConfig, folder: Path):
    """A function running lm-eval's ``evaluate`` on the two tasks with its HF backend wrapped around ``lm.model``;
    it returns (MC1, MC2, per-question (mc1 lls, mc2 lls)).  The task objects are built outside the timing."""
    try:
        import lm_eval
        from lm_eval.evaluator import evaluate
        from lm_eval.models.huggingface import HFLM as HarnessHFLM
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise PeerUnavailableError(f"--vs lm_eval needs lm-evaluation-harness: pip install lm-eval ({exc})") from exc
    names = write_lm_eval_tasks(folder, items, cfg.prompt_style)
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    peer = HarnessHFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=cfg.lm_eval_batch_size or cfg.mc_batch)
    state = {"tasks": manager.load(names)}

    def run():
        out = evaluate(lm=peer, task_dict=state["tasks"], bootstrap_iters=0, log_samples=True, verbosity="ERROR")
        state["tasks"] = manager.load(names)  # fresh task objects for the next run, outside the timing
        lls = [[[float(r[0]) for r in s["filtered_resps"]]
                for s in sorted(out["samples"][name], key=lambda s: s["doc_id"])] for name in names]
        return float(out["results"][names[0]]["acc,none"]), float(out["results"][names[1]]["acc,none"]), \
            list(zip(*lls))

    run.version = lm_eval.__version__
    run.batch_size = peer.batch_size
    return run


def time_vs_lm_eval(cfg: BenchEvalConfig, lm, items) -> tuple[list, dict]:
    """Ours (``score_mc``, batched) against lm-eval's HF backend on the same model object: rows and numbers."""
    from aligner.eval.tasks.truthfulqa import score_mc

    n = len(items)
    with tempfile.TemporaryDirectory(prefix="bench-lm-eval-") as folder:
        theirs_run = lm_eval_runner(lm, items, cfg, Path(folder))
        theirs_run()  # warm-up (and the JSON data set's cache)
        (ours, t_ours), ((t1, t2, their_lls), t_theirs) = fastest(
            [lambda: score_mc(lm, items, prompt_style=cfg.prompt_style), theirs_run], cfg.repeats)
    o1 = sum(r.mc1_hit for r in ours) / n
    o2 = sum(r.mc2_mass for r in ours) / n
    gap = max(abs(a - b) for r, (l1, l2) in zip(ours, their_lls)
              for a, b in [*zip(r.mc1_scores, l1), *zip(r.mc2_scores, l2)])
    rows = [(f"lm-eval {theirs_run.version} HF backend (batch {theirs_run.batch_size})", n / t_theirs, None),
            ("ours, batched, shared prefix", n / t_ours, t_theirs / t_ours)]
    return rows, {"vs_lm_eval": {"lm_eval_version": theirs_run.version, "lm_eval_batch_size": theirs_run.batch_size,
                                 "prompt_style": cfg.prompt_style, "seconds": {"ours": t_ours, "lm_eval": t_theirs},
                                 "questions_per_s": {"ours": n / t_ours, "lm_eval": n / t_theirs},
                                 "speedup": t_theirs / t_ours, "mc1": {"ours": o1, "lm_eval": t1},
                                 "mc2": {"ours": o2, "lm_eval": t2}, "abs_diff_mc1": abs(o1 - t1),
                                 "abs_diff_mc2": abs(o2 - t2), "max_abs_diff_choice_ll": gap}}


def print_report(rows: list, result: dict) -> None:
    print(f"{'':40s} {'questions/s':>12s} {'speed-up':>9s}")
    for name, qps, ratio in rows:
        print(f"{name:40s} {qps:12.2f} {f'{ratio:.2f}x' if ratio else '':>9s}")
    print(f"MC: MC1 {result['mc1']:.4f} / MC2 {result['mc2']:.4f} (one-at-a-time: {result['mc1_one_at_a_time']:.4f} "
          f"/ {result['mc2_one_at_a_time']:.4f}); max |MC2 mass diff| {result['mc_max_abs_diff_mc2_mass']:.2e}")
    if "gen_speedup" in result:
        print(f"generation: {result['gen_identical_answers']}/{result['n_questions']} greedy answers identical to "
              "one-at-a-time")
        print(f"ratios: MC {result['mc_speedup']:.2f}x (target >= 1.5x), generation {result['gen_speedup']:.2f}x "
              f"(target >= 3x)")
    vs = result.get("vs_lm_eval")
    if vs:
        print(f"vs lm-evaluation-harness {vs['lm_eval_version']} ({vs['prompt_style']} prompt): ours "
              f"{vs['questions_per_s']['ours']:.2f} questions/s, lm-eval {vs['questions_per_s']['lm_eval']:.2f} "
              f"questions/s, ratio {vs['speedup']:.2f}x; MC1 {vs['mc1']['ours']:.4f} vs {vs['mc1']['lm_eval']:.4f} "
              f"(|diff| {vs['abs_diff_mc1']:.1e}), MC2 {vs['mc2']['ours']:.6f} vs {vs['mc2']['lm_eval']:.6f} "
              f"(|diff| {vs['abs_diff_mc2']:.1e}); largest per-choice log-likelihood gap "
              f"{vs['max_abs_diff_choice_ll']:.1e}")


def main(argv=None):
    import torch

    from aligner.data.sources.truthfulqa import load_truthfulqa

    cfg = parse_args(argv)
    lm, single, flat, tmp = load_models(cfg)
    data = load_truthfulqa(cfg.data_path, limit=cfg.n_questions)
    print(f"model {lm.model_path} on {lm.device} ({torch.get_num_threads()} CPU threads), {len(data.mc)} questions, "
          f"{sum(len(i.mc1_choices) + len(i.mc2_choices) for i in data.mc)} MC choices")
    rows, result = time_mc(cfg, lm, single, flat, data.mc)
    if not cfg.skip_generation:
        gen_rows, gen_result = time_generation(cfg, lm, single, data.gen)
        rows += gen_rows
        result.update(gen_result)
    if cfg.vs == "lm_eval":
        vs_rows, vs_result = time_vs_lm_eval(cfg, lm, data.mc)
        rows += vs_rows
        result.update(vs_result)
    print_report(rows, result)
    if cfg.output_json:
        Path(cfg.output_json).write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    run_cli(main)
