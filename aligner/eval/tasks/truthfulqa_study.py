"""How the study's evaluation code turned TruthfulQA texts into token ids, reproduced for ``--study_compat``.

The study ran transformers 4.56 (``evaluation/eval_truthfulqa.py``); two of its rules differ from this
project's context/continuation split (``aligner.core.logprobs.encode_prompt_response``):

* **MC inputs** (``:75-78``): ``tokenizer(f"Q: {q}\\nA: {c}", add_special_tokens=False)`` wrapped by
  ``build_inputs_with_special_tokens``, which for Llama-3's generic ``PreTrainedTokenizerFast`` adds **no BOS**
  (class-specific tokenizers such as Llama-2's ``LlamaTokenizer`` add theirs).  transformers 5 has no such
  method; ``study_special_ids`` does what it did.
* **MC span** (``:79,108-114``): the choice's tokens are found by searching the choice's *standalone*
  tokenisation in the sequence (first occurrence), else taken as the last ``len(choice_ids)`` tokens; for 12% of
  the choices on the real Llama-3 tokenizer that span differs from the continuation's (mostly one token longer,
  the ":" of "A:").  The first token of a sequence is never scored (shifted labels).
* **Judge continuation** (``:191-197``): ``" yes"`` / ``" no"`` tokenised alone and appended to the prefix's
  ids.  On a legacy SentencePiece tokenizer (the Llama-2 judge) transformers 4 tokenised ``" yes"`` as
  ``['▁', '▁yes']`` (it prepended "▁" to a text that already starts with a space); transformers 5 gives
  ``['▁yes']``.  ``tokenize_as_study`` reproduces the 4.x rule, so the judge is asked for ``▁`` and then ``▁yes``
  after "True:", as the study asked it (and as its stored log-probs show the judge expects).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from pathlib import Path

from aligner.core.logprobs import EncodedPair, encode_prompt_response

#: tokenizer classes whose ``build_inputs_with_special_tokens`` (transformers 4) added nothing
GENERIC_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend", "PreTrainedTokenizer")


#: SentencePiece Llama-family tokenizers, whose tokenizer.json normalizer (Prepend "▁", spaces -> "▁") transformers 4
#: applied and transformers 5 replaces by a Metaspace pre-tokenizer
SENTENCEPIECE_LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast")


def tokenize_as_study(tokenizer, text: str) -> list[int]:
    """``tokenizer(text, add_special_tokens=False).input_ids`` as transformers 4.x computed it.  The one rule that
    changed: a SentencePiece Llama tokenizer (in transformers 5: no normalizer, a Metaspace pre-tokenizer) on a text
    starting with a space, which 4.x normalised to "▁" + text with its spaces as "▁" (" yes" -> "▁▁yes" ->
    ['▁', '▁yes']), where 5 gives "▁yes"."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None) if backend is not None else None
    llama_sp = getattr(tokenizer, "legacy", False) or _tokenizer_class(tokenizer) in SENTENCEPIECE_LLAMA_CLASSES
    if (text.startswith(" ") and llama_sp and backend is not None and backend.normalizer is None
            and type(pre).__name__ == "Metaspace"):
        return [t.id for t in backend.model.tokenize("▁" + text.replace(" ", "▁"))]
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


#: per tokenizer: (its class name as tokenizer_config.json names it, the special ids put before and after a text)
_TOKENIZER_FACTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tokenizer_facts(tokenizer) -> tuple[str, list[int], list[int]]:
    # Worked out once per tokenizer: the study's rules are applied to every MC choice and judge request.
    try:
        return _TOKENIZER_FACTS[tokenizer]
    except (KeyError, TypeError):
        pass
    name = _read_tokenizer_class(tokenizer)
    before, after = [], []
    if name not in GENERIC_TOKENIZER_CLASSES:
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        for i in range(len(with_special) - len(plain) + 1):
            if with_special[i: i + len(plain)] == plain:
                before, after = list(with_special[:i]), list(with_special[i + len(plain):])
                break
    facts = (name, before, after)
    try:
        _TOKENIZER_FACTS[tokenizer] = facts
    except TypeError:  # an object that takes no weak reference is simply not cached
        pass
    return facts


def _tokenizer_class(tokenizer) -> str:
    return _tokenizer_facts(tokenizer)[0]


def _read_tokenizer_class(tokenizer) -> str:
    cfg = Path(str(getattr(tokenizer, "name_or_path", "") or "")) / "tokenizer_config.json"
    if cfg.is_file():
        try:
            name = json.loads(cfg.read_text(encoding="utf-8")).get("tokenizer_class")
            if name:
                return str(name)
        except (OSError, ValueError):
            pass
    return type(tokenizer).__name__


def study_special_ids(tokenizer, ids: Sequence[int]) -> list[int]:
    """What ``tokenizer.build_inputs_with_special_tokens(ids)`` returned in transformers 4: ``ids`` unchanged for
    a generic fast tokenizer (Llama-3), else the tokenizer's own special tokens around them (Llama-2: BOS)."""
    _, before, after = _tokenizer_facts(tokenizer)
    return [*before, *ids, *after]


def find_subsequence(haystack: Sequence[int], needle: Sequence[int]) -> int:
    """First index of ``needle`` in ``haystack``, -1 when absent (the study's ``find_subsequence``)."""
    if not needle:
        return 0
    for i in range(len(haystack) - len(needle) + 1):
        if list(haystack[i: i + len(needle)]) == list(needle):
            return i
    return -1


def study_mc_pair(tokenizer, context: str, continuation: str) -> tuple[EncodedPair, bool]:
    """The study's MC input for one choice (``continuation`` = " " + choice) and whether its scored span differs
    from the context/continuation split's tokens."""
    choice = continuation[1:] if continuation.startswith(" ") else continuation
    seq = study_special_ids(tokenizer, tokenize_as_study(tokenizer, context + continuation))
    choice_ids = tokenize_as_study(tokenizer, choice)
    start = find_subsequence(seq, choice_ids)
    if start == -1:
        start = max(0, len(seq) - len(choice_ids))
    end = start + len(choice_ids)
    pair = EncodedPair(seq[:end], max(start, 1))
    ours = encode_prompt_response(tokenizer, context, continuation)
    differs = seq[start:end] != ours.input_ids[ours.response_start:]
    return pair, differs


def study_judge_pairs(tokenizer, prefix: str, continuations: Sequence[str]) -> list[EncodedPair]:
    """The study's judge inputs, one per continuation: prefix ids + the continuation's standalone ids, wrapped with
    the special tokens; the continuation is the last tokens.  The prefix is tokenised once."""
    prefix_ids = tokenize_as_study(tokenizer, prefix)
    out = []
    for continuation in continuations:
        cont_ids = tokenize_as_study(tokenizer, continuation)
        seq = study_special_ids(tokenizer, prefix_ids + cont_ids)
        out.append(EncodedPair(seq, len(seq) - len(cont_ids)))
    return out
