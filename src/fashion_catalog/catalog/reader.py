"""The products table as a pandas frame with the embedder's own description (training and evaluation read this)."""

from __future__ import annotations

import pandas as pd

from fashion_catalog.conf import Config
from fashion_catalog.lakehouse.tables import read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.udfs.description import description_expr


def read_catalog_frame(spark, config: Config) -> pd.DataFrame:
    """Products with the embedder's description (the same Spark SQL expression) as a pandas frame."""
    frame = read_table(spark, config.tables.products).select(*PRODUCT_COLUMNS, description_expr().alias("description"))
    return frame.toPandas()
