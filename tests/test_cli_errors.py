"""Bad input to a training script ends with one `error:` line naming the file and line, not a traceback."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_training_script_errors_are_one_line(tmp_path, tiny_model_dir):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "q", "context": "c", "chosen": "a", "rejected": "b"}\n{"prompt": "q",\n')
    script = REPO / "first_improvement/training/train_dpop.py"
    cases = [
        (["--data_files", bad], f"{bad}, line 2: invalid JSON"),
        (["--data_files", tmp_path / "missing.jsonl"], "not found"),
        ([], "--data_files"),
    ]
    for extra, expected in cases:
        proc = _run(script, "--model_path", tiny_model_dir, "--output_dir", tmp_path / "out", "--epochs", "1", *extra)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error:") and expected in last, last
