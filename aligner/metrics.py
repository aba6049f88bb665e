"""Text-similarity metrics for generated answers: sentence BLEU, ROUGE-L, embedding cosine, BERTScore.

BLEU is the number the ``evaluate`` library's "bleu" metric reports for one prediction and one
reference (its TensorFlow-NMT ``compute_bleu`` over sacrebleu's 13a tokenisation): n-gram orders 1..4
with clipped counts, no smoothing, the geometric mean of the precisions, brevity penalty
exp(1 - r/c) when the hypothesis is shorter than the reference, 0 when any precision is 0 and 0 for
an empty hypothesis or reference.  One consequence worth knowing: a hypothesis of fewer than four
tokens scores 0 even when it matches the reference exactly (no 4-grams to match).

ROUGE-L is ``rouge_score``'s rougeL F-measure without stemming (what ``evaluate``'s "rouge" reports
for one pair).  The model-based scorers load their model once and score lists in batches.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

logger = logging.getLogger(__name__)

NO_MODEL = ("none", "")


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


def bleu_scores(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    _check_lengths(hypotheses, references)
    return [sentence_bleu(h, r) for h, r in zip(hypotheses, references)]


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


def rouge_l_scores(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    _check_lengths(hypotheses, references)
    return [rouge_l(h, r) for h, r in zip(hypotheses, references)]


# ---------------------------------------------------------------------------------------------
# Model-based scorers
# ---------------------------------------------------------------------------------------------

class EmbeddingSimilarity:
    """Cosine similarity of sentence-transformers embeddings (normalised, so cosine = dot product)."""

    def __init__(self, model_name_or_path: str, device: str = "auto", batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        from aligner.models import ModelLoadError, check_model_path, resolve_device

        path = check_model_path(model_name_or_path, "sentence-embedding model")
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.name = str(model_name_or_path)
        try:
            self.model = SentenceTransformer(path, device=str(self.device))
        except OSError as exc:
            raise ModelLoadError(
                f"could not load the sentence-embedding model '{model_name_or_path}': {str(exc).splitlines()[0]} "
                "-- download it on a machine with hub access and pass the local folder (--embed_model)") from None

    def encode(self, texts: Sequence[str]):
        return self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_tensor=True, show_progress_bar=False)

    def pairwise_cosine(self, texts_a: Sequence[str], texts_b: Sequence[str]) -> list[float]:
        """cos(a_i, b_i) for each i; all texts go through one batched encode."""
        return self.cosine_to_each(texts_a, texts_b)[0]

    def cosine_to_each(self, texts: Sequence[str], *others: Sequence[str]) -> list[list[float]]:
        """For each list in ``others``: [cos(texts_i, other_i) for each i]; ``texts`` is encoded once."""
        for o in others:
            _check_lengths(texts, o)
        n = len(texts)
        if n == 0:
            return [[] for _ in others]
        flat = list(texts)
        for o in others:
            flat.extend(o)
        emb = self.encode(flat).float()
        anchor = emb[:n]
        return [(anchor * emb[n * (k + 1): n * (k + 2)]).sum(-1).tolist() for k in range(len(others))]


def default_bertscore_layers(model_type: str, path: str) -> int | None:
    """bert_score's recommended layer for a model, also when it is given as a local folder: looked up by the
    hub id, the folder's recorded ``_name_or_path`` and the folder name (``models/deberta-v3-large`` ->
    microsoft/deberta-v3-large).  None when unknown (bert_score then asks for --bertscore_num_layers)."""
    import json
    from pathlib import Path

    from bert_score.utils import model2layers

    names = [str(model_type)]
    folder = Path(path)
    if folder.is_dir():
        names.append(folder.name)
        cfg = folder / "config.json"
        if cfg.is_file():
            try:
                names.append(str(json.loads(cfg.read_text()).get("_name_or_path") or ""))
            except (OSError, ValueError):
                pass
    for name in filter(None, names):
        if name in model2layers:
            return model2layers[name]
        base = name.rstrip("/").split("/")[-1]
        matches = [k for k in model2layers if k.split("/")[-1] == base]
        if len(matches) == 1:
            return model2layers[matches[0]]
    return None


class BertScoreF1:
    """BERTScore F1 (no idf, no baseline rescaling) with the model loaded once.

    An empty (or whitespace-only) candidate or reference scores 0, as bert_score itself sets it
    (done here because bert_score's empty-string path breaks on transformers 5 tokenizers).
    """

    def __init__(self, model_type: str, num_layers: int | None = None, device: str = "auto", batch_size: int = 64,
                 lang: str = "en"):
        from bert_score import BERTScorer

        from aligner.models import ModelLoadError, check_model_path, resolve_device

        path = check_model_path(model_type, "BERTScore model")
        self.name = str(model_type)
        self.batch_size = batch_size
        if num_layers is None:
            num_layers = default_bertscore_layers(model_type, path)
        try:
            self.scorer = BERTScorer(model_type=path, num_layers=num_layers, lang=lang,
                                     device=str(resolve_device(device)))
        except KeyError:
            raise ValueError(f"bert_score has no default layer for '{model_type}'; pass --bertscore_num_layers") \
                from None
        except OSError as exc:
            raise ModelLoadError(
                f"could not load the BERTScore model '{model_type}': {str(exc).splitlines()[0]} -- download it on a "
                "machine with hub access and pass the local folder (--bertscore_model), or 'none' to skip") from None

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> list[float]:
        _check_lengths(candidates, references)
        out = [0.0] * len(candidates)
        keep = [i for i, (c, r) in enumerate(zip(candidates, references)) if c.strip() and r.strip()]
        if keep:
            _, _, f1 = self.scorer.score([candidates[i] for i in keep], [references[i] for i in keep],
                                         batch_size=self.batch_size)
            for i, v in zip(keep, f1.tolist()):
                out[i] = float(v)
        return out


def load_bertscorer(model_type: str | None, num_layers: int | None = None, device: str = "auto",
                    batch_size: int = 64) -> BertScoreF1 | None:
    """A BERTScore F1 scorer, or None when ``model_type`` is ``none`` (scores are then reported as null)."""
    if model_type is None or str(model_type).strip().lower() in NO_MODEL:
        return None
    return BertScoreF1(model_type, num_layers=num_layers, device=device, batch_size=batch_size)


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
