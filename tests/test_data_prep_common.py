"""Builders shared by the data-preparation tests (this module holds no tests): NQ shards in both formats,
SQuAD CSVs with NumPy-repr answers from HaluEval rows, an in-process script loader, and an independent
checker of the curriculum phase rules."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

from conftest import REPO, load_script  # noqa: F401  (re-exported for the data-prep tests)


def halueval_rows(path, n: int, start: int = 0) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < start:
                continue
            if len(rows) >= n:
                break
            rows.append(json.loads(line))
    return rows


# --- SQuAD CSV with NumPy-repr answers (the library builds it; re-exported for the tests) ----------

from aligner.data.sft import numpy_repr_answers  # noqa: E402,F401


def write_squad_csv(path, rows: list[dict], unanswerable_every: int = 0) -> list[dict]:
    from aligner.data.sft import halueval_to_squad_csv

    return halueval_to_squad_csv(rows, path, unanswerable_every=unanswerable_every)


# --- Natural Questions shards ------------------------------------------------------------------

def nq_example(example_id, title: str, paragraphs: list[str], question: str, answer: str | None, fmt: str,
               long_only: bool = False) -> dict:
    """An NQ record in the ``original`` (document_tokens) or ``simplified`` (document_text) format.

    The short answer is the first occurrence of ``answer``'s words; with ``long_only`` only the long answer
    (the paragraph holding it) is annotated; with ``answer=None`` nothing is."""
    toks: list[tuple[str, bool]] = [("<H1>", True), *[(w, False) for w in title.split()], ("</H1>", True)]
    para_spans = []
    for p in paragraphs:
        start = len(toks)
        toks.append(("<P>", True))
        toks.extend((w, False) for w in p.split())
        toks.append(("</P>", True))
        para_spans.append((start, len(toks)))
    ann = {"long_answer": {"start_token": -1, "end_token": -1, "candidate_index": -1}, "short_answers": [],
           "yes_no_answer": "NONE"}
    if answer is not None:
        words = answer.split()
        plain = [t for t, _ in toks]
        pos = next(i for i in range(len(plain)) if plain[i:i + len(words)] == words)
        ps, pe = next((s, e) for s, e in para_spans if s <= pos < e)
        ann["long_answer"] = {"start_token": ps, "end_token": pe, "candidate_index": 0}
        if not long_only:
            ann["short_answers"] = [{"start_token": pos, "end_token": pos + len(words)}]
    url = f"https://en.wikipedia.org//w/index.php?title={title.replace(' ', '_')}&oldid=1"
    rec = {"example_id": example_id, "question_text": question, "annotations": [ann]}
    if fmt == "original":
        rec.update(document_title=title, document_url=url,
                   document_tokens=[{"token": t, "html_token": h, "start_byte": 0, "end_byte": 0} for t, h in toks])
    else:
        rec.update(document_url=url.replace("&", "&amp;"), document_text=" ".join(t for t, _ in toks))
    return rec


def write_jsonl_gz(path, records: list[dict], extra_lines: list[str] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        for line in extra_lines:
            fh.write(line + "\n")
    return path


# --- Phase-rule checker ------------------------------------------------------------------------

ALLOWED = {
    "easy": {("ideal", "easy")},
    "medium": {("ideal", "medium"), ("hard", "easy")},
    "hard": {("ideal", "hard"), ("hard", "medium"), ("medium", "easy")},
}


def _read(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def check_phase_rules(pairs_dir, with_context_dir) -> dict[str, int]:
    """Check every line of dpo_pairs_{easy,medium,hard}.jsonl against the fakes it came from: the chosen and
    rejected sides are classified by membership in that item's ideal / fake sets, the combination must be one
    the phase allows, fake-vs-fake pairs use the first fake of each kind, chosen never equals rejected, and
    prompt/context are the item's.  Also checks the line counts against counts derived from the fakes."""
    from aligner.data.negatives import same_answer

    items: dict[int, dict] = {}
    for kind in ("easy", "medium", "hard"):
        for rec in _read(Path(with_context_dir) / f"{kind}_fakes_with_context.jsonl"):
            it = items.setdefault(rec["data_index"], {"ideal": rec["ideal_answer"], "context": rec["context"],
                                                      "question": rec["question"], "easy": [], "medium": [],
                                                      "hard": []})
            assert it["ideal"] == rec["ideal_answer"] and it["context"] == rec["context"]
            it[kind].append(rec["fake_answer"])
    expected = defaultdict(int)
    for it in items.values():
        first = {k: it[k][0] if it[k] else None for k in ("easy", "medium", "hard")}
        expected["easy"] += sum(not same_answer(it["ideal"], f) for f in it["easy"])
        expected["medium"] += sum(not same_answer(it["ideal"], f) for f in it["medium"])
        expected["hard"] += sum(not same_answer(it["ideal"], f) for f in it["hard"])
        for phase, a, b in (("medium", "hard", "easy"), ("hard", "hard", "medium"), ("hard", "medium", "easy")):
            if first[a] and first[b] and not same_answer(first[a], first[b]):
                expected[phase] += 1
    seen = {}
    for phase in ("easy", "medium", "hard"):
        lines = _read(Path(pairs_dir) / f"dpo_pairs_{phase}.jsonl")
        seen[phase] = len(lines)
        for line in lines:
            assert {"prompt", "context", "chosen", "rejected"} <= set(line)
            assert line["chosen"].strip().casefold() != line["rejected"].strip().casefold()
            it = items[line["data_index"]]
            assert line["prompt"] == it["question"] and line["context"] == it["context"]

            def kinds(text, it=it):
                ks = {k for k in ("easy", "medium", "hard") if text in it[k]}
                return ks | ({"ideal"} if text == it["ideal"] else set())

            combos = {(c, r) for c in kinds(line["chosen"]) for r in kinds(line["rejected"])} & ALLOWED[phase]
            assert combos, f"{phase} pair breaks the phase rules: {line}"
            if all(c != "ideal" for c, _ in combos):  # fake vs fake: the first fake of each kind
                assert any(line["chosen"] == it[c][0] and line["rejected"] == it[r][0] for c, r in combos)
        assert seen[phase] == expected[phase], (phase, seen[phase], expected[phase])
    return seen
