"""The price tiers a product description names (the text contract of the text encoder).

``udfs.description`` builds the Spark SQL expression from these bounds; the
Python twin :func:`price_tier` serves code without Spark (tests, the demo, search).
"""

from __future__ import annotations

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
