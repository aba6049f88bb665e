#!/usr/bin/env python
"""Run the whole study end to end through the real stage scripts, passing work through files on disk.

Profiles:
  demo   tiny models built here, real data from ../shared/data, CPU, a few minutes (`make demo`)
  study  Llama-3.2-3B-Instruct and the real judges from models/, full benchmarks, vLLM where installed
         (`make reproduce`)

Stages: tiny models -> SFT rows -> make data (easy/medium/hard fakes, contexts, curriculum pairs) -> teacher
pairs -> curriculum DPOP (best recipe) and the latest recipe -> adapter merge + logit check -> TruthfulQA,
HaluEval similarity, HaluEval two-step (base and both adapters on one loaded base) -> tables and plots.
A stage whose outputs are complete and whose inputs did not change is skipped; --force redoes everything.
Writes OUTPUT/manifest.json (commands, configs, input/output sha256, versions, git commit) and
OUTPUT/RESULTS.md.

Example:
    python scripts/run_pipeline.py --profile demo --output_dir outputs/demo
"""

import argparse
import sys
import time
from pathlib import Path

from aligner.core.paths import halueval_path, seed_results_dir, truthfulqa_csv_path
from aligner.pipeline.profiles import build_stages, demo_profile, study_profile, summary_sections, write_results_md
from aligner.pipeline.runner import Pipeline

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=["demo", "study"], default="demo", help="which profile (default: %(default)s)")
    p.add_argument("--output_dir", default=None, help="where everything goes (default: outputs/<profile>)")
    p.add_argument("--halueval_path", default=None,
                   help="HaluEval qa_data.json (default: evaluation/HaluEval/data/qa_data.json if present, "
                        "else ../shared/data/halueval/qa_data.json)")
    p.add_argument("--truthfulqa_path", default=str(truthfulqa_csv_path()),
                   help="TruthfulQA CSV (default: %(default)s)")
    p.add_argument("--final_data_dir", default="final_data",
                   help="downloaded preference pairs; used for training instead of make data when all three "
                        "dpo_pairs_*.jsonl are there (default: %(default)s)")
    p.add_argument("--models_dir", default="models", help="study profile: where the models are (default: %(default)s)")
    p.add_argument("--squad_csv", default=None, help="study profile: SQuAD v2 CSV for make data (default: none, "
                   "train on --final_data_dir)")
    p.add_argument("--eval_limit", type=int, default=None,
                   help="first N rows of each benchmark (default: 50 for demo, -1 = all for study)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default=None,
                   help="generation backend (default: hf for demo, auto for study)")
    p.add_argument("--tensor_parallel_size", type=int, default=1, help="vLLM tensor parallelism (default: 1)")
    p.add_argument("--stages", default=None, help="comma-separated stage names to run (default: all)")
    p.add_argument("--force", action="store_true", help="redo every stage even when complete (default: off)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.output_dir or f"outputs/{args.profile}")
    local_halu = REPO / "evaluation" / "HaluEval" / "data" / "qa_data.json"
    halu = Path(args.halueval_path) if args.halueval_path else (local_halu if local_halu.is_file() else halueval_path())
    if args.profile == "demo":
        profile = demo_profile(out, halu, Path(args.truthfulqa_path), Path(args.final_data_dir))
    else:
        profile = study_profile(out, halu, Path(args.truthfulqa_path), Path(args.final_data_dir),
                                Path(args.models_dir), Path(args.squad_csv) if args.squad_csv else None)
    if args.eval_limit is not None:
        profile.eval_limit = args.eval_limit
    if args.backend is not None:
        profile.backend = args.backend
    profile.tensor_parallel_size = args.tensor_parallel_size
    for path in (halu, Path(args.truthfulqa_path)):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found; run scripts/download_data.py or pass its path")

    try:
        stages = build_stages(profile)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    wanted = set(args.stages.split(",")) if args.stages else None
    pipe = Pipeline(out, force=args.force)
    print(f"pipeline: profile {profile.name}, output {out}, {len(stages)} stages")
    t0 = time.perf_counter()
    for stage in stages:
        if wanted is not None and stage.name not in wanted:
            continue
        try:
            pipe.run(stage)
        except (RuntimeError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
    results = write_results_md(profile, pipe, out / "tables.md",
                               seed_results_dir() if profile.name == "study" else None)
    print(f"pipeline finished in {time.perf_counter() - t0:.1f}s; manifest {pipe.manifest_path}; results {results}")
    tables = out / "tables.md"
    if tables.is_file():
        print("\n" + summary_sections(tables.read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
