"""Query rules: shoppers' words for needs, occasions, seasons and ages, read as the catalogue's labels.

Read from a text file (``conf/query_rules.txt``, ``search.rules_file``), editable without code::

    [occasion] usage boost                       # a section: kind, catalogue column, boost or filter
    gym, workout, running => Sports              # these phrases mean this catalogue value
    office, work, formal => Formal               # one or more values, comma-separated

A **boost** ranks products with the value higher and leaves the words in the text (they help every
retriever); a **filter** keeps only those products, and its words leave the text, as price and
gender phrases do. Phrases match whole words, any case, a plural ``s`` either way ("laptops" reads
"laptop"), longest first; within a section a word is read once. ``#`` starts a comment. A malformed
line is a :class:`RulesError` naming ``file:line``. Values the index does not have are never applied.
Pure Python: the service imports no Spark.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from fashion_catalog.conf import ActionableError
from fashion_catalog.schemas import FILTER_COLUMNS

MODES = ("boost", "filter")
_SECTION = re.compile(r"^\[(\w+)\]\s+(\w+)\s+(\w+)$")
_WORD = re.compile(r"[\w'-]+")


class RulesError(ActionableError, ValueError):
    """A rules file line that cannot be read; the message names the file and the line."""


def stem(word: str) -> str:
    """A word compared without case, a possessive or a plural s: "Laptops" -> "laptop", "kid's" -> "kid"."""
    word = word.lower()
    if word.endswith("'s"):
        word = word[:-2]
    word = word.rstrip("'")
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def windows(n: int, longest: int) -> Iterator[tuple[int, int]]:
    """(start, size) of every run of at most ``longest`` of ``n`` words, longest first, then left to right: the
    order every phrase reader (rules, brands, colours and types, synonyms) matches in."""
    for size in range(longest, 0, -1):
        for i in range(n - size + 1):
            yield i, size


def words_of(text: str) -> list[tuple[str, int, int]]:
    """(stemmed word, start, end) of each word of ``text``."""
    return [(stem(m.group(0)), m.start(), m.end()) for m in _WORD.finditer(text)]


@dataclass(frozen=True)
class Section:
    """A kind of reading (occasion, season, age, need…), the column it applies to and how."""

    kind: str
    column: str
    mode: str
    rules: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)  # stemmed phrase -> values


@dataclass(frozen=True)
class RuleReading:
    """One phrase of a query read by a rule: where it is, what it means and how it applies."""

    phrase: str
    kind: str
    column: str
    values: tuple[str, ...]
    mode: str
    start: int
    end: int


@dataclass
class Rules:
    """The sections of a rules file, in file order."""

    sections: list[Section] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, source: str = "<rules>") -> Rules:
        sections: list[Section] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source}:{number}"
            header = _SECTION.match(line)
            if header:
                kind, column, mode = header.groups()
                if column not in FILTER_COLUMNS or FILTER_COLUMNS[column] != "string":
                    raise RulesError(f"{where}: {column!r} is not a text column a filter may name; use one of "
                                     f"{sorted(c for c, t in FILTER_COLUMNS.items() if t == 'string')}")
                if mode not in MODES:
                    raise RulesError(f"{where}: a section applies as 'boost' or 'filter', got {mode!r}")
                sections.append(Section(kind, column, mode, {}))
                continue
            if line.startswith("["):
                raise RulesError(f"{where}: a section header is '[kind] column boost|filter', got {raw.strip()!r}")
            if not sections:
                raise RulesError(f"{where}: a rule before any section; start with '[kind] column boost|filter'")
            if line.count("=>") != 1:
                raise RulesError(f"{where}: expected 'phrase, phrase => Value, Value', got {raw.strip()!r}")
            left, right = line.split("=>")
            phrases = [tuple(w for w, _, _ in words_of(p)) for p in left.split(",")]
            values = tuple(v.strip() for v in right.split(","))
            if not all(phrases) or not all(values):
                raise RulesError(f"{where}: empty phrase or value in {raw.strip()!r}")
            for phrase in phrases:
                known = sections[-1].rules.get(phrase, ())
                sections[-1].rules[phrase] = known + tuple(v for v in values if v not in known)
        return cls(sections)

    @classmethod
    def load(cls, path: str) -> Rules:
        with open(path, encoding="utf-8") as fh:
            return cls.parse(fh.read(), path)

    def columns(self) -> set[str]:
        """The catalogue columns the rules apply to."""
        return {s.column for s in self.sections}

    def phrases(self) -> set[str]:
        """Every phrase of every rule, stemmed words joined by a space (to keep brands from shadowing them)."""
        return {" ".join(p) for s in self.sections for p in s.rules}

    def read(self, text: str, known: dict[str, frozenset[str]], ignore: frozenset[str] = frozenset()
             ) -> list[RuleReading]:
        """The readings of ``text``: per section, longest phrases first, each word read once; values the
        index has (``known``: column -> values; a column it lacks applies nothing), ``ignore``d phrases skipped."""
        words = words_of(text)
        out: list[RuleReading] = []
        for section in self.sections:
            values_known = known.get(section.column, frozenset())
            longest = max((len(p) for p in section.rules), default=0)
            used: set[int] = set()
            for i, size in windows(len(words), longest):
                span = set(range(i, i + size))
                key = tuple(w for w, _, _ in words[i:i + size])
                if used & span or key not in section.rules:
                    continue
                start, end = words[i][1], words[i + size - 1][2]
                phrase = text[start:end]
                values = tuple(v for v in section.rules[key] if v in values_known)
                if not values or phrase.lower() in ignore:
                    continue
                used |= span
                out.append(RuleReading(phrase, section.kind, section.column, values, section.mode, start, end))
        return sorted(out, key=lambda r: r.start)
