"""Shared fixtures: tiny models built once per session, and the real benchmark data by path."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from aligner.core.paths import halueval_path, minilm_model_path, truthfulqa_csv_path  # noqa: E402
from aligner.testing.tiny import TinyModelConfig, build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny causal policy model (seed 0)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), TinyModelConfig(kind="causal", seed=0))


@pytest.fixture(scope="session")
def tiny_truth_judge_dir(tmp_path_factory) -> Path:
    """A second tiny causal LM standing in for the TruthfulQA truth judge."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-truth-judge"), TinyModelConfig(kind="causal", seed=1))


@pytest.fixture(scope="session")
def tiny_judge_dir(tmp_path_factory) -> Path:
    """The tiny 2-label sequence classifier standing in for HHEM / NLI judges."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-seq-cls"), TinyModelConfig(kind="seq_cls", seed=0))


SHARED_TOKENIZERS = REPO.parent / "shared" / "tokenizers"


def _real_tokenizer(name: str) -> Path:
    path = SHARED_TOKENIZERS / name
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"shared tokenizer not found at {path}")
    return path


@pytest.fixture(scope="session")
def llama32_tokenizer_dir() -> Path:
    """The real Llama-3.2-Instruct tokenizer (128,256 ids, chat template with a date, no pad token)."""
    return _real_tokenizer("llama-3.2-instruct")


@pytest.fixture(scope="session")
def sentencepiece_tokenizer_dir() -> Path:
    """A SentencePiece LlamaTokenizer of the TruthfulQA judge's kind (legacy, no pad, 1e30 model_max_length)."""
    return _real_tokenizer("sentencepiece-llama")


@pytest.fixture(scope="session")
def llama32_policy_dir(tmp_path_factory, llama32_tokenizer_dir) -> Path:
    """A random-init Llama-3.2-3B-shaped policy (rope, GQA, tied embeddings) around the real tokenizer, narrowed
    to 2 layers of width 64 for the CPU: the 128k-row embedding is what costs."""
    cfg = TinyModelConfig(kind="causal", seed=0, tokenizer=str(llama32_tokenizer_dir), config_preset="llama-3.2-3b",
                          num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128)
    return build_tiny_model(tmp_path_factory.mktemp("llama32-policy"), cfg)


@pytest.fixture(scope="session")
def sentencepiece_judge_dir(tmp_path_factory, sentencepiece_tokenizer_dir) -> Path:
    """A random-init Llama-2-7B-shaped causal judge around the SentencePiece tokenizer (2 layers, width 64)."""
    cfg = TinyModelConfig(kind="causal", seed=1, tokenizer=str(sentencepiece_tokenizer_dir), config_preset="llama-2-7b",
                          num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=4, intermediate_size=128)
    return build_tiny_model(tmp_path_factory.mktemp("sp-judge"), cfg)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return minilm_model_path()


@pytest.fixture(scope="session")
def halueval_file() -> Path:
    p = halueval_path()
    if not p.is_file():
        pytest.skip(f"shared HaluEval data not found at {p}")
    return p


@pytest.fixture(scope="session")
def truthfulqa_csv() -> Path:
    p = truthfulqa_csv_path()
    if not p.is_file():
        pytest.skip(f"shared TruthfulQA CSV not found at {p}")
    return p


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine the OpenMP pool
    spinning against other processes makes them several times slower.  Use it per module:
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and for the stage scripts the tests start as subprocesses
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


def halueval_rows(halueval_file, n: int, offset: int = 0) -> list[dict]:
    """HaluEval QA rows [offset, offset + n) of the real file."""
    import json

    with open(halueval_file, encoding="utf-8") as fh:
        return [json.loads(line) for line, _ in zip(fh, range(offset + n))][offset:]


def halueval_pair(row: dict) -> dict:
    """A HaluEval QA row as a preference pair: the right answer chosen, the hallucinated one rejected."""
    return {"prompt": row["question"], "context": row["knowledge"], "chosen": row["right_answer"],
            "rejected": row["hallucinated_answer"]}


def write_level_files(rows: list[dict], folder: Path, levels: tuple[str, ...], per_level: int) -> list[Path]:
    """``dpo_pairs_<level>.jsonl`` per level from consecutive rows (``per_level`` each), as the trainer reads them."""
    import json

    files = []
    for k, name in enumerate(levels):
        path = Path(folder) / f"dpo_pairs_{name}.jsonl"
        path.write_text("".join(json.dumps(halueval_pair(r)) + "\n" for r in rows[k * per_level:(k + 1) * per_level]),
                        encoding="utf-8")
        files.append(path)
    return files


_SCRIPTS: dict[str, object] = {}


def load_script(rel_path: str):
    """Import a stage script by path, once (so tests can call its main(argv) without a subprocess)."""
    import importlib.util

    if rel_path not in _SCRIPTS:
        name = "script_" + rel_path.replace("/", "_").removesuffix(".py")
        spec = importlib.util.spec_from_file_location(name, REPO / rel_path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        _SCRIPTS[rel_path] = mod
    return _SCRIPTS[rel_path]


def run_script(script: str, *args: str, cwd: Path = REPO, timeout: int = 600):
    """Run a stage script as a user would, with the test interpreter; fail with its output."""
    import subprocess

    cmd = [sys.executable, str(REPO / script), *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def greedy_reference(model, tok, prompt: str, max_new_tokens: int, stop_ids) -> str:
    """A plain greedy decode to check generation against: one prompt, no padding, no KV cache, the argmax of a
    full forward pass per step, stopping at any of ``stop_ids``; the new tokens decoded and stripped."""
    import torch

    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            if nxt in stop_ids:
                break
            new.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return tok.decode(new, skip_special_tokens=True).strip()


def pytest_configure(config):
    config.addinivalue_line("markers", "vllm_env: also run on the vLLM env's transformers version in a second small "
                                       "venv (make test-vllm-env); such tests need only its packages")
