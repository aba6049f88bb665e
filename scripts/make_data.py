#!/usr/bin/env python
"""`make data`: the data-preparation stages 3 -> 8 in order (1 -> 2 first when --nq_dir is given), each run as
its real stage script with this interpreter, leaving dpo_pairs_{easy,medium,hard}.jsonl in --output_dir.

Layout of --output_dir: retrieval/ and nq/ (only with --nq_dir), squad/, easy/, medium/, hard/, hard_clean/,
with_context/ (one folder per stage, each with its run_config.json), the three pair files and
make_data_run.json (commands, exit codes, wall times and each stage's counts).

Example:
    python scripts/make_data.py --squad_csv datasets/squad2/train.csv --model_path models/llama3-2-3b-instruct \\
        --output_dir outputs/data --limit 200 --spacy_model auto
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aligner.io import read_json, write_json_atomic  # noqa: E402
from aligner.retrieval import DEFAULT_EMBED_MODEL, DEFAULT_RERANK_MODEL  # noqa: E402
from aligner.runinfo import now_iso, run_record  # noqa: E402

FIRST = "first_improvement/data_prep"
NEG = f"{FIRST}/negative_sampling/scripts"


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
                   help="skip stages that completed before (their run_config.json has counts and their outputs "
                        "exist) and resume the hard-fake generation (default: %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars in the stages (default: %(default)s)")
    return p.parse_args(argv)


def build_stages(args) -> list[dict]:
    out = Path(args.output_dir)
    lim = str(args.limit)
    seed = ["--seed", str(args.seed)]
    quiet = ["--no_progress"] if args.no_progress else []
    nq_rag = out / "nq" / "train_nq_rag.jsonl"
    squad = out / "squad" / "squad_15k.jsonl"
    nq_arg = str(nq_rag) if args.nq_dir else ""
    view = ["--nq_jsonl", nq_arg, "--squad_jsonl", str(squad)]
    stages = []
    if args.nq_dir:
        stages += [
            {"name": "1_faiss_index", "dir": out / "retrieval", "outputs": [out / "retrieval" / "nq_wiki_index.faiss"],
             "cmd": [f"{FIRST}/scripts/retrieval/faiss_index_creator.py", "--nq_dir", args.nq_dir,
                     "--output_dir", str(out / "retrieval"), "--embed_model", args.embed_model, "--device", args.device,
                     "--limit", lim, *seed, *quiet]},
            {"name": "2_nq_rag", "dir": out / "nq", "outputs": [nq_rag],
             "cmd": [f"{FIRST}/scripts/create_nq_training.py", "--nq_dir", args.nq_dir, "--split", "train",
                     "--index_file", str(out / "retrieval" / "nq_wiki_index.faiss"),
                     "--chunks_file", str(out / "retrieval" / "nq_wiki_chunks.jsonl"), "--embed_model", args.embed_model,
                     "--rerank_model", args.rerank_model, "--top_k_retrieve", str(args.top_k_retrieve),
                     "--top_k_rerank", str(args.top_k_rerank), "--output_file", str(nq_rag), "--device", args.device,
                     "--limit", lim, *seed, *quiet, *(["--resume"] if args.resume else [])]},
        ]
    stages += [
        {"name": "3_squad", "dir": out / "squad", "outputs": [squad],
         "cmd": [f"{FIRST}/scripts/create_squad_training.py", "--csv_file", args.squad_csv, "--output_file", str(squad),
                 "--n_answerable", str(args.n_answerable), "--n_unanswerable", str(args.n_unanswerable),
                 "--limit", lim, *seed]},
        {"name": "4_easy_fakes", "dir": out / "easy", "outputs": [out / "easy" / "easy_fakes.jsonl"],
         "cmd": [f"{NEG}/generate_easy_fakes.py", *view, "--output_file", str(out / "easy" / "easy_fakes.jsonl"),
                 "--view_file", str(out / "easy" / "sft_view.jsonl"), *seed]},
        {"name": "5_medium_fakes", "dir": out / "medium", "outputs": [out / "medium" / "medium_fakes.jsonl"],
         "cmd": [f"{NEG}/generate_medium_fakes.py", *view, "--output_file", str(out / "medium" / "medium_fakes.jsonl"),
                 "--spacy_model", args.spacy_model, *seed, *quiet]},
        {"name": "6a_hard_fakes", "dir": out / "hard", "outputs": [out / "hard" / "hard_fakes.jsonl"],
         "cmd": [f"{NEG}/generate_hard_fakes.py", *view, "--model_path", args.model_path, "--backend", args.backend,
                 "--output_file", str(out / "hard" / "hard_fakes.jsonl"), "--batch_size", str(args.batch_size),
                 "--max_new_tokens", str(args.max_new_tokens), "--temperature", str(args.temperature),
                 "--top_p", str(args.top_p), "--dtype", args.dtype, "--device", args.device, *seed, *quiet,
                 *(["--resume"] if args.resume else [])]},  # an interrupted generation continues
        {"name": "6b_clean_hard_fakes", "dir": out / "hard_clean",
         "outputs": [out / "hard_clean" / "cleaned_hard_fakes.jsonl"],
         "cmd": [f"{NEG}/hardfakeclearner.py", "--input_file", str(out / "hard" / "hard_fakes.jsonl"),
                 "--output_file", str(out / "hard_clean" / "cleaned_hard_fakes.jsonl"), *seed]},
        {"name": "7_fix_fakes", "dir": out / "with_context",
         "outputs": [out / "with_context" / f"{k}_fakes_with_context.jsonl" for k in ("easy", "medium", "hard")],
         "cmd": [f"{NEG}/fix_fakes.py", *view, "--easy_file", str(out / "easy" / "easy_fakes.jsonl"),
                 "--medium_file", str(out / "medium" / "medium_fakes.jsonl"),
                 "--hard_file", str(out / "hard_clean" / "cleaned_hard_fakes.jsonl"),
                 "--output_dir", str(out / "with_context"), *seed]},
        {"name": "8_create_dataset", "dir": out,
         "outputs": [out / f"dpo_pairs_{p}.jsonl" for p in ("easy", "medium", "hard")],
         "cmd": [f"{NEG}/create_dataset.py", "--input_dir", str(out / "with_context"), "--output_dir", str(out), *seed]},
    ]
    return stages


def stage_counts(stage: dict) -> dict | None:
    path = Path(stage["dir"]) / "run_config.json"
    if not path.is_file():
        return None
    try:
        return read_json(path).get("counts")
    except Exception:
        return None


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.squad_csv).is_file():
        raise SystemExit(f"error: {args.squad_csv}: SQuAD CSV not found (make data SQUAD_CSV=file ...)")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = run_record(args, extra={"stages": []})
    record_path = out / "make_data_run.json"
    t_all = time.perf_counter()
    rerun_rest = False  # once a stage runs, every later stage runs too (its inputs changed)
    for stage in build_stages(args):
        # A stage's run_config.json gets its counts only when it finishes, so counts + outputs = complete.
        done = stage_counts(stage) is not None and all(Path(o).exists() for o in stage["outputs"])
        if args.resume and done and not rerun_rest:
            print(f"== {stage['name']}: already complete, skipped (--resume)", flush=True)
            record["stages"].append({"name": stage["name"], "skipped": True, "counts": stage_counts(stage)})
            continue
        rerun_rest = True
        cmd = [sys.executable, str(REPO / stage["cmd"][0]), *stage["cmd"][1:]]
        print(f"== {stage['name']}: {' '.join(stage['cmd'])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=REPO).returncode
        wall = round(time.perf_counter() - t0, 2)
        record["stages"].append({"name": stage["name"], "cmd": cmd, "rc": rc, "wall_s": wall,
                                 "counts": stage_counts(stage) if rc == 0 else None})
        write_json_atomic(record_path, record)
        if rc != 0:
            raise SystemExit(f"error: stage {stage['name']} failed with exit code {rc}; see its output above "
                             f"(command: {' '.join(cmd)})")
    record["end_time"] = now_iso()
    record["wall_s"] = round(time.perf_counter() - t_all, 2)
    summary = {}
    for st in record["stages"]:
        c = st.get("counts") or {}
        if st["name"] == "5_medium_fakes":
            summary["spacy_model_used"] = c.get("spacy_model_used")
        if st["name"] == "8_create_dataset":
            summary.update({f"pairs_{p}": c.get(f"written_{p}") for p in ("easy", "medium", "hard")})
    record["summary"] = summary
    write_json_atomic(record_path, record)
    print(json.dumps(summary, indent=2))
    for p in ("easy", "medium", "hard"):
        print(f"  {out / f'dpo_pairs_{p}.jsonl'}")
    return record


if __name__ == "__main__":
    main()
