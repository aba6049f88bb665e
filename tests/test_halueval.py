"""HaluEval flows end to end on the tiny model / tiny judge / MiniLM, and their pieces against plain references."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, greedy_reference, run_script

from aligner.core.io import DataError, read_jsonl
from aligner.core.models import load_causal_lm
from aligner.data.sources.halueval import load_halueval
from aligner.eval.evaluate import run_phase
from aligner.eval.metrics.text import normalize_answer, rouge_l, sentence_bleu
from aligner.eval.tasks.halueval import (
    DETAILED_FIELDS,
    HaluEvalSimilarity,
    HaluEvalSimilarityConfig,
    aggregate_similarity,
    generate_answers,
    halueval_prompts,
    rescore_detailed,
)
from aligner.eval.tasks.halueval_twostep import PREDICTION_RECORD_FIELDS as PREDICTION_FIELDS  # what step 1 writes
from aligner.lm.hf import HFLM
from aligner.lm.interface import LM
from aligner.prompts import HALUEVAL_STEP1_SYSTEM

N_ROWS = 20
METRICS_KEYS = {"model", "lora_path", "adapter", "run_name", "data", "method", "hallucination_rate",
                "avg_confidence_margin", "avg_bert_score", "avg_bleu", "avg_rouge_l", "match_right_rate",
                "match_hallucinated_rate", "total_samples", "n_empty", "degenerate", "seconds"}


def _fmean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def _jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------- data


def test_row_missing_knowledge_names_its_line(tmp_path, halueval_file):
    rows = read_jsonl(halueval_file, limit=3)
    del rows[2]["knowledge"]
    bad = tmp_path / "qa_data.json"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"line 3: missing required field\(s\) \['knowledge'\]"):
        load_halueval(bad)
    assert len(load_halueval(bad, limit=2)) == 2
    from evaluation.eval_halueval import main

    with pytest.raises(DataError, match="line 3"):
        main(["--model_path", "unused", "--run_name", "x", "--data_path", str(bad), "--output_dir", str(tmp_path)])


def test_missing_default_data_file_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="--data_path"):
        load_halueval(tmp_path / "nowhere" / "qa_data.json")


# --------------------------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def sharp_lm(tiny_model_dir):
    """The tiny model with its matrices scaled up, so its greedy answers depend on the prompt (the plain
    random init answers almost everything alike, which would make batched == unbatched a weak check)."""
    model, tok = load_causal_lm(tiny_model_dir, device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model, tok


@pytest.mark.vllm_env
def test_halueval_prompts_and_batched_generation_equals_unbatched(sharp_lm, tiny_model_dir, halueval_file):
    from aligner.lm.hf import stop_token_ids

    model, tok = sharp_lm
    rows = load_halueval(halueval_file, limit=6)
    batched = HFLM(str(tiny_model_dir), model=model, tokenizer=tok, batch_size=8)
    single = HFLM(str(tiny_model_dir), model=model, tokenizer=tok, batch_size=1)

    r = rows[0]
    assert halueval_prompts(batched, [r])[0] == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"Context: {r['knowledge']}\n\nQuestion: {r['question']}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert halueval_prompts(batched, [r], HALUEVAL_STEP1_SYSTEM)[0].startswith(
        f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{HALUEVAL_STEP1_SYSTEM}<|eot_id|>")

    got = generate_answers(batched, rows, max_new_tokens=16)
    assert got == generate_answers(single, rows, max_new_tokens=16)
    assert len(set(got)) >= 5  # the answers differ between prompts
    sys_got = generate_answers(batched, rows[:4], max_new_tokens=16, system=HALUEVAL_STEP1_SYSTEM)
    assert sys_got == generate_answers(single, rows[:4], max_new_tokens=16, system=HALUEVAL_STEP1_SYSTEM)
    assert sys_got != got[:4]
    prompts = halueval_prompts(batched, rows[:2])
    stops = set(stop_token_ids(tok, model))
    assert generate_answers(batched, rows[:2], max_new_tokens=10) == [
        greedy_reference(model, tok, p, 10, stops) for p in prompts]

# --------------------------------------------------------------------------------------------- similarity flow


def test_similarity_flow_end_to_end(tmp_path, tiny_model_dir, minilm_dir, halueval_file):
    import bert_score
    from sentence_transformers import SentenceTransformer

    from evaluation.eval_halueval import main

    out = tmp_path / "halu"
    main([str(a) for a in (
        "--model_path", tiny_model_dir, "--run_name", "tiny", "--output_dir", out, "--data_path", halueval_file,
        "--limit", N_ROWS, "--max_new_tokens", 16, "--embed_model", minilm_dir, "--bertscore_model", minilm_dir,
        "--bertscore_num_layers", 6, "--backend", "hf", "--batch_size", 8)])
    metrics = json.loads((out / "metrics_tiny.json").read_text())
    detailed = _jsonl(out / "detailed_tiny.jsonl")
    assert set(metrics) == METRICS_KEYS
    assert metrics["lora_path"] is None and metrics["method"] == "sentence_transformer_similarity"
    assert metrics["total_samples"] == N_ROWS == len(detailed)
    assert metrics["n_empty"] == sum(not r["generated"].strip() for r in detailed)
    assert json.loads((out / "run_config_tiny.json").read_text())["flags"]["limit"] == N_ROWS
    rows = load_halueval(halueval_file, limit=N_ROWS)
    for rec, row in zip(detailed, rows):
        assert list(rec) == list(DETAILED_FIELDS)
        assert rec["question"] == row["question"] and rec["right_answer"] == row["right_answer"]

    # every per-sample number recomputed with the libraries directly
    st = SentenceTransformer(str(minilm_dir), device="cpu")
    gen = [r["generated"] for r in detailed]
    emb = st.encode(gen + [r["right_answer"] for r in rows] + [r["hallucinated_answer"] for r in rows],
                    convert_to_tensor=True)  # unnormalised
    e_gen, e_right, e_halluc = emb[:N_ROWS], emb[N_ROWS:2 * N_ROWS], emb[2 * N_ROWS:]
    sim_right = torch.cosine_similarity(e_gen, e_right, dim=-1).tolist()
    sim_halluc = torch.cosine_similarity(e_gen, e_halluc, dim=-1).tolist()
    nonempty = [i for i, g in enumerate(gen) if g.strip()]
    assert 0 < len(nonempty)
    scorer = bert_score.BERTScorer(model_type=str(minilm_dir), num_layers=6, lang="en", device="cpu")
    f1 = scorer.score([gen[i] for i in nonempty], [rows[i]["right_answer"] for i in nonempty])[2].tolist()
    f1_by_row = dict(zip(nonempty, f1))
    for i, (rec, row) in enumerate(zip(detailed, rows)):
        assert rec["sim_right"] == pytest.approx(sim_right[i], abs=1e-4)
        assert rec["sim_halluc"] == pytest.approx(sim_halluc[i], abs=1e-4)
        assert rec["is_hallucinated"] == (rec["sim_halluc"] > rec["sim_right"])
        assert rec["bleu"] == sentence_bleu(rec["generated"], row["right_answer"])
        assert rec["rouge_l"] == rouge_l(rec["generated"], row["right_answer"])
        assert rec["bert_score"] == pytest.approx(f1_by_row.get(i, 0.0), abs=1e-4)  # empty answer: 0
    assert metrics["hallucination_rate"] == pytest.approx(_fmean(r["is_hallucinated"] for r in detailed))
    assert metrics["avg_confidence_margin"] == pytest.approx(_fmean(r["sim_right"] - r["sim_halluc"] for r in detailed))
    assert metrics["avg_bert_score"] == pytest.approx(_fmean(r["bert_score"] for r in detailed))
    assert metrics["avg_bleu"] == pytest.approx(_fmean(r["bleu"] for r in detailed))
    assert metrics["avg_rouge_l"] == pytest.approx(_fmean(r["rouge_l"] for r in detailed))
    for rec, row in zip(detailed, rows):
        assert rec["match_right"] == (normalize_answer(rec["generated"]) == normalize_answer(row["right_answer"]))
        assert rec["match_hallucinated"] == (normalize_answer(rec["generated"]) ==
                                             normalize_answer(row["hallucinated_answer"]))
    assert metrics["match_right_rate"] == _fmean(r["match_right"] for r in detailed)

    # --from_detailed re-scores the file without a model and reproduces what the run reported
    re = main(["--from_detailed", str(out / "detailed_tiny.jsonl"), "--output_dir", str(tmp_path / "re")])
    for k in ("avg_bleu", "avg_rouge_l", "hallucination_rate", "avg_confidence_margin", "avg_bert_score"):
        assert re[k] == pytest.approx(metrics[k], abs=1e-6)
    assert json.loads((tmp_path / "re" / "metrics_tiny_rescored.json").read_text())["avg_bleu"] == re["avg_bleu"]


class AnswerKeyLM(LM):
    """A stand-in LM for scoring checks: answers each question with a chosen text (no model)."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.adapter_names = [None]

    def chat_prompt(self, messages):
        return messages[-1]["content"].split("\n\nQuestion: ")[-1]

    def loglikelihood(self, requests, progress=True, desc=""):
        raise NotImplementedError

    def generate_until(self, prompts, max_new_tokens=128, stop=None, temperature=0.0, top_p=1.0, seed=None,
                       progress=True, desc="", top_k=None):
        return [self.answers[p] for p in prompts]


def test_from_detailed_reproduces_nonzero_bleu_rouge_and_hallucination_rate(tmp_path, minilm_dir, halueval_file):
    # right answers long enough for 4-grams (HaluEval's are mostly 1-3 tokens, which BLEU scores 0)
    rows = load_halueval(halueval_file, limit=12)
    answers = {}
    for i, r in enumerate(rows):
        r["right_answer"] = " ".join(r["knowledge"].split()[:20])
        if i % 3 == 0:
            answers[r["question"]] = r["hallucinated_answer"]
        elif i % 3 == 1:
            answers[r["question"]] = r["right_answer"]
        else:
            answers[r["question"]] = " ".join(r["right_answer"].split()[:12]) + ", I think."
    task = HaluEvalSimilarity(HaluEvalSimilarityConfig(model_path="unused", run_name="key", embed_model=str(minilm_dir),
                                                       bertscore_model="none", chunk_size=5,
                                                       generation_config="greedy"))
    detailed = tmp_path / "detailed_key.jsonl"
    records = run_phase(task, "similarity", AnswerKeyLM(answers), list(enumerate(rows)), detailed)
    metrics = aggregate_similarity(records)
    assert [r["is_hallucinated"] for r in records][::3] == [True] * 4  # the hallucinated answer itself
    assert metrics["avg_bert_score"] is None and all(r["bert_score"] is None for r in records)
    assert [r["bleu"] for r in records][1::3] == [1.0] * 4 and [r["rouge_l"] for r in records][1::3] == [1.0] * 4
    assert all(0 < r["bleu"] < 1 for r in records[2::3])
    # the answer is the hallucinated one (row 0, 3 ...), the right one (1, 4 ...) or neither
    assert [r["match_hallucinated"] for r in records] == [i % 3 == 0 for i in range(12)]
    assert [r["match_right"] for r in records] == [i % 3 == 1 for i in range(12)]
    assert metrics["match_hallucinated_rate"] == metrics["match_right_rate"] == 4 / 12

    from evaluation.eval_halueval import main

    re = main(["--from_detailed", str(detailed), "--output_dir", str(tmp_path), "--run_name", "re"])
    for k in ("avg_bleu", "avg_rouge_l", "hallucination_rate", "avg_confidence_margin"):
        assert re[k] == pytest.approx(metrics[k], abs=1e-6)
    # the study's own detailed files carry no bleu/rouge_l/is_hallucinated: they are recomputed
    old = tmp_path / "detailed_old.jsonl"
    old.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in ("bleu", "rouge_l", "is_hallucinated")})
                           + "\n" for r in records))
    _, old_metrics = rescore_detailed(old)
    for k in ("avg_bleu", "avg_rouge_l", "hallucination_rate", "avg_confidence_margin"):
        assert old_metrics[k] == pytest.approx(metrics[k], abs=1e-6)
    assert old_metrics["hallucination_rate"] >= 4 / 12


def test_resume_after_simulated_crash(tmp_path, tiny_model_dir, minilm_dir, halueval_file, monkeypatch):
    from evaluation.eval_halueval import main

    args = ["--model_path", str(tiny_model_dir), "--run_name", "r", "--output_dir", str(tmp_path),
            "--data_path", str(halueval_file), "--limit", "12", "--max_new_tokens", "12", "--batch_size", "4",
            "--chunk_size", "4", "--embed_model", str(minilm_dir), "--bertscore_model", "none", "--backend", "hf"]
    full = main(args)["base"]
    detailed = tmp_path / "detailed_r.jsonl"
    before = _jsonl(detailed)
    assert full["avg_bert_score"] is None and full["total_samples"] == 12

    # crash: 5 complete records and half of the 6th on disk, no metrics file
    lines = detailed.read_text().splitlines(keepends=True)
    detailed.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    (tmp_path / "metrics_r.json").unlink()
    seen = []
    original = HFLM.generate_until

    def spy(self, prompts, *a, **k):
        seen.extend(prompts)
        return original(self, prompts, *a, **k)

    monkeypatch.setattr(HFLM, "generate_until", spy)
    resumed = main(args + ["--resume"])["base"]
    assert len(seen) == 7  # only the rows not on disk were generated again
    after = _jsonl(detailed)
    assert [r["generated"] for r in after] == [r["generated"] for r in before]
    for a, b in zip(after, before):
        assert a["sim_right"] == pytest.approx(b["sim_right"], abs=1e-5)
    for k in ("hallucination_rate", "avg_bleu", "avg_rouge_l"):
        assert resumed[k] == full[k]
    assert resumed["avg_confidence_margin"] == pytest.approx(full["avg_confidence_margin"], abs=1e-5)

    # resuming against other data stops instead of mixing two datasets
    other = tmp_path / "other.json"
    rows = read_jsonl(halueval_file, limit=40)[20:]
    other.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = list(args)
    bad[bad.index("--data_path") + 1] = str(other)
    with pytest.raises(DataError, match="cannot resume"):
        main(bad + ["--resume"])


def test_several_adapters_on_one_base(tmp_path, tiny_model_dir, minilm_dir, halueval_file):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    adapter = tmp_path / "dpop_out"
    get_peft_model(base, cfg).save_pretrained(adapter)

    from evaluation.eval_halueval import main

    common = ["--model_path", str(tiny_model_dir), "--output_dir", str(tmp_path), "--data_path", str(halueval_file),
              "--limit", "4", "--max_new_tokens", "12", "--embed_model", str(minilm_dir), "--bertscore_model", "none",
              "--backend", "hf"]
    res = main(common + ["--run_name", "cmp", "--lora_path", f"none,{adapter}"])
    assert set(res) == {"base", "dpop_out"}
    assert json.loads((tmp_path / "metrics_cmp_base.json").read_text())["lora_path"] is None
    assert json.loads((tmp_path / "metrics_cmp_dpop_out.json").read_text())["lora_path"] == str(adapter)
    base_gen = [r["generated"] for r in _jsonl(tmp_path / "detailed_cmp_base.jsonl")]
    lora_gen = [r["generated"] for r in _jsonl(tmp_path / "detailed_cmp_dpop_out.jsonl")]
    main(common + ["--run_name", "alone"])
    assert base_gen == [r["generated"] for r in _jsonl(tmp_path / "detailed_alone.jsonl")]
    assert lora_gen != base_gen


# --------------------------------------------------------------------------------------------- two-step flow


def test_two_step_flow_end_to_end(tmp_path, tiny_model_dir, tiny_judge_dir, minilm_dir, halueval_file):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    preds_dir = tmp_path / "HaluevalLLM"
    run_script("evaluation/eval_haleval_llm_step1.py", "--model_path", tiny_model_dir, "--lora_path", "none",
               "--output_dir", preds_dir, "--run_name", "tiny", "--data_path", halueval_file, "--limit", N_ROWS,
               "--max_new_tokens", 16, "--backend", "hf", "--batch_size", 8)
    preds = _jsonl(preds_dir / "predictions_tiny.jsonl")
    rows = load_halueval(halueval_file, limit=N_ROWS)
    assert len(preds) == N_ROWS and all(list(p) == list(PREDICTION_FIELDS) for p in preds)
    assert [p["knowledge"] for p in preds] == [r["knowledge"] for r in rows]
    assert (preds_dir / "run_config_step1_tiny.json").is_file()
    # the step-1 answers are the model's greedy answers to the system-prompted chat
    model, tok = load_causal_lm(tiny_model_dir, device="cpu")
    lm = HFLM(str(tiny_model_dir), model=model, tokenizer=tok, batch_size=4)
    assert [p["generated_text"] for p in preds[:4]] == generate_answers(lm, rows[:4], 16, HALUEVAL_STEP1_SYSTEM)
    # a second predictions file in the folder is judged too
    (preds_dir / "predictions_short.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds[:5]))

    from evaluation.eval_haleval_llm_step2 import main as step2

    out = tmp_path / "Halueval"
    step2([str(a) for a in (
        "--predictions_dir", preds_dir, "--judge_model_path", tiny_judge_dir, "--output_dir", out,
        "--bertscore_model", minilm_dir, "--bertscore_num_layers", 6, "--batch_size", 8, "--no-trust_remote_code")])
    metrics = json.loads((out / "metrics_tiny.json").read_text())
    detailed = _jsonl(out / "detailed_tiny.jsonl")
    assert set(metrics) == {"predictions", "judge_model", "hallucination_rate", "avg_faithfulness", "avg_bert_f1",
                            "avg_bleu", "total", "n_empty", "degenerate", "seconds"}
    assert metrics["n_empty"] == sum(not p["generated_text"].strip() for p in preds)
    assert metrics["total"] == N_ROWS == len(detailed)
    assert json.loads((out / "metrics_short.json").read_text())["total"] == 5

    judge = AutoModelForSequenceClassification.from_pretrained(tiny_judge_dir).eval()
    jtok = AutoTokenizer.from_pretrained(tiny_judge_dir)
    pos = judge.config.label2id["consistent"]
    with torch.no_grad():
        for rec, p in zip(detailed, preds):
            enc = jtok([p["knowledge"]], [p["generated_text"]], return_tensors="pt")
            ref = torch.softmax(judge(**enc).logits[0], -1)[pos].item()
            assert rec["faithfulness_score"] == pytest.approx(ref, abs=1e-5)
            assert rec["is_hallucinated"] == (ref < 0.5)
            assert rec["bleu"] == sentence_bleu(p["generated_text"], p["right_answer"])
    assert metrics["hallucination_rate"] == pytest.approx(_fmean(r["faithfulness_score"] < 0.5 for r in detailed))
    assert metrics["avg_faithfulness"] == pytest.approx(_fmean(r["faithfulness_score"] for r in detailed))
    assert metrics["avg_bert_f1"] == pytest.approx(_fmean(r["bert_score"] for r in detailed))
    assert metrics["avg_bleu"] == pytest.approx(_fmean(r["bleu"] for r in detailed))

    # --input_file with --resume after a torn write gives the same judgements
    shutil.copy(out / "detailed_tiny.jsonl", tmp_path / "detailed_again.jsonl")
    lines = (tmp_path / "detailed_again.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "detailed_again.jsonl").write_text("".join(lines[:7]) + lines[7][:20])
    again = step2(["--input_file", str(preds_dir / "predictions_tiny.jsonl"), "--run_name", "again",
                   "--judge_model_path", str(tiny_judge_dir), "--output_dir", str(tmp_path), "--bertscore_model",
                   str(minilm_dir), "--bertscore_num_layers", "6", "--no-trust_remote_code", "--resume"])["again"]
    for k in ("hallucination_rate", "avg_faithfulness", "avg_bert_f1", "avg_bleu", "total", "n_empty"):
        assert again[k] == pytest.approx(metrics[k], abs=1e-5)


# --------------------------------------------------------------------------------------------- settings


def test_limit_zero_study_compat_and_the_decoding_settings(tmp_path):
    from aligner.core.cli import parse_config
    from aligner.eval.tasks.halueval_twostep import HaluEvalStep1Config, HaluEvalStep2Config
    from aligner.lm.settings import resolve_sampling

    sim = ["--model_path", "m", "--run_name", "r"]
    cfg = parse_config(HaluEvalSimilarityConfig, [*sim, "--limit", "0"])
    assert cfg.limit == -1 and cfg.generation_config == "model" and not cfg.double_bos and cfg.dtype == "auto"
    compat = parse_config(HaluEvalSimilarityConfig, [*sim, "--study_compat"])
    assert (compat.dtype, compat.double_bos, compat.backend) == ("fp16", True, "hf")
    s1 = parse_config(HaluEvalStep1Config, [*sim, "--study_compat"])
    assert (s1.dtype, s1.double_bos, s1.enforce_eager, s1.max_model_len) == ("fp16", True, True, 4096)
    assert parse_config(HaluEvalStep2Config, ["--input_file", "x"]).dtype == "fp32"  # the study's HHEM

    folder = tmp_path / "instruct"
    folder.mkdir()
    (folder / "generation_config.json").write_text(json.dumps(  # Llama-3.2-3B-Instruct's
        {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009], "temperature": 0.6,
         "top_p": 0.9}))
    model_cfg = parse_config(HaluEvalSimilarityConfig, ["--model_path", str(folder), "--run_name", "r"])
    assert resolve_sampling(model_cfg, str(folder)) == {"temperature": 0.6, "top_p": 0.9, "top_k": 50}
    greedy = parse_config(HaluEvalSimilarityConfig, [*sim, "--generation_config", "greedy"])
    assert resolve_sampling(greedy, "m")["temperature"] == 0.0
    hot = parse_config(HaluEvalSimilarityConfig, [*sim, "--generation_config", "greedy", "--temperature", "0.8",
                                                  "--top_k", "0"])
    assert resolve_sampling(hot, "m") == {"temperature": 0.8, "top_p": 1.0, "top_k": 0}
    off = parse_config(HaluEvalSimilarityConfig, ["--model_path", str(folder), "--run_name", "r", "--no-do_sample"])
    assert resolve_sampling(off, str(folder))["temperature"] == 0.0


def test_sampled_answers_and_the_doubled_bos(sharp_lm, tiny_model_dir, halueval_file):
    """Sampling reaches HF generate with the given temperature / top-p / top-k and seed (the same numbers as a
    plain seeded generate call); --double_bos gives the study's two BOS, the default one."""
    from aligner.lm.hf import stop_token_ids

    model, tok = sharp_lm
    rows = load_halueval(halueval_file, limit=1)
    lm = HFLM(str(tiny_model_dir), model=model, tokenizer=tok, batch_size=1)
    sampling = {"temperature": 0.6, "top_p": 0.9, "top_k": 50}
    got = generate_answers(lm, rows, max_new_tokens=8, sampling=sampling, seed=5)
    assert got == generate_answers(lm, rows, max_new_tokens=8, sampling=sampling, seed=5)
    prompt = halueval_prompts(lm, rows)[0]
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    torch.manual_seed(5)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=True,
                             temperature=0.6, top_p=0.9, top_k=50, eos_token_id=stop_token_ids(tok, model),
                             pad_token_id=tok.pad_token_id)
    assert got == [tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()]
    assert lm.prompt_ids(prompt).count(tok.bos_token_id) == 1
    lm.double_bos = True
    assert lm.prompt_ids(prompt)[:2] == [tok.bos_token_id] * 2


@pytest.mark.parametrize("field_name,value,shown", [("right_answer", 7, "int 7"), ("knowledge", 123, "int 123"),
                                                    ("question", ["a", "b"], 'list ["a", "b"]')])
def test_wrong_typed_fields_stop_the_read_naming_file_line_and_field(tmp_path, halueval_file, field_name, value,
                                                                     shown):
    rows = read_jsonl(halueval_file, limit=3)
    rows[1][field_name] = value
    bad = tmp_path / "qa.json"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_halueval(bad)
    assert str(err.value) == f"{bad}, line 2: field '{field_name}' must be a string, got {shown}"


def test_wrong_typed_field_is_one_line_before_any_model_loads(tmp_path, halueval_file):
    rows = read_jsonl(halueval_file, limit=3)
    rows[2]["right_answer"] = 7
    bad = tmp_path / "qa.json"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "evaluation/eval_halueval.py"), "--model_path",
                           str(tmp_path / "no-model-needed"), "--run_name", "r", "--output_dir", str(out),
                           "--data_path", str(bad)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --model_path")  # the model is checked first ...
    (tmp_path / "no-model-needed").mkdir()
    proc = subprocess.run([sys.executable, str(REPO / "evaluation/eval_halueval.py"), "--model_path",
                           str(tmp_path / "no-model-needed"), "--run_name", "r", "--output_dir", str(out),
                           "--data_path", str(bad)], cwd=REPO, capture_output=True, text=True, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert last == f"error: --data_path: {bad}, line 3: field 'right_answer' must be a string, got int 7"
    assert not list(out.glob("detailed_*"))  # ... and the data before the model: no empty per-sample file


def test_step1_output_file_names_its_run_as_the_backend_names_the_adapter():
    """``--output_file`` with an adapter: the run is named as the backends name the loaded adapter (the folder
    ``dpop/epoch_2`` is ``dpop_epoch_2``), else the runner could not select it."""
    from aligner.core.models import planned_adapter_names
    from aligner.eval.tasks.halueval_twostep import HaluEvalStep1Config, HaluEvalTwoStep

    cfg = HaluEvalStep1Config(model_path="m", data_path="d.json", output_file="out/p.jsonl",
                              lora_path="runs/dpop/epoch_2")
    (run,) = HaluEvalTwoStep(cfg).runs()
    assert run.name == planned_adapter_names("runs/dpop/epoch_2")[0] == "dpop_epoch_2"
    assert (run.adapter, run.tag, str(run.files["predictions"])) == ("runs/dpop/epoch_2", "p", "out/p.jsonl")
    base = HaluEvalTwoStep(HaluEvalStep1Config(model_path="m", data_path="d.json", output_file="p.jsonl")).runs()
    assert [r.name for r in base] == ["base"]
