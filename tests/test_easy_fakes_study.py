"""Easy fakes under --study_compat against a literal copy of the study's loop (generate_easy_fakes.py:63-82):
the same donors for every item, whitespace-only answers included (they draw a donor there, so skipping them
without a draw would put every later draw out of step)."""

import json
import random

import pytest
from test_data_prep_common import halueval_rows

from aligner.core.paths import halueval_path
from aligner.data.negatives import make_easy_fakes
from aligner.data.sft import load_sft_view


def study_generate_easy_fakes(data):
    """generate_easy_fakes.py:63-82 as the study wrote it (global ``random``, seeded by the caller; no tqdm)."""
    easy_fakes = []

    for i in range(len(data)):
        item = data[i]
        question = item['question']
        ideal_answer = item['ideal_answer']

        if not ideal_answer:
            continue

        # Get a random answer from another question
        mismatched_idx = (i + random.randint(1, len(data) - 1)) % len(data)
        easy_fake = data[mismatched_idx]['ideal_answer']

        if easy_fake and easy_fake != ideal_answer:
            easy_fakes.append({
                "data_index": item["data_index"],
                "question": question,
                "ideal_answer": ideal_answer,
                "fake_answer": easy_fake,
                "type": "easy_mismatch"
            })
    return easy_fakes


@pytest.fixture
def study_random():
    """The study seeds the global generator (random.seed(args.seed)); its state is put back afterwards."""
    state = random.getstate()
    yield random
    random.setstate(state)


def _view(n: int) -> list[dict]:
    """Real HaluEval questions and answers; every 7th answer whitespace-only, every 11th empty, every 5th a copy
    of the one before (an exact-equal donor is dropped)."""
    rows = halueval_rows(halueval_path(), n)
    view = []
    for i, r in enumerate(rows):
        answer = r["right_answer"]
        if i % 7 == 3:
            answer = " " if i % 2 else "\n "
        elif i % 11 == 5:
            answer = ""
        elif i % 5 == 4:
            answer = view[-1]["ideal_answer"]
        view.append({"question": r["question"], "context": r["knowledge"], "ideal_answer": answer, "data_index": i})
    return view


@pytest.mark.parametrize("seed", [42, 7])
def test_study_compat_draws_the_studys_donors(study_random, seed):
    view = _view(120)
    study_random.seed(seed)
    expected = study_generate_easy_fakes(view)
    got, counts = make_easy_fakes(view, seed=seed, single_draw=True)
    assert got == expected
    blank = [r for r in expected if not r["ideal_answer"].strip()]
    assert blank, "the data must hold whitespace-only answers that draw a donor"
    assert counts["written"] == len(expected) and counts["empty_ideal"] == sum(v["ideal_answer"] == "" for v in view)
    # skipping whitespace-only answers without a draw (the default's rule) would give other donors after them
    study_random.seed(seed)
    unblank = [v if v["ideal_answer"].strip() else dict(v, ideal_answer="") for v in view]
    shifted = {r["data_index"]: r["fake_answer"] for r in study_generate_easy_fakes(unblank)}
    assert any(shifted.get(r["data_index"]) != r["fake_answer"] for r in expected if r["ideal_answer"].strip())


def test_the_default_never_pairs_a_blank_answer():
    view = _view(120)
    got, counts = make_easy_fakes(view, seed=42)
    assert all(r["ideal_answer"].strip() and r["fake_answer"].strip() for r in got)
    assert counts["empty_ideal"] == sum(not v["ideal_answer"].strip() for v in view)


def test_the_raw_view_keeps_a_whitespace_only_answer(tmp_path):
    rows = halueval_rows(halueval_path(), 3)
    recs = [{"question": r["question"], "context": r["knowledge"], "answers": [a]}
            for r, a in zip(rows, [rows[0]["right_answer"], " ", ""])]
    path = tmp_path / "squad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    raw = load_sft_view(None, path, raw=True)
    assert [v["ideal_answer"] for v in raw] == [rows[0]["right_answer"], " "]
    assert [v["ideal_answer"] for v in load_sft_view(None, path)] == [rows[0]["right_answer"]]
