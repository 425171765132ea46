"""Build the user_style_features table from the personas (``personalization/data/personas.json``).

Each persona's style embedding is the normalised centroid of the hybrid vectors of
the products matching their preferences (category, colour, price range).
"""

from __future__ import annotations

import logging

import numpy as np

from fashion_catalog.conf import Config
from fashion_catalog.lakehouse.tables import read_table, write_table
from fashion_catalog.personalization.personas import PERSONAS_FILE, compute_user_features, load_personas
from fashion_catalog.schemas import USER_FEATURES
from fashion_catalog.schemas.spark import USER_FEATURES_SCHEMA

log = logging.getLogger(__name__)


def build_user_features(spark, config: Config, personas_path: str | None = None) -> list[dict]:
    """Compute and overwrite the user_style_features table; returns its rows (without embeddings)."""
    personas = load_personas(personas_path or PERSONAS_FILE)
    emb = read_table(spark, config.tables.embeddings).select(
        "product_id", "price", "article_type", "base_color", "hybrid_embedding").toPandas()
    has = emb["hybrid_embedding"].notna().to_numpy()
    hybrid = np.zeros((len(emb), config.model.dimension))
    if has.any():
        hybrid[has] = np.stack(emb.loc[has, "hybrid_embedding"].to_numpy())
    features = compute_user_features(personas, emb, hybrid, has)
    rows = [tuple(r[name] for name in USER_FEATURES.names) for r in features.to_dict("records")]
    ref = config.tables.user_features
    write_table(spark.createDataFrame(rows, USER_FEATURES_SCHEMA), ref, mode="overwrite", overwrite_schema=True)
    summary = features.drop(columns=["user_embedding"]).to_dict("records")
    log.info("user_style_features written to %s: %s", ref, [(r["user_id"], r["matched_products"]) for r in summary])
    return summary
