"""Brands, read from the catalogue's own display names: the words before the gender word.

Display names start with the brand and then say who the product is for: "Puma Men Grey T-shirt",
"Red Tape Men Brown Casual Shoes", "United Colors of Benetton Women Blue Top", "Gini and Jony
Boy's Kaleb Kidswear". :func:`brand_of` takes the leading words before the first gender word
(at most :data:`MAX_BRAND_WORDS`); :func:`brand_counts` counts them over a catalogue, so a brand
is what recurs there, not a hard-coded list. The same rule is written as portable SQL
(:func:`brand_counts_sql`: ``split_part``, ``lower``, ``CASE``, which Databricks SQL and DataFusion
both have) for a backend that reads the table through a SQL warehouse.

A product "is" a brand when its display name starts with the brand's words
(:func:`has_brand`), which also covers names without a gender word ("Fabindia Beige Saree").
Pure Python: the service imports no Spark.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

# The words after which a display name stops naming the brand (compared in lower case).
GENDER_WORDS = ("men", "women", "mens", "womens", "men's", "women's", "woman", "boys", "girls", "boy's",
                "girl's", "boy", "girl", "kids", "kid's", "unisex")
MAX_BRAND_WORDS = 4  # "United Colors of Benetton"


def brand_of(name: str | None) -> str | None:
    """The words of ``name`` before its first gender word, or None ("Puma Men Grey T-shirt" -> "Puma")."""
    if not isinstance(name, str):
        return None
    words = name.split(" ")
    for position in range(1, min(MAX_BRAND_WORDS, len(words) - 1) + 1):
        if words[position].lower() in GENDER_WORDS:
            return " ".join(words[:position]).strip() or None
    return None


def brand_counts(names: Iterable[str | None]) -> dict[str, int]:
    """How many names start with each brand (:func:`brand_of`), keyed by its most common spelling."""
    return merge_spellings((brand, 1) for brand in map(brand_of, names) if brand)


def brand_counts_sql(table: str, column: str = "product_display_name") -> str:
    """:func:`brand_of` and its count per spelling, as one SQL statement over ``table`` (rows: brand, n)."""
    genders = ", ".join("'" + word.replace("'", "''") + "'" for word in GENDER_WORDS)
    cases = " ".join(
        f"WHEN lower(split_part({column}, ' ', {position + 1})) IN ({genders}) THEN "
        + ("concat(" + ", ' ', ".join(f"split_part({column}, ' ', {i})" for i in range(1, position + 1)) + ")"
           if position > 1 else f"split_part({column}, ' ', 1)")
        for position in range(1, MAX_BRAND_WORDS + 1))
    return (f"SELECT brand, count(*) AS n FROM (SELECT CASE {cases} END AS brand FROM {table}) AS b "
            f"WHERE brand IS NOT NULL AND brand <> '' GROUP BY brand")


def merge_spellings(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    """(spelling, count) rows -> brand counts keyed by the most common spelling (as :func:`brand_counts`)."""
    spellings: dict[str, Counter] = {}
    for brand, n in rows:
        if brand and brand.strip():
            spellings.setdefault(brand.strip().lower(), Counter())[brand.strip()] += int(n)
    return {counts.most_common(1)[0][0]: sum(counts.values()) for counts in spellings.values()}


def has_brand(name: str | None, brand: str) -> bool:
    """Whether the display name starts with the brand's words (any case)."""
    if not isinstance(name, str):
        return False
    head, want = name.lower().split(), brand.lower().split()
    return head[:len(want)] == want
