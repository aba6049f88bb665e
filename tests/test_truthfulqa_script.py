"""evaluation/eval_truthfulqa.py end to end on the tiny model and tiny truth judge: the README command,
resume after crashes, several adapters on one base, --judge_only."""

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from conftest import REPO, run_script

import aligner.eval.tasks.truthfulqa as tqa
from aligner.core.cli import run_cli
from aligner.core.io import read_json, read_jsonl
from aligner.core.logprobs import reference_response_logprob
from aligner.core.models import load_causal_lm
from aligner.lm.hf import HFLM
from aligner.prompts import truthfulqa_choice, truthfulqa_judge_prompt, truthfulqa_prompt

SCRIPT = "evaluation/eval_truthfulqa.py"
LIMIT = 5
FAST = ["--limit", str(LIMIT), "--mc_batch", "4", "--gen_batch_size", "2", "--max_new_tokens", "6",
        "--judge_batch_size", "4", "--no_progress", "--backend", "hf"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

def _script():
    spec = importlib.util.spec_from_file_location("eval_truthfulqa", REPO / SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

@pytest.fixture(scope="module")
def script():
    return _script()

@pytest.fixture(scope="module")
def common(tiny_model_dir, tiny_truth_judge_dir, truthfulqa_csv):
    return ["--model_path", str(tiny_model_dir), "--judge_model_path", str(tiny_truth_judge_dir),
            "--data_path", str(truthfulqa_csv), *FAST]

@pytest.fixture(scope="module")
def full_run(tmp_path_factory, script, common):
    """One uninterrupted in-process run: the yardstick for resumed and multi-adapter runs."""
    out = tmp_path_factory.mktemp("tqa-full")
    script.main([*common, "--run_name", "full", "--output_dir", str(out)])
    return out

def _independent_mc(model, tok, data):
    hits, masses = [], []
    for it in data.mc:
        ctx = truthfulqa_prompt(it.question)
        s1 = [reference_response_logprob(model, tok, ctx, truthfulqa_choice(c)) for c in it.mc1_choices]
        s2 = np.array([reference_response_logprob(model, tok, ctx, truthfulqa_choice(c)) for c in it.mc2_choices])
        hits.append(it.mc1_labels[int(np.argmax(s1))] == 1)
        w = np.exp(s2 - s2.max())
        masses.append(w[np.array(it.mc2_labels) == 1].sum() / w.sum())
    return float(np.mean(hits)), float(np.mean(masses))

@pytest.mark.vllm_env
def test_readme_command_runs_and_metrics_match_definitions(tmp_path, tiny_model_dir, tiny_truth_judge_dir,
                                                           truthfulqa_csv, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "results"
    run_script(SCRIPT, "--model_path", tiny_model_dir, "--judge_model_path", tiny_truth_judge_dir, "--run_name", "R",
               "--output_dir", out, "--limit", LIMIT, "--mc_batch", "64", "--data_path", truthfulqa_csv,
               "--max_new_tokens", "5", "--no_progress")
    m = read_json(out / "metrics_R.json")
    for key in ("model", "lora_path", "mc1", "mc2", "gen_truthfulness", "gen_avg_prob", "n_questions", "seconds"):
        assert key in m
    assert m["lora_path"] is None and m["adapter"] == "base" and m["n_questions"] == LIMIT
    assert m["backend"] == "hf"  # --backend auto as it resolved on this CPU machine, not "auto"
    assert {"mc", "generation", "judge"} <= set(m["seconds"])
    assert read_json(out / "run_config_R.json")["flags"]["run_name"] == "R"
    mc_recs = read_jsonl(out / "detailed_mc_R.jsonl")
    gen_recs = read_jsonl(out / "detailed_gen_R.jsonl")
    assert [r["index"] for r in mc_recs] == [r["index"] for r in gen_recs] == list(range(LIMIT))
    assert {"question", "generated", "truth_prob", "is_truthful", "logp_yes", "logp_no"} <= set(gen_recs[0])

    # MC1 / MC2 against the definitions, computed independently of the packed path.
    model, tok = load_causal_lm(tiny_model_dir)
    data = tqa.load_truthfulqa(truthfulqa_csv, limit=LIMIT)
    mc1, mc2 = _independent_mc(model, tok, data)
    assert m["mc1"] == mc1 and abs(m["mc2"] - mc2) < 1e-5
    # Judge numbers recomputed from the answers on disk.
    jmodel, jtok = load_causal_lm(tiny_truth_judge_dir)
    probs = []
    for r in gen_recs:
        prompt = truthfulqa_judge_prompt(r["question"], r["generated"])
        ly, ln = (_study_judge_logprob(jmodel, jtok, prompt, c) for c in (" yes", " no"))
        probs.append(1 / (1 + math.exp(ln - ly)))
        assert abs(r["truth_prob"] - probs[-1]) < 1e-5
    assert abs(m["gen_avg_prob"] - np.mean(probs)) < 1e-5
    assert m["gen_truthfulness"] == np.mean([p > 0.5 for p in probs])

def _study_judge_logprob(model, tok, prompt, continuation):
    """The study's judge scoring (eval_truthfulqa.py:185-216), the default: prompt ids + the continuation's own ids
    (the tiny tokenizer is a generic fast one: no special tokens added), full log-softmax, the last tokens."""
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids + cont])).logits[0].double(), -1)
    return sum(logp[len(ids) + k - 1, t].item() for k, t in enumerate(cont))

def _same_results(a_dir, a_name, b_dir, b_name):
    a_mc, b_mc = read_jsonl(a_dir / f"detailed_mc_{a_name}.jsonl"), read_jsonl(b_dir / f"detailed_mc_{b_name}.jsonl")
    assert sorted(r["index"] for r in b_mc) == [r["index"] for r in a_mc]
    by = {r["index"]: r for r in b_mc}
    for r in a_mc:
        assert np.abs(np.array(r["mc2_scores"]) - by[r["index"]]["mc2_scores"]).max() < 1e-5
        assert r["mc1_hit"] == by[r["index"]]["mc1_hit"]
    a_gen, b_gen = read_jsonl(a_dir / f"detailed_gen_{a_name}.jsonl"), read_jsonl(b_dir / f"detailed_gen_{b_name}.jsonl")
    assert sorted(r["index"] for r in b_gen) == [r["index"] for r in a_gen]
    by = {r["index"]: r for r in b_gen}
    for r in a_gen:
        assert r["generated"] == by[r["index"]]["generated"]
        assert abs(r["truth_prob"] - by[r["index"]]["truth_prob"]) < 1e-5
    ma, mb = read_json(a_dir / f"metrics_{a_name}.json"), read_json(b_dir / f"metrics_{b_name}.json")
    assert ma["mc1"] == mb["mc1"] and ma["gen_truthfulness"] == mb["gen_truthfulness"]
    assert abs(ma["mc2"] - mb["mc2"]) < 1e-6 and abs(ma["gen_avg_prob"] - mb["gen_avg_prob"]) < 1e-6

class Crash(RuntimeError):
    pass

def test_resume_after_crashes_in_each_phase(tmp_path, script, common, full_run, monkeypatch):
    out = tmp_path / "crashy"
    argv = [*common, "--run_name", "full", "--output_dir", str(out)]
    real_score, real_gen, real_judge = tqa.score_mc, HFLM.generate_until, tqa.judge_truthfulness
    scored, generated, judged = [], [], []

    def counting(fn, log, crash_after=None, key=None):
        def wrapped(*a, **k):
            if crash_after is not None and len(log) >= crash_after:
                raise Crash("simulated crash")
            res = fn(*a, **k)
            log.append(key(a, k))
            return res
        return wrapped

    # 1) crash in MC after the first chunk, leaving a torn line behind
    monkeypatch.setattr(tqa, "score_mc", counting(real_score, scored, 1, lambda a, k: [it.index for it in a[1]]))
    with pytest.raises(Crash):
        script.main(argv)
    with (out / "detailed_mc_full.jsonl").open("a") as fh:
        fh.write('{"index": 99, "question": "torn')
    done_mc = set(scored[0])
    assert 0 < len(done_mc) < LIMIT
    # 2) resume; crash in generation after one batch
    monkeypatch.setattr(tqa, "score_mc", counting(real_score, scored, None, lambda a, k: [it.index for it in a[1]]))
    monkeypatch.setattr(HFLM, "generate_until", counting(real_gen, generated, 1, lambda a, k: len(a[1])))
    with pytest.raises(Crash):
        script.main([*argv, "--resume"])
    rescored = {i for chunk in scored[1:] for i in chunk}
    assert rescored == set(range(LIMIT)) - done_mc  # nothing scored twice, nothing left out
    # 3) resume; crash in judging after one chunk
    monkeypatch.setattr(HFLM, "generate_until", counting(real_gen, generated, None, lambda a, k: len(a[1])))
    monkeypatch.setattr(tqa, "judge_truthfulness", counting(real_judge, judged, 1, lambda a, k: len(a[1])))
    with pytest.raises(Crash):
        script.main([*argv, "--resume"])
    assert sum(generated) == LIMIT  # the first batch was not generated again
    # 4) resume to the end
    monkeypatch.setattr(tqa, "judge_truthfulness", counting(real_judge, judged, None, lambda a, k: len(a[1])))
    script.main([*argv, "--resume"])
    assert sum(judged) == LIMIT and sum(generated) == LIMIT
    assert len(scored) >= 2 and sum(len(c) for c in scored) == LIMIT
    _same_results(full_run, "full", out, "full")

    # resuming with other data is refused instead of mixing numbers
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"question": f"Other question {i}?", "mc1_targets": {"choices": ["a", "b"],
                     "labels": [1, 0]}, "mc2_targets": {"choices": ["a", "b"], "labels": [1, 0]}}) + "\n"
                             for i in range(2)))
    argv_other = [a if a != str(common[common.index("--data_path") + 1]) else str(other) for a in argv]
    with pytest.raises(SystemExit, match="different question"):
        run_cli(script.main, [*argv_other, "--resume", "--skip_generation"])

def _make_adapter(base_dir, path, seed):
    from peft import LoraConfig, get_peft_model

    model, _ = load_causal_lm(base_dir)
    torch.manual_seed(seed)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, cfg).save_pretrained(path)
    return path

@pytest.mark.vllm_env
def test_several_adapters_on_one_base_and_judge_only(tmp_path, script, common, full_run, tiny_model_dir,
                                                      truthfulqa_csv):
    a = _make_adapter(tiny_model_dir, tmp_path / "lora_a", 1)
    b = _make_adapter(tiny_model_dir, tmp_path / "lora_b", 2)
    out = tmp_path / "multi"
    script.main([*common, "--run_name", "full", "--output_dir", str(out), "--lora_path", "none", f"{a},{b}"])
    assert not (out / "metrics_full.json").exists()
    metrics = {n: read_json(out / f"metrics_full_{n}.json") for n in ("base", "lora_a", "lora_b")}
    assert metrics["base"]["lora_path"] is None and metrics["lora_a"]["lora_path"] == str(a)
    assert {n: m["adapter"] for n, m in metrics.items()} == {n: n for n in metrics}
    _same_results(full_run, "full", out, "full_base")  # the base through a PEFT wrapper = the plain base run

    # an adapter's MC scores = the plain computation on that adapter alone
    from peft import PeftModel

    base, tok = load_causal_lm(tiny_model_dir)
    only_a = PeftModel.from_pretrained(base, str(a)).eval()
    data = tqa.load_truthfulqa(truthfulqa_csv, limit=2)
    recs = read_jsonl(out / "detailed_mc_full_lora_a.jsonl")
    base_recs = read_jsonl(out / "detailed_mc_full_base.jsonl")
    for it, r, rb in zip(data.mc, recs, base_recs):
        ref = [reference_response_logprob(only_a, tok, truthfulqa_prompt(it.question), truthfulqa_choice(c))
               for c in it.mc2_choices]
        assert np.abs(np.array(r["mc2_scores"]) - ref).max() < 1e-5
        assert np.abs(np.array(r["mc2_scores"]) - rb["mc2_scores"]).max() > 1e-3  # the adapter does something
    gens = {n: [r["generated"] for r in read_jsonl(out / f"generations_full_{n}.jsonl")] for n in metrics}
    assert gens["lora_a"] != gens["base"]

    # --judge_only on the raw answers gives the judged file of the full run
    script.main(["--judge_only", str(full_run / "generations_full.jsonl"), "--judge_model_path",
                 common[common.index("--judge_model_path") + 1], "--run_name", "rejudged", "--output_dir",
                 str(full_run), "--no_progress", "--judge_batch_size", "3"])
    rejudged = read_jsonl(full_run / "detailed_gen_rejudged.jsonl")
    original = read_jsonl(full_run / "detailed_gen_full.jsonl")
    assert [r["generated"] for r in rejudged] == [r["generated"] for r in original]
    assert max(abs(x["truth_prob"] - y["truth_prob"]) for x, y in zip(rejudged, original)) < 1e-5
    m, m0 = read_json(full_run / "metrics_rejudged.json"), read_json(full_run / "metrics_full.json")
    assert m["gen_truthfulness"] == m0["gen_truthfulness"] and abs(m["gen_avg_prob"] - m0["gen_avg_prob"]) < 1e-6
    assert m["mc1"] is None and m["n_gen_questions"] == LIMIT
    with pytest.raises(SystemExit, match="another --run_name"):
        run_cli(script.main, ["--judge_only", str(full_run / "detailed_gen_full.jsonl"), "--judge_model_path",
                     common[common.index("--judge_model_path") + 1], "--run_name", "full", "--output_dir",
                     str(full_run), "--no_progress"])

def test_missing_column_fails_cleanly_before_loading_models(tmp_path, script, tiny_model_dir):
    bad = tmp_path / "bad.csv"
    bad.write_text("Question,Best Answer,Correct Answers\nWhy?,Because,Because\n")
    with pytest.raises(SystemExit, match=r"bad\.csv.*missing column.*Incorrect Answers"):
        run_cli(script.main, ["--model_path", str(tiny_model_dir), "--run_name", "x", "--output_dir", str(tmp_path / "o"),
                     "--data_path", str(bad), "--no_progress"])

def test_existing_files_are_resumed_or_overwritten_never_silently(tmp_path, script, common, full_run):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(full_run, out)
    argv = [*common, "--run_name", "full", "--output_dir", str(out), "--skip_generation"]
    before = (out / "detailed_mc_full.jsonl").read_text()
    with pytest.raises(SystemExit, match=r"detailed_mc_full\.jsonl: holds the records of an earlier run.*--overwrite"):
        run_cli(script.main, argv)
    assert (out / "detailed_mc_full.jsonl").read_text() == before  # untouched
    script.main([*argv, "--overwrite", "--limit", "2"])
    assert [r["index"] for r in read_jsonl(out / "detailed_mc_full.jsonl")] == [0, 1]
    assert read_json(out / "metrics_full.json")["n_mc_questions"] == 2
