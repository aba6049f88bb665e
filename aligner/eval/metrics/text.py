"""Text-similarity metrics for generated answers: sentence BLEU, ROUGE-L, embedding cosine, BERTScore.

BLEU is the number the ``evaluate`` library's "bleu" metric reports for one prediction and one
reference (its TensorFlow-NMT ``compute_bleu`` over sacrebleu's 13a tokenisation): n-gram orders 1..4
with clipped counts, no smoothing, the geometric mean of the precisions, brevity penalty
exp(1 - r/c) when the hypothesis is shorter than the reference, 0 when any precision is 0 and 0 for
an empty hypothesis or reference.  One consequence worth knowing: a hypothesis of fewer than four
tokens scores 0 even when it matches the reference exactly (no 4-grams to match).

ROUGE-L is ``rouge_score``'s rougeL F-measure without stemming (what ``evaluate``'s "rouge" reports
for one pair).  The model-based scorers load their model once and score lists in batches.

An exact answer match compares ``normalize_answer`` forms: lower case, punctuation removed, whitespace runs as
one space (SQuAD's normalisation without its article removal: "the" can be the whole difference between a
world's right answer and its distractor).
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

logger = logging.getLogger(__name__)

NO_MODEL = ("none", "")


def normalize_answer(text: str | None) -> str:
    """``text`` lower-cased, every punctuation character (Unicode category P*) removed, whitespace runs joined
    by one space, stripped."""
    kept = "".join(ch for ch in str(text or "").lower() if not unicodedata.category(ch).startswith("P"))
    return " ".join(kept.split())


# ---------------------------------------------------------------------------------------------
# BLEU
# ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _tokenizer_13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def tokenize_13a(text: str) -> list[str]:
    """sacrebleu's 13a (mteval-v13a) tokenisation, as a token list."""
    # sacrebleu returns the tokens joined by single spaces.
    return _tokenizer_13a()(text or "").split()


def ngram_counts(tokens: Sequence[str], max_order: int) -> Counter:
    """Counts of every n-gram of order 1..max_order (tuples of tokens)."""
    counts: Counter = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i: i + n])] += 1
    return counts


@dataclass(frozen=True)
class BleuStats:
    bleu: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    length_ratio: float
    translation_length: int
    reference_length: int


def bleu_stats(hypothesis: str, reference: str, max_order: int = 4) -> BleuStats:
    """Sentence BLEU of one hypothesis against one reference, with its parts (see the module docstring)."""
    hyp = tokenize_13a(hypothesis)
    ref = tokenize_13a(reference)
    hyp_counts = ngram_counts(hyp, max_order)
    ref_counts = ngram_counts(ref, max_order)
    matches = [0] * max_order
    for gram, n in (hyp_counts & ref_counts).items():  # & keeps the clipped (minimum) count
        matches[len(gram) - 1] += n
    precisions = []
    for order in range(1, max_order + 1):
        possible = len(hyp) - order + 1
        precisions.append(matches[order - 1] / possible if possible > 0 else 0.0)
    geo_mean = math.exp(sum(math.log(p) for p in precisions) / max_order) if min(precisions) > 0 else 0.0
    c, r = len(hyp), len(ref)
    if c == 0 or r == 0:
        ratio, bp = 0.0, 0.0
    else:
        ratio = c / r
        bp = 1.0 if ratio > 1.0 else math.exp(1.0 - 1.0 / ratio)
    return BleuStats(bleu=geo_mean * bp, precisions=tuple(precisions), brevity_penalty=bp, length_ratio=ratio,
                     translation_length=c, reference_length=r)


def sentence_bleu(hypothesis: str, reference: str, max_order: int = 4) -> float:
    return bleu_stats(hypothesis, reference, max_order).bleu


# ---------------------------------------------------------------------------------------------
# ROUGE-L
# ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _rouge_l_scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge_score tokenisation: lower-cased alphanumeric words, no stemming)."""
    # rouge_score takes (target, prediction).
    return float(_rouge_l_scorer().score(reference or "", hypothesis or "")["rougeL"].fmeasure)


# ---------------------------------------------------------------------------------------------
# aggregation helpers
# ---------------------------------------------------------------------------------------------

def mean(values: Sequence[float | None]) -> float | None:
    """Mean of the values; None when there are none or any is None (a missing score is never averaged as 0)."""
    vals = list(values)
    if not vals or any(v is None for v in vals):
        return None
    return math.fsum(float(v) for v in vals) / len(vals)


def _check_lengths(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} hypotheses but {len(b)} references")
