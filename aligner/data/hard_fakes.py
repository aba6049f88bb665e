"""Hard fakes (stage 6): every item of the SFT view gets a poison prompt (logical flaw / causal error /
unverifiable claim, cycling by position) and the instruct model writes a fluent but wrong answer; the cleaner
then cuts explanations and labels from the generations.

Generation goes through ``aligner.core.runner.run_per_sample``: records are appended per batch, keyed by
``data_index``, and a resumed file must carry the same run fingerprint (model, dtype, backend, sampling, prompt
settings, the view's input files).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.fidelity import StudyCompat
from aligner.core.io import ReadStats, read_jsonl, write_jsonl_atomic
from aligner.core.runinfo import finish_stage, setup_logging, start_stage
from aligner.core.runner import run_per_sample
from aligner.core.text import clean_up_tokenization_spaces
from aligner.data.generation import (
    BACKEND_LABELS,
    GeneratorSettings,
    generator_fingerprint,
    load_generator,
    sampling_seed,
)
from aligner.data.negatives import fake_record, same_answer
from aligner.data.sft import SFTView, different_question, is_abstention, load_view
from aligner.prompts import (
    POISON_ANSWER_MARKERS,
    POISON_LOOSE_MARKERS,
    POISON_PROMPT_TEMPLATES,
    POISON_TYPES,
    PromptSettings,
    poison_prompt,
    poison_variants,
)

PROMPT_FORMATS = ("plain", "chat")


@dataclass(kw_only=True)
class PoisonSettings:
    """Which kinds of error the prompts ask for, and how much context they show."""

    poison_types: Sequence[str] = field(default=POISON_TYPES, metadata={
        "help": "poison types cycled over the items", "nargs": "+", "choices": list(POISON_TYPES)})
    max_context_chars: int = field(default=4000, metadata={
        "help": "context characters kept in the prompt, -1 = all"})


@dataclass(kw_only=True)
class HardFakeConfig(GeneratorSettings, PoisonSettings, PromptSettings):
    """generate_hard_fakes.py (the SFT view comes from ``SFTView``)."""

    model_path: str = override(GeneratorSettings, "model_path", "models/llama3-2-3b-instruct",
                               help="the instruct model that writes the fakes", aliases=["--base_model_dir"])
    output_file: str = field(default="hard_fakes.jsonl", metadata={"help": "raw hard fakes"})
    prompt_format: str = field(default="plain", metadata={
        "help": "plain completion prompt (the study) or the model's chat template", "choices": list(PROMPT_FORMATS)})
    seed: int = override(GeneratorSettings, "seed", 42, help="prompt wording and sampling seed")
    resume: bool = override(GeneratorSettings, "resume", False,
                            help="keep the fakes already in --output_file and generate only the rest")


@dataclass(kw_only=True)
class PoisonPromptConfig(PoisonSettings, PromptSettings):
    """poison_prompter.py: the prompts for one question, or those generate_hard_fakes.py would send for a view."""

    question: str | None = field(default=None, metadata={"help": "one question to show prompts for (default: none)"})
    ideal_answer: str = field(default="", metadata={"help": "its correct answer (default: '')"})
    context: str = field(default="", metadata={"help": "its context (default: '')"})
    output_file: str | None = field(default=None, metadata={
        "help": "write {data_index, type, prompt} lines for the view here (default: none)"})
    seed: int = field(default=42, metadata={"help": "seed of the wording choice"})


@dataclass(kw_only=True)
class CleanFakesConfig(StudyCompat):
    """hardfakeclearner.py (``--study_compat``: the study's cleaner, which only cuts at its "Note:"-style phrases)."""

    input_file: str = field(default="hard_fakes.jsonl", metadata={"help": "raw hard fakes"})
    output_file: str = field(default="cleaned_hard_fakes.jsonl", metadata={"help": "cleaned hard fakes"})
    min_chars: int = field(default=1, metadata={"help": "drop fakes shorter than this after cleaning"})
    limit: int = field(default=-1, metadata={"help": "clean only the first N records, -1 = all"})
    seed: int = field(default=42, metadata={"help": "recorded only; cleaning is deterministic"})
    skip_invalid: bool = field(default=False, metadata={"help": "skip (and count) malformed lines"})


# ---------------------------------------------------------------------------------------------
# Poison prompts
# ---------------------------------------------------------------------------------------------

def poison_type_for(position: int, poison_types: Sequence[str] = POISON_TYPES) -> str:
    """The study's assignment: one poison type per item, cycling over the types by position."""
    return poison_types[position % len(poison_types)]


def truncate_context(context: str, max_chars: int | None) -> str:
    context = context or ""
    if max_chars is None or max_chars < 0 or len(context) <= max_chars:
        return context
    return context[:max_chars] + " ..."


class PoisonPrompter:
    """Builds poison prompts: per item a poison type (cycling) and one of the type's wordings (seeded)."""

    def __init__(self, poison_types: Sequence[str] = POISON_TYPES, seed: int = 42, max_context_chars: int | None = 4000,
                 prompt_format: str = "plain", chat_renderer=None, texts: dict[str, str] | None = None):
        bad = [t for t in poison_types if t not in POISON_PROMPT_TEMPLATES]
        if bad:
            raise ValueError(f"unknown poison type(s) {bad}; use {list(POISON_PROMPT_TEMPLATES)}")
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError("prompt_format must be plain or chat")
        if prompt_format == "chat" and chat_renderer is None:
            raise ValueError("prompt_format chat needs a chat renderer (LM.chat_prompt)")
        self.poison_types = list(poison_types)
        self.seed = seed
        self.max_context_chars = max_context_chars
        self.prompt_format = prompt_format
        self.chat_renderer = chat_renderer
        self.texts = texts  # the long prompts in force (aligner.prompts.long_prompts); None = the defaults

    def variant_for(self, data_index: int, poison_type: str) -> int:
        # Seeded per item (not a running RNG) so a resumed run picks the same wording.
        return random.Random(f"{self.seed}:{data_index}").randrange(len(poison_variants(poison_type, self.texts)))

    def create_poison_prompt(self, question: str, ideal_answer: str, poison_type: str, context: str = "",
                             data_index: int = 0) -> str:
        text = poison_prompt(question, ideal_answer, truncate_context(context, self.max_context_chars), poison_type,
                             self.variant_for(data_index, poison_type), self.texts)
        if self.prompt_format == "chat":
            return self.chat_renderer([{"role": "user", "content": text}])
        return text

    def prompt_for(self, item: dict, position: int) -> tuple[str, str]:
        ptype = poison_type_for(position, self.poison_types)
        return ptype, self.create_poison_prompt(item["question"], item["ideal_answer"], ptype, item.get("context", ""),
                                                item["data_index"])


def write_poison_prompts(cfg: PoisonPromptConfig, view_cfg: SFTView) -> dict:
    """poison_prompter.py: print the prompts of every type for ``cfg.question``, or write the prompt of every
    view item to ``cfg.output_file``; returns the counts."""
    setup_logging()
    prompter = PoisonPrompter(cfg.poison_types, seed=cfg.seed, max_context_chars=cfg.max_context_chars,
                              texts=cfg.prompt_texts())
    if cfg.question:
        for ptype in cfg.poison_types:
            print(f"--- {ptype} ---")
            print(prompter.create_poison_prompt(cfg.question, cfg.ideal_answer, ptype, cfg.context))
        return {"shown": len(cfg.poison_types)}
    if not cfg.output_file:
        raise ValueError("give --question, or --output_file with --squad_jsonl/--nq_jsonl")
    view, vstats = load_view(view_cfg)
    rows = []
    for pos, item in enumerate(view):
        ptype, prompt = prompter.prompt_for(item, pos)
        rows.append({"data_index": item["data_index"], "type": f"hard_{ptype}", "prompt": prompt})
    write_jsonl_atomic(cfg.output_file, rows)
    return finish_stage(Path(cfg.output_file).resolve().parent, (cfg, view_cfg), {**vstats, "prompts": len(rows)})


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

# A restarted template: the model writing a new "Question:" / "Context:" / "Correct Answer:" block (or echoing the
# prompt's own header again after an answer); everything from there on belongs to the restart.
_RESTART = re.compile(r"(?:^|\n)\s*(?:Question|Context|Correct Answer|Passage)\s*:", re.IGNORECASE)
_HEADER = "|".join(re.escape(m) for m in (*POISON_ANSWER_MARKERS, *POISON_LOOSE_MARKERS))
_LEADING_HEADER = re.compile(rf"^\s*(?:\*\*)?(?:{_HEADER})(?:\*\*)?\s*", re.IGNORECASE)


def extract_generated_answer(response: str) -> str:
    """The answer part of a generation (the generated text only, not the prompt): cut at a restarted template
    first; then the text after the first specific answer header left ("Sure.\nFlawed Answer: ..."), else the text
    without a leading loose header ("Answer: ...")."""
    s = (response or "").replace("\r\n", "\n")
    m = _RESTART.search(s)
    if m:
        s = s[:m.start()]
    for marker in POISON_ANSWER_MARKERS:
        if marker in s:
            return s.split(marker, 1)[1].strip()
    return _LEADING_HEADER.sub("", s, count=1).strip()


# The study's extraction (poison_prompter.py:52-98), run on the decoded prompt + generation as its
# generate_hard_fakes.py:83-86 did: the first marker of its list found anywhere, split at its first occurrence.
STUDY_MARKERS = ("Flawed Answer:", "Incorrectly Reasoned Answer:", "Deceptive Answer:", "Causal Error Answer:",
                 "Answer with Causal Error:", "Rewritten Answer with Causal Flaw:", "Misleading Causal Answer:",
                 "Unverifiable Answer:", "Answer with Unverifiable Detail:", "Authoritative but Unverifiable Answer:",
                 "Speculative Answer:")
STUDY_LOOSE_MARKERS = ("Answer:", "Response:", "Output:", "Generated Answer:", "Final Answer:", "Flawed:",
                       "Incorrect:")


def study_extract_generated_answer(prompt: str, generation: str) -> str:
    """``--study_compat``: the study's marker rules on prompt + generation (in practice the whole generation,
    because the prompt ends with the first marker of its type), on the text as its ``tokenizer.decode`` gave it:
    transformers 4 cleaned up the spaces before punctuation and clitics for Llama-3.2 ("U.S ." -> "U.S.")."""
    response = clean_up_tokenization_spaces((prompt or "") + (generation or ""))
    for marker in (*STUDY_MARKERS, *STUDY_LOOSE_MARKERS):
        if marker in response:
            return response.split(marker, 1)[-1].strip()
    m = re.search(r"[A-Z][A-Za-z ]{0,40}:\s*(.*)", response, flags=re.DOTALL)
    return m.group(1).strip() if m else response.strip()


def generate_hard_fakes(lm, view: Sequence[dict], prompter: PoisonPrompter, path, cfg: GeneratorSettings,
                        fingerprint: dict | None = None, study_extract: bool = False) -> tuple[list[dict], Counter]:
    """One hard fake per view item into ``path`` (keyed by data_index), ``cfg.batch_size`` prompts per generate
    call, each batch appended as soon as it is generated; with ``cfg.resume`` the items already in the file are
    kept.  Records carry the raw generation (``raw_output``) for auditing; cleaning is a separate step.
    Abstention items are never sent to the poison prompter.  ``study_extract``: the study's answer extraction.
    Returns (the view's records, counts)."""
    counts: Counter = Counter(already_done=0)
    items = [(pos, item) for pos, item in enumerate(view) if not is_abstention(item)]
    if len(items) < len(view):
        counts["skipped_abstention"] = len(view) - len(items)

    def make(batch: list[tuple[int, dict]]) -> list[dict]:
        typed = [prompter.prompt_for(item, pos) for pos, item in batch]
        outs = lm.generate_until([p for _, p in typed], max_new_tokens=cfg.max_new_tokens, stop=None,
                                 temperature=cfg.temperature, top_p=cfg.top_p, seed=sampling_seed(cfg, batch[0][0]),
                                 progress=False)
        records = []
        for (_, item), (ptype, prompt), raw in zip(batch, typed, outs):
            fake = study_extract_generated_answer(prompt, raw) if study_extract else extract_generated_answer(raw)
            records.append({**fake_record(item, fake, f"hard_{ptype}"), "raw_output": raw})
            counts[f"type_hard_{ptype}"] += 1
        counts["generated"] += len(records)
        return records

    records = run_per_sample(path, items, make, key_of=lambda it: it[1]["data_index"],
                             key="data_index", chunk=cfg.batch_size, resume=cfg.resume, fingerprint=fingerprint,
                             check=lambda rec, it: different_question(rec, it[1]["question"]), desc="hard fakes",
                             unit="item", progress=cfg.progress)
    counts["already_done"] = len(items) - counts["generated"]
    return records, counts


def write_hard_fakes(cfg: HardFakeConfig, view_cfg: SFTView) -> dict:
    """generate_hard_fakes.py: the hard fakes of the view into ``cfg.output_file``; returns the counts."""
    from aligner.lm.interface import release_lm

    out_dir = start_stage(Path(cfg.output_file).resolve().parent, (cfg, view_cfg))
    view, vstats = load_view(view_cfg)
    texts = cfg.prompt_texts()  # a bad --prompts_file stops here, before the model loads
    lm, backend = load_generator(cfg)
    try:
        prompter = PoisonPrompter(cfg.poison_types, seed=cfg.seed, max_context_chars=cfg.max_context_chars,
                                  prompt_format=cfg.prompt_format, chat_renderer=lm.chat_prompt, texts=texts)
        fingerprint = generator_fingerprint(
            "hard_fakes", cfg, view_cfg, backend, poison_types=list(cfg.poison_types),
            prompt_format=cfg.prompt_format, max_context_chars=cfg.max_context_chars, prompt={t: poison_variants(t, texts) for t in POISON_PROMPT_TEMPLATES},
            extraction="study" if view_cfg.study_compat else "restart_cut")
        _, counts = generate_hard_fakes(lm, view, prompter, cfg.output_file, cfg, fingerprint,
                                        study_extract=view_cfg.study_compat)
    finally:
        release_lm(lm)
    # Also the records of items beyond this view's --limit that an earlier run left in the file.
    counts["total_in_file"] = len(read_jsonl(cfg.output_file))
    return finish_stage(out_dir, (cfg, view_cfg), {"backend": BACKEND_LABELS[backend], **vstats, **dict(counts)})


# ---------------------------------------------------------------------------------------------
# Cleaning
# ---------------------------------------------------------------------------------------------

# Where an explanation or meta-comment begins ("Note: ...", "(Explanation: ...", "The flawed answer is ...",
# a new "Question:" block); the fake is everything before the first one.
_EXPLANATION_START = re.compile(
    r"[\s(\[]*\b(?:Note|Explanation|Reasoning|Rationale|Disclaimer|Justification)\s*:"
    r"|[\s(\[]*\b(?:The (?:flawed|incorrect|fake|causal|unverifiable|above) (?:answer|error|detail|claim)"
    r"|This (?:answer|response) (?:is|contains|introduces)|Answer generated)\b"
    r"|\n\s*(?:Question|Context|Correct Answer)\s*:",  # the model starting the template over
    re.IGNORECASE)
_LEADING_LABEL = re.compile(r"^\s*(?:\*\*)?(?:Flawed|Causal Error|Unverifiable|Speculative|Final|Fake|Incorrect)?"
                            r"\s*Answer(?:\*\*)?\s*:\s*", re.IGNORECASE)
_QUOTE_PAIRS = [('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("`", "`")]


def _strip_wrapping_quotes(s: str) -> str:
    changed = True
    while changed and len(s) >= 2:
        changed = False
        for a, b in _QUOTE_PAIRS:
            if len(s) >= 2 and s.startswith(a) and s.endswith(b):
                s = s[len(a):-len(b)].strip()
                changed = True
    return s


def clean_fake_answer(text: str, ideal_answer: str | None = None, min_chars: int = 1) -> tuple[str | None, str]:
    """Clean a generated fake: drop a leading answer label, cut from the first explanation / "Note:" on,
    strip wrapping quotes and surrounding whitespace.

    Returns (cleaned, "ok") or (None, reason) with reason ``empty`` (nothing, or fewer than ``min_chars``
    characters, left) or ``copy_of_ideal`` (the same answer as the ideal one, up to case and punctuation).
    """
    s = (text or "").replace("\r\n", "\n")
    s = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", s).strip()  # control characters
    s = _LEADING_LABEL.sub("", s, count=1)
    m = _EXPLANATION_START.search(s)
    if m:
        s = s[:m.start()]
    s = _strip_wrapping_quotes(s.strip())
    s = re.sub(r"[ \t]+", " ", s).strip()
    if len(s) < max(1, min_chars) or not re.search(r"\w", s):
        return None, "empty"
    if ideal_answer is not None and same_answer(s, ideal_answer):
        return None, "copy_of_ideal"
    return s, "ok"


# The study's cleaner (hardfakeclearner.py:16-21): the text before the first of these phrases, stripped.
_STUDY_STOP = re.compile(r"(\n \nNote:|\n\nNote:|\s\(Note:|\n\n\(Note:|\n\nExplanation:|\n\nThe flawed answer"
                         r"|\n\(Answer generated|\n\nFlawed Causal Answer:|\n\n\[Note:|\n\n\(Answer:)")


def study_clean_fake_answer(text: str, ideal_answer: str | None = None, min_chars: int = 1) -> tuple[str | None, str]:
    """``--study_compat``: the study's cleaning; it drops nothing (an empty fake is left for the pair builder to
    skip), so an empty result is only counted, as ``kept_empty``."""
    s = _STUDY_STOP.split(text or "", maxsplit=1)[0].strip()
    return (s, "ok") if s else (s, "kept_empty")


def clean_hard_fakes(records: Sequence[dict], min_chars: int = 1, study: bool = False) -> tuple[list[dict], Counter]:
    """Cleaned copies of the records whose fake survives cleaning; counts by outcome.  ``study``: the study's
    cleaner (every record kept)."""
    kept: list[dict] = []
    counts: Counter = Counter()
    clean = study_clean_fake_answer if study else clean_fake_answer
    for rec in records:
        cleaned, reason = clean(rec.get("fake_answer", ""), rec.get("ideal_answer"), min_chars)
        counts[reason] += 1
        if cleaned is None:
            continue
        out = {k: v for k, v in rec.items() if k != "raw_output"}
        out["fake_answer"] = cleaned
        kept.append(out)
    return kept, counts


def clean_hard_fake_file(cfg: CleanFakesConfig) -> dict:
    """hardfakeclearner.py: ``cfg.input_file`` cleaned into ``cfg.output_file``; returns the counts."""
    out_dir = start_stage(Path(cfg.output_file).resolve().parent, cfg)
    rstats = ReadStats()
    records = read_jsonl(cfg.input_file, required=["data_index", "fake_answer"], allow_empty=True,
                         skip_invalid=cfg.skip_invalid, limit=cfg.limit, stats=rstats)
    kept, counts = clean_hard_fakes(records, min_chars=cfg.min_chars, study=cfg.study_compat)
    write_jsonl_atomic(cfg.output_file, kept)
    counts = {"read": len(records), "invalid_lines_skipped": rstats.n_skipped, "kept": len(kept),
              **{"clean_ok" if k == "ok" else k if k.startswith("kept_") else f"dropped_{k}": v
                 for k, v in counts.items()}}
    return finish_stage(out_dir, cfg, counts)
