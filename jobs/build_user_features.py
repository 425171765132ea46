"""Job: build the user_style_features table from the personas (app/data/personas.json).

Each persona's style embedding is the normalised centroid of the hybrid vectors of
the products matching their preferences (category, colour, price range).
"""

from __future__ import annotations

import logging

import numpy as np

from conf import Config
from schemas import USER_FEATURES_SCHEMA

log = logging.getLogger(__name__)


def build_user_features(spark, config: Config, personas_path: str | None = None) -> list[dict]:
    """Compute and overwrite the user_style_features table; returns its rows (without embeddings)."""
    from app.services.personas import PERSONAS_FILE, compute_user_features, load_personas
    from streaming.tables import read_table

    personas = load_personas(personas_path or PERSONAS_FILE)
    emb = read_table(spark, config.tables.embeddings).select(
        "product_id", "price", "article_type", "base_color", "hybrid_embedding").toPandas()
    has = emb["hybrid_embedding"].notna().to_numpy()
    hybrid = np.zeros((len(emb), config.model.dimension))
    if has.any():
        hybrid[has] = np.stack(emb.loc[has, "hybrid_embedding"].to_numpy())
    features = compute_user_features(personas, emb, hybrid, has)
    rows = [tuple(r[f.name] for f in USER_FEATURES_SCHEMA.fields) for r in features.to_dict("records")]
    df = spark.createDataFrame(rows, USER_FEATURES_SCHEMA)
    ref = config.tables.user_features
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    writer.saveAsTable(ref.name) if ref.name else writer.save(ref.path)
    summary = features.drop(columns=["user_embedding"]).to_dict("records")
    log.info("user_style_features written to %s: %s", ref, [(r["user_id"], r["matched_products"]) for r in summary])
    return summary


def main(argv: list[str] | None = None) -> None:
    from jobs.cli import parser, setup
    from streaming.spark import get_spark

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--personas", help="personas JSON (default: app/data/personas.json)")
    args = p.parse_args(argv)
    config = setup(args)
    for row in build_user_features(get_spark(config), config, args.personas):
        print(row)


if __name__ == "__main__":
    main()
