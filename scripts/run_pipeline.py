#!/usr/bin/env python
"""Run the whole study end to end through the real stage scripts, passing work through files on disk.

Profiles:
  demo        tiny models built here, real data from ../shared/data, CPU, a few minutes (`make demo`)
  study       Llama-3.2-3B-Instruct and the real judges from models/, full benchmarks, vLLM where installed
              (`make reproduce`)
  study_eval  the study's published adapters (downloaded) and the base on every benchmark, against the study's
              published numbers; no training (`make reproduce-eval`)

Stages: tiny models -> warm start (demo: RAG SFT of the tiny policy) -> SFT rows -> make data (easy/medium/hard
fakes, contexts, curriculum pairs) -> teacher pairs -> curriculum DPOP (best recipe) and the latest recipe ->
adapter merge + logit check -> TruthfulQA, HaluEval similarity, HaluEval two-step, IFEval (base and both adapters on
one loaded base) -> the scoreboard, tables and plots (study profiles: beside the published numbers).
A stage whose outputs are complete and whose inputs did not change is skipped; --force redoes everything.
Writes OUTPUT/manifest.json (commands, configs, input/output sha256, versions, git commit) and
OUTPUT/RESULTS.md.

Example:
    python scripts/run_pipeline.py --profile demo --output_dir outputs/demo
"""

from aligner.core.cli import parse_config, run_cli
from aligner.pipeline.driver import PipelineConfig, run_pipeline


def parse_args(argv=None) -> PipelineConfig:
    return parse_config(PipelineConfig, argv, description=__doc__)


def main(argv=None):
    return run_pipeline(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
