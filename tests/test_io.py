import json

import pytest

from aligner.core.io import (
    DataError,
    ReadStats,
    ResumableJsonlWriter,
    read_csv,
    read_jsonl,
    read_records,
    write_json_atomic,
    write_jsonl_atomic,
)


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_broken_line_three_is_named(tmp_path):
    p = _write(tmp_path / "d.jsonl", ['{"a": 1}', '{"a": 2}', '{"a": 3', '{"a": 4}'])
    with pytest.raises(DataError, match=r"d\.jsonl, line 3: invalid JSON"):
        read_jsonl(p)


def test_missing_field_names_line_and_field(tmp_path):
    p = _write(tmp_path / "d.jsonl", ['{"q": "x", "a": "y"}', '{"q": "x"}'])
    with pytest.raises(DataError) as err:
        read_jsonl(p, required=["q", "a"])
    assert "line 2" in str(err.value) and "'a'" in str(err.value)


def test_empty_required_value_is_an_error_unless_allowed(tmp_path):
    p = _write(tmp_path / "d.jsonl", ['{"q": "x", "a": "  "}'])
    with pytest.raises(DataError, match="line 1: empty value"):
        read_jsonl(p, required=["q", "a"])
    assert read_jsonl(p, required=["q", "a"], allow_empty=True) == [{"q": "x", "a": "  "}]


def test_skip_invalid_counts_and_keeps_the_rest(tmp_path):
    p = _write(tmp_path / "d.jsonl", ['{"a": 1}', "not json", "", '[1, 2]', '{"a": 5}', '{"b": 6}'])
    stats = ReadStats()
    rows = read_jsonl(p, required=["a"], skip_invalid=True, stats=stats)
    assert [r["a"] for r in rows] == [1, 5]
    assert stats.n_read == 2 and stats.n_skipped == 3 and stats.skipped_lines == [2, 4, 6]


def test_limit_and_json_array_and_jsonlines_json(tmp_path):
    p = _write(tmp_path / "d.jsonl", [json.dumps({"i": i}) for i in range(10)])
    assert [r["i"] for r in read_jsonl(p, limit=3)] == [0, 1, 2]
    assert len(read_jsonl(p, limit=-1)) == 10
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"i": 0}, {"j": 1}]))
    with pytest.raises(DataError, match="line 2"):
        read_records(arr, required=["i"])
    lines_json = _write(tmp_path / "l.json", ['{"i": 0}', '{"i": 1}'])
    assert read_records(lines_json, required=["i"]) == [{"i": 0}, {"i": 1}]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_csv_missing_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("Question,Best Answer\nq,a\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['Incorrect Answers'\]"):
        read_csv(p, ["Question", "Best Answer", "Incorrect Answers"])
    assert read_csv(p, ["Question"]) == [{"Question": "q", "Best Answer": "a"}]


def test_atomic_writes_leave_no_temp_files(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"x": 1.5})
    write_jsonl_atomic(tmp_path / "r.jsonl", [{"a": 1}, {"a": 2}])
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": 1.5}
    assert read_jsonl(tmp_path / "r.jsonl") == [{"a": 1}, {"a": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "r.jsonl"]


def test_resumable_writer_drops_torn_line_and_resumes(tmp_path):
    p = tmp_path / "out.jsonl"
    with ResumableJsonlWriter(p, key="id") as w:
        w.append({"id": 0, "v": "a"})
        w.append({"id": 1, "v": "b"})
    with p.open("a") as fh:  # a crash in the middle of writing record 2
        fh.write('{"id": 2, "v": "c')
    w = ResumableJsonlWriter(p, key="id", resume=True)
    assert w.done == {0, 1}
    w.append({"id": 2, "v": "c"})
    w.close()
    assert [r["id"] for r in read_jsonl(p)] == [0, 1, 2]
    # without resume the file starts afresh
    ResumableJsonlWriter(p, key="id").close()
    assert p.read_text() == ""


def test_resumable_writer_refuses_corruption_in_the_middle(tmp_path):
    p = _write(tmp_path / "out.jsonl", ['{"id": 0}', "garbage", '{"id": 2}'])
    with pytest.raises(DataError, match="line 2"):
        ResumableJsonlWriter(p, key="id", resume=True)


# --- types per field, JSON arrays, the column of a JSON error (issue: a newcomer's first hour, items 8-9) ----------

def test_a_line_cut_short_reports_its_real_column(tmp_path):
    good = '{"knowledge": "k", "question": "q", "right_answer": "a", "hallucinated_answer": "h"}'
    cut = good[:37]
    p = _write(tmp_path / "qa.json", [good, cut])
    with pytest.raises(DataError) as err:
        read_jsonl(p)
    assert str(err.value) == (f"{p}, line 2: invalid JSON: Unterminated string starting at column 37 of 37 (the line "
                              "ends at column 37: cut short?)")
    p = _write(tmp_path / "qa2.json", [good, good[:36]])  # cut after the comma: the value is missing
    with pytest.raises(DataError, match=r"line 2: invalid JSON: Expecting property name enclosed in double quotes at "
                                        r"column 37 of 36 \(the line ends at column 36: cut short\?\)$"):
        read_jsonl(p)
    p = _write(tmp_path / "mid.jsonl", ['{"a": 1, "b" 2}'])
    with pytest.raises(DataError, match=r"line 1: invalid JSON: Expecting ':' delimiter at column 14 of 15$"):
        read_jsonl(p)
    p = _write(tmp_path / "string.jsonl", ['{"a": "an unfinished'])
    with pytest.raises(DataError, match=r"Unterminated string starting at column 7 of 20 \(.*cut short\?\)"):
        read_jsonl(p)


def test_a_json_array_where_json_lines_are_expected_says_so(tmp_path):
    rows = [{"a": 1}, {"a": 2}]
    for name, text in (("one_line.json", json.dumps(rows)), ("indented.json", json.dumps(rows, indent=2))):
        p = tmp_path / name
        p.write_text(text + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=r"line 1: this file is one JSON array .* JSON lines are expected"):
            read_jsonl(p, skip_invalid=True)  # a whole-file mistake is no line to skip
    assert read_records(tmp_path / "indented.json") == rows  # where an array is allowed, it is read


def test_field_types_are_checked_naming_file_line_and_field(tmp_path):
    types = {"question": str, "answer": (str, type(None)), "n": int}
    p = _write(tmp_path / "t.jsonl", ['{"question": "q", "answer": null, "n": 1}', '{"question": "q", "n": true}'])
    with pytest.raises(DataError) as err:
        read_jsonl(p, types=types)
    assert str(err.value) == f"{p}, line 2: field 'n' must be an integer, got bool true"
    p = _write(tmp_path / "u.jsonl", ['{"question": ["a", "b"]}'])
    with pytest.raises(DataError, match=r"line 1: field 'question' must be a string, got list \[\"a\", \"b\"\]"):
        read_jsonl(p, types=types)
    stats = ReadStats()
    assert read_jsonl(_write(tmp_path / "v.jsonl", ['{"question": 5}', '{"question": "ok"}']), types=types,
                      skip_invalid=True, stats=stats) == [{"question": "ok"}]
    assert stats.skipped_lines == [1]
