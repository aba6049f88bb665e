"""BLEU and ROUGE-L on hand-worked cases (and against independent implementations on real HaluEval text);
embedding cosine and BERTScore batched against one-at-a-time / direct library use."""

import math
import re

import pytest

from aligner.core.io import read_jsonl
from aligner.eval.metrics.similarity import BertScoreF1, EmbeddingSimilarity, load_bertscorer
from aligner.eval.metrics.text import bleu_stats, mean, rouge_l, sentence_bleu, tokenize_13a

# --------------------------------------------------------------------------------------------- BLEU


def test_13a_tokenisation_hand_cases():
    assert tokenize_13a("It is in New Delhi, India.") == ["It", "is", "in", "New", "Delhi", ",", "India", "."]
    assert tokenize_13a("...") == [".", ".", "."]
    assert tokenize_13a("3.5 and 1,000 5-year") == ["3.5", "and", "1,000", "5", "-", "year"]
    assert tokenize_13a("Arthur's Magazine") == ["Arthur's", "Magazine"]  # the apostrophe stays
    assert tokenize_13a("") == [] and tokenize_13a("  \n ") == []


def test_bleu_exact_match():
    assert sentence_bleu("the cat sat on the mat", "the cat sat on the mat") == 1.0
    # Fewer than four tokens: no 4-gram can match, so evaluate's BLEU is 0 even for an exact match.
    assert sentence_bleu("Arthur's Magazine", "Arthur's Magazine") == 0.0
    assert sentence_bleu("Delhi", "Delhi") == 0.0


def test_bleu_empty_and_punctuation_only():
    assert sentence_bleu("", "the cat sat on the mat") == 0.0
    assert sentence_bleu("   ", "the cat sat on the mat") == 0.0
    assert sentence_bleu("the cat sat on the mat", "") == 0.0
    s = bleu_stats("", "Delhi")
    assert (s.translation_length, s.reference_length, s.brevity_penalty) == (0, 1, 0.0)
    # "..." is three '.' tokens, none in the reference: unigram precision 0.
    s = bleu_stats("...", "the cat sat on the mat")
    assert s.translation_length == 3 and s.precisions[0] == 0.0 and s.bleu == 0.0
    # "! ! ! !" against a reference holding "!" once: unigrams clipped to 1/4, no "! !" bigram.
    s = bleu_stats("!!!!", "wow ! that is great")
    assert s.precisions[:2] == (0.25, 0.0) and s.bleu == 0.0


def test_bleu_brevity_penalty_hand_worked():
    # hyp 6 tokens, ref 8: matches 6/6, 4/5, 3/4, 2/3; BP = exp(1 - 8/6).
    s = bleu_stats("the cat sat on the mat", "the cat sat on the red mat today")
    assert s.precisions == pytest.approx((1.0, 0.8, 0.75, 2 / 3))
    assert s.brevity_penalty == pytest.approx(math.exp(1 - 8 / 6))
    assert s.length_ratio == pytest.approx(0.75)
    assert s.bleu == pytest.approx(0.4 ** 0.25 * math.exp(-1 / 3), abs=1e-12)


def test_bleu_longer_hypothesis_and_punctuation_tokens():
    # hyp 7, ref 6: 6/7, 5/6, 4/5, 3/4 and no brevity penalty.
    assert sentence_bleu("the cat sat on the mat today", "the cat sat on the mat") == pytest.approx((3 / 7) ** 0.25)
    # the comma and the full stop are tokens of their own: 5/8, 4/7, 3/6, 2/5.
    assert sentence_bleu("It is in New Delhi, India.", "It is in New Delhi") == pytest.approx((1 / 14) ** 0.25)


def test_bleu_clips_repeated_ngrams():
    s = bleu_stats("the the the the the", "the cat sat on the mat")
    assert s.precisions[0] == pytest.approx(2 / 5) and s.bleu == 0.0


def test_bleu_matches_sacrebleu_without_smoothing(halueval_file):
    """Independent implementation: sacrebleu's corpus BLEU of one segment, no smoothing, fixed order 4."""
    from sacrebleu.metrics import BLEU

    ref_bleu = BLEU(tokenize="13a", smooth_method="none", effective_order=False)
    rows = read_jsonl(halueval_file, limit=20)
    n_positive = 0
    for i, r in enumerate(rows):
        ref = r["knowledge"]
        words = ref.split()
        hyp = " ".join(words[: 5 + 3 * i]) + (" " + r["hallucinated_answer"] if i % 2 else "")
        ours = sentence_bleu(hyp, ref)
        theirs = ref_bleu.corpus_score([hyp], [[ref]]).score / 100
        assert ours == pytest.approx(theirs, abs=1e-9), (hyp, ref)
        n_positive += ours > 0
    assert n_positive >= 15


# --------------------------------------------------------------------------------------------- ROUGE-L


def test_rouge_l_hand_worked():
    assert rouge_l("New Delhi", "New Delhi") == 1.0
    assert rouge_l("NEW DELHI!", "new delhi") == 1.0  # lower-cased, punctuation dropped
    assert rouge_l("", "New Delhi") == 0.0
    assert rouge_l("...", "New Delhi") == 0.0
    assert rouge_l("?!", "?!") == 0.0  # no word tokens on either side
    # LCS 2 of hyp 5 / ref 2 tokens: P = 2/5, R = 1, F = 2PR/(P+R) = 4/7.
    assert rouge_l("The capital is New Delhi.", "New Delhi") == pytest.approx(4 / 7)
    assert rouge_l("delhi new", "new delhi") == pytest.approx(0.5)
    # no stemming: "cats" and "cat" differ.
    assert rouge_l("cats", "cat") == 0.0


def _lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _rouge_l_reference(hyp, ref):
    tok = lambda s: [t for t in re.sub(r"[^a-z0-9]+", " ", s.lower()).split() if t]  # noqa: E731
    h, r = tok(hyp), tok(ref)
    lcs = _lcs(h, r)
    if not h or not r or lcs == 0:
        return 0.0
    p, rc = lcs / len(h), lcs / len(r)
    return 2 * p * rc / (p + rc)


def test_rouge_l_matches_plain_lcs_on_real_text(halueval_file):
    rows = read_jsonl(halueval_file, limit=20)
    for r in rows:
        for hyp in (r["hallucinated_answer"], r["knowledge"][:200], r["question"]):
            assert rouge_l(hyp, r["right_answer"]) == pytest.approx(_rouge_l_reference(hyp, r["right_answer"]))


def test_mean_never_averages_missing_values():
    assert mean([1.0, 2.0]) == 1.5
    assert mean([]) is None and mean([1.0, None]) is None


# --------------------------------------------------------------------------------------------- model-based


TEXTS_A = ["Delhi", "The Oberoi Group is based in Delhi.", "", "First for Women was started first.", "..."]
TEXTS_B = ["Delhi", "Mumbai", "Arthur's Magazine", "Arthur's Magazine", "President Richard Nixon"]


def test_embedding_cosine_matches_direct_sentence_transformers(minilm_dir):
    import torch
    from sentence_transformers import SentenceTransformer

    emb = EmbeddingSimilarity(str(minilm_dir), device="cpu", batch_size=2)
    got = emb.pairwise_cosine(TEXTS_A, TEXTS_B)
    model = SentenceTransformer(str(minilm_dir), device="cpu")
    for a, b, g in zip(TEXTS_A, TEXTS_B, got):
        ea, eb = model.encode([a, b], convert_to_tensor=True)  # unnormalised, one pair at a time
        ref = torch.nn.functional.cosine_similarity(ea, eb, dim=0).item()
        assert g == pytest.approx(ref, abs=1e-5)
    assert got[0] == pytest.approx(1.0, abs=1e-5)


def test_bertscore_batched_equals_one_at_a_time(minilm_dir):
    assert load_bertscorer("none") is None and load_bertscorer(None) is None
    batched = BertScoreF1(str(minilm_dir), num_layers=6, device="cpu", batch_size=64)
    got = batched.score(TEXTS_A, TEXTS_B)
    single = [batched.score([a], [b])[0] for a, b in zip(TEXTS_A, TEXTS_B)]
    assert got == pytest.approx(single, abs=1e-5)
    assert got[0] == pytest.approx(1.0, abs=1e-5)  # identical strings
    assert got[2] == 0.0  # empty candidate, as bert_score sets it
    assert batched.score(["  "], ["Delhi"]) == [0.0]
    assert 0 < got[1] < 1 and 0 < got[3] < 1
