#!/usr/bin/env python
"""`make data`: the data-preparation stages 3 -> 8 in order (1 -> 2 first when --nq_dir is given), each run as
its real stage script with this interpreter, leaving dpo_pairs_{easy,medium,hard}.jsonl in --output_dir.

Layout of --output_dir: retrieval/ and nq/ (only with --nq_dir), squad/, easy/, medium/, hard/, hard_clean/,
with_context/ (one folder per stage, each with its run_config.json), the three pair files and
make_data_run.json (the pipeline manifest: per stage the command, status, wall time, input/output sha256
and the stage's run_config.json with its counts; plus a summary). Each stage's output is also in logs/.

Example:
    python scripts/make_data.py --squad_csv datasets/squad2/train.csv --model_path models/llama3-2-3b-instruct \\
        --output_dir outputs/data --limit 200 --spacy_model auto
"""

import argparse
import json
from pathlib import Path

from aligner.data.retrieval import DEFAULT_EMBED_MODEL, DEFAULT_RERANK_MODEL
from aligner.pipeline.data_stages import make_data_stages, stage_counts
from aligner.pipeline.runner import Pipeline

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--squad_csv", required=True, help="SQuAD v2 CSV (question, context, answers; id, title optional)")
    p.add_argument("--model_path", default="models/llama3-2-3b-instruct",
                   help="instruct model that writes the hard fakes (default: %(default)s)")
    p.add_argument("--output_dir", default="outputs/data", help="where everything goes (default: %(default)s)")
    p.add_argument("--nq_dir", default="", help="NQ shards folder; '' skips the NQ stages (default: %(default)r)")
    p.add_argument("--limit", type=int, default=-1,
                   help="small run: at most N SQuAD records and N NQ records, -1 = all (default: %(default)s)")
    p.add_argument("--spacy_model", default="auto",
                   help="NER for medium fakes: auto (en_core_web_trf if installed, else rule), rule, or a model "
                        "name (default: %(default)s)")
    p.add_argument("--n_answerable", type=int, default=10000, help="SQuAD answerable rows sampled (default: %(default)s)")
    p.add_argument("--n_unanswerable", type=int, default=5000, help="SQuAD unanswerable rows sampled (default: %(default)s)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto", help="hard-fake backend (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=16, help="hard-fake prompts per generate call (default: %(default)s)")
    p.add_argument("--max_new_tokens", type=int, default=128, help="tokens per hard fake (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.7, help="hard-fake sampling temperature (default: %(default)s)")
    p.add_argument("--top_p", type=float, default=0.9, help="hard-fake nucleus sampling (default: %(default)s)")
    p.add_argument("--dtype", default="auto", help="hard-fake model dtype (default: %(default)s)")
    p.add_argument("--device", default="auto", help="device for models (default: %(default)s)")
    p.add_argument("--embed_model", default=DEFAULT_EMBED_MODEL, help="NQ stages: embedder (default: %(default)s)")
    p.add_argument("--rerank_model", default=DEFAULT_RERANK_MODEL, help="NQ stages: reranker (default: %(default)s)")
    p.add_argument("--top_k_retrieve", type=int, default=100, help="NQ stages: chunks retrieved (default: %(default)s)")
    p.add_argument("--top_k_rerank", type=int, default=5, help="NQ stages: chunks kept (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed passed to every stage (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="skip stages that completed before with the same command and unchanged inputs and "
                        "outputs (sha256, see make_data_run.json) and resume the hard-fake generation "
                        "(default: %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars in the stages (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.squad_csv).is_file():
        raise SystemExit(f"error: {args.squad_csv}: SQuAD CSV not found (make data SQUAD_CSV=file ...)")
    out = Path(args.output_dir)
    # Without --resume every stage runs again; with it, stages whose inputs did not change are kept.
    pipe = Pipeline(out, force=not args.resume, manifest_name="make_data_run.json", echo=True)
    pipe.manifest["flags"] = vars(args)
    for stage in make_data_stages(args):
        print(f"== {stage.name}: {' '.join(map(str, stage.cmd[1:]))}", flush=True)
        try:
            pipe.run(stage)
        except (RuntimeError, FileNotFoundError) as exc:
            raise SystemExit(f"error: {str(exc).splitlines()[0]}") from None
    stages = pipe.manifest["stages"]
    summary = {"spacy_model_used": stage_counts(stages.get("5_medium_fakes", {})).get("spacy_model_used")}
    created = stage_counts(stages.get("8_create_dataset", {}))
    summary.update({f"pairs_{p}": created.get(f"written_{p}") for p in ("easy", "medium", "hard")})
    pipe.manifest["summary"] = summary
    pipe.write_manifest()
    print(json.dumps(summary, indent=2))
    for p in ("easy", "medium", "hard"):
        print(f"  {out / f'dpo_pairs_{p}.jsonl'}")
    return pipe.manifest


if __name__ == "__main__":
    main()
