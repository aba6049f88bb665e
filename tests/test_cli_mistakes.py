"""A newcomer's mistakes end in one line naming the flag or file, exit status 1, no traceback; Ctrl-C in one line
with the command that continues (exit 130); the libraries stay quiet unless -v; an unreachable hub costs seconds."""

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, load_script

from aligner.core import availability
from aligner.core.cli import ErrorExit, parse_config, run_cli
from aligner.core.models import ModelLoadError, load_tokenizer

SCRIPTS = sorted(str(p.relative_to(REPO)) for pattern in ("evaluation/*.py", "first_improvement/**/*.py",
                                                          "further_improvement/**/*.py", "scripts/*.py",
                                                          "old_training/*.py")
                 for p in REPO.glob(pattern))


def _run(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=timeout)


def _one_error_line(proc, *words, code=1):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip().startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _parser(script: str) -> argparse.ArgumentParser:
    captured = {}
    original = argparse.ArgumentParser.parse_args

    def grab(self, args=None, namespace=None):
        captured["parser"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = grab
    try:
        load_script(script).parse_args([])
    except SystemExit:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original
    return captured["parser"]


def _required_argv(parser: argparse.ArgumentParser) -> list[str]:
    argv = []
    for action in parser._actions:
        if action.required and action.option_strings:
            argv += [action.option_strings[0], str(action.choices[0]) if action.choices else "x"]
    return argv


# --- item 5: --limit ---------------------------------------------------------------------------------------------

LIMIT_SCRIPTS = [s for s in SCRIPTS if "--limit" in _parser(s)._option_string_actions]


def test_there_are_limit_scripts():
    assert {"evaluation/eval_truthfulqa.py", "evaluation/eval_halueval.py", "evaluation/eval_ifeval.py",
            "scripts/make_data.py"} <= set(LIMIT_SCRIPTS)


@pytest.mark.parametrize("script", LIMIT_SCRIPTS)
def test_negative_limit_is_refused_in_every_script(script, capsys):
    argv = _required_argv(_parser(script)) + ["--limit", "-5"]
    with pytest.raises(ErrorExit) as exit_:
        run_cli(load_script(script).main, argv)
    assert exit_.value.code == 1
    assert str(exit_.value) == "error: --limit -5: give a number of rows N >= 1, or 0 or -1 for all of them"
    assert capsys.readouterr().err.strip() == str(exit_.value)


def test_limit_zero_and_minus_one_mean_all():
    parse = load_script("evaluation/eval_truthfulqa.py").parse_args
    base = ["--model_path", "m", "--run_name", "r"]
    assert parse(base + ["--limit", "0"]).limit == -1
    assert parse(base + ["--limit", "-1"]).limit == -1
    assert parse(base + ["--limit", "7"]).limit == 7
    from aligner.eval.checks import all_rows

    assert all_rows(0) == all_rows(-1) == all_rows(None) == -1 and all_rows(3) == 3
    with pytest.raises(ValueError, match="--limit -2"):
        all_rows(-2)


# --- item 6: a file where a folder goes -------------------------------------------------------------------------

@pytest.mark.parametrize("script,args", [
    ("evaluation/eval_truthfulqa.py", ["--model_path", "m", "--run_name", "r", "--output_dir", "{file}"]),
    ("first_improvement/training/train_dpop.py", ["--model_path", "m", "--data_files", "d.jsonl",
                                                  "--output_dir", "{file}"]),
    ("scripts/make_tables.py", ["--results_dir", "{dir}", "--plot", "{file}/bars.png"]),
])
def test_output_path_under_or_at_a_file_is_one_line(script, args, tmp_path):
    blocker = tmp_path / "taken.txt"
    blocker.write_text("a file\n")
    argv = [a.format(file=blocker, dir=tmp_path) for a in args]
    flag = next(a for a in argv if a.startswith("--") and str(blocker) in argv[argv.index(a) + 1])
    line = _one_error_line(_run(REPO / script, *argv), flag, str(blocker))
    assert "is a file" in line


def test_an_oserror_deep_in_a_run_names_the_flag(tmp_path, capsys):
    """The checks at parse time cannot see a file that appears later; run_cli's one line still names the flag."""
    out = tmp_path / "out"

    @dataclass
    class Cfg:
        output_dir: str = field(default="o", metadata={"help": "where it goes"})

    def main(argv):
        cfg = parse_config(Cfg, argv)
        Path(cfg.output_dir).write_text("something else wrote a file here\n")
        os.makedirs(Path(cfg.output_dir) / "sub")

    with pytest.raises(ErrorExit) as exit_:
        run_cli(main, ["--output_dir", str(out)])
    assert exit_.value.code == 1
    assert str(exit_.value) in (f"error: --output_dir: '{out / 'sub'}': a file is where a folder must be made",
                                f"error: --output_dir: '{out / 'sub'}': a file is where a folder must be")
    assert capsys.readouterr().err.strip() == str(exit_.value)


# --- item 7: a missing model names its flag ---------------------------------------------------------------------

def test_missing_model_path_names_the_flag(tmp_path):
    proc = _run(REPO / "evaluation/eval_truthfulqa.py", "--model_path", "models/typo", "--run_name", "r",
                "--output_dir", tmp_path / "o", "--data_path", tmp_path / "absent.csv")
    line = _one_error_line(proc, "--model_path", "models/typo", "does not exist")
    assert "tokenizer" not in line


def test_a_default_model_missing_at_load_time_names_the_flag(capsys):
    @dataclass
    class Cfg:
        judge_model_path: str = field(default="models/absent-judge", metadata={"help": "the judge"})

    def main(argv):
        load_tokenizer(parse_config(Cfg, argv).judge_model_path)

    with pytest.raises(ErrorExit) as exit_:
        run_cli(main, [])
    assert str(exit_.value).startswith("error: --judge_model_path: tokenizer folder 'models/absent-judge' does not")


# --- item 11: Ctrl-C --------------------------------------------------------------------------------------------

def test_interrupt_prints_what_was_kept_and_the_command_that_continues(monkeypatch, capsys, tmp_path):
    script = "evaluation/eval_halueval.py"
    monkeypatch.setattr(sys, "argv", [str(REPO / script)])
    monkeypatch.chdir(REPO)
    argv = ["--model_path", str(tmp_path), "--run_name", "r", "--output_dir", str(tmp_path / "o"), "--overwrite"]

    def main(a):
        load_script(script).parse_args(a)
        raise KeyboardInterrupt

    with pytest.raises(ErrorExit) as exit_:
        run_cli(main, argv)
    assert exit_.value.code == 130
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0] == str(exit_.value)
    assert err[0] == (f"interrupted; what was written to {tmp_path / 'o'} is kept; continue with: python {script} "
                      f"--model_path {tmp_path} --run_name r --output_dir {tmp_path / 'o'} --resume")


@pytest.mark.slow
def test_ctrl_c_then_the_printed_command_finishes_the_run(tmp_path, tiny_model_dir, halueval_file, minilm_dir):
    out = tmp_path / "out"
    argv = [REPO / "evaluation/eval_halueval.py", "--model_path", tiny_model_dir, "--run_name", "r", "--output_dir",
            out, "--data_path", halueval_file, "--limit", "40", "--chunk_size", "1", "--max_new_tokens", "4",
            "--batch_size", "1", "--embed_model", minilm_dir, "--bertscore_model", "none", "--no_progress"]
    proc = subprocess.Popen([sys.executable, *map(str, argv)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    detailed = out / "detailed_r.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if detailed.is_file() and len(detailed.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted; {detailed} keeps the records written so far; continue with: python ")
    command = last.split("continue with: ", 1)[1]
    kept = len(detailed.read_text().splitlines())
    assert 2 <= kept < 40 and command.endswith("--resume")
    import shlex

    resumed = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=REPO, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    indexes = [int(line.split('"index": ')[1].split(",")[0]) for line in detailed.read_text().splitlines()]
    assert sorted(indexes) == list(range(40))


# --- item 12: the libraries' INFO lines -------------------------------------------------------------------------

def test_library_info_lines_only_with_verbose():
    @dataclass
    class Cfg:
        x: int = field(default=1, metadata={"help": "a number"})

    log = logging.getLogger("accelerate.checkpointing")
    parse_config(Cfg, [])
    assert not log.isEnabledFor(logging.INFO) and log.isEnabledFor(logging.WARNING)
    parse_config(Cfg, ["-v"])
    assert log.isEnabledFor(logging.INFO)
    parse_config(Cfg, [])
    assert not log.isEnabledFor(logging.INFO)


def test_accelerate_resume_lines_are_quiet_and_shown_with_verbose(tmp_path):
    code = ("import logging, sys; from dataclasses import dataclass, field; from aligner.core.cli import parse_config; "
            "from aligner.core.runinfo import setup_logging; from accelerate.logging import get_logger\n"
            "from accelerate import PartialState; PartialState()\n"
            "@dataclass\nclass C:\n    x: int = field(default=1, metadata={'help': 'n'})\n"
            "parse_config(C, sys.argv[1:]); setup_logging()\n"
            "get_logger('accelerate.checkpointing').info('Loading states from somewhere', main_process_only=False)\n"
            "logging.getLogger('aligner.x').info('our own line')\n")
    quiet, loud = _run("-c", code), _run("-c", code, "-v")
    assert "our own line" in quiet.stderr and "Loading states" not in quiet.stderr
    assert "our own line" in loud.stderr and "Loading states" in loud.stderr


def test_is_gradient_checkpointing_warning_is_silenced(tiny_model_dir):
    code = ("import sys, warnings; warnings.simplefilter('default'); from dataclasses import dataclass, field\n"
            "from aligner.core.cli import parse_config\n"
            "@dataclass\nclass C:\n    x: int = field(default=1, metadata={'help': 'n'})\n"
            "parse_config(C, sys.argv[2:])\n"
            "from transformers import AutoModelForCausalLM; from peft import LoraConfig, get_peft_model\n"
            "m = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
            "get_peft_model(m, LoraConfig(r=2, target_modules=['q_proj']))\n")
    quiet, loud = _run("-c", code, tiny_model_dir), _run("-c", code, tiny_model_dir, "-v")
    assert quiet.returncode == 0 and "is_gradient_checkpointing" not in quiet.stderr, quiet.stderr[-2000:]
    assert "is_gradient_checkpointing" in loud.stderr


# --- item 13: offline, fast ---------------------------------------------------------------------------------------

@pytest.fixture
def unreachable_hub(tmp_path, monkeypatch):
    """A hub that refuses connections at once, an empty cache, and offline mode off (as on a machine whose network
    is down)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                            "HF_DATASETS_OFFLINE", "ALIGNER_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf_home"))
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "ALIGNER_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    for k in ("HF_ENDPOINT", "HF_HOME"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.setattr(availability, "_reachable", None)
    return env


def test_unreachable_hub_is_asked_once_then_offline(unreachable_hub, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    import urllib.request

    asked, urlopen = [], urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: asked.append(a) or urlopen(*a, **k))
    reason = availability.unavailable_reason("org/not-cached")
    assert reason == ("'org/not-cached' is neither a local folder nor in the Hugging Face cache, and the hub "
                      "(http://127.0.0.1:9) does not answer")
    assert availability.unavailable_reason("org/other-model").startswith("'org/other-model' is neither")
    assert len(asked) == 1  # one reachability request for the process, then offline
    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert availability.hub_silent()
    from aligner.core.hub import offline_error

    assert "does not answer" in str(offline_error("x")) and "HF_HUB_OFFLINE / ALIGNER_OFFLINE is set" not in str(
        offline_error("x"))
    with pytest.raises(ModelLoadError, match=r"judge model 'org/not-cached' is neither a local folder"):
        from aligner.core.models import check_model_path

        check_model_path("org/not-cached", "judge model")


def test_a_cached_name_is_available_without_the_hub(unreachable_hub):
    snap = Path(unreachable_hub["HF_HOME"]) / "hub" / "models--sentence-transformers--all-mpnet-base-v2" / "snapshots"
    (snap / "abc").mkdir(parents=True)
    assert availability.unavailable_reason("all-mpnet-base-v2") is None  # the short sentence-transformers name
    assert availability.unavailable_reason("models/absent") == "folder 'models/absent' does not exist"


def test_halueval_with_an_uncached_model_fails_at_once_naming_the_flag(unreachable_hub, tmp_path, tiny_model_dir,
                                                                       halueval_file):
    proc = _run(REPO / "evaluation/eval_halueval.py", "--model_path", tiny_model_dir, "--run_name", "r",
                "--output_dir", tmp_path / "o", "--data_path", halueval_file, "--limit", "2",
                "--embed_model", "sentence-transformers/not-cached", "--bertscore_model", "none",
                env=unreachable_hub, timeout=120)
    _one_error_line(proc, "--embed_model", "does not answer")
    assert "thrown while requesting" not in proc.stderr and "Retrying" not in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing loaded, nothing written


def test_truthfulqa_hub_dataset_fails_at_once_with_its_hint(unreachable_hub, tmp_path, tiny_model_dir):
    proc = _run(REPO / "evaluation/eval_truthfulqa.py", "--model_path", tiny_model_dir, "--run_name", "r",
                "--output_dir", tmp_path / "o", "--limit", "2", env=unreachable_hub, timeout=120)
    _one_error_line(proc, "truthful_qa", "--data_path")
    assert "thrown while requesting" not in proc.stderr and "Retrying" not in proc.stderr


# --- small: --help wording ----------------------------------------------------------------------------------------

def test_help_wording(capsys):
    helps = {}
    for script in SCRIPTS:
        for action in _parser(script)._actions:
            for opt in action.option_strings:
                helps.setdefault(opt, set()).add(action.help or "")
    assert helps["--no_progress"] == {"turn progress bars off"}
    assert all("(default: on)" not in h for hs in helps.values() for h in hs)
    assert all("(default: None)" not in h for hs in helps.values() for h in hs)
    assert any("(default: 0.01)" in h for h in helps["--weight_decay"])
    assert any("(default: 0.0)" in h for h in helps["--weight_decay"])


def test_dataclass_field_names_match_the_generic_rules():
    """The checks key on field names (``limit``, ``*_limit``, ``*_model_path``, ``*_model``): every script's flags
    that name a model or adapter are caught by the rule, the other model-ish flags are the known non-paths, and
    every ``*limit*`` flag is a count the limit rule checks."""
    from aligner.core.setting_checks import is_count_limit, is_model_field

    assert is_count_limit("limit") and is_count_limit("eval_limit") and not is_count_limit("limits")
    assert not is_model_field("spacy_model") and not is_model_field("max_model_len")
    modelish, limits = {}, set()
    for script in SCRIPTS:
        for action in _parser(script)._actions:
            if any(w in action.dest for w in ("model", "adapter", "lora")):
                modelish[action.dest] = is_model_field(action.dest)
            if "limit" in action.dest:
                limits.add(action.dest)
    not_paths = {"adapter_in_name", "lora_alpha", "lora_dropout", "lora_r", "lora_target_modules", "max_model_len",
                 "merge_adapter", "model_vocab_size", "models", "models_dir", "spacy_model"}
    assert {name for name, caught in modelish.items() if not caught} == not_paths
    assert {"model_path", "lora_path", "judge_model_path", "embed_model", "bertscore_model"} <= set(modelish)
    assert limits and all(is_count_limit(name) for name in limits)
