"""Retrieval corpus and NQ RAG set: NQ in both formats, sentence splitting, chunking invariants, FAISS
against brute force, and the cross-encoder rerank against a one-pair-at-a-time reference."""

import json

import numpy as np
import pytest
from test_data_prep_common import halueval_rows, load_script, nq_example, write_jsonl_gz

from aligner.core.io import DataError
from aligner.core.runner import RunMismatchError
from aligner.data.retrieval import CrossEncoderReranker, chunk_words, split_sentences
from aligner.data.sources.nq import (
    collect_articles,
    find_nq_shards,
    iter_nq_records,
    nq_answers,
    nq_title,
    nq_tokens,
)

INDEX_SCRIPT = "first_improvement/data_prep/scripts/retrieval/faiss_index_creator.py"
NQ_SCRIPT = "first_improvement/data_prep/scripts/create_nq_training.py"
RERANK_SCRIPT = "first_improvement/data_prep/scripts/retrieval/faiss_rerank.py"


def test_split_sentences_handles_abbreviations_and_nq_spacing():
    text = ("Dr. Smith went to Washington. He arrived at 5 p.m. on Monday! Was it the U.S. Army? Yes. "
            "J. R. R. Tolkien wrote it in 1937 . The book sold well")
    assert split_sentences(text) == [
        "Dr. Smith went to Washington.", "He arrived at 5 p.m. on Monday!", "Was it the U.S. Army?", "Yes.",
        "J. R. R. Tolkien wrote it in 1937 .", "The book sold well"]
    assert split_sentences("   ") == []


def _long_text(halueval_file, n_rows=60, giant=700):
    rows = halueval_rows(halueval_file, n_rows)
    body = " ".join(r["knowledge"].strip() for r in rows)
    giant_sentence = " ".join(f"lorem{i}" for i in range(giant)) + "."
    return body + " " + giant_sentence + " " + body, giant_sentence.split()


@pytest.mark.parametrize("max_words,overlap", [(512, 50), (40, 7)])
def test_chunks_bounded_overlapping_and_lossless(halueval_file, max_words, overlap):
    text, giant = _long_text(halueval_file)
    words = text.split()
    chunks = chunk_words(text, max_words, overlap)
    assert len(chunks) >= 3
    split = [c.split() for c in chunks]
    assert all(0 < len(c) <= max_words for c in split)
    for a, b in zip(split, split[1:]):
        assert a[-overlap:] == b[:overlap]
    rebuilt = split[0] + [w for c in split[1:] for w in c[overlap:]]
    assert rebuilt == words
    # Sentence-aligned: a chunk ends where a sentence ends, unless that sentence alone is longer than the
    # room a chunk has after its overlap (then it is cut).
    sent_of, sent_len, last_of = [], [], set()
    for k, sent in enumerate(split_sentences(text)):
        n = len(sent.split())
        sent_of += [k] * n
        sent_len.append(n)
        last_of.add(len(sent_of) - 1)
    end = 0
    for c in split[:-1]:
        end = (end - overlap if end else 0) + len(c)
        assert end - 1 in last_of or sent_len[sent_of[end - 1]] > max_words - overlap
    assert max(sent_len) >= len(giant) > max_words


def _nq_fixture(tmp_path, halueval_file):
    """Original-format shard: Article 0 (long: several chunks) and Articles 1-4 with a question each
    (Article 4 annotated with its long answer only), Article 5 with no answer.  Simplified-format shard:
    Article 1 again (duplicate title), a too-short article, Article 7."""
    rows = halueval_rows(halueval_file, 80)

    def token_aligned(r):
        a, k = r["right_answer"].split(), r["knowledge"].split()
        return bool(a) and any(k[i:i + len(a)] == a for i in range(len(k)))

    first, rest = rows[:16], rows[16:]
    answered = [r for r in rest if token_aligned(r)][:4]
    filler = [r for r in rest if r not in answered]
    q = [next(r for r in first if token_aligned(r)), *answered]
    paras = [[r["knowledge"].strip() for r in first]]
    paras += [[u["knowledge"].strip()] + [f["knowledge"].strip() for f in filler[2 * i: 2 * i + 2]]
              for i, u in enumerate(answered)]
    original = [nq_example(f"o{i}", f"Article {i}", paras[i], q[i]["question"], q[i]["right_answer"].strip(),
                           "original", long_only=(i == 4)) for i in range(5)]
    original.append(nq_example("o5", "Article 5", [f["knowledge"].strip() for f in filler[8:10]],
                               "a question without any answer", None, "original"))
    simplified = [
        nq_example("s0", "Article 1", paras[1], q[1]["question"], q[1]["right_answer"].strip(),
                   "simplified"),  # duplicate title
        nq_example("s1", "Tiny", ["Too short to keep."], "what is tiny", "short", "simplified"),
        nq_example("s2", "Article 7", [f["knowledge"].strip() for f in filler[10:12]], rows[64]["question"], None,
                   "simplified"),
    ]
    nq_dir = tmp_path / "nq"
    write_jsonl_gz(nq_dir / "nq-train-00.jsonl.gz", original)
    write_jsonl_gz(nq_dir / "nq-dev-00.jsonl.gz", simplified)
    return nq_dir, original, simplified, q


def test_nq_reading_both_formats(tmp_path, halueval_file):
    nq_dir, original, simplified, q = _nq_fixture(tmp_path, halueval_file)
    shards = find_nq_shards(nq_dir)
    assert [p.name for p in shards] == ["nq-train-00.jsonl.gz", "nq-dev-00.jsonl.gz"]
    assert [p.name for p in find_nq_shards(nq_dir, "train")] == ["nq-train-00.jsonl.gz"]
    # The two formats of the same article give the same title, tokens and plain text.
    o, s = original[1], simplified[0]
    assert nq_title(o) == nq_title(s) == "Article 1"
    assert nq_tokens(o) == nq_tokens(s)
    assert nq_answers(s) == ([q[1]["right_answer"].strip()], "short")
    long_ans, kind = nq_answers(original[4])
    assert kind == "long" and q[4]["right_answer"].strip() in long_ans[0] and "<P>" not in long_ans[0]
    assert nq_answers(original[5]) == ([], "none")

    articles, stats = collect_articles(shards, min_chars=200, progress=False)
    assert stats.records == 9 and stats.duplicate_titles == 1 and stats.too_short == 1
    titles = [a.title for a in articles]
    assert len(titles) == len(set(titles)) == 7
    for a in articles:
        assert not any(t.startswith("<") and t.endswith(">") for t in a.text.split())
    art1 = next(a for a in articles if a.title == "Article 1")
    paragraph_words = [w for t, html in nq_tokens(o)[3:] if not html for w in [t]]
    assert art1.text.split() == ["Article", "1", *paragraph_words]


def test_nq_malformed_line_names_file_and_line(tmp_path):
    good = {"question_text": "q", "document_text": "<P> a b </P>"}
    path = write_jsonl_gz(tmp_path / "bad.jsonl.gz", [good], extra_lines=["{not json"])
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz, line 2"):
        list(iter_nq_records(path))
    stats = {}
    assert len(list(iter_nq_records(path, skip_invalid=True, stats=stats))) == 1 and stats["invalid"] == 1


def test_reranker_batched_matches_single_pair_reference(tiny_judge_dir):
    import torch

    rr = CrossEncoderReranker(str(tiny_judge_dir), batch_size=3, device="cpu")
    passages = ["Paris is the capital of France.", "The Nile is long.", "x", "Cats purr when content and calm.",
                "Water boils at 100 degrees Celsius at sea level."]
    got = rr.score("what is the capital of france", passages)
    ref = []
    with torch.no_grad():
        for p in passages:
            enc = rr.tokenizer("what is the capital of france", p, return_tensors="pt")
            logits = rr.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0]
            ref.append(torch.log_softmax(logits.float(), -1)[-1].item())
    assert np.allclose(got, ref, atol=1e-5)
    order = rr.rerank("what is the capital of france", passages, top_k=3)
    assert [i for i, _ in order] == sorted(range(5), key=lambda i: -ref[i])[:3]


def test_index_and_nq_rag_end_to_end(tmp_path, halueval_file, minilm_dir, tiny_judge_dir):
    import faiss

    nq_dir, original, simplified, q = _nq_fixture(tmp_path, halueval_file)
    out = tmp_path / "retrieval"
    counts = load_script(INDEX_SCRIPT).main(["--nq_dir", str(nq_dir), "--output_dir", str(out), "--embed_model",
                                             str(minilm_dir), "--gpu_index", "--device", "cpu", "--no_progress"])
    chunks = [json.loads(x) for x in (out / "nq_wiki_chunks.jsonl").read_text().splitlines()]
    meta = json.loads((out / "metadata.json").read_text())
    assert counts["articles"] == meta["total_articles"] == 7 and counts["duplicate_titles"] == 1
    assert counts["chunks"] == meta["total_chunks"] == len(chunks) > 7  # Article 0 needs several chunks
    assert meta["chunking"]["chunk_size_words"] == 512 and meta["chunking"]["chunk_overlap_words"] == 50
    assert all(set(c) == {"title", "text", "url"} and len(c["text"].split()) <= 512 for c in chunks)
    a0 = [c["text"].split() for c in chunks if c["title"] == "Article 0"]
    assert len(a0) >= 2 and all(x[-50:] == y[:50] for x, y in zip(a0, a0[1:]))
    assert (out / "run_config.json").is_file() and meta["indexes"]["gpu"]["trained_on_gpu"] is False
    index = faiss.read_index(str(out / "nq_wiki_index.faiss"))
    assert index.ntotal == len(chunks) and faiss.read_index(str(out / "nq_wiki_index_gpu.faiss")).ntotal == len(chunks)

    rag = tmp_path / "nq" / "train_nq_rag.jsonl"
    counts = load_script(NQ_SCRIPT).main([
        "--nq_dir", str(nq_dir), "--index_file", str(out / "nq_wiki_index.faiss"), "--chunks_file",
        str(out / "nq_wiki_chunks.jsonl"), "--embed_model", str(minilm_dir), "--rerank_model", str(tiny_judge_dir),
        "--output_file", str(rag), "--device", "cpu", "--no_progress", "--rerank_max_length", "96"])
    recs = [json.loads(x) for x in rag.read_text().splitlines()]
    # Every record read is written (the study's create_nq_*.py did), the one without a gold answer with [].
    assert counts["nq_records_read"] == 6 and counts["no_answer"] == 1 and counts["skipped_no_answer"] == 0
    assert counts["long_answer_fallbacks"] == 1 and counts["written"] == len(recs) == 6
    assert [r["example_id"] for r in recs] == ["o0", "o1", "o2", "o3", "o4", "o5"]
    assert recs[0]["answers"] == [q[0]["right_answer"].strip()] and recs[5]["answers"] == []
    # Reference: the corpus is smaller than top-100, so every chunk is retrieved; rerank them one by one.
    rr = CrossEncoderReranker(str(tiny_judge_dir), batch_size=1, max_length=96, device="cpu")
    for r in recs:
        assert set(r) >= {"example_id", "question", "contexts", "context", "answers"}
        assert len(r["contexts"]) == 5 and r["context"] == "\n\n".join(r["contexts"])
        scores = rr.score(r["question"], [c["text"] for c in chunks])
        best = sorted(range(len(chunks)), key=lambda i: -scores[i])[:5]
        assert r["contexts"] == [chunks[i]["text"] for i in best]
        assert np.allclose(r["rerank_scores"], [scores[i] for i in best], atol=1e-4)
    # The index holds the normalised MiniLM embedding of each chunk, and its search equals brute force.
    from sentence_transformers import SentenceTransformer

    vectors = index.reconstruct_n(0, index.ntotal)
    st = SentenceTransformer(str(minilm_dir), device="cpu")
    one, qemb = st.encode([chunks[-1]["text"], recs[0]["question"]], normalize_embeddings=True)
    assert np.allclose(vectors[-1], one, atol=1e-4) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    _, ids = index.search(np.asarray(qemb[None], dtype=np.float32), 3)
    assert list(ids[0]) == list(np.argsort(-(vectors @ qemb))[:3])

    # The stand-alone retrieve+rerank command agrees with the RAG record.
    res_file = tmp_path / "rerank.jsonl"
    load_script(RERANK_SCRIPT).main([
        "--index_file", str(out / "nq_wiki_index.faiss"), "--chunks_file", str(out / "nq_wiki_chunks.jsonl"),
        "--embed_model", str(minilm_dir), "--rerank_model", str(tiny_judge_dir), "--query", recs[1]["question"],
        "--output_file", str(res_file), "--device", "cpu", "--rerank_max_length", "96"])
    res = json.loads(res_file.read_text().splitlines()[0])
    assert res["contexts"] == recs[1]["contexts"]

    # --resume keeps what is there and writes nothing new; a resume with other reranking settings is refused.
    resume = ["--nq_dir", str(nq_dir), "--index_file", str(out / "nq_wiki_index.faiss"), "--chunks_file",
              str(out / "nq_wiki_chunks.jsonl"), "--embed_model", str(minilm_dir), "--rerank_model",
              str(tiny_judge_dir), "--output_file", str(rag), "--device", "cpu", "--no_progress", "--resume"]
    counts = load_script(NQ_SCRIPT).main([*resume, "--rerank_max_length", "96"])
    assert counts["already_done"] == 6 and counts["written"] == 0 and len(rag.read_text().splitlines()) == 6
    with pytest.raises(RunMismatchError, match="rerank_max_length"):
        load_script(NQ_SCRIPT).main(resume)
