"""Teacher-guided hard pairs (further_improvement): a larger instruct model rewrites each raw fact into a
polished true sentence (chosen) and the same sentence with one fabricated detail (rejected).

Flow: prompt (Llama-3 chat format; poison type cycling logical flaw / causal error / unverifiable by
position; context cut to 4,000 characters) -> prompts over 3,000 tokens dropped -> sampled generation
(temperature 0.6, top-p 0.95, up to 1,024 new tokens) appended to a raw file keyed by data_index (so the run
resumes) -> parsing (the whole output as JSON, a fenced ```json block, the first JSON object embedded in the
text, then field-wise regex salvage) -> validation (both sentences present, >= 10 characters, different) ->
context trimmed so that context + question + the longer answer fit the training budget of 7,500 characters
(dropped when fewer than 500 characters of context would remain).

Teacher record: {data_index, question, origin_raw_fact, knowledge, chosen, rejected, type, parse_method}.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from aligner.core.io import ResumableJsonlWriter
from aligner.core.logprobs import wants_special_tokens
from aligner.data.negatives import poison_type_for, same_answer
from aligner.prompts import POISON_TYPES, TEACHER_CONTEXT_CHARS, llama3_chat_prompt, teacher_messages

logger = logging.getLogger(__name__)

CHOSEN_KEY = "chosen_sentence"
REJECTED_KEY = "rejected_sentence"
MAX_INPUT_TOKENS = 3000
CONTEXT_BUDGET_CHARS = 7500
MIN_CONTEXT_CHARS = 500
MIN_SENTENCE_CHARS = 10
TEACHER_STOP = ("<|eot_id|>",)


@dataclass
class TeacherParse:
    chosen: str | None
    rejected: str | None
    method: str | None  # json | fenced_json | embedded_json | salvage | None


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

def _pair_from_obj(obj) -> tuple[str | None, str | None]:
    if not isinstance(obj, dict):
        return None, None
    c, r = obj.get(CHOSEN_KEY), obj.get(REJECTED_KEY)
    return (c if isinstance(c, str) else None), (r if isinstance(r, str) else None)


def _try_json(text: str) -> tuple[str | None, str | None]:
    try:
        return _pair_from_obj(json.loads(text))
    except (json.JSONDecodeError, ValueError):
        return None, None


def _first_embedded_object(text: str) -> tuple[str | None, str | None]:
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        c, r = _pair_from_obj(obj)
        if c is not None or r is not None:
            return c, r
    return None, None


def _unescape(s: str) -> str:
    try:
        return json.loads(f'"{s}"')
    except json.JSONDecodeError:
        return s.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def _salvage_field(text: str, key: str) -> str | None:
    """A field's value from broken JSON: a properly quoted string (escapes allowed), else an unterminated
    string up to the end of its line, else an unquoted value up to the end of its line."""
    head = rf"[\"']?{key}[\"']?\s*[:=]\s*"
    m = re.search(head + r'"((?:[^"\\]|\\.)*)"', text, re.DOTALL)
    if m:
        return _unescape(m.group(1))
    m = re.search(head + r'"([^\n]*)', text)
    if m:
        return _unescape(m.group(1).rstrip().rstrip(",}").rstrip().rstrip('"'))
    m = re.search(head + r"'([^'\n]*)'", text)
    if m:
        return m.group(1)
    m = re.search(head + r"([^\n\"'{][^\n]*)", text)
    if m:
        return m.group(1).strip().rstrip(",}").strip()
    return None


def parse_teacher_output(text: str) -> TeacherParse:
    """(chosen, rejected, method) from a teacher generation; fields missing on every route come back None."""
    raw = (text or "").strip()
    if not raw:
        return TeacherParse(None, None, None)
    candidates = [raw] if raw.startswith("{") else [raw, "{" + raw]
    for cand in candidates:
        c, r = _try_json(cand)
        if c is not None and r is not None:
            return TeacherParse(c, r, "json")
    for block in re.findall(r"```(?:json|JSON)?\s*(.*?)```", raw, re.DOTALL):
        c, r = _try_json(block.strip())
        if c is None or r is None:
            c, r = _first_embedded_object(block)
        if c is not None and r is not None:
            return TeacherParse(c, r, "fenced_json")
    c, r = _first_embedded_object(raw)
    if c is not None and r is not None:
        return TeacherParse(c, r, "embedded_json")
    c, r = _salvage_field(raw, CHOSEN_KEY), _salvage_field(raw, REJECTED_KEY)
    if c is not None or r is not None:
        return TeacherParse(c, r, "salvage")
    return TeacherParse(None, None, None)


def validate_pair(chosen: str | None, rejected: str | None, min_chars: int = MIN_SENTENCE_CHARS) -> str | None:
    """None when the pair is usable, else the reason: missing_field, too_short or identical."""
    if not chosen or not rejected or not chosen.strip() or not rejected.strip():
        return "missing_field"
    if len(chosen.strip()) < min_chars or len(rejected.strip()) < min_chars:
        return "too_short"
    if chosen.strip() == rejected.strip() or same_answer(chosen, rejected):
        return "identical"
    return None


def trim_context_to_budget(context: str, question: str, chosen: str, rejected: str,
                           budget_chars: int = CONTEXT_BUDGET_CHARS, min_context_chars: int = MIN_CONTEXT_CHARS
                           ) -> str | None:
    """The context cut so that context + question + the longer answer <= ``budget_chars`` characters;
    None when fewer than ``min_context_chars`` characters of context would be left.  A context that
    already fits comes back unchanged."""
    context = context or ""
    answer_len = max(len(chosen), len(rejected))
    if len(context) + len(question) + answer_len <= budget_chars:
        return context
    allowed = budget_chars - len(question) - answer_len
    if allowed < min_context_chars:
        return None
    return context[:allowed]


# ---------------------------------------------------------------------------------------------
# Prompting and generation
# ---------------------------------------------------------------------------------------------

def build_teacher_prompt(item: dict, poison_type: str, tokenizer=None, chat_format: str = "llama3",
                         max_context_chars: int = TEACHER_CONTEXT_CHARS) -> str:
    """The rendered prompt: ``llama3`` writes the Llama-3 chat format literally (as the study did);
    ``template`` uses the tokenizer's chat template."""
    msgs = teacher_messages(item["question"], item["ideal_answer"], item.get("context", ""), poison_type,
                            max_context_chars)
    if chat_format == "llama3":
        return llama3_chat_prompt(msgs)
    if chat_format == "template":
        from aligner.prompts import render_chat

        return render_chat(tokenizer, msgs)
    raise ValueError("chat_format must be llama3 or template")


def count_prompt_tokens(tokenizer, prompt: str) -> int:
    return len(tokenizer(prompt, add_special_tokens=wants_special_tokens(tokenizer, prompt))["input_ids"])


def generate_teacher_outputs(lm, view: Sequence[dict], writer: ResumableJsonlWriter, poison_types=POISON_TYPES,
                             chat_format: str = "llama3", max_context_chars: int = TEACHER_CONTEXT_CHARS,
                             max_input_tokens: int = MAX_INPUT_TOKENS, batch_size: int = 64,
                             max_new_tokens: int = 1024, temperature: float = 0.6, top_p: float = 0.95,
                             seed: int | None = 42, progress: bool = True) -> Counter:
    """Raw teacher generations for every item not yet in ``writer.done``, appended batch by batch.

    Raw record: {data_index, type, status (generated | too_long), n_prompt_tokens, raw_output}; prompts over
    ``max_input_tokens`` tokens are recorded as ``too_long`` without generating, so a resumed run skips them.
    """
    from tqdm.auto import tqdm

    counts: Counter = Counter()
    tok = lm.tokenizer
    todo = []
    for pos, item in enumerate(view):
        if item["data_index"] in writer.done:
            counts["already_done"] += 1
            continue
        ptype = poison_type_for(pos, poison_types)
        prompt = build_teacher_prompt(item, ptype, tok, chat_format, max_context_chars)
        n_tok = count_prompt_tokens(tok, prompt)
        if n_tok > max_input_tokens:
            writer.append({"data_index": item["data_index"], "type": f"hard_{ptype}", "status": "too_long",
                           "n_prompt_tokens": n_tok, "raw_output": None})
            counts["skipped_too_long"] += 1
            continue
        todo.append((pos, item, ptype, prompt, n_tok))
    bar = tqdm(total=len(todo), desc="teacher", disable=not progress, unit="item")
    for lo in range(0, len(todo), batch_size):
        batch = todo[lo: lo + batch_size]
        outs = lm.generate_until([b[3] for b in batch], max_new_tokens=max_new_tokens, stop=list(TEACHER_STOP),
                                 temperature=temperature, top_p=top_p,
                                 seed=None if seed is None else seed + batch[0][0], progress=False)
        writer.extend({"data_index": item["data_index"], "type": f"hard_{ptype}", "status": "generated",
                       "n_prompt_tokens": n_tok, "raw_output": out}
                      for (pos, item, ptype, _, n_tok), out in zip(batch, outs))
        counts["generated"] += len(batch)
        bar.update(len(batch))
    bar.close()
    return counts


def teacher_records(raw_records: Sequence[dict], view: Sequence[dict], min_chars: int = MIN_SENTENCE_CHARS,
                    budget_chars: int = CONTEXT_BUDGET_CHARS, min_context_chars: int = MIN_CONTEXT_CHARS
                    ) -> tuple[list[dict], Counter]:
    """Parse, validate and budget-trim the raw generations; returns (teacher records in view order, counts).
    Every raw record is counted once: saved, or skipped with its reason."""
    by_index = {item["data_index"]: item for item in view}
    counts: Counter = Counter(saved=0)
    out: dict[int, dict] = {}
    for raw in raw_records:
        idx = raw.get("data_index")
        item = by_index.get(idx)
        if item is None:
            counts["skipped_not_in_view"] += 1
            continue
        if raw.get("status") != "generated":
            counts["skipped_too_long"] += 1
            continue
        parsed = parse_teacher_output(raw.get("raw_output") or "")
        counts[f"parsed_{parsed.method or 'none'}"] += 1
        reason = validate_pair(parsed.chosen, parsed.rejected, min_chars)
        if reason:
            counts[f"skipped_{reason}"] += 1
            continue
        chosen, rejected = parsed.chosen.strip(), parsed.rejected.strip()
        knowledge = trim_context_to_budget(item["context"], item["question"], chosen, rejected, budget_chars,
                                           min_context_chars)
        if knowledge is None:
            counts["skipped_context_budget"] += 1
            continue
        if len(knowledge) < len(item["context"]):
            counts["context_trimmed"] += 1
        out[idx] = {"data_index": idx, "question": item["question"], "origin_raw_fact": item["ideal_answer"],
                    "knowledge": knowledge, "chosen": chosen, "rejected": rejected, "type": raw.get("type"),
                    "parse_method": parsed.method}
        counts["saved"] += 1
    return [out[i] for i in sorted(out)], counts


def improved_pairs(records: Sequence[dict]) -> list[dict]:
    """``dpo_pairs_hard_improved.jsonl`` rows from teacher records (same schema as the curriculum pairs)."""
    return [{"prompt": r["question"], "context": r["knowledge"], "chosen": r["chosen"], "rejected": r["rejected"],
             "data_index": r["data_index"], "phase": "hard_improved", "pair_type": "teacher_true>teacher_fabricated",
             "type": r["type"]} for r in records if not same_answer(r["chosen"], r["rejected"])]
