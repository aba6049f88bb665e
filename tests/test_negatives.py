"""Hard fakes: poison prompts, answer extraction, the cleaner, and generation with the tiny model
(batched, resumable)."""

import json

import pytest
from test_data_prep_common import halueval_rows, load_script

from aligner.core.io import write_jsonl_atomic
from aligner.core.runner import RunMismatchError
from aligner.data.hard_fakes import PoisonPrompter, clean_fake_answer, clean_hard_fakes, extract_generated_answer
from aligner.prompts import POISON_PROMPT_TEMPLATES, POISON_TYPES

HARD_SCRIPT = "first_improvement/data_prep/negative_sampling/scripts/generate_hard_fakes.py"
CLEAN_SCRIPT = "first_improvement/data_prep/negative_sampling/scripts/hardfakeclearner.py"
PROMPTER_SCRIPT = "first_improvement/data_prep/negative_sampling/scripts/poison_prompter.py"
NER_SCRIPT = "first_improvement/data_prep/negative_sampling/scripts/ner_swapper.py"


def test_poison_prompts_cycle_types_and_are_seeded():
    items = [{"question": f"Question {i}?", "ideal_answer": f"Answer {i}", "context": "C" * 50, "data_index": i}
             for i in range(6)]
    pr = PoisonPrompter(seed=3, max_context_chars=20)
    got = [pr.prompt_for(it, pos) for pos, it in enumerate(items)]
    assert [t for t, _ in got] == [POISON_TYPES[i % 3] for i in range(6)]
    for (ptype, prompt), it in zip(got, items):
        assert it["question"] in prompt and it["ideal_answer"] in prompt and "C" * 20 in prompt and "C" * 21 not in prompt
        head = prompt.split("\n\nContext:")[0]
        assert any(t.startswith(head) for t in POISON_PROMPT_TEMPLATES[ptype])
    assert [PoisonPrompter(seed=3, max_context_chars=20).prompt_for(it, p) for p, it in enumerate(items)] == got
    chat = PoisonPrompter(prompt_format="chat", chat_renderer=lambda m: "<chat>" + m[0]["content"])
    assert chat.prompt_for(items[0], 0)[1].startswith("<chat>Read the passage") or \
        chat.prompt_for(items[0], 0)[1].startswith("<chat>Given the context")
    with pytest.raises(ValueError):
        PoisonPrompter(["made_up"])


@pytest.mark.parametrize("raw,answer", [
    (" The Treaty was signed in 1820 by Spain.", "The Treaty was signed in 1820 by Spain."),
    ("Flawed Answer: Because the sky is green, Paris.", "Because the sky is green, Paris."),
    ("Sure.\nCausal Error Answer: Rain causes clouds.", "Rain causes clouds."),
    ("Answer: Lyon", "Lyon"),
])
def test_extract_generated_answer(raw, answer):
    assert extract_generated_answer(raw) == answer


@pytest.mark.parametrize("raw,ideal,expected", [
    ('"The war ended in 1946."', "1945", ("The war ended in 1946.", "ok")),
    ("The war ended in 1946.\n\nNote: this answer changes the year.", "1945", ("The war ended in 1946.", "ok")),
    ("The war ended in 1946. (Note: the correct year is 1945)", "1945", ("The war ended in 1946.", "ok")),
    ("Flawed Answer: Lyon is the capital.\nExplanation: it is not.", "Paris", ("Lyon is the capital.", "ok")),
    ("Lyon\nQuestion: what else?", "Paris", ("Lyon", "ok")),
    ("The flawed answer is that Lyon is the capital.", "Paris", (None, "empty")),
    ("Note: I cannot do that.", "Paris", (None, "empty")),
    ("  “Paris.”  ", "paris", (None, "copy_of_ideal")),
    ("bad\x1a bytes", "x", ("bad bytes", "ok")),
    ("", "x", (None, "empty")),
])
def test_clean_fake_answer(raw, ideal, expected):
    assert clean_fake_answer(raw, ideal) == expected


def test_clean_hard_fakes_counts():
    recs = [{"data_index": 0, "ideal_answer": "a", "fake_answer": "b", "raw_output": "b"},
            {"data_index": 1, "ideal_answer": "a", "fake_answer": "A."},
            {"data_index": 2, "ideal_answer": "a", "fake_answer": "Note: nothing"}]
    kept, counts = clean_hard_fakes(recs)
    assert kept == [{"data_index": 0, "ideal_answer": "a", "fake_answer": "b"}]
    assert counts == {"ok": 1, "copy_of_ideal": 1, "empty": 1}


def _squad_file(tmp_path, halueval_file, n=6):
    rows = halueval_rows(halueval_file, n, start=300)
    recs = [{"id": f"s{i}", "question": r["question"], "context": r["knowledge"], "answers": [r["right_answer"]]}
            for i, r in enumerate(rows)]
    write_jsonl_atomic(tmp_path / "squad.jsonl", recs)
    return tmp_path / "squad.jsonl", recs


def test_hard_fakes_tiny_model_batched_and_resumable(tmp_path, halueval_file, tiny_model_dir):
    squad, recs = _squad_file(tmp_path, halueval_file, 5)
    out = tmp_path / "hard" / "hard_fakes.jsonl"
    args = ["--nq_jsonl", "", "--squad_jsonl", str(squad), "--model_path", str(tiny_model_dir), "--backend", "hf",
            "--output_file", str(out), "--batch_size", "2", "--max_new_tokens", "6", "--temperature", "0",
            "--no_progress"]
    script = load_script(HARD_SCRIPT)
    counts = script.main(args)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert counts["generated"] == 5 and counts["backend"] == "HFLM"
    assert [r["data_index"] for r in lines] == [0, 1, 2, 3, 4]
    assert [r["type"] for r in lines] == [f"hard_{POISON_TYPES[i % 3]}" for i in range(5)]
    for r, src in zip(lines, recs):
        assert r["question"] == src["question"].strip() and r["ideal_answer"] == src["answers"][0].strip()
        assert r["fake_answer"] == extract_generated_answer(r["raw_output"])
    # Interrupted run: two complete lines and a torn third; --resume regenerates only the rest (greedy, so
    # the same batches give the same text).
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:2]) + text[2][:15])
    counts = script.main([*args, "--resume"])
    assert counts["already_done"] == 2 and counts["generated"] == 3 and counts["total_in_file"] == 5
    assert [json.loads(x) for x in out.read_text().splitlines()] == lines
    # Resuming with other sampling settings would mix two runs in one file: refused, the file untouched.
    with pytest.raises(RunMismatchError, match="temperature"):
        script.main([*args, "--resume", "--temperature", "0.5"])
    assert [json.loads(x) for x in out.read_text().splitlines()] == lines
    # Cleaning: every raw fake is kept or counted.
    cleaned = tmp_path / "clean" / "cleaned.jsonl"
    c = load_script(CLEAN_SCRIPT).main(["--input_file", str(out), "--output_file", str(cleaned)])
    assert c["read"] == 5 and c["kept"] + c.get("dropped_empty", 0) + c.get("dropped_copy_of_ideal", 0) == 5
    assert all("raw_output" not in json.loads(x) for x in cleaned.read_text().splitlines())


def test_prompter_and_ner_commands(tmp_path, halueval_file, capsys):
    squad, recs = _squad_file(tmp_path, halueval_file, 6)
    load_script(PROMPTER_SCRIPT).main(["--squad_jsonl", str(squad), "--output_file", str(tmp_path / "p.jsonl"),
                                       "--limit", "4"])
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["type"] for r in rows] == [f"hard_{t}" for t in (*POISON_TYPES, POISON_TYPES[0])]
    assert all(recs[r["data_index"]]["question"].strip() in r["prompt"] for r in rows)
    out = tmp_path / "swaps.jsonl"
    counts = load_script(NER_SCRIPT).main(["--input_file", str(squad), "--field", "answers", "--spacy_model", "rule",
                                           "--text", "George Washington was born in 1732.", "--output_file", str(out)])
    res = [json.loads(x) for x in out.read_text().splitlines()]
    assert counts["spacy_model_used"] == "rule" and len(res) == 1
    assert res[0]["swapped"] != res[0]["text"] and all(s["label"] in ("PERSON", "DATE") for s in res[0]["swaps"])
