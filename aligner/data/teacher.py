"""Teacher-guided hard pairs (further_improvement): a larger instruct model rewrites each raw fact into a
polished true sentence (chosen) and the same sentence with one fabricated detail (rejected).

Flow: prompt (Llama-3 chat format; poison type cycling logical flaw / causal error / unverifiable by
position; context cut to 4,000 characters) -> prompts over 3,000 tokens dropped -> sampled generation
(temperature 0.6, top-p 0.95, up to 1,024 new tokens) appended to a raw file keyed by data_index through
``aligner.core.runner.run_per_sample`` (so a run resumes, only with the same fingerprint) -> parsing (the whole
output as JSON, a fenced ```json block, the first JSON object embedded in the text, then field-wise regex
salvage) -> validation (both sentences present, >= 10 characters, different) ->
context trimmed so that context + question + the longer answer fit the training budget of 7,500 characters
(dropped when fewer than 500 characters of context would remain).

Teacher record: {data_index, question, origin_raw_fact, knowledge, chosen, rejected, type, parse_method}.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aligner.core.cli import override
from aligner.core.io import read_jsonl, write_jsonl_atomic
from aligner.core.logprobs import wants_special_tokens
from aligner.core.paths import TEACHER_PAIRS_FILE
from aligner.core.runinfo import finish_stage, start_stage
from aligner.core.runner import run_per_sample
from aligner.data.generation import (
    BACKEND_LABELS,
    GeneratorSettings,
    generator_fingerprint,
    load_generator,
    sampling_seed,
)
from aligner.data.hard_fakes import PoisonSettings, poison_type_for
from aligner.data.negatives import same_answer
from aligner.data.sft import NQ_RAG_DEFAULT, SQUAD_DEFAULT, SFTView, is_abstention, load_view
from aligner.prompts import (
    POISON_TYPES,
    TEACHER_CONTEXT_CHARS,
    PromptSettings,
    llama3_chat_prompt,
    teacher_messages,
)

logger = logging.getLogger(__name__)

CHOSEN_KEY = "chosen_sentence"
REJECTED_KEY = "rejected_sentence"
MAX_INPUT_TOKENS = 3000
CONTEXT_BUDGET_CHARS = 7500
MIN_CONTEXT_CHARS = 500
MIN_SENTENCE_CHARS = 10
TEACHER_STOP = ("<|eot_id|>",)
CHAT_FORMATS = ("llama3", "template")
TEACHER_LIMIT = 15000


@dataclass(kw_only=True)
class TeacherSFTView(SFTView):
    """The SFT view as hard_fake_gen_vllm.py spells its inputs: --nq_path / --squad_path (the other stages'
    --nq_jsonl / --squad_jsonl kept as aliases)."""

    nq_jsonl: str = override(SFTView, "nq_jsonl", NQ_RAG_DEFAULT, flag="--nq_path", aliases=["--nq_jsonl"])
    squad_jsonl: str = override(SFTView, "squad_jsonl", SQUAD_DEFAULT, flag="--squad_path",
                                aliases=["--squad_jsonl"])
    #: the study's run: ``hard_fake_gen_vllm.py --limit 15000`` (logs/hard_set.txt), i.e. the first 15,000 items
    limit: int = override(SFTView, "limit", TEACHER_LIMIT, help="use the first N items of the SFT view (the study ran "
                          "--limit 15000); -1 or 0 = all")


@dataclass(kw_only=True)
class TeacherConfig(GeneratorSettings, PoisonSettings, PromptSettings):
    """hard_fake_gen_vllm.py (the SFT view comes from ``TeacherSFTView``)."""

    model_path: str = override(GeneratorSettings, "model_path", "models/Llama-3.1-8B-Instruct",
                               help="the teacher model")
    output_dir: str = field(default=".", metadata={"help": "folder of the three output files"})
    output_file: str = field(default=TEACHER_PAIRS_FILE, metadata={"help": "teacher records, in --output_dir"})
    pairs_file: str = field(default="dpo_pairs_hard_improved.jsonl", metadata={"help": "DPO pairs, in --output_dir"})
    raw_file: str = field(default="hard_fakes_vllm.raw.jsonl", metadata={
        "help": "raw generations (resumable), in --output_dir"})
    chat_format: str = field(default="llama3", metadata={
        "help": "Llama-3 chat format written literally, or the tokenizer's chat template",
        "choices": list(CHAT_FORMATS)})
    poison_types: Sequence[str] = override(PoisonSettings, "poison_types", POISON_TYPES,
                                           help="error kinds cycled over the items")
    max_context_chars: int = override(PoisonSettings, "max_context_chars", TEACHER_CONTEXT_CHARS,
                                      help="context characters shown to the teacher")
    max_input_tokens: int = field(default=MAX_INPUT_TOKENS, metadata={
        "help": "prompts longer than this are dropped"})
    batch_size: int = override(GeneratorSettings, "batch_size", 64)
    max_new_tokens: int = override(GeneratorSettings, "max_new_tokens", 1024)
    temperature: float = override(GeneratorSettings, "temperature", 0.6)
    top_p: float = override(GeneratorSettings, "top_p", 0.95)
    min_sentence_chars: int = field(default=MIN_SENTENCE_CHARS, metadata={"help": "shortest acceptable sentence"})
    context_budget_chars: int = field(default=CONTEXT_BUDGET_CHARS, metadata={
        "help": "context + question + longer answer must fit in this many characters"})
    min_context_chars: int = field(default=MIN_CONTEXT_CHARS, metadata={
        "help": "drop a pair unless more context than this would remain"})
    keep_max_tokens: bool = field(default=False, metadata={
        "help": "keep generations that ran up to --max_new_tokens (default: dropped, counted skipped_max_tokens: a "
                "cut-off generation holds a cut-off sentence); --study_compat keeps them too"})
    resume: bool = override(GeneratorSettings, "resume", False, help="keep the generations already in --raw_file")


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


#: what may follow a field's closing quote: a comma and the next key, or the end of the object
_FIELD_END = r'"\s*(?:,\s*(?="[A-Za-z_]+"\s*:)|,?\s*\})'


def _salvage_field(text: str, key: str) -> str | None:
    """A field's value from broken JSON: the text from the opening quote to a closing quote that is followed by a
    comma and the next key, or by the closing brace (so an unescaped inner quote, as in ``"the band Yes released
    "Owner of a Lonely Heart", their ..."``, stays inside the value, and a value cut off before its closing quote
    is not taken); else an unquoted value up to the end of its line."""
    head = rf"[\"']?{key}[\"']?\s*[:=]\s*"
    m = re.search(head + r'"(.*?)' + _FIELD_END, text, re.DOTALL)
    if m:
        return _unescape(m.group(1))
    m = re.search(head + r"'(.*?)'\s*(?:,|\}|\n|$)", text)
    if m:
        return m.group(1)
    m = re.search(head + r"([^\s\"'{][^\n]*)", text)
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


_STUDY_CHOSEN = re.compile(r'"chosen_sentence"\s*:\s*"(.*?)"', re.DOTALL)
_STUDY_REJECTED = re.compile(r'"rejected_sentence"\s*:\s*"(.*?)"', re.DOTALL)


def study_parse_teacher_output(text: str) -> TeacherParse:
    """The study's parse (hard_fake_gen_vllm.py:277-304), for ``--study_compat``: ``{`` prepended when missing,
    the second-to-last ```` ``` ```` part, ``json.loads``, and when a field is empty the non-greedy regex on the raw
    text (it stops at the first inner quote and keeps JSON escapes undecoded)."""
    raw = (text or "").strip()
    json_text = raw if raw.startswith("{") else "{" + raw
    if "```" in json_text:
        json_text = json_text.split("```")[-2]
    chosen = rejected = None
    method = None
    try:
        parsed = json.loads(json_text)
        chosen, rejected = parsed.get(CHOSEN_KEY), parsed.get(REJECTED_KEY)
        method = "json"
    except (json.JSONDecodeError, AttributeError):
        pass
    if not chosen or not rejected:
        c, r = _STUDY_CHOSEN.search(raw), _STUDY_REJECTED.search(raw)
        chosen, rejected = (c.group(1) if c else chosen), (r.group(1) if r else rejected)
        method = "salvage" if c or r else method
    return TeacherParse(chosen if isinstance(chosen, str) else None, rejected if isinstance(rejected, str) else None,
                        method)


def validate_pair(chosen: str | None, rejected: str | None, min_chars: int = MIN_SENTENCE_CHARS,
                  study: bool = False) -> str | None:
    """None when the pair is usable, else the reason: missing_field, too_short or identical.  ``study``: the
    study's checks (hard_fake_gen_vllm.py:307-310; lengths of the unstripped texts, identical only when equal
    after stripping)."""
    if study:
        if not chosen or not rejected or chosen.strip() == rejected.strip():
            return "missing_field" if not chosen or not rejected else "identical"
        return "too_short" if len(chosen) < min_chars or len(rejected) < min_chars else None
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
    None unless more than ``min_context_chars`` characters of context would be left (the study's ``> 500``).  A
    context that already fits comes back unchanged."""
    context = context or ""
    answer_len = max(len(chosen), len(rejected))
    if len(context) + len(question) + answer_len <= budget_chars:
        return context
    allowed = budget_chars - len(question) - answer_len
    if allowed <= min_context_chars:
        return None
    return context[:allowed]


# ---------------------------------------------------------------------------------------------
# Prompting and generation
# ---------------------------------------------------------------------------------------------

def build_teacher_prompt(item: dict, poison_type: str, chat_prompt: Callable[[list[dict]], str] | None = None,
                         chat_format: str = "llama3", max_context_chars: int = TEACHER_CONTEXT_CHARS,
                         texts: dict[str, str] | None = None) -> str:
    """The rendered prompt: ``llama3`` writes the Llama-3 chat format literally (as the study did);
    ``template`` renders the messages with ``chat_prompt`` (``LM.chat_prompt``: the tokenizer's chat template)."""
    msgs = teacher_messages(item["question"], item["ideal_answer"], item.get("context", ""), poison_type,
                            max_context_chars, texts)
    if chat_format == "llama3":
        return llama3_chat_prompt(msgs)
    if chat_format == "template":
        return chat_prompt(msgs)
    raise ValueError("chat_format must be llama3 or template")


def count_prompt_tokens(tokenizer, prompt: str) -> int:
    return len(tokenizer(prompt, add_special_tokens=wants_special_tokens(tokenizer, prompt))["input_ids"])


@dataclass
class TeacherPrompt:
    """One view item's prompt: its position in the view (poison type and sampling seed follow it) and length."""

    position: int
    item: dict
    poison_type: str
    text: str
    n_tokens: int


def teacher_prompts(lm, view: Sequence[dict], cfg: TeacherConfig) -> list[TeacherPrompt]:
    chat_prompt = lm.chat_prompt if cfg.chat_format == "template" else None
    texts = cfg.prompt_texts()
    out = []
    for pos, item in enumerate(view):
        ptype = poison_type_for(pos, cfg.poison_types)
        text = build_teacher_prompt(item, ptype, chat_prompt, cfg.chat_format, cfg.max_context_chars, texts)
        out.append(TeacherPrompt(pos, item, ptype, text, count_prompt_tokens(lm.tokenizer, text)))
    return out


def _same_prompt(record: dict, prompt: TeacherPrompt) -> str | None:
    if record.get("type") != f"hard_{prompt.poison_type}" or record.get("n_prompt_tokens") != prompt.n_tokens:
        return (f"was made from another prompt (type {record.get('type')!r}, {record.get('n_prompt_tokens')} tokens; "
                f"now hard_{prompt.poison_type}, {prompt.n_tokens} tokens)")
    return None


def output_tokens(tokenizer, text: str | None) -> int:
    """Tokens of a generation, counted again from its text (no special tokens)."""
    return len(tokenizer(text or "", add_special_tokens=False)["input_ids"])


def hit_max_tokens(raw: dict, max_new_tokens: int | None) -> bool:
    """Whether a raw generation ran up to the token limit (re-tokenizing can differ from the generated ids by a
    token, hence the margin of one); records without ``n_output_tokens`` (older runs) count as not."""
    n = raw.get("n_output_tokens")
    return max_new_tokens is not None and isinstance(n, int) and n >= max_new_tokens - 1


def generate_teacher_outputs(lm, view: Sequence[dict], raw_path, cfg: TeacherConfig,
                             fingerprint: dict | None = None) -> tuple[list[dict], Counter]:
    """Raw teacher generations for the view into ``raw_path`` (keyed by data_index; with ``cfg.resume`` the items
    already there are kept), ``cfg.batch_size`` prompts per generate call, appended call by call.

    Raw record: {data_index, type, status (generated | too_long), n_prompt_tokens, raw_output, n_output_tokens};
    prompts over ``cfg.max_input_tokens`` tokens are recorded as ``too_long`` without generating (first, all at
    once), so a resumed run skips them.  ``n_output_tokens`` is the generation re-tokenized (the interface returns
    text only), which tells the generations that ran up to ``max_new_tokens``.  Returns (the view's raw records,
    counts).
    """
    new: Counter = Counter()

    def fits(p: TeacherPrompt) -> bool:
        return p.n_tokens <= cfg.max_input_tokens

    def chunks(todo: Sequence[TeacherPrompt]):
        too_long = [p for p in todo if not fits(p)]
        if too_long:
            yield too_long
        ready = [p for p in todo if fits(p)]
        for lo in range(0, len(ready), cfg.batch_size):
            yield ready[lo: lo + cfg.batch_size]

    def make(chunk: list[TeacherPrompt]) -> list[dict]:
        ready = [p for p in chunk if fits(p)]
        outs = lm.generate_until([p.text for p in ready], max_new_tokens=cfg.max_new_tokens, stop=list(TEACHER_STOP),
                                 temperature=cfg.temperature, top_p=cfg.top_p,
                                 seed=sampling_seed(cfg, ready[0].position), progress=False) if ready else []
        by_position = dict(zip((p.position for p in ready), outs))
        new["skipped_too_long"] += len(chunk) - len(ready)
        new["generated"] += len(ready)
        return [{"data_index": p.item["data_index"], "type": f"hard_{p.poison_type}",
                 "status": "generated" if fits(p) else "too_long", "n_prompt_tokens": p.n_tokens,
                 "raw_output": by_position.get(p.position),
                 "n_output_tokens": output_tokens(lm.tokenizer, by_position[p.position]) if fits(p) else None}
                for p in chunk]

    records = run_per_sample(raw_path, teacher_prompts(lm, view, cfg), make, key_of=lambda p: p.item["data_index"],
                             key="data_index", chunk=chunks, resume=cfg.resume, fingerprint=fingerprint,
                             check=_same_prompt, desc="teacher", unit="item", progress=cfg.progress)
    counts: Counter = Counter(already_done=len(view) - new["skipped_too_long"] - new["generated"])
    counts.update(new)
    return records, +counts  # +: only the outcomes that happened, as the counts have always shown


def teacher_records(raw_records: Sequence[dict], view: Sequence[dict], min_chars: int = MIN_SENTENCE_CHARS,
                    budget_chars: int = CONTEXT_BUDGET_CHARS, min_context_chars: int = MIN_CONTEXT_CHARS,
                    max_new_tokens: int | None = None, study: bool = False) -> tuple[list[dict], Counter]:
    """Parse, validate and budget-trim the raw generations; returns (teacher records in view order, counts).
    Every raw record is counted once: saved, or skipped with its reason.  With ``max_new_tokens``, generations
    that ran up to it are dropped (``skipped_max_tokens``).  ``study`` (``--study_compat``): the study's parser
    and checks, no token-limit check, the sentences kept unstripped."""
    by_index = {item["data_index"]: item for item in view}
    counts: Counter = Counter(saved=0)
    out: dict[int, dict] = {}
    parse = study_parse_teacher_output if study else parse_teacher_output
    for raw in raw_records:
        idx = raw.get("data_index")
        item = by_index.get(idx)
        if item is None:
            counts["skipped_not_in_view"] += 1
            continue
        if raw.get("status") != "generated":
            counts["skipped_too_long"] += 1
            continue
        if not study and hit_max_tokens(raw, max_new_tokens):
            counts["skipped_max_tokens"] += 1
            continue
        parsed = parse(raw.get("raw_output") or "")
        counts[f"parsed_{parsed.method or 'none'}"] += 1
        reason = validate_pair(parsed.chosen, parsed.rejected, min_chars, study=study)
        if reason:
            counts[f"skipped_{reason}"] += 1
            continue
        chosen, rejected = (parsed.chosen, parsed.rejected) if study else (parsed.chosen.strip(),
                                                                            parsed.rejected.strip())
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


def improved_pairs(records: Sequence[dict], exact: bool = False) -> list[dict]:
    """``dpo_pairs_hard_improved.jsonl`` rows from teacher records (same schema as the curriculum pairs); a pair
    whose sides are the same answer is left out (``exact``: only when equal after stripping, as the study)."""
    def differ(r: dict) -> bool:
        return r["chosen"].strip() != r["rejected"].strip() if exact else not same_answer(r["chosen"], r["rejected"])

    return [{"prompt": r["question"], "context": r["knowledge"], "chosen": r["chosen"], "rejected": r["rejected"],
             "data_index": r["data_index"], "phase": "hard_improved", "pair_type": "teacher_true>teacher_fabricated",
             "type": r["type"]} for r in records if differ(r)]


def make_teacher_pairs(cfg: TeacherConfig, view_cfg: SFTView) -> dict:
    """hard_fake_gen_vllm.py: raw generations (resumable), teacher records and DPO pairs in ``cfg.output_dir``;
    returns the counts."""
    from aligner.lm.interface import release_lm

    out_dir = start_stage(cfg.output_dir, (cfg, view_cfg))
    view, vstats = load_view(view_cfg)
    abstaining = sum(is_abstention(v) for v in view)
    if abstaining:  # an abstention is never sent to the teacher (there is no fact to rewrite)
        view = [v for v in view if not is_abstention(v)]
        vstats["abstention_items_not_sent"] = abstaining
    raw_path = out_dir / cfg.raw_file
    texts = cfg.prompt_texts()  # a bad --prompts_file stops here, before the model loads
    lm, backend = load_generator(cfg)
    try:
        fingerprint = generator_fingerprint(
            "teacher", cfg, view_cfg, backend, chat_format=cfg.chat_format, poison_types=list(cfg.poison_types),
            max_context_chars=cfg.max_context_chars, max_input_tokens=cfg.max_input_tokens,
            prompt={k: v for k, v in texts.items() if k.startswith("teacher.")})
        _, gen_counts = generate_teacher_outputs(lm, view, raw_path, cfg, fingerprint)
    finally:
        release_lm(lm)
    # Every raw record is counted, also those of items beyond this view's --limit left by an earlier run.
    records, counts = teacher_records(
        read_jsonl(raw_path), view, min_chars=cfg.min_sentence_chars, budget_chars=cfg.context_budget_chars,
        min_context_chars=cfg.min_context_chars, study=view_cfg.study_compat,
        max_new_tokens=None if cfg.keep_max_tokens else cfg.max_new_tokens)
    pairs = improved_pairs(records, exact=view_cfg.study_compat)
    write_jsonl_atomic(out_dir / cfg.output_file, records)
    write_jsonl_atomic(out_dir / cfg.pairs_file, pairs)
    counts = {"backend": BACKEND_LABELS[backend], **vstats, **dict(gen_counts), **dict(sorted(counts.items())),
              "pairs": len(pairs)}
    return finish_stage(out_dir, (cfg, view_cfg), counts)
