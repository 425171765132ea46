"""Hybrid vector: normalize(w * text + (1 - w) * image), in Spark SQL and in numpy."""

from __future__ import annotations

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

HYBRID_BOTH = "text+image"
HYBRID_TEXT_ONLY = "text_only"
HYBRID_IMAGE_ONLY = "image_only"


def hybrid_vector(text: np.ndarray, image: np.ndarray | None, text_weight: float) -> np.ndarray:
    """numpy twin of :func:`with_hybrid` (used by tests and the search service)."""
    if image is None:
        v = np.asarray(text, dtype=np.float64)
    else:
        v = text_weight * np.asarray(text, dtype=np.float64) + (1 - text_weight) * np.asarray(image, dtype=np.float64)
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def with_hybrid(df: DataFrame, text_col: str, image_col: str, weight: float,
                out_col: str = "hybrid_embedding", source_col: str = "hybrid_source") -> DataFrame:
    """Add the hybrid vector and where it came from; a missing image falls back to the text vector.

    The norm is computed once per row in its own column so that normalising is O(dim).
    """
    t, i = F.col(text_col), F.col(image_col)
    w = float(weight)
    mixed = F.zip_with(t, i, lambda a, b: F.lit(w) * a + F.lit(1.0 - w) * b)
    both = t.isNotNull() & i.isNotNull()
    norm = F.sqrt(F.aggregate(F.col("_hybrid_raw"), F.lit(0.0), lambda acc, x: acc + x * x))
    source: Column = (
        F.when(both, F.lit(HYBRID_BOTH))
        .when(t.isNotNull(), F.lit(HYBRID_TEXT_ONLY))
        .when(i.isNotNull(), F.lit(HYBRID_IMAGE_ONLY))
    )
    # With one side missing the hybrid *is* the other (already unit) vector, bit for bit.
    return (
        df.withColumn("_hybrid_raw", F.when(both, mixed))
        .withColumn("_hybrid_norm", norm)
        .withColumn(
            out_col,
            F.when(both & (F.col("_hybrid_norm") > 0),
                   F.transform("_hybrid_raw", lambda x: x / F.col("_hybrid_norm")))
            .when(both, F.col("_hybrid_raw"))
            .when(t.isNotNull(), t)
            .otherwise(i),
        )
        .withColumn(source_col, source)
        .drop("_hybrid_raw", "_hybrid_norm")
    )
