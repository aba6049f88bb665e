"""Preference pairs: both field spellings, file:line errors (a cut line's column, a field's type), context truncation,
plain and chat formats."""

import json

import pytest

from aligner.core.io import DataError, read_jsonl
from aligner.core.models import load_tokenizer
from aligner.prompts import DPO_IMPROVED_SYSTEM
from aligner.train.preference import LoadStats, PairRules, PairTokenizer, PreferencePair, load_pairs


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def halueval_pairs(halueval_file):
    rows = [json.loads(line) for line, _ in zip(open(halueval_file, encoding="utf-8"), range(40))]
    return [PreferencePair(r["question"], r["knowledge"], r["right_answer"], r["hallucinated_answer"]) for r in rows]


def test_both_spellings_load_the_same_pairs(tmp_path):
    study = [{"prompt": f"q{i}?", "context": f"ctx {i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(3)]
    teacher = [{"question": r["prompt"], "knowledge": r["context"], "ideal_answer": r["chosen"],
                "fake_answer": r["rejected"], "type": "hard"} for r in study]
    a = load_pairs(_write(tmp_path / "a.jsonl", study))
    b = load_pairs(_write(tmp_path / "b.jsonl", teacher))
    assert [(p.prompt, p.context, p.chosen, p.rejected) for p in a] == \
           [(p.prompt, p.context, p.chosen, p.rejected) for p in b] == \
           [(r["prompt"], r["context"], r["chosen"], r["rejected"]) for r in study]
    assert [p.line for p in b] == [1, 2, 3]
    # context is optional; a list of contexts is joined
    c = load_pairs(_write(tmp_path / "c.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                                   {"prompt": "q", "contexts": ["x", "y"], "chosen": "a",
                                                    "rejected": "b"}]))
    assert [p.context for p in c] == ["", "x\n\ny"]


def test_errors_name_file_and_line_or_are_counted(tmp_path):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    path = _write(tmp_path / "bad.jsonl", [good, "{not json", good, {"prompt": "q", "chosen": "a"},
                                           {"prompt": "q", "chosen": " ", "rejected": "b"}, good])
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: invalid JSON"):
        load_pairs(path)
    stats = LoadStats()
    pairs = load_pairs(path, skip_invalid=True, stats=stats)
    assert [p.line for p in pairs] == [1, 3, 6]
    assert stats.n_skipped == 3 and stats.n_read == 3
    assert "line 4: missing field 'rejected'" in stats.reasons[1]
    assert "line 5: empty field 'chosen'" in stats.reasons[2]
    # identical answers carry no preference: skipped and counted even without skip_invalid
    same = _write(tmp_path / "same.jsonl", [good, {"prompt": "q", "chosen": "a", "rejected": "a "}])
    stats = LoadStats()
    assert len(load_pairs(same, stats=stats)) == 1 and stats.n_identical == 1
    assert len(load_pairs(_write(tmp_path / "lim.jsonl", [good] * 5), limit=2)) == 2


def test_a_cut_line_is_reported_where_it_ends_as_by_every_reader(tmp_path):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    cut = '{"prompt": "q", "chosen": "a",'  # what a crash or a truncated copy leaves
    path = _write(tmp_path / "cut.jsonl", [good, cut])
    with pytest.raises(DataError) as err:
        load_pairs(path)
    assert str(err.value) == (f"{path}, line 2: invalid JSON: Expecting property name enclosed in double quotes at "
                              "column 31 of 30 (the line ends at column 30: cut short?)")
    with pytest.raises(DataError) as by_core:
        read_jsonl(path)
    assert str(by_core.value) == str(err.value)


def test_field_types_are_checked_naming_file_line_and_field(tmp_path):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    path = _write(tmp_path / "types.jsonl", [
        {"prompt": 5, "chosen": "a", "rejected": "b"},
        {"question": "q", "ideal_answer": ["a"], "fake_answer": "b"},
        {**good, "knowledge": {"text": "k"}},
        {**good, "contexts": ["x", 3]},
        {**good, "prompt": None, "question": "q2"},  # null is an absent spelling: the next one is read
        good])
    with pytest.raises(DataError, match=rf"^{path}, line 1: field 'prompt' must be a string or null, got int 5$"):
        load_pairs(path)
    stats = LoadStats()
    pairs = load_pairs(path, skip_invalid=True, stats=stats)
    assert [(p.line, p.prompt) for p in pairs] == [(5, "q2"), (6, "q")]
    assert stats.reasons == [
        f"{path}, line 1: field 'prompt' must be a string or null, got int 5",
        f"{path}, line 2: field 'ideal_answer' must be a string or null, got list [\"a\"]",
        f"{path}, line 3: field 'knowledge' must be a string or a list or null, got dict {{\"text\": \"k\"}}",
        f"{path}, line 4: field 'contexts' must be a string or a list of strings"]


def test_truncation_cuts_the_context_never_the_response(tok, halueval_pairs):
    max_length = 96
    ptok = PairTokenizer(tok, max_length=max_length, prompt_format="plain")
    long_answer = PreferencePair("Who?", "some context", "word " * 200, "short")
    kept, stats = ptok.encode_all(halueval_pairs + [long_answer])
    assert stats.n_in == len(halueval_pairs) + 1 and stats.n_skipped >= 1
    assert stats.n_kept == len(kept) == stats.n_in - stats.n_skipped
    assert stats.n_truncated > 5  # HaluEval knowledge is longer than 96 tokens for most rows
    n_checked = 0
    for enc, pair in zip(kept, [p for p in halueval_pairs if ptok.encode(p) is not None]):
        for side, response in ((enc.chosen, pair.chosen), (enc.rejected, pair.rejected)):
            assert len(side.input_ids) <= max_length
            assert tok.decode(side.input_ids[side.response_start:]) == response  # the whole response, untouched
        prompt_text = tok.decode(enc.chosen.input_ids[:enc.chosen.response_start], skip_special_tokens=True)
        assert prompt_text.rstrip().endswith(pair.prompt.strip())  # the question is kept whole
        if enc.truncated:
            kept_context = prompt_text[: prompt_text.rindex(pair.prompt.strip())].strip()
            assert pair.context.strip().startswith(kept_context) and len(kept_context) < len(pair.context.strip())
            # as much context as fits: the longer of the two sequences is close to the limit
            assert enc.length >= max_length - 3
            n_checked += 1
    assert n_checked == stats.n_truncated


def test_chat_format_renders_the_template_and_appends_eos(tok):
    pair = PreferencePair("Who wrote it?", "Some knowledge.", "Alice", "Bob wrote it in 1990.")
    chat = PairTokenizer(tok, 256, prompt_format="chat").encode(pair)
    plain = PairTokenizer(tok, 256, prompt_format="plain").encode(pair)
    for enc in (chat.chosen, chat.rejected):
        assert enc.input_ids.count(tok.bos_token_id) == 1 and enc.input_ids[0] == tok.bos_token_id
        assert enc.input_ids[-1] == tok.eos_token_id  # EOS is a response token, so it is trained
    prompt = tok.decode(chat.chosen.input_ids[:chat.chosen.response_start])
    assert DPO_IMPROVED_SYSTEM in prompt and "Context: Some knowledge.\n\nQuestion: Who wrote it?" in prompt
    assert tok.decode(chat.chosen.input_ids[chat.chosen.response_start:]) == "Alice" + tok.eos_token
    assert plain.chosen.input_ids[-1] != tok.eos_token_id
    assert tok.decode(plain.chosen.input_ids[plain.chosen.response_start:]) == "Alice"
    assert tok.decode(plain.chosen.input_ids[:plain.chosen.response_start], skip_special_tokens=True) == \
        "Some knowledge.\n\nWho wrote it?\n"


def test_identical_pairs_are_kept_and_counted_with_keep_identical(tmp_path):
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "a", "rejected": "a "},
            {"prompt": "q", "chosen": "c", "rejected": "d"}]
    path = _write(tmp_path / "same.jsonl", rows)
    stats = LoadStats()
    kept = load_pairs(path, rules=PairRules(keep_identical=True), stats=stats)
    assert [p.rejected for p in kept] == ["b", "a ", "d"] and stats.n_identical == 1
    # limit counts lines as the study's raw[:N]: the identical pair takes one of the two places
    assert [p.rejected for p in load_pairs(path, limit=2, rules=PairRules(keep_identical=True))] == ["b", "a "]
    assert [p.rejected for p in load_pairs(path, limit=2)] == ["b", "d"]


def test_an_empty_context_does_not_hide_the_knowledge_and_the_published_teacher_file_is_found(tmp_path):
    import json

    from aligner.train.config import LatestRecipeData
    from aligner.train.preference import latest_recipe_levels, normalize_pair

    pair = normalize_pair({"question": "q", "context": "", "knowledge": "the facts", "chosen": "a", "rejected": "b"},
                          "f.jsonl", 1)
    assert pair.context == "the facts"
    rows = [{"prompt": f"q{i}", "context": "c", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(3)]
    for name in ("dpo_pairs_hard_improved.jsonl", "dpo_pairs_medium.jsonl"):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (level,) = latest_recipe_levels(LatestRecipeData(data_dir=str(tmp_path)))
    assert level.load_stats["hard"]["n_read"] == 3 and level.load_stats["medium"]["n_read"] == 3
