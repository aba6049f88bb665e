"""Model-based similarity: sentence-embedding cosine and BERTScore F1, each model loaded once."""

from __future__ import annotations

from collections.abc import Sequence

from aligner.eval.metrics.text import NO_MODEL, _check_lengths


class EmbeddingSimilarity:
    """Cosine similarity of sentence-transformers embeddings (normalised, so cosine = dot product)."""

    def __init__(self, model_name_or_path: str, device: str = "auto", batch_size: int = 64):
        from aligner.core.models import load_sentence_model, resolve_device

        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.name = str(model_name_or_path)
        self.model = load_sentence_model(model_name_or_path, device, "sentence-embedding model (--embed_model)")

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


#: the most tokens BERTScore reads of a sentence when the tokenizer states no real limit (1e30 placeholders)
BERTSCORE_MAX_TOKENS = 512


def cap_model_max_length(tokenizer, model=None) -> int:
    """Replace a placeholder ``model_max_length`` (DeBERTa-v3 ships 1e30, which bert_score hands to the Rust
    tokenizer as ``max_length``: "OverflowError: int too big to convert") by the model's position limit, at most
    512; returns the limit in force."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        limit = min(positions, BERTSCORE_MAX_TOKENS) if isinstance(positions, int) and positions > 0 \
            else BERTSCORE_MAX_TOKENS
        tokenizer.model_max_length = limit
    return limit


class BertScoreF1:
    """BERTScore F1 (no idf, no baseline rescaling) with the model loaded once.

    An empty (or whitespace-only) candidate or reference scores 0, as bert_score itself sets it
    (done here because bert_score's empty-string path breaks on transformers 5 tokenizers).  Where bert_score
    would turn a NaN F1 into 0 (``masked_fill(isnan, 0)``, the unexplained exact zeros of the study's tables),
    the score is NaN here, so the run stops at that row instead of averaging a 0 that was never computed.
    A tokenizer without a real ``model_max_length`` is capped at the model's position limit (``cap_model_max_length``).
    """

    def __init__(self, model_type: str, num_layers: int | None = None, device: str = "auto", batch_size: int = 64,
                 lang: str = "en"):
        from bert_score import BERTScorer

        from aligner.core.models import ModelLoadError, check_model_path, resolve_device

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
        self.max_tokens = cap_model_max_length(self.scorer._tokenizer, self.scorer._model)

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> list[float]:
        import math

        _check_lengths(candidates, references)
        out = [0.0] * len(candidates)
        keep = [i for i, (c, r) in enumerate(zip(candidates, references)) if c.strip() and r.strip()]
        if keep:
            p, r, f1 = self.scorer.score([candidates[i] for i in keep], [references[i] for i in keep],
                                         batch_size=self.batch_size)
            for i, pv, rv, fv in zip(keep, p.tolist(), r.tolist(), f1.tolist()):
                out[i] = float(fv) if math.isfinite(pv) and math.isfinite(rv) else float("nan")
        return out


def load_bertscorer(model_type: str | None, num_layers: int | None = None, device: str = "auto",
                    batch_size: int = 64) -> BertScoreF1 | None:
    """A BERTScore F1 scorer, or None when ``model_type`` is ``none`` (scores are then reported as null)."""
    if model_type is None or str(model_type).strip().lower() in NO_MODEL:
        return None
    return BertScoreF1(model_type, num_layers=num_layers, device=device, batch_size=batch_size)
