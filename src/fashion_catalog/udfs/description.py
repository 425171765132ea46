"""The product text description fed to the CLIP text encoder, as Spark SQL.

One expression, used by the stream, the backfill and anything that needs to
rebuild the text a vector was computed from.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from fashion_catalog.schemas.description import PRICE_TIERS, TOP_TIER, price_tier
from fashion_catalog.udfs.columns import reusable_columns

__all__ = ["description_expr", "price_tier", "price_tier_expr"]

def price_tier_expr(price: Column | str = "price") -> Column:
    """Price tier: < 30 affordable, < 70 mid-range, < 120 premium, else luxury; null stays null."""
    price = F.col(price) if isinstance(price, str) else price
    expr = None
    for bound, name in PRICE_TIERS:
        expr = (F.when(price < bound, F.lit(name)) if expr is None else expr.when(price < bound, F.lit(name)))
    return expr.when(price.isNotNull(), F.lit(TOP_TIER))


def _clean(col: str) -> Column:
    """Trimmed, whitespace-collapsed text; empty becomes null so it drops out of the sentence."""
    c = F.regexp_replace(F.trim(F.col(col)), r"\s+", " ")
    return F.when(c == "", F.lit(None)).otherwise(c)


@reusable_columns
def description_expr() -> Column:
    """Build the description from name, article type, colour, category, gender, season, usage, tier.

    Example: "Turtle Check Men Navy Blue Shirt, navy blue shirts, apparel for men,
    casual wear, fall season, mid-range price". Missing fields are left out.
    """
    name = _clean("product_display_name")
    colour_type = F.lower(F.concat_ws(" ", _clean("base_color"), _clean("article_type")))
    colour_type = F.when(colour_type == "", F.lit(None)).otherwise(colour_type)
    category = F.lower(_clean("master_category"))
    gender = F.concat(F.lit("for "), F.lower(_clean("gender")))
    category_gender = F.concat_ws(" ", category, gender)
    category_gender = F.when(category_gender == "", F.lit(None)).otherwise(category_gender)
    usage = F.concat(F.lower(_clean("usage")), F.lit(" wear"))
    season = F.concat(F.lower(_clean("season")), F.lit(" season"))
    tier = F.concat(price_tier_expr("price"), F.lit(" price"))
    return F.concat_ws(", ", name, colour_type, category_gender, usage, season, tier)
