"""``make data``: the data-preparation stages (retrieval index, NQ RAG set, SQuAD set, easy / medium / hard
fakes, cleaning, context restore, curriculum pairs) as pipeline stages running their real scripts."""

from __future__ import annotations

from pathlib import Path

from aligner.core.paths import PAIR_FILES
from aligner.pipeline.runner import Stage

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
              outputs=[out / n for n in PAIR_FILES], inputs=restored, run_config=out / "run_config.json"),
    ]
    return stages


def stage_counts(entry: dict) -> dict:
    """The counts a stage recorded in its run_config.json, as copied into the manifest."""
    return (entry.get("run_config") or {}).get("counts") or {}
