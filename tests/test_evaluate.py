"""The evaluation runner every task shares (aligner/eval/evaluate.py): run planning and file names, fingerprints
derived from the declarations (one record-affecting setting per task refused on resume), metrics carried or
nulled across phases, run records per run, and nothing written before the inputs and the model are checked."""

import json

import pytest

from aligner.core.io import read_json
from aligner.core.paths import halueval_path
from aligner.core.runner import RunMismatchError
from aligner.eval.evaluate import assemble_metrics, fingerprint, plan_runs, run_phase
from aligner.eval.task import Run
from aligner.eval.tasks.halueval import HaluEvalSimilarity, HaluEvalSimilarityConfig
from aligner.eval.tasks.halueval_detection import HaluEvalDetection, HaluEvalDetectionConfig
from aligner.eval.tasks.halueval_twostep import HaluEvalStep2Config, HaluEvalTwoStep
from aligner.eval.tasks.ifeval import IFEval, IFEvalConfig
from aligner.eval.tasks.truthfulqa import TruthfulQA, TruthfulQAEvalConfig
from aligner.lm.interface import LM


class EchoLM(LM):
    """No model: answers every prompt with its last word; scores a continuation by its length."""

    tokenizer = None
    adapter_names = [None]
    generation_chunk = 4

    def chat_prompt(self, messages):
        return messages[-1]["content"]

    def loglikelihood(self, requests, progress=True, desc=""):
        return [-float(len(c)) for _, c in requests]

    def generate_until(self, prompts, max_new_tokens=128, stop=None, temperature=0.0, top_p=1.0, seed=None,
                       progress=True, desc="", top_k=None):
        return [p.split()[-1] for p in prompts]


def _tqa(**kw):
    return TruthfulQA(TruthfulQAEvalConfig(run_name="r", model_path="m", **kw))


def test_file_names_carry_the_adapter_whenever_one_is_given(tmp_path):
    adapter = tmp_path / "dpop_out"

    def tags(*lora, **kw):
        return [r.tag for r in plan_runs(_tqa(lora_path=list(lora) or None, **kw))]

    assert tags() == ["r"] and tags("none") == ["r"]
    assert tags(str(adapter)) == ["r_dpop_out"]  # one adapter: its name too (the study: "r" alone)
    assert tags(str(adapter), adapter_in_name=False) == ["r"]
    assert tags("none", str(adapter)) == ["r_base", "r_dpop_out"]
    assert [r.adapter for r in plan_runs(_tqa(lora_path=["none", str(adapter)]))] == [None, str(adapter)]


def test_the_fingerprint_is_derived_per_phase(tmp_path):
    run = Run("base", None, "r")
    mc, gen, judge = (fingerprint(_tqa(judge_model_path="j"), _tqa().phase(p), run, "hf")
                      for p in ("mc", "generation", "judge"))
    # record-affecting settings of the phase only; run-control flags never
    assert mc["prompt_style"] == "study" and "prompt_style" not in gen and "prompt_style" not in judge
    assert gen["max_new_tokens"] == 128 and "max_new_tokens" not in mc
    assert judge["judge_continuation"] == "study" and "judge_continuation" not in mc
    for fp in (mc, gen, judge):
        assert not {"mc_batch", "gen_batch_size", "resume", "overwrite", "progress", "output_dir", "run_name",
                    "limit", "lora_path", "study_compat"} & set(fp)
        assert set(fp["versions"]) >= {"torch", "transformers", "peft"}
    # identities: the local model path made absolute, the policy's for the policy's phases, the judge's for the judge
    local = tmp_path / "model"
    local.mkdir()
    fp = fingerprint(TruthfulQA(TruthfulQAEvalConfig(run_name="r", model_path=str(local))), _tqa().phase("mc"), run,
                     "hf")
    assert fp["model_path"] == str(local.resolve()) and fp["adapter"] is None and fp["backend"] == "hf"
    assert "model_path" not in judge and judge["judge_model_path"] == "j" and "adapter" not in judge
    assert mc["dtype"] == "torch.float32"  # auto, resolved on this CPU


@pytest.mark.parametrize("task,phase,items,changed", [
    (lambda **kw: _tqa(**kw), "generation", "gen", {"max_new_tokens": 7}),
    (lambda **kw: HaluEvalSimilarity(HaluEvalSimilarityConfig(model_path="m", run_name="r", generation_config="greedy",
                                                              bertscore_model="none", embed_model="e",
                                                              data_path=str(halueval_path()), **kw)),
     "similarity", "halueval", {"double_bos": True}),
    (lambda **kw: HaluEvalTwoStep(HaluEvalStep2Config(input_file="p", **kw)), "step2", "predictions",
     {"threshold": 0.7}),
    (lambda **kw: IFEval(IFEvalConfig(model_path="m", run_name="r", **kw)), "ifeval", "ifeval", {"max_new_tokens": 9}),
    (lambda **kw: HaluEvalDetection(HaluEvalDetectionConfig(model_path="m", run_name="r",
                                                            data_dir=str(halueval_path().parent), **kw), "qa"), "detect",
     "detection", {"scoring": "loglik"}),
])
def test_one_record_affecting_setting_per_task_is_refused_on_resume(tmp_path, task, phase, items, changed):
    first, second = task(), task(**changed)
    (key, value), = changed.items()
    run = Run("base", None, "r")
    fp1 = fingerprint(first, first.phase(phase), run, "hf")
    fp2 = fingerprint(second, second.phase(phase), run, "hf")
    assert {k for k in fp1 if fp1[k] != fp2.get(k)} == {key} and fp2[key] == value
    # the runner refuses it, naming the setting, before any item is redone
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps({"index": 0}) + "\n")
    (tmp_path / "records.jsonl.fingerprint.json").write_text(json.dumps(json.loads(json.dumps(fp1, default=str))))
    with pytest.raises(RunMismatchError, match=rf"{key}: {value!r} now"):
        run_phase(second, phase, EchoLM(), [], path, resume=True, fingerprint=fp2)


def test_metrics_are_computed_carried_or_nulled(tmp_path):
    task = _tqa(judge_model_path="j")
    run = Run("base", None, "r")
    path = tmp_path / "metrics_r.json"
    path.write_text(json.dumps({"mc1": 0.25, "mc2": 0.5, "n_mc_questions": 4, "gen_truthfulness": 0.9}))
    gens = [{"index": 0, "question": "q", "generated": ""}, {"index": 1, "question": "q2", "generated": "a"}]
    m = assemble_metrics(task, run, {"generation": gens}, ["generation", "judge"], path, {})
    assert (m["mc1"], m["mc2"], m["n_mc_questions"]) == (0.25, 0.5, 4)  # MC not run now: the earlier file's
    assert m["gen_truthfulness"] is None and m["gen_avg_prob"] is None  # fresh answers, not judged yet
    assert m["n_gen_questions"] == 2 and m["n_empty"] == 1 and m["n_questions"] == 4
    assert m["lora_path"] is None and m["adapter"] == "base"


def test_nothing_is_written_before_the_model_is_checked_and_records_are_per_run(tmp_path, tiny_model_dir,
                                                                               truthfulqa_csv):
    from aligner.core.cli import run_cli
    from aligner.eval.tasks.truthfulqa import run_truthfulqa_eval

    out = tmp_path / "out"
    common = ["--data_path", str(truthfulqa_csv), "--output_dir", str(out), "--limit", "2", "--skip_generation",
              "--no_progress", "--mc_batch", "8"]
    from aligner.core.cli import parse_config

    with pytest.raises(SystemExit, match="typo"):
        run_cli(lambda: run_truthfulqa_eval(parse_config(TruthfulQAEvalConfig, ["--model_path", str(tmp_path / "typo"),
                                                                                "--run_name", "a", *common])))
    assert not out.exists() or not list(out.iterdir())
    for name in ("a", "b"):
        run_truthfulqa_eval(parse_config(TruthfulQAEvalConfig, ["--model_path", str(tiny_model_dir), "--run_name", name,
                                                                *common]))
    records = {name: read_json(out / f"run_config_{name}.json") for name in ("a", "b")}
    assert records["a"]["flags"]["run_name"] == "a" and records["b"]["flags"]["run_name"] == "b"
    assert records["a"]["tag"] == "a" and records["a"]["phases"] == ["mc"] and records["a"]["adapter"] is None


# ---------------------------------------------------------------------------------------------
# the study-compat variants declared beside their tasks
# ---------------------------------------------------------------------------------------------

def test_study_variants_set_what_the_study_did_unless_a_flag_says_otherwise():
    from aligner.core.cli import parse_config
    from aligner.eval.tasks.halueval_twostep import HaluEvalStep1Config

    tqa = parse_config(TruthfulQAEvalConfig, ["--model_path", "m", "--run_name", "r", "--study_compat"])
    assert (tqa.mc_inputs, tqa.merge_adapter, tqa.backend, tqa.gen_batch_size, tqa.keep_question_whitespace,
            tqa.clean_up_decode) == ("study", True, "hf", 1, True, True)
    assert parse_config(TruthfulQAEvalConfig, ["--model_path", "m", "--run_name", "r", "--study_compat",
                                               "--gen_batch_size", "8", "--backend", "vllm"]).gen_batch_size == 8
    sim = parse_config(HaluEvalSimilarityConfig, ["--model_path", "m", "--run_name", "r", "--study_compat"])
    assert (sim.dtype, sim.double_bos, sim.merge_adapter, sim.clean_up_decode, sim.nan_bertscore, sim.backend) == \
        ("fp16", True, True, True, "zero", "hf")
    step1 = parse_config(HaluEvalStep1Config, ["--model_path", "m", "--run_name", "r", "--study_compat"])
    assert (step1.dtype, step1.double_bos, step1.merge_adapter) == ("fp16", True, False)  # vLLM LoRA, unmerged
    step2 = parse_config(HaluEvalStep2Config, ["--input_file", "p", "--study_compat"])
    assert (step2.bleu, step2.nan_bertscore) == (False, "zero")
    default = parse_config(HaluEvalSimilarityConfig, ["--model_path", "m", "--run_name", "r"])
    assert (default.merge_adapter, default.clean_up_decode, default.nan_bertscore) == (False, False, "stop")


def test_nan_bertscore_zero_counts_and_clean_up_decode(tmp_path):
    from aligner.eval.tasks.halueval import bertscore_nan, generate_answers, nan_count

    recs = bertscore_nan([{"bert_score": float("nan")}, {"bert_score": 0.5}, {"bert_score": None}], "zero")
    assert [r["bert_score"] for r in recs] == [0.0, 0.5, None] and nan_count(recs, "zero") == {"n_bertscore_nan": 1}
    kept = bertscore_nan([{"bert_score": float("nan")}], "stop")
    assert kept[0]["bert_score"] != kept[0]["bert_score"] and nan_count(kept, "stop") == {}

    class Spaced(EchoLM):
        def generate_until(self, prompts, **kw):
            return ["It 's the U.S . , is n't it ? "] * len(prompts)

    rows = [{"knowledge": "k", "question": "q"}]
    assert generate_answers(Spaced(), rows, clean_up=True) == ["It's the U.S., isn't it?"]
    assert generate_answers(Spaced(), rows) == ["It 's the U.S . , is n't it ?"]
    task = _tqa(clean_up_decode=True)
    from aligner.data.sources.truthfulqa import GenItem

    out = run_phase(task, "generation", Spaced(), [GenItem(0, "q")], tmp_path / "g.jsonl")
    assert out[0]["generated"] == "It's the U.S., isn't it? "


def test_merged_adapters_equal_merge_and_unload_and_switch_back_exactly(tmp_path, tiny_model_dir):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from aligner.core.logprobs import reference_response_logprob
    from aligner.core.models import load_causal_lm
    from aligner.lm.hf import HFLM

    paths = []
    for seed in (1, 2):
        model, _ = load_causal_lm(tiny_model_dir)
        torch.manual_seed(seed)
        path = tmp_path / f"lora_{seed}"
        get_peft_model(model, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                         init_lora_weights=False)).save_pretrained(path)
        paths.append(str(path))
    requests = [("Q: Why is the sky blue?\nA:", " Rayleigh scattering."), ("Q: 2+2?\nA:", " 4")]
    lm = HFLM(str(tiny_model_dir), ["none", *paths], merge_adapter=True, batch_size=4)
    merged_lm = HFLM(str(tiny_model_dir), ["none", *paths], batch_size=4)
    seen = {}
    for name in [None, "lora_1", "lora_2", "lora_1", None, "lora_2"]:
        lm.set_adapter(name)
        got = lm.loglikelihood(requests, progress=False)
        assert seen.setdefault(name, got) == got  # restored weights: switching back gives the same numbers
    for i, name in enumerate(["lora_1", "lora_2"]):
        base, tok = load_causal_lm(tiny_model_dir)
        plain = PeftModel.from_pretrained(base, paths[i]).merge_and_unload().eval()
        ref = [reference_response_logprob(plain, tok, c, r) for c, r in requests]
        assert seen[name] == pytest.approx(ref, abs=1e-5)
        merged_lm.set_adapter(name)
        assert merged_lm.loglikelihood(requests, progress=False) == pytest.approx(ref, abs=1e-4)  # fp32: near equal
    base, tok = load_causal_lm(tiny_model_dir)
    assert seen[None] == pytest.approx([reference_response_logprob(base, tok, c, r) for c, r in requests], abs=1e-5)


def test_degenerate_answers_are_warned_and_recorded(tmp_path, truthfulqa_csv, caplog):
    import logging

    from aligner.eval.evaluate import Evaluation, phase_metrics

    task = _tqa(data_path=str(truthfulqa_csv), limit=3, output_dir=str(tmp_path))
    ev = Evaluation(task)
    with caplog.at_level(logging.WARNING):
        records = ev.run_phase(EchoLM(), task.phase("generation"), ev.runs[0], "hf")
    assert [r["generated"] for r in records] == ["A:"] * 3  # the echo of "Q: ...\nA:"
    assert "all 3 answers identical: 'A:'" in caplog.text
    m = phase_metrics(task.phase("generation"), records)
    assert m["degenerate"]["note"] == "all 3 answers identical: 'A:'" and m["n_empty"] == 0
    varied = [{"generated": g} for g in ("a", "b", "", "c")]
    assert phase_metrics(task.phase("generation"), varied)["degenerate"] is None
