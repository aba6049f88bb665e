"""TruthfulQA's two sources: a downloaded snapshot of the hub dataset (``multiple_choice`` and ``generation``
parquet, written here with the hub's own column types) read config by config as the study read them, against the
TruthfulQA CSV."""

import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aligner.core.io import DataError
from aligner.data.sources.truthfulqa import load_truthfulqa, split_answers

TARGETS = pa.struct([("choices", pa.list_(pa.string())), ("labels", pa.list_(pa.int32()))])
MC_SCHEMA = pa.schema([("question", pa.string()), ("mc1_targets", TARGETS), ("mc2_targets", TARGETS)])
GEN_SCHEMA = pa.schema([(name, pa.string()) for name in ("type", "category", "question", "best_answer")]
                       + [("correct_answers", pa.list_(pa.string())), ("incorrect_answers", pa.list_(pa.string())),
                          ("source", pa.string())])
TAROT = 247  # the CSV row whose question ends with a space


@pytest.fixture(scope="module")
def csv_rows(truthfulqa_csv):
    with open(truthfulqa_csv, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [rows[i] for i in (0, 1, 2, 3, 4, TAROT)]


def _period(text: str) -> str:
    return text if text.endswith(".") else text + "."


def _targets(choices: list[str], labels: list[int]) -> dict:
    """The hub's mc_task.json keeps one entry per choice text (a JSON object's keys)."""
    unique = dict(zip((_period(c) for c in choices), labels))
    return {"choices": list(unique), "labels": list(unique.values())}


def _hub_rows(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """multiple_choice rows (choices with their final period, the questions in another order) and generation rows
    (the CSV's cells as the hub's loading script wrote them: question unstripped, answer lists split on ';')."""
    mc = []
    for r in reversed(rows):
        best, correct, incorrect = r["Best Answer"].strip(), split_answers(r["Correct Answers"]), \
            split_answers(r["Incorrect Answers"])
        mc.append({"question": r["Question"].strip(),
                   "mc1_targets": _targets([best, *incorrect], [1] + [0] * len(incorrect)),
                   "mc2_targets": _targets([*correct, *incorrect], [1] * len(correct) + [0] * len(incorrect))})
    gen = [{"type": r["Type"], "category": r["Category"], "question": r["Question"], "best_answer": r["Best Answer"],
            "correct_answers": split_answers(r["Correct Answers"]),
            "incorrect_answers": split_answers(r["Incorrect Answers"]), "source": r["Source"]} for r in rows]
    return mc, gen


def _snapshot(folder, mc_rows, gen_rows, shards: int = 1):
    for config, rows, schema in (("multiple_choice", mc_rows, MC_SCHEMA), ("generation", gen_rows, GEN_SCHEMA)):
        if rows is None:
            continue
        (folder / config).mkdir(parents=True)
        step = -(-len(rows) // shards)
        for k in range(shards):
            part = rows[k * step:(k + 1) * step]
            pq.write_table(pa.Table.from_pylist(part, schema=schema),
                           folder / config / f"validation-{k:05d}-of-{shards:05d}.parquet")
    return folder


def test_snapshot_folder_reads_each_config_as_the_study_did(tmp_path, csv_rows):
    mc_rows, gen_rows = _hub_rows(csv_rows)
    folder = _snapshot(tmp_path / "hf", mc_rows, gen_rows, shards=2)
    data = load_truthfulqa(folder)
    # MC from the multiple_choice config: its order, its choices (final periods), its labels
    assert [it.question for it in data.mc] == [r["question"] for r in mc_rows]
    for item, row in zip(data.mc, mc_rows):
        assert item.mc1_choices == row["mc1_targets"]["choices"] and item.mc1_labels == row["mc1_targets"]["labels"]
        assert item.mc2_choices == row["mc2_targets"]["choices"] and item.mc2_labels == row["mc2_targets"]["labels"]
        assert all(c.endswith(".") for c in item.mc1_choices + item.mc2_choices)
    # generation from the generation config: the CSV's order and cells
    assert [g.question for g in data.gen] == [r["Question"].strip() for r in csv_rows]
    assert data.gen[0].correct_answers == split_answers(csv_rows[0]["Correct Answers"])
    assert "multiple_choice/validation-00001-of-00002.parquet" in data.source and "generation/" in data.source
    # the study's questions, unstripped: only the generation config holds the one with outer whitespace
    raw = load_truthfulqa(folder, strip_questions=False)
    assert raw.gen[-1].question == csv_rows[-1]["Question"] and raw.gen[-1].question.endswith("? ")
    assert [it.question for it in raw.mc] == [it.question for it in data.mc]
    # --limit N: the first N rows of each config, as the study's select(range(N)): two different question sets
    two = load_truthfulqa(folder, limit=2)
    assert [it.question for it in two.mc] == [r["question"] for r in mc_rows[:2]]
    assert [g.question for g in two.gen] == [r["Question"].strip() for r in csv_rows[:2]]
    assert {it.question for it in two.mc}.isdisjoint(g.question for g in two.gen)
    # one shard of the multiple_choice config, read as a single file in the hub's schema
    shard = load_truthfulqa(folder / "multiple_choice" / "validation-00000-of-00002.parquet")
    assert shard.mc == data.mc[:3]


def test_snapshot_without_a_config_names_the_download(tmp_path, csv_rows):
    mc_rows, _ = _hub_rows(csv_rows)
    folder = _snapshot(tmp_path / "hf", mc_rows, None)
    assert len(load_truthfulqa(folder, need_gen=False).mc) == len(mc_rows)
    with pytest.raises(DataError, match=r"hf.*no generation/\*\.parquet.*download_data\.py --what truthfulqa"):
        load_truthfulqa(folder)
    bad = [dict(mc_rows[0], mc1_targets={"choices": ["A.", "B."], "labels": [1, 1]})]
    with pytest.raises(DataError, match=r"multiple_choice row 1.*mc1_targets needs exactly one label 1"):
        load_truthfulqa(_snapshot(tmp_path / "bad", bad, None), need_gen=False)


def test_csv_questions_unstripped_on_request(truthfulqa_csv):
    data = load_truthfulqa(truthfulqa_csv, strip_questions=False)
    changed = [g.index for g in data.gen if g.question != g.question.strip()]
    assert changed == [TAROT]
    assert load_truthfulqa(truthfulqa_csv).gen[TAROT].question == data.gen[TAROT].question.strip()


def test_a_snapshot_folder_has_a_content_fingerprint(tmp_path, csv_rows):
    """A resumed TruthfulQA run is tied to its data: the folder's fingerprint follows the shards' contents."""
    from aligner.core.runner import data_fingerprint

    mc_rows, gen_rows = _hub_rows(csv_rows)
    one = data_fingerprint(_snapshot(tmp_path / "a", mc_rows, gen_rows))
    assert one is not None and one == data_fingerprint(_snapshot(tmp_path / "b", mc_rows, gen_rows))
    assert one != data_fingerprint(_snapshot(tmp_path / "c", mc_rows[:-1], gen_rows))
    assert data_fingerprint(tmp_path / "missing") is None


def test_the_hub_loader_reads_what_a_snapshot_of_it_holds(tmp_path, csv_rows, monkeypatch):
    """``data_from_hub`` (the datasets library, stood in for by the same rows: no hub here) and a snapshot folder
    of those rows give the same items: one reader of the multiple_choice schema for both."""
    import aligner.data.sources.truthfulqa as tqa

    mc_rows, gen_rows = _hub_rows(csv_rows)
    snapshot = load_truthfulqa(_snapshot(tmp_path / "hf", mc_rows, gen_rows), limit=4)

    class Rows(list):
        def select(self, indices):
            return Rows(self[i] for i in indices)

    monkeypatch.setattr(tqa, "_load_hub_config", lambda name, config: Rows(
        pa.Table.from_pylist(mc_rows if config == "multiple_choice" else gen_rows,
                             schema=MC_SCHEMA if config == "multiple_choice" else GEN_SCHEMA).to_pylist()))
    hub = tqa.data_from_hub(limit=4)
    assert hub.mc == snapshot.mc and hub.gen == snapshot.gen and len(hub.mc) == 4 and hub.source == "hf:truthfulqa/truthful_qa"
    bad = [dict(mc_rows[0], mc1_targets={"choices": ["a.", "b."], "labels": [0, 0]})]
    monkeypatch.setattr(tqa, "_load_hub_config", lambda name, config: Rows(bad))
    with pytest.raises(DataError, match="multiple_choice row 1"):
        tqa.data_from_hub(need_gen=False)


def test_multiple_choice_questions_stripped_unless_asked(tmp_path, csv_rows):
    """``strip_questions=False`` reaches the multiple_choice reader too (the hub's MC questions carry no outer
    whitespace, so a padded one is made here)."""
    mc_rows, _ = _hub_rows(csv_rows)
    mc_rows[0] = dict(mc_rows[0], question=" " + mc_rows[0]["question"] + " ")
    folder = _snapshot(tmp_path / "hf", mc_rows, None)
    assert load_truthfulqa(folder, need_gen=False).mc[0].question == mc_rows[0]["question"].strip()
    assert load_truthfulqa(folder, need_gen=False, strip_questions=False).mc[0].question == mc_rows[0]["question"]
