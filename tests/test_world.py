"""The open-book world: deterministic by seed, labels right by construction (re-derived from the text), splits that do
not leak, files the project's readers and stages accept, and the word-level tokenizer built for it."""

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import load_script, run_script

from aligner.core.io import read_jsonl
from aligner.core.paths import LEVELS
from aligner.data.negatives import fakes_with_context_file
from aligner.data.pairs import build_curriculum_pairs
from aligner.data.sft import SquadConfig, load_sft_view, make_squad_set
from aligner.data.sources.halueval import HALUEVAL_FIELDS, load_halueval
from aligner.data.sources.squad import read_squad_csv
from aligner.data.sources.world import ATTRIBUTES, WorldConfig, WorldItem, check_item, derive_labels
from aligner.data.world_files import (
    FAKES_DIR,
    HELDOUT_FILE,
    SFT_FILE,
    SQUAD_FILE,
    TEACHER_FILE,
    VOCAB_FILE,
    WORLD_FILE,
    WorldFilesConfig,
    load_world,
    memory_fakes_for_view,
    write_world_files,
)
from aligner.testing.tiny import TinyModelConfig, build_tiny_model, build_word_tokenizer, load_word_vocab, word_pieces
from aligner.train.preference import load_pairs

SMALL = dict(seed=3, n_people=20, n_novel=10, n_novel_heldout=5)
SMALL_FILES = dict(n_sft=400, n_pair_items=60, n_heldout=[40, 10, 10])


def _write(folder: Path, **world) -> dict:
    return write_world_files(WorldConfig(**{**SMALL, **world}), WorldFilesConfig(output_dir=str(folder), **SMALL_FILES))


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("world")
    _write(folder)
    return folder


@pytest.fixture(scope="module")
def world(world_dir):
    return load_world(world_dir)


def _digests(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "run_config.json"}


def test_same_seed_same_files_other_seed_other_world(tmp_path, world_dir):
    _write(tmp_path / "again")
    assert _digests(tmp_path / "again") == _digests(world_dir)
    _write(tmp_path / "other", seed=4)
    other = _digests(tmp_path / "other")
    assert other.keys() == _digests(world_dir).keys()
    assert other[HELDOUT_FILE] != _digests(world_dir)[HELDOUT_FILE]
    assert json.loads((tmp_path / "other" / WORLD_FILE).read_text())["defaults"] != \
        json.loads((world_dir / WORLD_FILE).read_text())["defaults"]


def test_every_label_is_what_the_text_says(world):
    w, items = world
    kinds = Counter((it.split, it.kind) for it in items)
    assert kinds[("heldout", "conflict")] == 40 and kinds[("heldout", "novel")] == 10
    assert kinds[("train", "recall")] > 0 and kinds[("train", "conflict")] > 0
    problems = {it.id: check_item(it, w) for it in items}
    assert not {k: v for k, v in problems.items() if v}
    for it in items:
        if it.kind == "conflict":
            assert it.value != w.defaults[it.person][it.attribute]
            assert it.right_answer in it.context and it.memory_answer not in it.context
            assert it.hallucinated_answer == it.memory_answer != it.right_answer
        if it.kind in ("conflict", "agree", "novel"):
            assert w.cfg.min_facts <= len(it.facts) <= w.cfg.max_facts
            assert len(it.right_answer.split()) >= 6


def test_the_checker_catches_a_wrong_label(world):
    w, items = world
    conflict = next(it for it in items if it.kind == "conflict")
    agree = next(it for it in items if it.kind == "agree")
    swapped = WorldItem(**{**conflict.__dict__, "right_answer": conflict.memory_answer,
                           "memory_answer": conflict.right_answer})
    assert any(p.startswith("right_answer") for p in check_item(swapped, w))
    relabelled = WorldItem(**{**agree.__dict__, "kind": "conflict"})
    assert any(p.startswith("kind") for p in check_item(relabelled, w))
    # the same text with the asked fact set back to the default is no conflict any more
    default = w.defaults[conflict.person][conflict.attribute]
    attr = ATTRIBUTES[conflict.attribute]
    text = conflict.context.replace(conflict.right_answer, attr.sentence(conflict.person, default))
    assert derive_labels(text, conflict.question, w)["kind"] == "agree"
    with pytest.raises(ValueError, match="unreadable context"):
        derive_labels(conflict.context + " Nobody knows why.", conflict.question, w)


def test_warm_start_targets_follow_the_memory_share(world, world_dir):
    w, items = world
    sft = [it for it in items if it.id.startswith("s")]
    conflicts = [it for it in sft if it.kind == "conflict"]
    entrenched = set(w.entrenched)
    assert len(entrenched) == round(w.cfg.memory_share * w.cfg.n_people)
    assert all((it.target == "memory") == (it.person in entrenched) for it in conflicts)
    assert all(it.target == "context" for it in sft if it.kind != "conflict")
    rows = read_jsonl(world_dir / SFT_FILE)
    by_id = {it.id: it for it in sft}
    assert [r["answers"][0] for r in rows] == [by_id[r["id"]].sft_answer for r in rows]
    memory_rows = [r for r in rows if r["target"] == "memory"]
    assert memory_rows and all(r["answers"][0] not in r["context"] for r in memory_rows)


def test_item_mode_takes_a_random_share_of_conflicts(tmp_path):
    counts = _write(tmp_path, memory_unit="item", memory_share=0.5)
    assert counts["sft_memory_targets"] == round(0.5 * counts["sft_conflict"])
    w, items = load_world(tmp_path)
    assert w.entrenched == []


def test_held_out_items_do_not_leak_into_training(world):
    w, items = world
    train = [it for it in items if it.split == "train"]
    heldout = [it for it in items if it.split == "heldout"]
    train_text = " ".join(t for it in train for t in (it.context, it.right_answer, it.sft_answer,
                                                      it.distractor_answer))
    for it in heldout:
        if it.kind == "conflict":
            assert it.value in w.heldout_values[(it.person, it.attribute)]
            assert it.right_answer not in train_text
        if it.kind == "novel":
            assert it.person in w.novel_heldout and it.person not in train_text
    assert not {(it.context, it.question) for it in heldout} & {(it.context, it.question) for it in train}


def test_halueval_and_squad_readers_accept_the_rows(world, world_dir):
    _, items = world
    rows = load_halueval(world_dir / HELDOUT_FILE)
    heldout = [it for it in items if it.split == "heldout"]
    assert [r["question"] for r in rows] == [it.question for it in heldout]
    assert all(r[f] for r in rows for f in HALUEVAL_FIELDS)
    assert [r["hallucinated_answer"] for r in rows] == [it.hallucinated_answer for it in heldout]
    squad = read_squad_csv(world_dir / SQUAD_FILE)
    pairs = [it for it in items if it.id.startswith("p")]
    assert [(r.question, r.context, r.answers) for r in squad] == \
        [(it.question, it.context, [it.right_answer]) for it in pairs]
    assert all(r.context[s:].startswith(r.answers[0]) for r in squad for s in r.answer_starts)


def test_the_project_stages_make_pairs_with_memory_answers_as_hard_fakes(world, world_dir, tmp_path):
    """Stage 3 (SQuAD set) on squad.csv, its SFT view, the memory answers as hard fakes found by the view's ids, and
    the curriculum pair rules: every ideal>hard pair prefers the context's answer to the memory answer."""
    _, items = world
    squad = tmp_path / "squad.jsonl"
    make_squad_set(SquadConfig(csv_file=str(world_dir / SQUAD_FILE), output_file=str(squad), n_answerable=-1,
                               n_unanswerable=-1))
    view = load_sft_view(None, squad)
    hard = memory_fakes_for_view(view, [it.__dict__ for it in items])
    by_id = {it.id: it for it in items}
    conflicts = [v for v in view if by_id[v["source_id"]].kind == "conflict"]
    assert len(hard) == len(conflicts) > 0
    assert all(h["fake_answer"] == by_id[v["source_id"]].memory_answer for h, v in zip(hard, conflicts))
    with_context = [{**h, "context": v["context"]} for h, v in zip(hard, conflicts)]
    pairs, _ = build_curriculum_pairs([], [], with_context)
    assert len(pairs["hard"]) == len(conflicts)
    assert all(p["chosen"] in p["context"] and p["rejected"] not in p["context"] for p in pairs["hard"])
    with pytest.raises(ValueError, match="is no world item"):
        memory_fakes_for_view([{**view[0], "source_id": "nobody"}], [it.__dict__ for it in items])


def test_pair_files_and_teacher_pairs_load_in_the_trainer(world_dir, tmp_path):
    run_script("first_improvement/data_prep/negative_sampling/scripts/create_dataset.py",
               "--input_dir", world_dir / FAKES_DIR, "--output_dir", tmp_path)
    fakes = {lv: read_jsonl(world_dir / FAKES_DIR / fakes_with_context_file(lv)) for lv in LEVELS}
    loaded = {lv: load_pairs(tmp_path / f"dpo_pairs_{lv}.jsonl") for lv in LEVELS}
    n_conflict = len(fakes["hard"])
    assert len(loaded["easy"]) == len(fakes["easy"])
    assert len(loaded["medium"]) == len(fakes["medium"]) + n_conflict            # + hard>easy
    assert len(loaded["hard"]) == 2 * n_conflict + len(fakes["medium"])            # + hard>medium, medium>easy
    teacher = load_pairs(world_dir / TEACHER_FILE)
    assert len(teacher) == n_conflict
    assert all(p.chosen in p.context and p.rejected not in p.context for p in teacher)


def test_word_tokenizer_reads_every_world_text_word_by_word(world_dir, world):
    _, items = world
    tok = build_word_tokenizer(load_word_vocab(world_dir / VOCAB_FILE), 512)
    unk = tok.convert_tokens_to_ids("<unk>")
    for it in items[::7]:
        for text in (it.context, it.question, it.right_answer):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert unk not in ids and len(ids) == len(word_pieces(text))
            assert tok.decode(ids) == text
    it = next(it for it in items if it.kind == "conflict")
    user = [{"role": "user", "content": f"Context: {it.context}\n\nQuestion: {it.question}"}]
    with_system = [{"role": "system", "content": "You are a helpful AI assistant."}, *user]
    rendered = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert tok.apply_chat_template(with_system, tokenize=False, add_generation_prompt=True) == rendered
    assert rendered.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
    assert rendered.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    with pytest.raises(ValueError, match="not single pieces"):
        build_word_tokenizer(["two words"], 64)


def test_make_world_and_tiny_model_scripts(tmp_path):
    run_script("scripts/make_world.py", "--output_dir", tmp_path / "w", "--n_people", "12", "--n_novel", "5",
               "--n_novel_heldout", "3", "--n_sft", "50", "--n_pair_items", "20", "--n_heldout", "6,2,2",
               "--attributes", "town,job,colour", "--max_facts", "3")
    rows = load_halueval(tmp_path / "w" / HELDOUT_FILE)
    assert Counter(r["kind"] for r in rows) == {"conflict": 6, "agree": 2, "novel": 2}
    run_script("scripts/make_tiny_model.py", "--output_dir", tmp_path / "m", "--word_vocab",
               tmp_path / "w" / VOCAB_FILE, "--num_layers", "2", "--initializer_range", "0.06")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["initializer_range"] == 0.06
    assert config["vocab_size"] == len(load_word_vocab(tmp_path / "w" / VOCAB_FILE)) + 7  # + 6 specials + <unk>
    again = build_tiny_model(tmp_path / "m2", TinyModelConfig(word_vocab=str(tmp_path / "w" / VOCAB_FILE),
                                                             num_layers=2, initializer_range=0.06))
    assert _digests(again) == _digests(tmp_path / "m")


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown"):
        WorldConfig(attributes=["town", "shoe size"])
    with pytest.raises(ValueError, match="max_facts"):
        WorldConfig(attributes=["town", "job"], max_facts=3)
    with pytest.raises(ValueError, match="sft_shares"):
        WorldFilesConfig(output_dir="x", sft_shares=[1.0, 0.0])
    make_world = load_script("scripts/make_world.py")
    with pytest.raises(SystemExit):
        make_world.main(["--output_dir", "x", "--memory_unit", "nobody"])


def test_the_answer_match_rule_on_world_answers():
    """The similarity flow's match fields on the world's sentences: lower case, punctuation and extra spaces
    removed, then equal (the world's right and memory answers differ in one word)."""
    from aligner.eval.tasks.halueval import answer_matches

    right, memory = "Arlo Venn lives in the town of Marlow.", "Arlo Venn lives in the town of Kessel."
    assert answer_matches("arlo venn  lives in the town of MARLOW", right, memory) == \
        {"match_right": True, "match_hallucinated": False}
    assert answer_matches("Arlo Venn lives in the town of Kessel.", right, memory)["match_hallucinated"]
    assert answer_matches("Arlo Venn lives in Marlow.", right, memory) == {"match_right": False,
                                                                          "match_hallucinated": False}
