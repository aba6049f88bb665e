"""Medium fakes: named entities in an ideal answer swapped for other entities of the same label.

A knowledge base of entity texts per label is built from all ideal answers with spaCy NER (the study used
``en_core_web_trf``).  ``--spacy_model rule`` is an offline fallback that needs no model download: a blank
English pipeline whose rule-based matchers tag DATE, MONEY, PERCENT, QUANTITY, ORDINAL, CARDINAL and
capitalised name spans (label ``NAME``: the rules cannot tell people from places or organisations, so those
are swapped among each other).  ``auto`` uses ``en_core_web_trf`` when it is installed, else the rules.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import read_jsonl, write_jsonl_atomic
from aligner.core.models import ModelLoadError
from aligner.core.runinfo import finish_stage, setup_logging, start_stage, write_run_config
from aligner.data.negatives import MEDIUM_TYPE, fake_record, same_answer
from aligner.data.sft import SFTView, load_view

logger = logging.getLogger(__name__)

DEFAULT_SPACY_MODEL = "en_core_web_trf"
RULE_MODEL = "rule"
RULE_COMPONENT = "aligner_rule_ner"

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
SCALES = ["hundred", "thousand", "million", "billion", "trillion", "k", "m", "bn"]
CURRENCY_SYMBOLS = ["$", "£", "€", "¥", "₹"]
CURRENCY_WORDS = ["dollar", "dollars", "pound", "pounds", "euro", "euros", "yen", "cents", "rupees", "usd", "gbp"]
UNITS = ["km", "kilometre", "kilometres", "kilometer", "kilometers", "mile", "miles", "m", "metre", "metres", "meter",
         "meters", "cm", "mm", "ft", "foot", "feet", "inch", "inches", "yard", "yards", "kg", "kilogram", "kilograms",
         "g", "gram", "grams", "lb", "lbs", "ton", "tons", "tonne", "tonnes", "acre", "acres", "hectare", "hectares",
         "mph", "km/h", "litre", "litres", "liter", "liters", "gallon", "gallons", "degrees", "°c", "°f", "square",
         "sq", "cubic", "mw", "kw", "gw"]
DURATIONS = ["year", "years", "month", "months", "week", "weeks", "day", "days", "decade", "decades", "century",
             "centuries"]
ORDINAL_WORDS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
                 "eleventh", "twelfth", "twentieth", "hundredth", "thousandth"]
NAME_CONNECTORS = ["of", "'s", "de", "da", "del", "della", "von", "van", "der", "den", "la", "le", "du", "the", "and", "&",
                   "y", "bin", "al"]
# Earlier labels win when two spans of the same length overlap.
LABEL_PRIORITY = ["DATE", "MONEY", "PERCENT", "QUANTITY", "ORDINAL", "CARDINAL", "NAME"]


@dataclass(kw_only=True)
class NERSettings:
    """Which NER pipeline tags the entities."""

    spacy_model: str = field(default=DEFAULT_SPACY_MODEL, metadata={
        "help": "spaCy model, 'rule' (offline fallback) or 'auto'"})


@dataclass(kw_only=True)
class MediumFakeConfig(NERSettings):
    """generate_medium_fakes.py (the SFT view comes from ``SFTView``)."""

    output_file: str = field(default="medium_fakes.jsonl", metadata={"help": "medium fakes"})
    batch_size: int = field(default=64, metadata={"help": "texts per spaCy batch"})
    prefer_gpu: bool = field(default=False, metadata={"help": "let spaCy use the GPU"})
    seed: int = field(default=42, metadata={"help": "seed of the replacement draws"})
    progress: bool = field(default=True, metadata={"help": "no progress bars (default: bars on)",
                                                   "flag": "--no_progress"})


@dataclass(kw_only=True)
class NERSwapConfig(NERSettings):
    """ner_swapper.py."""

    input_file: str | None = field(default=None, metadata={
        "help": "texts for the knowledge base: .jsonl or .txt (default: none)"})
    text: list[str] = field(default_factory=list, metadata={
        "help": "text(s) to swap, repeatable; without it every input text is swapped (default: none)", "nargs": "*",
        "action": "extend"})
    output_file: str | None = field(default=None, metadata={"help": "JSON lines output; else printed (default: none)"})
    show_kb: bool = field(default=False, metadata={"help": "print the entity counts per label"})
    limit: int = field(default=-1, metadata={"help": "read at most N input texts, -1 = all"})
    seed: int = field(default=42, metadata={"help": "seed of the replacement draws"})
    # Declared last: the field's name hides ``dataclasses.field`` for the rest of the class body.
    field: str = field(default="ideal_answer", metadata={"help": "JSON field holding the text"})

_YEAR = {"TEXT": {"REGEX": r"^(1[0-9]|20)\d\d$"}}
_DAY = {"TEXT": {"REGEX": r"^([1-9]|[12]\d|3[01])(st|nd|rd|th)?$"}}
_MONTH = {"LOWER": {"IN": MONTHS}}
_NUM = {"LIKE_NUM": True}
_CAP = {"TEXT": {"REGEX": r"^[A-Z][\w'\-.]*$"}, "IS_STOP": False, "LOWER": {"NOT_IN": MONTHS + WEEKDAYS}}


def _rule_patterns() -> dict[str, list[list[dict]]]:
    scale = {"LOWER": {"IN": SCALES}, "OP": "?"}
    return {
        "DATE": [
            [_MONTH, _DAY, {"ORTH": ",", "OP": "?"}, _YEAR],
            [_DAY, _MONTH, {"ORTH": ",", "OP": "?"}, _YEAR],
            [_MONTH, _YEAR], [_MONTH, _DAY], [_DAY, {"LOWER": "of"}, _MONTH], [_MONTH],
            [{"LOWER": {"IN": WEEKDAYS}}],
            [_YEAR], [{"TEXT": {"REGEX": r"^(1[0-9]|20)\d0s$"}}],
            [{"TEXT": {"REGEX": r"^\d{1,2}(st|nd|rd|th)$"}}, {"LOWER": {"IN": ["century", "centuries", "millennium"]}}],
            [_NUM, {"ORTH": "-", "OP": "?"}, {"LOWER": {"IN": DURATIONS}}],
            [_YEAR, {"ORTH": {"IN": ["-", "–", "to"]}}, _YEAR],
        ],
        "MONEY": [
            [{"ORTH": {"IN": CURRENCY_SYMBOLS}}, _NUM, scale],
            [_NUM, scale, {"LOWER": {"IN": CURRENCY_WORDS}}],
        ],
        "PERCENT": [[_NUM, {"ORTH": "%"}], [_NUM, {"LOWER": {"IN": ["percent", "per-cent"]}}]],
        "QUANTITY": [[_NUM, scale, {"ORTH": "-", "OP": "?"}, {"LOWER": {"IN": UNITS}}]],
        "ORDINAL": [[{"LOWER": {"IN": ORDINAL_WORDS}}], [{"TEXT": {"REGEX": r"^\d+(st|nd|rd|th)$"}}]],
        "CARDINAL": [[_NUM, {"LOWER": {"IN": SCALES}, "OP": "*"}]],
        "NAME": [
            [dict(_CAP, OP="+")],
            [dict(_CAP, OP="+"), {"LOWER": {"IN": NAME_CONNECTORS}}, dict(_CAP, OP="+")],
            [dict(_CAP, OP="+"), {"LOWER": {"IN": NAME_CONNECTORS}}, {"LOWER": {"IN": NAME_CONNECTORS}},
             dict(_CAP, OP="+")],
        ],
    }


def _resolve_overlaps(spans: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Longest span first, then label priority, then leftmost; keep the spans that do not overlap a kept one."""
    prio = {lab: i for i, lab in enumerate(LABEL_PRIORITY)}
    taken: set[int] = set()
    kept = []
    for label, start, end in sorted(spans, key=lambda s: (-(s[2] - s[1]), prio.get(s[0], 99), s[1])):
        if any(t in taken for t in range(start, end)):
            continue
        kept.append((label, start, end))
        taken.update(range(start, end))
    return sorted(kept, key=lambda s: s[1])


def _register_rule_component() -> None:
    from spacy.language import Language

    if Language.has_factory(RULE_COMPONENT):
        return

    @Language.factory(RULE_COMPONENT)
    def _make_rule_ner(nlp, name):
        return RuleEntityTagger(nlp)


class RuleEntityTagger:
    """spaCy component: token-pattern matchers for dates, numbers/quantities and capitalised names."""

    def __init__(self, nlp):
        from spacy.matcher import Matcher

        self.matcher = Matcher(nlp.vocab)
        for label, patterns in _rule_patterns().items():
            self.matcher.add(label, patterns, greedy="LONGEST")

    def __call__(self, doc):
        from spacy.tokens import Span

        vocab = doc.vocab
        spans = [(vocab.strings[mid], s, e) for mid, s, e in self.matcher(doc)]
        doc.ents = [Span(doc, s, e, label=lab) for lab, s, e in _resolve_overlaps(spans)]
        return doc


def build_rule_pipeline():
    """A blank English pipeline with the rule-based entity tagger (no download needed)."""
    import spacy

    _register_rule_component()
    nlp = spacy.blank("en")
    nlp.add_pipe(RULE_COMPONENT)
    return nlp


def load_ner_pipeline(spacy_model: str = DEFAULT_SPACY_MODEL, prefer_gpu: bool = False):
    """Returns (nlp, name actually used).  ``rule`` = the built-in fallback; ``auto`` = en_core_web_trf when
    installed, else the fallback.  A named model that is not installed is an error saying what to do."""
    import spacy

    if spacy_model == RULE_MODEL:
        return build_rule_pipeline(), RULE_MODEL
    if prefer_gpu:
        spacy.prefer_gpu()
    if spacy_model == "auto":
        try:
            return spacy.load(DEFAULT_SPACY_MODEL), DEFAULT_SPACY_MODEL
        except (OSError, ImportError) as exc:
            logger.info("spaCy model %s not available (%s); using the rule-based fallback", DEFAULT_SPACY_MODEL,
                        str(exc).splitlines()[0])
            return build_rule_pipeline(), RULE_MODEL
    try:
        return spacy.load(spacy_model), spacy_model
    except (OSError, ImportError) as exc:
        raise ModelLoadError(f"spaCy model '{spacy_model}' is not installed ({str(exc).splitlines()[0]}). Install it "
                           f"(python -m spacy download {spacy_model}, or pip install its wheel) or pass "
                           "--spacy_model rule for the offline rule-based tagger") from None


def _pipe_disable(nlp) -> list[str]:
    return [p for p in ("parser", "lemmatizer", "tagger", "morphologizer", "attribute_ruler", "senter")
            if p in nlp.pipe_names]


class NERSwapper:
    """Knowledge base of entity texts per label, and same-label swaps drawn with a seeded RNG."""

    def __init__(self, nlp, seed: int = 42):
        self.nlp = nlp
        self.rng = random.Random(seed)
        self.entity_map: dict[str, list[str]] = {}

    def docs(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False):
        from tqdm.auto import tqdm

        it = self.nlp.pipe(list(texts), batch_size=batch_size, disable=_pipe_disable(self.nlp))
        return list(tqdm(it, total=len(texts), desc="NER", disable=not progress, unit="text"))

    def build_knowledge_base(self, texts: Sequence[str] | None = None, docs=None, batch_size: int = 64,
                             progress: bool = False) -> dict[str, list[str]]:
        docs = docs if docs is not None else self.docs(texts or [], batch_size, progress)
        kb: dict[str, set[str]] = defaultdict(set)
        for doc in docs:
            for ent in doc.ents:
                text = ent.text.strip()
                if text:
                    kb[ent.label_].add(text)
        # Sorted so the same seed gives the same swaps regardless of set order.
        self.entity_map = {label: sorted(v) for label, v in sorted(kb.items())}
        return self.entity_map

    def swap_entities(self, text: str, doc=None) -> tuple[str, list[dict]]:
        """Replace every entity that has a different same-label candidate; returns (new text, swaps made).
        The text comes back unchanged (with no swaps) when no entity can be replaced."""
        doc = doc if doc is not None else self.nlp(text)
        swaps = []
        out = text
        for ent in sorted(doc.ents, key=lambda e: e.start_char, reverse=True):
            candidates = [c for c in self.entity_map.get(ent.label_, []) if c.casefold() != ent.text.casefold()]
            if not candidates:
                continue
            repl = self.rng.choice(candidates)
            out = out[:ent.start_char] + repl + out[ent.end_char:]
            swaps.append({"label": ent.label_, "original": ent.text, "replacement": repl, "start": ent.start_char})
        swaps.reverse()
        return out, swaps


def make_medium_fakes(view: Sequence[dict], swapper: NERSwapper, batch_size: int = 64, progress: bool = True,
                      keep_swaps: bool = True) -> tuple[list[dict], Counter]:
    """One medium fake per item whose ideal answer has a swappable entity; the knowledge base is built from
    all ideal answers of the view first (one NER pass serves both)."""
    counts: Counter = Counter()
    answers = [item["ideal_answer"] for item in view]
    docs = swapper.docs(answers, batch_size, progress)
    kb = swapper.build_knowledge_base(docs=docs)
    counts.update({f"kb_{label}": len(v) for label, v in kb.items()})
    out = []
    for item, doc in zip(view, docs):
        if not doc.ents:
            counts["no_entity"] += 1
            continue
        fake, swaps = swapper.swap_entities(item["ideal_answer"], doc)
        if not swaps or same_answer(fake, item["ideal_answer"]):
            counts["no_swap_possible"] += 1
            continue
        rec = fake_record(item, fake, MEDIUM_TYPE)
        if keep_swaps:
            rec["swaps"] = swaps
        out.append(rec)
        counts["written"] += 1
    return out, counts


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------

def write_medium_fakes(cfg: MediumFakeConfig, view_cfg: SFTView) -> dict:
    """generate_medium_fakes.py: the medium fakes of the view into ``cfg.output_file``; returns the counts."""
    out_dir = start_stage(Path(cfg.output_file).resolve().parent, (cfg, view_cfg))
    view, vstats = load_view(view_cfg)
    nlp, used = load_ner_pipeline(cfg.spacy_model, prefer_gpu=cfg.prefer_gpu)
    print(f"NER pipeline: {used}" + (" (rule-based offline fallback)" if used == RULE_MODEL else ""))
    fakes, counts = make_medium_fakes(view, NERSwapper(nlp, seed=cfg.seed), batch_size=cfg.batch_size,
                                      progress=cfg.progress)
    write_jsonl_atomic(cfg.output_file, fakes)
    return finish_stage(out_dir, (cfg, view_cfg), {"spacy_model_used": used, **vstats, **dict(counts)})


def read_texts(path: str, field: str, limit: int) -> list[str]:
    """Plain text (one per line, for .txt) or the ``field`` of each JSON line (a list gives its first element)."""
    if path.endswith(".txt"):
        texts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = []
        for rec in read_jsonl(path, required=[field]):
            val = rec[field]
            val = val[0] if isinstance(val, list) and val else val
            if isinstance(val, str) and val.strip():
                texts.append(val.strip())
    return texts[:limit] if limit >= 0 else texts


def swap_texts(cfg: NERSwapConfig) -> dict:
    """ner_swapper.py: the knowledge base from the input texts (and ``cfg.text``), then every target's entities
    swapped; returns the counts."""
    setup_logging()
    if not cfg.input_file and not cfg.text:
        raise ValueError("give --input_file and/or --text")
    kb_texts = read_texts(cfg.input_file, cfg.field, cfg.limit) if cfg.input_file else []
    nlp, used = load_ner_pipeline(cfg.spacy_model)
    print(f"NER pipeline: {used}")
    swapper = NERSwapper(nlp, seed=cfg.seed)
    kb = swapper.build_knowledge_base(kb_texts + list(cfg.text))
    if cfg.show_kb:
        print(json.dumps({label: len(v) for label, v in kb.items()}, indent=2))
    results = []
    for text in list(cfg.text) or kb_texts:
        swapped, swaps = swapper.swap_entities(text)
        results.append({"text": text, "swapped": swapped, "swaps": swaps})
    if cfg.output_file:
        write_jsonl_atomic(cfg.output_file, results)
    else:
        for r in results:
            print(json.dumps({"text": r["text"], "swapped": r["swapped"]}, ensure_ascii=False))
    counts = {"spacy_model_used": used, "kb_texts": len(kb_texts), "swapped": sum(bool(r["swaps"]) for r in results),
              "unchanged": sum(not r["swaps"] for r in results)}
    if cfg.output_file:
        write_run_config(Path(cfg.output_file).resolve().parent, cfg, extra={"counts": counts})
    print(json.dumps(counts, indent=2))
    return counts
