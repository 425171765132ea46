"""Shopper synonyms, Solr/Elasticsearch-style, read from a text file (``conf/synonyms.txt``).

Two kinds of lines (``#`` starts a comment, blank lines are skipped):

* ``a, b, c`` — equivalent words or phrases: a query naming one also matches the others;
* ``a, b => x, y`` — one-way: a query naming ``a`` or ``b`` also matches ``x`` and ``y`` (the
  catalogue's words), not the other way round.

Matching is on whole words, case-insensitive, longest first. :meth:`Synonyms.expand` returns
the catalogue phrases a query should also match; the keyword index matches them as phrases
and a vector query can append them to its text. Editable without code; a malformed line is a
:class:`SynonymError` naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fashion_catalog.conf import ActionableError
from fashion_catalog.search.rules import windows


class SynonymError(ActionableError, ValueError):
    """A synonyms file line that cannot be read; the message names the file and the line."""


def _clean(phrase: str) -> str:
    return " ".join(re.findall(r"[\w'-]+", phrase.lower()))


@dataclass
class Synonyms:
    """Phrase -> the phrases it also means."""

    rules: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, source: str = "<synonyms>") -> Synonyms:
        rules: dict[str, list[str]] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.count("=>") > 1:
                raise SynonymError(f"{source}:{number}: more than one '=>' in {raw.strip()!r}")
            if "=>" in line:
                left, right = (side.split(",") for side in line.split("=>"))
                sources, targets = [_clean(p) for p in left], [_clean(p) for p in right]
            else:
                sources = targets = [_clean(p) for p in line.split(",")]
            if not all(sources) or not all(targets) or (len(set(sources)) < 2 and "=>" not in line):
                raise SynonymError(f"{source}:{number}: expected 'a, b' or 'a => b' with non-empty phrases, "
                                   f"got {raw.strip()!r}")
            for phrase in sources:
                known = rules.setdefault(phrase, [])
                known += [t for t in targets if t != phrase and t not in known]
        return cls(rules)

    @classmethod
    def load(cls, path: str) -> Synonyms:
        with open(path, encoding="utf-8") as fh:
            return cls.parse(fh.read(), path)

    def expand(self, query: str) -> list[str]:
        """The phrases ``query``'s words also mean, in rule order, without the query's own phrases."""
        words = _clean(query).split()
        found: list[str] = []
        used: set[int] = set()
        longest = max((len(p.split()) for p in self.rules), default=0)
        for i, size in windows(len(words), longest):
            if used & set(range(i, i + size)):
                continue
            phrase = " ".join(words[i:i + size])
            if phrase in self.rules:
                used |= set(range(i, i + size))
                found += [t for t in self.rules[phrase] if t not in found and t not in words]
        return found
