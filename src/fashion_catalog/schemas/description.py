"""The price tiers a product description names (the text contract of the text encoder).

``udfs.description`` builds the Spark SQL expression from these bounds; the
Python twins :func:`price_tier` and :func:`description` serve code without Spark (tests, the demo,
search, the stream's in-process road).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

# Upper bounds (exclusive) of the price tiers; above the last one is "luxury".
PRICE_TIERS: tuple[tuple[float, str], ...] = (
    (30.0, "affordable"),
    (70.0, "mid-range"),
    (120.0, "premium"),
)
TOP_TIER = "luxury"


def price_tier(price: float | None) -> str | None:
    """Python twin of :func:`udfs.description.price_tier_expr`."""
    if price is None:
        return None
    for bound, name in PRICE_TIERS:
        if price < bound:
            return name
    return TOP_TIER


# Spark's trim() removes the space character only; its regexp \s is Java's ASCII whitespace class, which is
# Python's \s under re.ASCII ([ \t\n\x0b\f\r]).
_RUNS = re.compile(r"\s+", re.ASCII)


def _clean(value: object) -> str | None:
    """Python twin of ``udfs.description._clean``: spaces trimmed, whitespace runs collapsed, empty -> None."""
    if value is None:
        return None
    text = _RUNS.sub(" ", str(value).strip(" "))
    return text or None


def _join(separator: str, *parts: str | None) -> str:
    """Spark's ``concat_ws``: the parts that are not null, joined (empty strings kept)."""
    return separator.join(p for p in parts if p is not None)


def description(row: Mapping[str, object]) -> str:
    """Python twin of :func:`udfs.description.description_expr` for one product row (a mapping of its columns).

    The text and its hash must equal what Spark computes, or the stream would re-encode what the other
    road wrote; ``tests/test_jobs.py`` holds the two equal on hostile strings.
    """
    name = _clean(row.get("product_display_name"))
    colour_type = _join(" ", _clean(row.get("base_color")), _clean(row.get("article_type"))).lower() or None
    category = _clean(row.get("master_category"))
    gender = _clean(row.get("gender"))
    category_gender = _join(" ", category.lower() if category else None,
                            f"for {gender.lower()}" if gender else None) or None
    usage, season = _clean(row.get("usage")), _clean(row.get("season"))
    price = row.get("price")
    tier = price_tier(float(price)) if price is not None else None
    return _join(", ", name, colour_type, category_gender, f"{usage.lower()} wear" if usage else None,
                 f"{season.lower()} season" if season else None, f"{tier} price" if tier else None)


def text_hash(text: str) -> str:
    """The description's content hash: Spark's ``sha2(description, 256)`` (hex of the UTF-8 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
