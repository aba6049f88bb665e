"""The evaluation stack on the study's real tokenizers and stand-ins of its real models (issue 12), each against a
plain reference computation: the Llama-3.2 chat template's date, HHEM's remote code on transformers 5, BERTScore
with a 1e30 model_max_length, an adapter on the wrong base, and TruthfulQA / both HaluEval flows / merge with the
128k Llama-3.2 tokenizer as policy and the SentencePiece tokenizer as judge."""

import json
import math
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import torch
from conftest import greedy_reference, load_script
from hhem_standin import build_hhem_standin, reference_scores

from aligner.core.cli import run_cli
from aligner.core.io import read_json, read_jsonl
from aligner.core.logprobs import reference_response_logprob
from aligner.data.sources.halueval import load_halueval
from aligner.data.sources.truthfulqa import load_truthfulqa
from aligner.lm.hf import HFLM
from aligner.prompts import HALUEVAL_STEP1_SYSTEM, halueval_messages, truthfulqa_judge_prompt, truthfulqa_prompt

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def policy(llama32_policy_dir):
    return HFLM(str(llama32_policy_dir), batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def hhem_dir(tmp_path_factory, minilm_dir):
    return build_hhem_standin(tmp_path_factory.mktemp("hhem"), Path(minilm_dir))


@pytest.fixture(scope="module")
def policy_adapter(llama32_policy_dir, tmp_path_factory):
    """A LoRA adapter trained (saved) on the Llama-3.2-shaped policy, with the policy's 128k tokenizer beside it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("llama32-lora") / "dpop_out"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(llama32_policy_dir)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(llama32_policy_dir).save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------------- 1. the date


def test_chat_prompt_ids_do_not_depend_on_today(policy, monkeypatch, halueval_file):
    """Llama-3.2's template writes "Today Date: <today>" (strftime_now); with the fixed date_string the token ids
    the model gets are the same whatever day it is, and only without it do they change."""
    import transformers.utils.chat_template_utils as ctu

    from aligner.eval.tasks.halueval import halueval_prompts

    rows = load_halueval(halueval_file, limit=2)

    def ids_on(day: datetime, fixed: bool = True):
        class Frozen(datetime):
            @classmethod
            def now(cls, tz=None):
                return day

        monkeypatch.setattr(ctu, "datetime", Frozen)
        if fixed:
            return [policy.prompt_ids(p) for p in halueval_prompts(policy, rows, HALUEVAL_STEP1_SYSTEM)]
        tok = policy.tokenizer
        return [tok(tok.apply_chat_template(halueval_messages(r["knowledge"], r["question"], HALUEVAL_STEP1_SYSTEM),
                                            tokenize=False, add_generation_prompt=True), add_special_tokens=False)
                ["input_ids"] for r in rows]

    a, b = ids_on(datetime(2023, 1, 5)), ids_on(datetime(2031, 12, 31))
    assert a == b
    assert "Today Date: 26 Jul 2024" in policy.tokenizer.decode(a[0])
    assert [ids.count(policy.tokenizer.bos_token_id) for ids in a] == [1, 1]
    # the template left to itself: the prompt changes with the calendar (so the patch above is in effect)
    raw_a, raw_b = ids_on(datetime(2023, 1, 5), fixed=False), ids_on(datetime(2031, 12, 31), fixed=False)
    assert raw_a != raw_b and "Today Date: 05 Jan 2023" in policy.tokenizer.decode(raw_a[0])


# --------------------------------------------------------------------------------------------- 2. HHEM


def test_hhem_standin_loads_through_the_real_loader_with_exact_scores(hhem_dir, halueval_file):
    from aligner.core.models import has_tokenizer_files
    from aligner.eval.metrics.judges import judge_faithfulness, load_faithfulness_judge

    rows = load_halueval(halueval_file, limit=4)
    knowledge = [r["knowledge"] for r in rows for _ in (0, 1)]
    answers = [a for r in rows for a in (r["right_answer"], r["hallucinated_answer"])]
    assert not has_tokenizer_files(hhem_dir)
    judge = load_faithfulness_judge(str(hhem_dir), batch_size=3, dtype="fp32", device="cpu", trust_remote_code=True)
    assert judge.uses_predict and judge.tokenizer is None
    t5 = judge.model.t5.transformer
    assert t5.encoder.embed_tokens.weight.data_ptr() == t5.shared.weight.data_ptr()  # tied, not random
    got = judge_faithfulness(judge, knowledge, answers, progress=False)
    ref = reference_scores(hhem_dir, list(zip(knowledge, answers)))
    assert got == pytest.approx(ref, abs=1e-5)
    assert len({round(g, 4) for g in got}) > 2


def test_download_list_fetches_what_hhem_loads_at_init():
    from fnmatch import fnmatch

    from aligner.core.downloads import HALLUCINATION_EVAL_MODELS

    repo, folder, allow = HALLUCINATION_EVAL_MODELS["hhem_tok"]
    assert repo == "google/flan-t5-base" and folder is None  # the HF cache, where config.foundation resolves
    needed = ("config.json", "tokenizer_config.json", "tokenizer.json", "spiece.model", "special_tokens_map.json")
    assert all(any(fnmatch(f, pat) for pat in allow) for f in needed)
    assert not any(fnmatch(w, pat) for pat in allow for w in ("model.safetensors", "pytorch_model.bin"))


# --------------------------------------------------------------------------------------------- 3. BERTScore


def test_bertscore_with_a_1e30_model_max_length(tmp_path, minilm_dir):
    import bert_score

    from aligner.eval.metrics.similarity import BertScoreF1

    folder = tmp_path / "deberta-like"
    shutil.copytree(minilm_dir, folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 1000000000000000019884624838656
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    long = " ".join(["the tower was built in paris"] * 120)  # ~700 tokens: truncation is exercised
    cands, refs = [long, "A cat sat on the mat."], ["It was built in Paris.", "The cat sat."]
    with pytest.raises(OverflowError):
        bert_score.BERTScorer(model_type=str(folder), num_layers=6, lang="en", device="cpu").score(cands, refs)
    scorer = BertScoreF1(str(folder), num_layers=6, device="cpu")
    assert scorer.max_tokens == 512
    plain = bert_score.BERTScorer(model_type=str(minilm_dir), num_layers=6, lang="en", device="cpu")
    assert plain._tokenizer.model_max_length == 512
    assert scorer.score(cands, refs) == pytest.approx(plain.score(cands, refs)[2].tolist(), abs=1e-6)


# --------------------------------------------------------------------------------------------- 8. wrong base


def test_adapter_on_the_wrong_base_is_one_line(sentencepiece_judge_dir, policy_adapter, tmp_path, capsys):
    """merge_adapter.py with a 32k-vocabulary base and an adapter trained on the 128k Llama-3.2 policy: one line
    naming both bases, before any weights are loaded (it was a raw IndexError)."""
    script = load_script("scripts/merge_adapter.py")
    argv = ["--base_model_path", str(sentencepiece_judge_dir), "--adapter_path", str(policy_adapter),
            "--output_path", str(tmp_path / "merged"), "--device", "cpu"]
    with pytest.raises(SystemExit):
        run_cli(script.main, argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: adapter ") and "llama32-policy" in err and str(sentencepiece_judge_dir) in err
    assert "vocabulary 128256" in err and "vocabulary 32000" in err and "v_proj" in err
    assert not (tmp_path / "merged").exists()
    from aligner.core.adapter_check import AdapterBaseMismatchError

    with pytest.raises(AdapterBaseMismatchError, match="cannot be loaded on this base"):
        HFLM(str(sentencepiece_judge_dir), lora_paths=[str(policy_adapter)], device="cpu")


def test_same_shapes_other_base_name_needs_allow_base_mismatch(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from aligner.core.adapter_check import AdapterBaseMismatchError, same_base_name
    from aligner.train.merge import merge_lora

    torch.manual_seed(0)
    adapter = tmp_path / "lora"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                   LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).save_pretrained(adapter)
    other = tmp_path / "llama-3.2-3b-base"  # the same shapes under another model's name
    shutil.copytree(tiny_model_dir, other)
    with pytest.raises(AdapterBaseMismatchError, match=r"another base model name; pass the base it was trained on, "
                                                       r"or --allow_base_mismatch"):
        merge_lora(other, adapter, tmp_path / "m1", device="cpu", verify_saved=False)
    assert not (tmp_path / "m1").exists()
    report = merge_lora(other, adapter, tmp_path / "m2", device="cpu", verify_saved=False, allow_base_mismatch=True)
    assert report.max_abs_diff < 1e-3 and report.adapter_effect > 1e-3
    # a hub id and the local folder of the same model are one base
    assert same_base_name("meta-llama/Llama-3.2-3B-Instruct", "models/llama3-2-3b-instruct")
    assert not same_base_name("meta-llama/Llama-3.2-3B", "models/llama3-2-3b-instruct")


def test_merge_on_the_real_shapes(llama32_policy_dir, policy_adapter, tmp_path):
    """Tied 128k embeddings, GQA, llama3 rope: the merged model gives the adapter-applied logits on the probe (the
    chat-rendered HaluEval question with the fixed date), checked again on the saved folder."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aligner.train.merge import merge_lora, probe_input_ids

    report = merge_lora(llama32_policy_dir, policy_adapter, tmp_path / "merged", device="cpu", verify_saved=False)
    assert report.max_abs_diff < 1e-3 and report.adapter_effect > 1e-3  # the saved folder is checked below
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    ids = probe_input_ids(tok)
    assert ids[0].tolist().count(tok.bos_token_id) == 1 and "26 Jul 2024" in tok.decode(ids[0])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(ids).logits
        plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(llama32_policy_dir),
                                          str(policy_adapter)).eval()(ids).logits
    assert (merged - plain).abs().max().item() < 1e-3


# --------------------------------------------------------------------------------------------- TruthfulQA


def _judge_study_logprob(model, tok, prompt, continuation_tokens):
    """The study's judge input on a Llama-2 style tokenizer, written out: BOS + the prompt's ids + the continuation
    as transformers 4 tokenised " yes" alone (['▁', '▁yes'])."""
    ids = [tok.bos_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
    cont = tok.convert_tokens_to_ids(continuation_tokens)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids + cont])).logits[0].double(), -1)
    return sum(logp[len(ids) + k - 1, t].item() for k, t in enumerate(cont))


def test_truthfulqa_on_the_real_tokenizers(llama32_policy_dir, sentencepiece_judge_dir, truthfulqa_csv, tmp_path):
    """MC (continuation and the study's inputs), generation and the judge's study tokenisation, end to end."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    script = load_script("evaluation/eval_truthfulqa.py")
    common = ["--model_path", str(llama32_policy_dir), "--judge_model_path", str(sentencepiece_judge_dir),
              "--data_path", str(truthfulqa_csv), "--limit", "3", "--max_new_tokens", "4", "--backend", "hf",
              "--no_progress", "--device", "cpu", "--output_dir", str(tmp_path)]
    m = script.main([*common, "--run_name", "real"])["base"]
    model = AutoModelForCausalLM.from_pretrained(llama32_policy_dir).eval()
    tok = AutoTokenizer.from_pretrained(llama32_policy_dir)
    data = load_truthfulqa(truthfulqa_csv, limit=3)
    mc = read_jsonl(tmp_path / "detailed_mc_real.jsonl")
    assert len(mc) == len(data.mc) == 3
    for it, rec in zip(data.mc, mc):
        ref = [reference_response_logprob(model, tok, truthfulqa_prompt(it.question), " " + c) for c in it.mc1_choices]
        assert rec["mc1_scores"] == pytest.approx(ref, abs=1e-4)
    judge = AutoModelForCausalLM.from_pretrained(sentencepiece_judge_dir).eval()
    jtok = AutoTokenizer.from_pretrained(sentencepiece_judge_dir)
    gen = read_jsonl(tmp_path / "detailed_gen_real.jsonl")
    assert [r["question"] for r in gen] == [q.question for q in data.gen]
    for rec in gen:
        prompt = truthfulqa_judge_prompt(rec["question"], rec["generated"])
        ly = _judge_study_logprob(judge, jtok, prompt, ["▁", "▁yes"])
        ln = _judge_study_logprob(judge, jtok, prompt, ["▁", "▁no"])
        assert (rec["logp_yes"], rec["logp_no"]) == pytest.approx((ly, ln), abs=1e-4)
        assert rec["truth_prob"] == pytest.approx(1 / (1 + math.exp(ln - ly)), abs=1e-6)
    assert m["n_empty"] == sum(not r["generated"].strip() for r in gen)

    # --study_compat: MC without BOS on Llama-3's tokenizer, the span by the choice's standalone tokens
    script.main([*common, "--run_name", "compat", "--study_compat", "--skip_generation"])
    compat = read_jsonl(tmp_path / "detailed_mc_compat.jsonl")
    assert len(compat) == len(data.mc)
    n_diff = 0
    for it, rec in zip(data.mc, compat):
        ref = []
        for c in it.mc1_choices:
            seq = tok(f"Q: {it.question}\nA: {c}", add_special_tokens=False)["input_ids"]  # no BOS
            span = tok(c, add_special_tokens=False)["input_ids"]
            hits = [i for i in range(len(seq) - len(span) + 1) if seq[i:i + len(span)] == span]
            start = hits[0] if hits else len(seq) - len(span)
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
            ref.append(sum(logp[t - 1, seq[t]].item() for t in range(start, start + len(span))))
            n_diff += start != len(tok(f"Q: {it.question}\nA:", add_special_tokens=False)["input_ids"])
        assert rec["mc1_scores"] == pytest.approx(ref, abs=1e-4)
    assert n_diff > 0  # the study's span really differs for some choices
    assert read_json(tmp_path / "metrics_compat.json")["mc_inputs"] == "study"


# --------------------------------------------------------------------------------------------- HaluEval


def test_halueval_flows_on_the_real_tokenizer_and_hhem(llama32_policy_dir, hhem_dir, minilm_dir, halueval_file,
                                                       tmp_path):
    """Step 1 on the Llama-3.2 policy (chat template with the fixed date, one BOS, greedy), step 2 judged by the
    HHEM stand-in loaded with trust_remote_code, and the similarity flow with the model's own generation_config:
    every number against its plain computation."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    n = 3
    step1 = load_script("evaluation/eval_haleval_llm_step1.py")
    step1.main(["--model_path", str(llama32_policy_dir), "--output_dir", str(tmp_path), "--run_name", "real",
                "--data_path", str(halueval_file), "--limit", str(n), "--max_new_tokens", "4", "--backend", "hf",
                "--device", "cpu", "--no_progress"])
    preds = read_jsonl(tmp_path / "predictions_real.jsonl")
    assert len(preds) == n
    assert read_json(tmp_path / "run_config_step1_real.json")["flags"]["date_string"] == "26 Jul 2024"
    model = AutoModelForCausalLM.from_pretrained(llama32_policy_dir).eval()
    tok = AutoTokenizer.from_pretrained(llama32_policy_dir)
    rows = load_halueval(halueval_file, limit=n)
    stops = {tok.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")}
    for row, p in zip(rows, preds):
        text = tok.apply_chat_template(halueval_messages(row["knowledge"], row["question"], HALUEVAL_STEP1_SYSTEM),
                                       tokenize=False, add_generation_prompt=True, date_string="26 Jul 2024")
        assert tok(text, add_special_tokens=False)["input_ids"].count(tok.bos_token_id) == 1
        assert p["generated_text"] == greedy_reference(model, tok, text, 4, stops)

    step2 = load_script("evaluation/eval_haleval_llm_step2.py")
    res = step2.main(["--input_file", str(tmp_path / "predictions_real.jsonl"), "--judge_model_path", str(hhem_dir),
                      "--output_dir", str(tmp_path / "judged"), "--bertscore_model", "none", "--no_progress"])["real"]
    detailed = read_jsonl(tmp_path / "judged" / "detailed_real.jsonl")
    ref = reference_scores(hhem_dir, [(p["knowledge"], p["generated_text"]) for p in preds])
    assert [d["faithfulness_score"] for d in detailed] == pytest.approx(ref, abs=1e-5)
    assert res["avg_faithfulness"] == pytest.approx(sum(ref) / n, abs=1e-6)
    assert read_json(tmp_path / "judged" / "run_config_real.json")["flags"]["dtype"] == "fp32"  # the study's HHEM

    sim = load_script("evaluation/eval_halueval.py")
    out = sim.main(["--model_path", str(llama32_policy_dir), "--run_name", "real", "--output_dir",
                    str(tmp_path / "sim"), "--data_path", str(halueval_file), "--limit", str(n), "--max_new_tokens",
                    "4", "--embed_model", str(minilm_dir), "--bertscore_model", "none", "--backend", "hf",
                    "--device", "cpu", "--no_progress"])["base"]
    assert out["total_samples"] == n
    cfg = read_json(tmp_path / "sim" / "run_config_real.json")
    assert cfg["flags"]["generation_config"] == "model" and cfg["sampling"]["temperature"] == 0.0  # ships greedy
    sims = read_jsonl(tmp_path / "sim" / "detailed_real.jsonl")
    assert len(sims) == n
    embedder = SentenceTransformer(str(minilm_dir), device="cpu")
    for row, rec in zip(rows, sims):
        text = tok.apply_chat_template(halueval_messages(row["knowledge"], row["question"]), tokenize=False,
                                       add_generation_prompt=True, date_string="26 Jul 2024")
        assert rec["generated"] == greedy_reference(model, tok, text, 4, stops)
        with torch.no_grad():
            g, r, h = embedder.encode([rec["generated"], row["right_answer"], row["hallucinated_answer"]],
                                      convert_to_tensor=True)
        assert rec["sim_right"] == pytest.approx(torch.cosine_similarity(g, r, dim=0).item(), abs=1e-5)
        assert rec["sim_halluc"] == pytest.approx(torch.cosine_similarity(g, h, dim=0).item(), abs=1e-5)
        assert rec["is_hallucinated"] == (rec["sim_halluc"] > rec["sim_right"])
    assert out["hallucination_rate"] == pytest.approx(sum(r["is_hallucinated"] for r in sims) / n)
    assert out["avg_confidence_margin"] == pytest.approx(sum(r["sim_right"] - r["sim_halluc"] for r in sims) / n)
