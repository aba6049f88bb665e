"""Tokenization of preference pairs: the prompt formats, the response span, and what happens to over-long pairs.

Prompt formats:

* ``plain`` (the study's first run): ``aligner.prompts.plain_dpo_prompt(context, prompt, plain_prompt)`` and the
  bare response; BOS is added by the tokenizer.  ``plain_prompt="raw"`` glues context + question + answer as the
  study did.
* ``chat`` (``train_dpop_improved.py``, the latest recipe): the system + "Context: ...\\n\\nQuestion: ..." user turn
  rendered with the tokenizer's chat template (``dpo_chat_messages`` + ``render_chat``), and the tokenizer's EOS
  appended to both responses so the model also learns where an answer ends.

Over-long pairs (``truncation``):

* ``context`` (default): the *context* is cut (from its end, in tokens) until prompt + the longer response fits
  ``max_length``; the responses are never cut.  A pair whose responses do not fit even with no context is
  skipped.
* ``right`` (the study's first and improved recipes): the whole sequence is cut at ``max_length`` from the right,
  so a long prompt loses the response's end or all of it (then the pair has no response token: zero gradient).
* ``budget`` (the study's latest recipe, ``DPOProcessor``): the context is cut to
  ``max_length - len(prefix) - len(longer answer + EOS)`` tokens, with the prefix measured on the budget user turn
  "Question: ...\\n\\nContext: " (one BOS), then decoded and the pair built; the sequence is then cut from the
  right at ``max_length`` (with two BOS, the longer answer loses its EOS); a pair with a negative budget is skipped.
  The decoded context gets the tokenizer's ``clean_up_tokenization_spaces`` rule when its config asks for it
  (Llama-3.2's does): transformers 4.56, which the study ran, applied it on every decode ("U.S ." -> "U.S.",
  "is n't" -> "isn't"), transformers 5 skips it for BPE tokenizers (``aligner.core.text``).

All are counted in ``TokenizeStats`` and logged.  Two of the study's off-by-ones are available for side-by-side
runs: ``double_bos`` (the chat text tokenized with special tokens although it starts with BOS) and
``score_last_prompt_token`` (the response span starts one token early: ``len(prompt tokens) - 1``, as the
study's ``prompt_lens`` masks).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aligner.core.logprobs import EncodedPair, encode_prompt_response, wants_special_tokens
from aligner.core.text import clean_up_tokenization_spaces
from aligner.prompts import (
    DEFAULT_DATE_STRING,
    DPO_IMPROVED_SYSTEM,
    DPO_LATEST_BUDGET_USER,
    dpo_chat_messages,
    plain_dpo_prompt,
    render_chat,
)

if TYPE_CHECKING:
    from aligner.train.preference import PreferencePair

logger = logging.getLogger(__name__)

PROMPT_FORMATS = ("plain", "chat")
TRUNCATION_MODES = ("context", "right", "budget")



@dataclass
class TokenizedPair:
    chosen: EncodedPair
    rejected: EncodedPair
    truncated: bool = False       # the context was cut
    response_cut: bool = False    # right truncation cut a response (or both)
    response_empty: bool = False  # ... down to no token at all

    @property
    def length(self) -> int:
        return max(len(self.chosen.input_ids), len(self.rejected.input_ids))

    @functools.cached_property
    def shared_prefix(self) -> int:
        """Tokens the chosen and rejected sequences share before the first scored token of either (the packed
        layout computes them once); asked for several times per step, counted once."""
        c, r = self.chosen.input_ids, self.rejected.input_ids
        limit = min(self.chosen.response_start, self.rejected.response_start)
        n = 0
        while n < limit and c[n] == r[n]:
            n += 1
        return n


@dataclass
class TokenizeStats:
    n_in: int = 0
    n_kept: int = 0
    n_truncated: int = 0       # context cut to fit max_length
    n_skipped: int = 0         # responses too long to fit even without context (budget: a negative budget)
    n_response_cut: int = 0    # right truncation: a response lost its end (the EOS first, in the chat format)
    n_response_empty: int = 0  # right truncation: a response lost every token (no gradient from that side)

    def line(self, name: str = "") -> str:
        where = f"{name}: " if name else ""
        cut = (f", {self.n_response_cut} with a response cut from the right ({self.n_response_empty} with a response "
               f"left without any token)" if self.n_response_cut else "")
        return (f"{where}{self.n_kept}/{self.n_in} pairs kept, {self.n_truncated} with the context truncated, "
                f"{self.n_skipped} skipped (response longer than max_length){cut}")


class PairTokenizer:
    """Turns ``PreferencePair`` into token ids with the response span marked (see the module docstring)."""

    def __init__(self, tokenizer, max_length: int = 1024, prompt_format: str = "plain",
                 append_eos: bool | None = None, date_string: str = DEFAULT_DATE_STRING, *,
                 system_prompt: str | None = None, plain_prompt: str = "separated", truncation: str = "context",
                 double_bos: bool = False, score_last_prompt_token: bool = False):
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, not {prompt_format!r}")
        if max_length < 2:
            raise ValueError("max_length must be at least 2")
        if truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, not {truncation!r}")
        if truncation == "budget" and prompt_format != "chat":
            raise ValueError("truncation 'budget' (the latest recipe's) needs the chat prompt format")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.prompt_format = prompt_format
        self.date_string = date_string
        self.append_eos = (prompt_format == "chat") if append_eos is None else bool(append_eos)
        if self.append_eos and not tokenizer.eos_token:
            raise ValueError("append_eos needs a tokenizer with an EOS token")
        self.system_prompt = system_prompt or DPO_IMPROVED_SYSTEM
        self.plain_prompt = plain_prompt
        self.truncation = truncation
        self.special: bool | str = True if double_bos else "auto"
        self.score_last_prompt_token = bool(score_last_prompt_token)

    @classmethod
    def from_config(cls, tokenizer, cfg) -> PairTokenizer:
        """The tokenizer a ``DPOPTrainingConfig`` asks for."""
        return cls(tokenizer, cfg.max_length, cfg.prompt_format, cfg.append_eos, cfg.date_string,
                   system_prompt=cfg.system_prompt, plain_prompt=cfg.plain_prompt, truncation=cfg.truncation,
                   double_bos=cfg.double_bos, score_last_prompt_token=cfg.score_last_prompt_token)

    def build_prompt(self, context: str, prompt: str) -> str:
        if self.prompt_format == "chat":
            return render_chat(self.tokenizer, dpo_chat_messages(context, prompt, self.system_prompt),
                               date_string=self.date_string)
        return plain_dpo_prompt(context, prompt, self.plain_prompt)

    def response_text(self, response: str) -> str:
        return response + self.tokenizer.eos_token if self.append_eos else response

    def _encode(self, pair: PreferencePair, context: str) -> TokenizedPair:
        prompt = self.build_prompt(context, pair.prompt)
        sides = [encode_prompt_response(self.tokenizer, prompt, self.response_text(r), self.special)
                 for r in (pair.chosen, pair.rejected)]
        if self.score_last_prompt_token:
            # The study's span, counted as its prompt_lens mask (n = the prompt's tokens as in the full sequence,
            # L = max_length): the first and improved recipes start at min(n - 1, L) (a prompt tokenized without
            # the one BOS the full sequence has), the latest at min(n, L) - 1 (train_dpop.py:157,198); both score
            # the last prompt token, and differ only when the prompt alone is longer than L.  Position 0 never.
            special = wants_special_tokens(self.tokenizer, prompt, self.special)
            n = len(self.tokenizer(prompt, add_special_tokens=special)["input_ids"])
            start = min(n, self.max_length) - 1 if self.truncation == "budget" else min(n - 1, self.max_length)
            sides = [EncodedPair(e.input_ids, max(1, min(start, len(e.input_ids)))) for e in sides]
        return TokenizedPair(*sides)

    def _right_cut(self, pair: TokenizedPair) -> TokenizedPair:
        """Cut both sequences at ``max_length`` from the right (the study's ``truncation=True``)."""
        sides = []
        for enc in (pair.chosen, pair.rejected):
            if len(enc.input_ids) > self.max_length:
                pair.response_cut = True
                enc = EncodedPair(enc.input_ids[: self.max_length], min(enc.response_start, self.max_length))
                pair.response_empty = pair.response_empty or enc.n_response == 0
            sides.append(enc)
        pair.chosen, pair.rejected = sides
        pair.__dict__.pop("shared_prefix", None)  # a cached value would describe the uncut sequences
        return pair

    def _budget_context(self, pair: PreferencePair) -> tuple[str, bool] | None:
        """The latest recipe's context (``DPOProcessor._process_single``): cut to the token budget left by the
        budget prefix and the longer answer + EOS, then decoded; None when the budget is negative."""
        tok = self.tokenizer
        msgs = [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": DPO_LATEST_BUDGET_USER.format(question=pair.prompt)}]
        prefix = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True,
                                         date_string=self.date_string)
        prefix_ids = prefix["input_ids"] if hasattr(prefix, "keys") else prefix
        answer = max(len(tok(self.response_text(r), add_special_tokens=False)["input_ids"])
                     for r in (pair.chosen, pair.rejected))
        avail = self.max_length - (len(prefix_ids) + answer)
        if avail < 0:
            return None
        ctx_ids = tok(pair.context, add_special_tokens=False)["input_ids"]
        # The study decoded every context, cut or not (FU:120-125), on transformers 4.56, which cleaned it up when
        # the tokenizer's config says so; decoded here without transformers' own clean-up, which version 5 runs for
        # some tokenizers and not for BPE, so that the rule is applied once whatever the tokenizer.
        text = tok.decode(ctx_ids[:avail], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if getattr(tok, "clean_up_tokenization_spaces", False):
            text = clean_up_tokenization_spaces(text)
        return text, len(ctx_ids) > avail

    def encode(self, pair: PreferencePair) -> TokenizedPair | None:
        """Token ids for the pair, cut to ``max_length`` as ``truncation`` says; None when it is skipped."""
        if self.truncation == "right":
            return self._right_cut(self._encode(pair, pair.context))
        if self.truncation == "budget":
            budget = self._budget_context(pair)
            if budget is None:
                return None
            out = self._right_cut(self._encode(pair, budget[0]))
            out.truncated = budget[1]
            return out
        full = self._encode(pair, pair.context)
        if full.length <= self.max_length:
            return full
        bare = self._encode(pair, "")
        if bare.length > self.max_length:
            return None
        ctx_ids = self.tokenizer(pair.context, add_special_tokens=False)["input_ids"]
        keep = len(ctx_ids) - (full.length - self.max_length)
        while keep > 0:
            # Decoding a token prefix and re-tokenizing can shift a token or two; step down until it fits.
            cut = self._encode(pair, self.tokenizer.decode(ctx_ids[:keep]))
            if cut.length <= self.max_length:
                cut.truncated = True
                return cut
            keep -= max(1, cut.length - self.max_length)
        bare.truncated = True
        return bare

    def encode_all(self, pairs: Sequence[PreferencePair], name: str = "",
                   progress: bool = False) -> tuple[list[TokenizedPair], TokenizeStats]:
        """Encode every pair; returns the kept ones (input order) and the counts."""
        from tqdm.auto import tqdm

        stats = TokenizeStats(n_in=len(pairs))
        kept: list[TokenizedPair] = []
        for pair in tqdm(pairs, desc=f"tokenize {name}".strip(), disable=not progress, unit="pair"):
            enc = self.encode(pair)
            if enc is None:
                stats.n_skipped += 1
                continue
            stats.n_truncated += int(enc.truncated)
            stats.n_response_cut += int(enc.response_cut)
            stats.n_response_empty += int(enc.response_empty)
            kept.append(enc)
        stats.n_kept = len(kept)
        if stats.n_truncated or stats.n_skipped or stats.n_response_cut:
            logger.warning(stats.line(name))
        else:
            logger.info(stats.line(name))
        return kept, stats
