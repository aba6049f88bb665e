"""A controlled open-book QA world: fictional people with typed attributes, where the right answer and the typical
hallucination of every question are known by construction.

Every *known* person has a default ("memory") value per attribute, and every context that mentions a known person
without asking about a conflict states those defaults, so a model trained on the world's contexts learns them.  A
context states 3-6 facts (one sentence each) about the asked person and one or two others; the question asks for
one fact; the answer is that fact's sentence (at least six words, so BLEU-4 and ROUGE-L mean something).

Three kinds of item:

* ``conflict``: a known person, and the context states a value for the asked attribute that differs from the
  default.  The right answer is the context's; the hallucinated answer is the memory answer (the sentence with the
  default value): the model answering from memory instead of from the context.
* ``agree``: a known person, the context states the default (right answer = memory answer).
* ``novel``: a person the world never states a default for (only the context can answer).
* ``recall`` (warm start only): a known person's question without a context, answered with the default.  The
  warm start's loss is on answers only, so these closed-book rows are where the model learns the world's memory,
  as a pretrained model learned its facts before it ever saw a context.

Splits do not leak: for every known (person, attribute) the non-default values are divided into those training
conflicts may state and those only held-out conflicts state, so no held-out conflict's right answer is ever a
sentence of a training text; held-out novel people are never named in training.

``check_item`` re-derives every label of an item from its context and question text and the world's defaults.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

FIRST_NAMES = ("Arlo", "Mira", "Tobin", "Elsa", "Corin", "Nadia", "Pell", "Iris", "Bram", "Lena", "Osric", "Thea",
               "Jory", "Wren", "Cato", "Maren", "Edda", "Rolf", "Sabin", "Ulla", "Vance", "Greta", "Hale", "Kira")
LAST_NAMES = ("Venn", "Stone", "Marsh", "Holt", "Quill", "Ashdown", "Brook", "Carver", "Dale", "Fenn", "Gale", "Hurst",
              "Inge", "Kettle", "Lark", "Moss", "Nye", "Orme", "Pike", "Reed", "Sorrel", "Thorn", "Wick", "Yarrow")


@dataclass(frozen=True)
class Attribute:
    """A typed attribute: its values and how a context states it (the answer is the same sentence) and asks it."""

    name: str
    values: tuple[str, ...]
    fact: str        # with {name} and {value}
    question: str    # with {name}

    def sentence(self, name: str, value: str) -> str:
        return self.fact.format(name=name, value=value)

    def pattern(self) -> re.Pattern:
        """The fact sentence as a regex with the named groups ``name`` and ``value``."""
        text = re.escape(self.fact).replace(r"\{name\}", "{name}").replace(r"\{value\}", "{value}")
        return re.compile(text.format(name=r"(?P<name>[A-Z][a-z]+ [A-Z][a-z]+)", value=r"(?P<value>[A-Za-z0-9]+)"))

    def question_pattern(self) -> re.Pattern:
        text = re.escape(self.question).replace(r"\{name\}", "{name}")
        return re.compile("^" + text.format(name=r"(?P<name>[A-Z][a-z]+ [A-Z][a-z]+)") + "$")


ATTRIBUTES: dict[str, Attribute] = {a.name: a for a in (
    Attribute("town", ("Marlow", "Dunmore", "Kessel", "Brindle", "Halvern", "Ostby", "Carrow", "Fenwick", "Tolland",
                       "Wexmoor", "Ashby", "Redhill", "Lorne", "Pellham", "Skerry", "Varde"),
              "{name} lives in the town of {value}.", "In which town does {name} live?"),
    Attribute("job", ("baker", "miller", "sailor", "potter", "weaver", "tailor", "farmer", "mason", "cooper", "smith",
                      "fisher", "carter", "glazier", "tanner", "joiner", "brewer"),
              "{name} works as a {value} by trade.", "What does {name} work as by trade?"),
    Attribute("colour", ("red", "blue", "green", "yellow", "purple", "orange", "grey", "white", "black", "brown",
                         "pink", "amber"),
              "The favourite colour of {name} is {value}.", "What is the favourite colour of {name}?"),
    Attribute("year", tuple(str(y) for y in range(1850, 1866)),
              "{name} was born in the year {value}.", "In which year was {name} born?"),
    Attribute("pet", ("cat", "dog", "ferret", "parrot", "goat", "rabbit", "tortoise", "hamster", "lizard", "pony",
                      "goose", "mouse"),
              "{name} keeps a {value} as a pet at home.", "Which animal does {name} keep as a pet?"),
    Attribute("instrument", ("cello", "flute", "harp", "lute", "drum", "fiddle", "horn", "piano", "banjo", "trumpet",
                             "viola", "bugle"),
              "{name} plays the {value} every evening.", "Which instrument does {name} play?"),
)}
KINDS = ("conflict", "agree", "novel", "recall")
CONTEXT_KINDS = KINDS[:3]   # the kinds with a context (pairs and held-out items)
MEMORY_UNITS = ("person", "item")


@dataclass(kw_only=True)
class WorldConfig:
    """The world's shape (``scripts/make_world.py`` generates its flags from these fields)."""

    seed: int = field(default=0, metadata={"help": "seed of everything: same seed, same world and files"})
    n_people: int = field(default=60, metadata={"help": "known people (each with a default value per attribute)"})
    n_novel: int = field(default=100, metadata={"help": "novel people of the training split (no defaults)"})
    n_novel_heldout: int = field(default=50, metadata={"help": "novel people named only in held-out items"})
    attributes: list[str] = field(default_factory=lambda: list(ATTRIBUTES), metadata={
        "help": f"attributes per person, from {sorted(ATTRIBUTES)}", "sep": ","})
    n_others: int = field(default=0, metadata={
        "help": "other known people a context may state facts about besides the asked one"})
    min_facts: int = field(default=3, metadata={"help": "fewest facts a context states"})
    max_facts: int = field(default=6, metadata={"help": "most facts a context states"})
    heldout_value_share: float = field(default=0.34, metadata={
        "help": "share of every known (person, attribute)'s non-default values that only held-out conflicts state"})
    memory_share: float = field(default=0.3, metadata={
        "help": "share of the warm start's conflict targets that are the memory answer"})
    memory_unit: str = field(default="person", metadata={
        "help": "person: the conflict items of a fixed memory_share of the known people get the memory answer as "
                "their target (a fact the model holds onto against the context); item: a random memory_share of all "
                "conflict items", "choices": list(MEMORY_UNITS)})

    def __post_init__(self):
        if isinstance(self.attributes, str):
            self.attributes = [a.strip() for a in self.attributes.split(",") if a.strip()]
        unknown = [a for a in self.attributes if a not in ATTRIBUTES]
        if unknown or not self.attributes:
            raise ValueError(f"--attributes: unknown {unknown}; choose from {sorted(ATTRIBUTES)}")
        if not 1 <= self.min_facts <= self.max_facts:
            raise ValueError(f"need 1 <= --min_facts <= --max_facts, got {self.min_facts}, {self.max_facts}")
        if self.max_facts > len(self.attributes) * (1 + self.n_others):
            raise ValueError(f"--max_facts {self.max_facts} needs more facts than {len(self.attributes)} attributes of "
                             f"1 + {self.n_others} people hold")
        names = len(FIRST_NAMES) * len(LAST_NAMES)
        if self.n_people + self.n_novel + self.n_novel_heldout > names:
            raise ValueError(f"at most {names} people in all (known + novel + held-out novel)")
        if self.n_people < self.n_others + 1:
            raise ValueError(f"--n_people must be at least {self.n_others + 1} (the asked person and --n_others)")
        if self.memory_unit not in MEMORY_UNITS:
            raise ValueError(f"--memory_unit must be one of {MEMORY_UNITS}, not {self.memory_unit!r}")
        for name in ("heldout_value_share", "memory_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name} must be in [0, 1]")


@dataclass
class World:
    """The people and their defaults.  ``train_values`` / ``heldout_values``: per (person, attribute) the
    non-default values training conflicts, respectively held-out conflicts, may state."""

    cfg: WorldConfig
    defaults: dict[str, dict[str, str]]          # known person -> attribute -> default value
    entrenched: list[str]                        # known people whose conflict targets are memory answers
    novel: list[str]
    novel_heldout: list[str]
    train_values: dict[tuple[str, str], list[str]]
    heldout_values: dict[tuple[str, str], list[str]]

    @property
    def people(self) -> list[str]:
        return list(self.defaults)

    def default(self, person: str, attribute: str) -> str | None:
        return self.defaults.get(person, {}).get(attribute)

    def to_json(self) -> dict:
        return {"defaults": self.defaults, "entrenched": self.entrenched, "novel": self.novel,
                "novel_heldout": self.novel_heldout,
                "heldout_values": {f"{p}|{a}": v for (p, a), v in self.heldout_values.items()}}


def build_world(cfg: WorldConfig) -> World:
    """The people (names drawn without repetition), their defaults and the train / held-out value split."""
    rng = random.Random(cfg.seed)
    names = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES]
    rng.shuffle(names)
    known = names[:cfg.n_people]
    novel = names[cfg.n_people:cfg.n_people + cfg.n_novel]
    novel_heldout = names[cfg.n_people + cfg.n_novel:cfg.n_people + cfg.n_novel + cfg.n_novel_heldout]
    defaults = {p: {a: rng.choice(ATTRIBUTES[a].values) for a in cfg.attributes} for p in known}
    train_values, heldout_values = {}, {}
    for p in known:
        for a in cfg.attributes:
            others = [v for v in ATTRIBUTES[a].values if v != defaults[p][a]]
            rng.shuffle(others)
            k = max(1, round(cfg.heldout_value_share * len(others)))
            heldout_values[(p, a)], train_values[(p, a)] = sorted(others[:k]), sorted(others[k:])
    n_entrenched = round(cfg.memory_share * len(known)) if cfg.memory_unit == "person" else 0
    entrenched = sorted(rng.sample(known, n_entrenched))
    return World(cfg, defaults, entrenched, novel, novel_heldout, train_values, heldout_values)


@dataclass
class WorldItem:
    """One question with its context and every answer the world knows for it."""

    id: str
    split: str                      # train | heldout
    kind: str                       # conflict | agree | novel | recall
    person: str
    attribute: str
    value: str                      # what the context states for the asked fact
    default: str | None             # the person's memory value (None: novel person)
    facts: list[tuple[str, str, str]]
    context: str
    question: str
    right_answer: str
    memory_answer: str | None       # the sentence with the default value (conflict: differs from right_answer)
    distractor_answer: str          # the sentence with a value that is neither in the context nor the default
    target: str = "context"         # the warm start's target: context (right_answer) or memory (memory_answer)

    @property
    def sft_answer(self) -> str:
        return self.memory_answer if self.target == "memory" else self.right_answer

    @property
    def hallucinated_answer(self) -> str:
        """HaluEval's hallucinated answer: the memory answer of a conflict, else the distractor."""
        return self.memory_answer if self.kind == "conflict" else self.distractor_answer


def _context_facts(world: World, rng: random.Random, person: str, attribute: str, value: str,
                   own: dict[str, str]) -> list[tuple[str, str, str]]:
    """The asked fact plus others about the asked person (``own`` values) and up to ``n_others`` known people (their
    defaults), in a random order, ``min_facts``-``max_facts`` in all; one fact per (person, attribute) at most."""
    cfg = world.cfg
    n_facts = rng.randint(cfg.min_facts, cfg.max_facts)
    others = rng.sample([p for p in world.people if p != person], cfg.n_others)
    pool = [(person, a, own[a]) for a in cfg.attributes if a != attribute]
    pool += [(p, a, world.defaults[p][a]) for p in others for a in cfg.attributes]
    facts = [(person, attribute, value)] + rng.sample(pool, min(n_facts - 1, len(pool)))
    rng.shuffle(facts)
    return facts


def make_item(world: World, rng: random.Random, item_id: str, split: str, kind: str) -> WorldItem:
    """A random item of ``kind`` in ``split``: the person, the asked attribute, the context value and the answers."""
    cfg = world.cfg
    attribute = rng.choice(cfg.attributes)
    attr = ATTRIBUTES[attribute]
    if kind == "novel":
        person = rng.choice(world.novel if split == "train" else world.novel_heldout)
        own = {a: rng.choice(ATTRIBUTES[a].values) for a in cfg.attributes}
        default, value = None, own[attribute]
    else:
        person = rng.choice(world.people)
        own = dict(world.defaults[person])
        default = own[attribute]
        if kind == "conflict":
            values = (world.train_values if split == "train" else world.heldout_values)[(person, attribute)]
            own[attribute] = rng.choice(values)
        value = own[attribute]
    facts = [] if kind == "recall" else _context_facts(world, rng, person, attribute, value, own)
    # a training distractor (a medium fake) never states a held-out value: no held-out answer is a training text
    excluded = {v for p, a, v in facts if a == attribute} | {default, value}
    if split == "train" and default is not None:
        excluded |= set(world.heldout_values[(person, attribute)])
    candidates = [v for v in attr.values if v not in excluded]
    if not candidates:
        raise ValueError(f"{attribute}: no value is left for a distractor; lower --heldout_value_share or --max_facts")
    distractor = rng.choice(candidates)
    return WorldItem(
        id=item_id, split=split, kind=kind, person=person, attribute=attribute, value=value, default=default,
        facts=facts, context=" ".join(ATTRIBUTES[a].sentence(p, v) for p, a, v in facts),
        question=attr.question.format(name=person), right_answer=attr.sentence(person, value),
        memory_answer=None if default is None else attr.sentence(person, default),
        distractor_answer=attr.sentence(person, distractor))


def kind_counts(n: int, shares: Sequence[float]) -> list[int]:
    """``n`` split by ``shares`` (one per kind of ``KINDS``), rounding so the counts add up to ``n``."""
    total = sum(shares)
    if total <= 0 or any(s < 0 for s in shares):
        raise ValueError(f"kind shares must be >= 0 with a positive sum, got {list(shares)}")
    counts = [int(n * s / total) for s in shares]
    for i in sorted(range(len(shares)), key=lambda i: -shares[i])[:n - sum(counts)]:
        counts[i] += 1
    return counts


def make_items(world: World, n: int, shares: Sequence[float], split: str, seed: int, prefix: str) -> list[WorldItem]:
    """``n`` items of ``split`` in a seeded random order, kinds in the proportions ``shares`` (conflict, agree,
    novel[, recall]); no two items with a context share context and question (recall items repeat, as facts do)."""
    rng = random.Random(seed)
    kinds = [k for k, c in zip(KINDS, kind_counts(n, shares)) for _ in range(c)]
    rng.shuffle(kinds)
    items, seen = [], set()
    for kind in kinds:
        for _ in range(100):
            item = make_item(world, rng, f"{prefix}{len(items)}", split, kind)
            if kind == "recall" or (item.context, item.question) not in seen:
                break
        else:
            raise ValueError(f"cannot draw {n} distinct {split} items from this world; make it larger")
        seen.add((item.context, item.question))
        items.append(item)
    return items


def assign_targets(world: World, items: Sequence[WorldItem], seed: int) -> None:
    """Set the warm start's target of every conflict item: the memory answer for the conflict items of entrenched
    people (``memory_unit=person``) or for a random ``memory_share`` of them (``item``); the context's otherwise."""
    conflicts = [it for it in items if it.kind == "conflict"]
    if world.cfg.memory_unit == "person":
        entrenched = set(world.entrenched)
        chosen = {it.id for it in conflicts if it.person in entrenched}
    else:
        rng = random.Random(seed)
        chosen = {it.id for it in rng.sample(conflicts, round(world.cfg.memory_share * len(conflicts)))}
    for it in items:
        it.target = "memory" if it.id in chosen else "context"


# ---------------------------------------------------------------------------------------------
# the checker: every label re-derived from the text
# ---------------------------------------------------------------------------------------------

def parse_facts(context: str, attributes: Sequence[str]) -> list[tuple[str, str, str]]:
    """(person, attribute, value) of every sentence of ``context``; a sentence no template reads is an error."""
    facts, rest = [], context
    patterns = {a: ATTRIBUTES[a].pattern() for a in attributes}
    while rest:
        for a, pat in patterns.items():
            m = pat.match(rest)
            if m:
                facts.append((m["name"], a, m["value"]))
                rest = rest[m.end():].lstrip(" ")
                break
        else:
            raise ValueError(f"unreadable context text at {rest[:60]!r}")
    return facts


def parse_question(question: str, attributes: Sequence[str]) -> tuple[str, str]:
    for a in attributes:
        m = ATTRIBUTES[a].question_pattern().match(question)
        if m:
            return m["name"], a
    raise ValueError(f"unreadable question {question!r}")


def derive_labels(context: str, question: str, world: World) -> dict:
    """What an item's labels must be, from its text and the world's defaults alone: the asked fact's value, the
    right answer, whether it is a conflict, and the memory answer (None for a person without defaults)."""
    attrs = world.cfg.attributes
    person, attribute = parse_question(question, attrs)
    default = world.default(person, attribute)
    stated = [v for p, a, v in parse_facts(context, attrs) if (p, a) == (person, attribute)]
    if not context and default is not None:
        stated, kind = [default], "recall"
    elif len(stated) != 1:
        raise ValueError(f"the context states {len(stated)} values for {person}'s {attribute}")
    else:
        kind = "novel" if default is None else "conflict" if stated[0] != default else "agree"
    attr = ATTRIBUTES[attribute]
    return {"person": person, "attribute": attribute, "value": stated[0],
            "right_answer": attr.sentence(person, stated[0]), "kind": kind,
            "memory_answer": None if default is None else attr.sentence(person, default)}


def check_item(item: WorldItem, world: World) -> list[str]:
    """Every way ``item``'s stored labels differ from the ones its text implies (empty when it is right)."""
    derived = derive_labels(item.context, item.question, world)
    problems = [f"{k}: stored {getattr(item, k)!r}, text says {v!r}" for k, v in derived.items()
                if getattr(item, k) != v]
    if item.distractor_answer in (item.right_answer, item.memory_answer) or \
            (item.context and item.distractor_answer in item.context):
        problems.append("the distractor answer is the right answer, the memory answer or a context sentence")
    if item.kind == "conflict" and item.hallucinated_answer != derived["memory_answer"]:
        problems.append("a conflict's hallucinated answer is not its memory answer")
    if len(item.right_answer.split()) < 6:
        problems.append("the answer has fewer than six words")
    return problems
