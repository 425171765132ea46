"""Query understanding: constraints a shopper types in words, read with the catalogue's own vocabulary.

``interpret("black tshirt for men under 50", vocabulary)`` reads:

* **explicit constraints** that become filters (Databricks filter dialect, see
  :mod:`indexes.filters`): price phrases ("under 50", "below $30", "between 20 and 40",
  "over 100", "up to 25"), gender phrases ("for men", "women's", "ladies") and the filter
  sections of the query rules, if any; their words leave the text, which no embedding would read
  as a constraint anyway;
* **brands** the catalogue's display names start with ("puma", "red tape": read as the brand
  when the whole phrase is one, so "red" is then no colour), a boost, or a filter kept after
  retrieval when the shopper says "only";
* **soft constraints** that boost: colours and article types the catalogue has (from its
  facets, so "Navy Blue" or "Casual Shoes" are known and made-up ones are not), and the boost
  sections of the query rules (:mod:`search.rules`: occasions, seasons, ages, categories, needs).
  Their words stay in the text: they help every retriever.

The result says what was read (:class:`Interpretation`: filters, boosts, the phrases behind
them, and the rest of the text), so a shopper can see it and undo it. Pure Python: the
service imports no Spark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from fashion_catalog.search.rules import RuleReading, Rules, windows, words_of

# A price: an optional currency, digits with thousands separators ("1,500") or a decimal part ("1.5", "1,5"),
# an optional currency word, and then no letter or digit ("1e308" is not "1").
_NUMBER = (r"(?:rs\.?\s*|inr\s*|usd\s*|\$|₹|€|£)?\s*(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?)"
           r"\s*(?:rs\.?|inr|usd|dollars?|rupees?|euros?)?(?!\w)")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
# Numbers that measure or count something else: after "size", "in", "since"..., before "pairs", "cm", "years"...
_NOT_PRICE_BEFORE = re.compile(r"(?:\b(?:size|sizes|sz|uk|us|eu|waist|chest|length|in|since|year|model)\s*)$",
                               re.I)
_NOT_PRICE_AFTER = re.compile(r"^\s*(?:size|sizes|pairs?|packs?|pcs|pieces|sets?|years?|yrs?|months?|"
                              r"inch(?:es)?|cm|mm|ml|kg|gb|tb|%)(?!\w)", re.I)
# Longest phrases first: "between 20 and 40" before "20".
_PRICE_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(rf"\b(?:between|from)\s+{_NUMBER}\s*(?:and|to|-)\s*{_NUMBER}", re.I), "range"),
    (re.compile(rf"(?<![\w.]){_NUMBER}\s*(?:-|to)\s*{_NUMBER}(?=\s|$)", re.I), "range"),
    (re.compile(rf"\b(?:under|below|less\s+than|cheaper\s+than|lower\s+than|within)\s+{_NUMBER}", re.I), "<"),
    (re.compile(rf"\b(?:up\s*to|at\s+most|max(?:imum)?|no\s+more\s+than|not\s+more\s+than)\s+{_NUMBER}", re.I),
     "<="),
    (re.compile(rf"\b(?:over|above|more\s+than|higher\s+than|pricier\s+than)\s+{_NUMBER}", re.I), ">"),
    # Not "from": "from 2019" is a year; "from 20 to 40" is the range above.
    (re.compile(rf"\b(?:at\s+least|min(?:imum)?|starting\s+(?:at|from))\s+{_NUMBER}", re.I), ">="),
]
# Shopper words for the catalogue's genders; a product for everyone (Unisex) fits men and women too.
# Ages (kids, boys, girls) are read by the query rules' filter section (conf/query_rules.txt).
_GENDER_PHRASES: list[tuple[str, tuple[str, ...]]] = [
    (r"for\s+(?:men|him|a\s+man|guys)|men'?s|mens|man'?s|male|gents?", ("Men", "Unisex")),
    (r"for\s+(?:women|her|a\s+woman|ladies)|women'?s|womens|woman'?s|ladies'?|lady'?s?|female", ("Women", "Unisex")),
    (r"unisex", ("Unisex",)),
    (r"men", ("Men", "Unisex")),
    (r"women", ("Women", "Unisex")),
]


def _norm(words: str) -> str:
    """Lower case, letters and digits only, singular: "T-Shirts" -> "tshirt", "Casual Shoes" -> "casualshoe"."""
    flat = re.sub(r"[^a-z0-9]", "", words.lower())
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("shes", "sh"), ("ches", "ch"), ("ss", "ss"), ("s", "")):
        if flat.endswith(suffix) and len(flat) > len(suffix) + 2:
            return flat[: -len(suffix)] + keep
    return flat


type_key = _norm  # how a phrase and a catalogue value are compared ("T-Shirts" and "tshirt" alike)


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """What the catalogue calls things: its colours, article types, genders and brands, and the values of the
    columns the query rules read (from the facets and the display names)."""

    colours: tuple[str, ...] = ()
    article_types: tuple[str, ...] = ()
    genders: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    values: dict[str, frozenset[str]] = field(default_factory=dict)

    @cached_property
    def brand_keys(self) -> dict[tuple[str, ...], str]:
        """Each brand by its stemmed words (how a query's words are compared), the first spelling kept."""
        keys: dict[tuple[str, ...], str] = {}
        for brand in self.brands:
            keys.setdefault(tuple(w for w, _, _ in words_of(brand)), brand)
        return keys

    @cached_property
    def types_by_key(self) -> dict[str, str]:
        """Each article type by :func:`type_key` ("tshirt" -> "Tshirts")."""
        return {type_key(t): t for t in self.article_types}

    @classmethod
    def from_facets(cls, facets: dict[str, list[str]], brands: tuple[str, ...] | list[str] = ()) -> Vocabulary:
        """From ``/api/v1/facets``-shaped values (``base_color``, ``article_type``, ``gender``, and any other
        column the rules read) and the catalogue's brands."""
        return cls(tuple(facets.get("base_color", ())), tuple(facets.get("article_type", ())),
                   tuple(facets.get("gender", ())), tuple(brands),
                   {column: frozenset(values) for column, values in facets.items()})


BRAND = "brand"  # the boost key of a brand: not a column, a product has it when its display name starts with it
ONLY_WORDS = ("only", "just", "exclusively")  # "only puma", "puma only": the brand as a filter
MIN_FILTER_BRAND_LETTERS = 4  # a one-word brand shorter than this ("Cat", "Ice") stays a boost after "only"


@dataclass(frozen=True)
class Interpretation:
    """How a query was read: filters (explicit), boosts (soft), brands to keep only, the phrases behind them, and
    the rest."""

    text: str
    filters: dict = field(default_factory=dict)
    boosts: dict = field(default_factory=dict)
    phrases: list = field(default_factory=list)  # {"phrase", "kind", "applied", "mode"}
    only: dict = field(default_factory=dict)  # {"brand": [...]}: kept after retrieval ("only puma")

    def as_dict(self) -> dict:
        return {"text": self.text, "filters": self.filters, "boosts": self.boosts, "only": self.only,
                "phrases": self.phrases}


MAX_PRICE = 1e9  # a larger number in a query is not a price (and would be refused as a filter value)


def _number(raw: str) -> float | int:
    """"1,500" -> 1500 (thousands); "1,5" -> 1.5 (a decimal comma); "1.5" -> 1.5."""
    value = float(raw.replace(",", "") if _THOUSANDS.fullmatch(raw) else raw.replace(",", "."))
    return int(value) if value.is_integer() else value


def _first(pattern: re.Pattern, query: str, ignore: frozenset[str]) -> re.Match | None:
    """The first match of ``pattern`` whose phrase the shopper has not asked to ignore."""
    return next((m for m in pattern.finditer(query) if m.group(0).strip().lower() not in ignore), None)


def _price_match(pattern: re.Pattern, query: str, ignore: frozenset[str]) -> re.Match | None:
    """Like :func:`_first`, for price phrases whose numbers are prices, not sizes, years or counts."""
    for m in pattern.finditer(query):
        if m.group(0).strip().lower() in ignore:
            continue
        if _NOT_PRICE_BEFORE.search(query[:m.start()]) or _NOT_PRICE_AFTER.match(query[m.end():]):
            continue
        return m
    return None


def _price(query: str, ignore: frozenset[str]) -> tuple[str, dict, list]:
    filters: dict = {}
    phrases: list = []
    for pattern, op in _PRICE_PATTERNS:
        match = _price_match(pattern, query, ignore)
        if not match or any(k.startswith("price") for k in filters):
            continue
        values = [_number(g) for g in match.groups() if g is not None]
        if any(v > MAX_PRICE for v in values):
            continue
        if op == "range":
            low, high = sorted(values)
            applied = {"price >=": low, "price <=": high}
        else:
            applied = {f"price {op}": values[0]}
        filters.update(applied)
        phrases.append({"phrase": match.group(0).strip(), "kind": "price", "applied": applied,
                        "mode": "filter"})
        query = query[:match.start()] + " " + query[match.end():]
    return query, filters, phrases


def _gender(query: str, known: tuple[str, ...], ignore: frozenset[str]) -> tuple[str, dict, list]:
    for pattern, genders in _GENDER_PHRASES:
        match = _first(re.compile(rf"(?<![\w'])(?:{pattern})(?![\w'])", re.I), query, ignore)
        if not match:
            continue
        values = [g for g in genders if not known or g in known]
        if not values:
            continue
        applied = {"gender": values}
        query = query[:match.start()] + " " + query[match.end():]
        return query, applied, [{"phrase": match.group(0).strip(), "kind": "gender", "applied": applied,
                                 "mode": "filter"}]
    return query, {}, []


def _soft(query: str, values: tuple[str, ...], column: str, kind: str,
          ignore: frozenset[str]) -> tuple[dict, list]:
    """Catalogue values named in the query (longest first, whole words, singular or plural)."""
    words = re.findall(r"[\w'-]+", query)
    by_norm = {}
    for value in values:
        by_norm.setdefault(_norm(value), value)
    found, phrases, used = [], [], set()
    for i, size in windows(len(words), 3):
        span = range(i, i + size)
        if used & set(span):
            continue
        phrase = " ".join(words[i:i + size])
        value = by_norm.get(_norm(phrase))
        if value and value not in found and phrase.lower() not in ignore:
            found.append(value)
            used |= set(span)
            phrases.append({"phrase": phrase, "kind": kind, "applied": {column: [value]}, "mode": "boost"})
    return ({column: found} if found else {}), phrases


def _blank(text: str, start: int, end: int) -> str:
    """``text`` with ``[start, end)`` made spaces (later offsets stay valid)."""
    return text[:start] + " " * (end - start) + text[end:]


def _brands(text: str, by_key: dict[tuple[str, ...], str], ignore: frozenset[str]
            ) -> tuple[list[str], list, list, list, list]:
    """Brands named in ``text`` (longest first, whole words): (brands, phrases, the spans of their words, brands
    said "only", the spans of the "only" words)."""
    words = words_of(text)
    longest = max((len(k) for k in by_key), default=0)
    found, phrases, spans, only, only_spans, used = [], [], [], [], [], set()
    for i, size in windows(len(words), longest):
        span = set(range(i, i + size))
        brand = by_key.get(tuple(w for w, _, _ in words[i:i + size]))
        start, end = words[i][1], words[i + size - 1][2]
        if used & span or brand is None or brand in found or text[start:end].lower() in ignore:
            continue
        # "only puma" / "puma only": the brand as a filter; the word "only" leaves the text. A short one-word
        # brand ("Cat", "Ice") may be an ordinary word, so it is never more than a boost.
        near = [j for j in (i - 1, i + size) if 0 <= j < len(words) and j not in used and words[j][0] in ONLY_WORDS]
        near = near if near and (size > 1 or len(words[i][0]) >= MIN_FILTER_BRAND_LETTERS) else []
        wide = (min(start, words[near[0]][1]), max(end, words[near[0]][2])) if near else (start, end)
        if text[wide[0]:wide[1]].lower() in ignore:  # the shopper removed "only puma": plain words again
            continue
        used |= span
        found.append(brand)
        spans.append((start, end))
        if near:
            used.add(near[0])
            only.append(brand)
            only_spans.append((words[near[0]][1], words[near[0]][2]))
        phrases.append({"phrase": text[wide[0]:wide[1]], "kind": BRAND, "applied": {BRAND: [brand]},
                        "mode": "filter" if near else "boost"})
    return found, phrases, spans, only, only_spans


def _rule_phrase(reading: RuleReading) -> dict:
    return {"phrase": reading.phrase, "kind": reading.kind, "applied": {reading.column: list(reading.values)},
            "mode": reading.mode}


def interpret(query: str, vocabulary: Vocabulary, ignore: tuple[str, ...] | list[str] = (),
              rules: Rules | None = None) -> Interpretation:
    """Read price, gender and the rules' filter phrases (filters), brands, the rules' boost phrases and known
    colours and types (boosts) out of ``query``.

    ``ignore``: phrases the shopper removed (the page's chips); they stay plain words of the text.
    """
    skip = frozenset(p.strip().lower() for p in ignore)
    rest, filters, phrases = _price(query, skip)
    rest, gender, gender_phrases = _gender(rest, vocabulary.genders, skip)
    filters.update(gender)
    phrases += gender_phrases
    readings = rules.read(rest, vocabulary.values, skip) if rules else []
    by_rules: set[str] = set()
    for reading in readings:
        # An explicit phrase read before ("for men") keeps its column; a rule does not override it, and two rule
        # phrases on one column add up ("for boys and girls").
        if reading.mode == "filter" and (reading.column not in filters or reading.column in by_rules):
            known = filters.setdefault(reading.column, [])
            known += [v for v in reading.values if v not in known]
            by_rules.add(reading.column)
            phrases.append(_rule_phrase(reading))
            rest = _blank(rest, reading.start, reading.end)
    brands, brand_phrases, brand_spans, only, only_spans = _brands(rest, vocabulary.brand_keys, skip)
    phrases += brand_phrases
    boosts: dict = {BRAND: brands} if brands else {}
    unread = rest  # the words a brand did not take: "red tape shoes" has no colour
    for start, end in brand_spans:
        unread = _blank(unread, start, end)
    rule_boosts = [r for r in (rules.read(unread, vocabulary.values, skip) if rules else []) if r.mode == "boost"]
    for reading in rule_boosts:
        if " " in reading.phrase.strip():  # "hold my trousers up" means belts: its words name no type
            unread = _blank(unread, reading.start, reading.end)
    soft: dict = {}
    soft_phrases: list = []
    for values, column, kind in ((vocabulary.colours, "base_color", "colour"),
                                 (vocabulary.article_types, "article_type", "type")):
        found, found_phrases = _soft(unread, values, column, kind, skip)
        soft.update(found)
        soft_phrases += found_phrases
    # A value the shopper named beats one a rule infers on the same column: "summer dresses" is dresses, not
    # every summer type.
    for reading in rule_boosts:
        if reading.column not in soft:
            known = boosts.setdefault(reading.column, [])
            known += [v for v in reading.values if v not in known]
            phrases.append(_rule_phrase(reading))
    for column, values in soft.items():
        known = boosts.setdefault(column, [])
        known += [v for v in values if v not in known]
    phrases += soft_phrases
    # The "only" words leave the text; the brand's own words stay (they help the keyword retriever).
    for start, end in only_spans:
        rest = _blank(rest, start, end)
    text = re.sub(r"\s+", " ", rest).strip(" ,.;-")
    return Interpretation(text=text or query.strip(), filters=filters, boosts=boosts, phrases=phrases,
                          only={BRAND: only} if only else {})
