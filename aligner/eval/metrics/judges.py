"""Judges: faithfulness judges (sequence classifiers: Vectara HHEM, NLI models, the tiny stand-in) and the yes/no
probability a judging causal LM's two continuations give (TruthfulQA's truth judge is in its task,
``aligner.eval.tasks.truthfulqa_scoring``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def yes_no_probability(logp_yes: float, logp_no: float) -> float:
    """P(yes) from the softmax over the two continuation log-probs, computed stably."""
    m = max(logp_yes, logp_no)
    a, b = math.exp(logp_yes - m), math.exp(logp_no - m)
    return a / (a + b)


# --- faithfulness judges (HaluEval two-step flow) -----------------------------------------------

# Label names (lower-cased substrings) that mean "the hypothesis is supported by the premise".
FAITHFUL_LABEL_HINTS = ("entail", "consistent", "faithful", "supported")


def consistent_label_index(id2label: dict, positive_label: str | None = None) -> int:
    """Index of the entailment / consistent class in a classifier's ``id2label``.

    ``positive_label`` names it exactly; otherwise the one label whose name contains a hint from
    ``FAITHFUL_LABEL_HINTS`` (e.g. ENTAILMENT, consistent) is used.  ``inconsistent`` and
    ``not_entailment`` do not count.  Anything ambiguous is an error, never a guess.
    """
    labels = {int(k): str(v) for k, v in id2label.items()}
    if positive_label is not None:
        hits = [i for i, name in labels.items() if name.lower() == positive_label.lower()]
    else:
        def faithful(name: str) -> bool:
            n = name.lower().replace("-", "_")
            if n.startswith(("not", "non", "in", "un")) and not n.startswith("entail"):
                return False
            return any(h in n for h in FAITHFUL_LABEL_HINTS)
        hits = [i for i, name in labels.items() if faithful(name)]
    if len(hits) != 1:
        raise ValueError(f"cannot tell which label means 'consistent/entailment' in id2label {labels}; "
                         "name it with positive_label (--judge_label)")
    return hits[0]


class FaithfulnessJudge:
    """P(the answer is consistent with the knowledge) from a sequence-classification judge.

    Two kinds: Vectara HHEM (remote code with ``predict(list of (premise, hypothesis))`` returning
    consistency scores) and any NLI / 2-label classifier (softmax over the logits of the premise-
    hypothesis pair, the probability of the entailment/consistent label).  Scored in batches.
    """

    def __init__(self, model, tokenizer=None, batch_size: int = 32, max_length: int | None = None,
                 positive_label: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.uses_predict = callable(getattr(model, "predict", None))
        if self.uses_predict:
            self.positive_index = None
        else:
            if tokenizer is None:
                raise ValueError("an NLI judge without a predict method needs its tokenizer")
            self.positive_index = consistent_label_index(model.config.id2label, positive_label)
            limits = [v for v in (getattr(tokenizer, "model_max_length", None),
                                  getattr(model.config, "max_position_embeddings", None), max_length)
                      if isinstance(v, int) and 0 < v < 1_000_000]
            self.max_length = min(limits) if limits else 512

    @torch.no_grad()
    def _score_batch(self, premises: list[str], hypotheses: list[str]) -> list[float]:
        if self.uses_predict:
            scores = self.model.predict(list(zip(premises, hypotheses)))
            scores = torch.as_tensor(scores).float().reshape(-1)
            return scores.cpu().tolist()
        enc = self.tokenizer(premises, hypotheses, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        logits = self.model(**enc).logits.float()
        return torch.softmax(logits, dim=-1)[:, self.positive_index].cpu().tolist()

    def score(self, premises: Sequence[str], hypotheses: Sequence[str], progress: bool = True) -> list[float]:
        if len(premises) != len(hypotheses):
            raise ValueError(f"{len(premises)} premises but {len(hypotheses)} hypotheses")
        from tqdm.auto import tqdm

        out: list[float] = []
        for lo in tqdm(range(0, len(premises), self.batch_size), desc="judge", disable=not progress, unit="batch"):
            out.extend(self._score_batch(list(premises[lo: lo + self.batch_size]),
                                         list(hypotheses[lo: lo + self.batch_size])))
        return out

    def release(self) -> None:
        """Drop the model and give its accelerator memory back (as ``aligner.lm.interface.LM.release``)."""
        import gc

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_faithfulness_judge(path: str, batch_size: int = 32, device: str = "auto", dtype: str = "auto",
                            trust_remote_code: bool = False, positive_label: str | None = None,
                            max_length: int | None = None) -> FaithfulnessJudge:
    """Load HHEM (needs ``trust_remote_code``) or an NLI classifier as a ``FaithfulnessJudge``."""
    from aligner.core.models import load_seq_cls

    model, tok = load_seq_cls(path, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    return FaithfulnessJudge(model, tok, batch_size=batch_size, max_length=max_length, positive_label=positive_label)


def judge_faithfulness(judge: FaithfulnessJudge, knowledge: Sequence[str], answers: Sequence[str],
                       progress: bool = True) -> list[float]:
    """Faithfulness probabilities of ``answers`` given ``knowledge`` (premise = knowledge, hypothesis = answer)."""
    return judge.score(knowledge, answers, progress=progress)
