"""The hybrid vector normalize(w * text + (1 - w) * image) and L2 normalisation as Spark SQL.

Twins of :func:`encoders.vectors.hybrid_vector` / ``l2_normalize`` (a test holds them equal).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fashion_catalog.encoders.vectors import HYBRID_BOTH, HYBRID_IMAGE_ONLY, HYBRID_TEXT_ONLY
from fashion_catalog.udfs.columns import reusable_columns


def norm_expr(vector: Column | str) -> Column:
    """The L2 norm of an array<double> column."""
    v = F.col(vector) if isinstance(vector, str) else vector
    return F.sqrt(F.aggregate(v, F.lit(0.0), lambda acc, x: acc + x * x))


def normalize_expr(vector: str, norm: str) -> Column:
    """``vector`` divided by its precomputed norm column ``norm`` (computed once per row, so this is O(dim))."""
    return F.transform(vector, lambda x: x / F.col(norm))


def with_hybrid(df: DataFrame, text_col: str, image_col: str, weight: float,
                out_col: str = "hybrid_embedding", source_col: str = "hybrid_source") -> DataFrame:
    """Add the hybrid vector and where it came from; a missing image falls back to the text vector."""
    raw, norm, out = _hybrid_columns(text_col, image_col, float(weight), out_col, source_col)
    return df.withColumns(raw).withColumns(norm).withColumns(out).drop("_hybrid_raw", "_hybrid_norm")


@reusable_columns
def _hybrid_columns(text_col: str, image_col: str, w: float, out_col: str, source_col: str) -> tuple:
    """The three steps of :func:`with_hybrid`: the weighted sum, its norm, then the vector and its source."""
    t, i = F.col(text_col), F.col(image_col)
    mixed = F.zip_with(t, i, lambda a, b: F.lit(w) * a + F.lit(1.0 - w) * b)
    both = t.isNotNull() & i.isNotNull()
    source: Column = (
        F.when(both, F.lit(HYBRID_BOTH))
        .when(t.isNotNull(), F.lit(HYBRID_TEXT_ONLY))
        .when(i.isNotNull(), F.lit(HYBRID_IMAGE_ONLY))
    )
    # With one side missing the hybrid *is* the other (already unit) vector, bit for bit.
    hybrid = (F.when(both & (F.col("_hybrid_norm") > 0), normalize_expr("_hybrid_raw", "_hybrid_norm"))
              .when(both, F.col("_hybrid_raw"))
              .when(t.isNotNull(), t)
              .otherwise(i))
    return ({"_hybrid_raw": F.when(both, mixed)}, {"_hybrid_norm": norm_expr("_hybrid_raw")},
            {out_col: hybrid, source_col: source})
