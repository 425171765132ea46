"""Job: re-embed rows whose embedding_model differs from the configured model."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from conf import Config
from jobs.backfill import backfill
from streaming.tables import read_table


def reembed(spark: SparkSession, config: Config) -> dict:
    """Re-encode text and image of every stored row embedded with another model."""
    stale = read_table(spark, config.tables.embeddings).filter(
        ~F.coalesce(F.col("embedding_model") == F.lit(config.model.id), F.lit(False))
    ).select("product_id")
    return backfill(spark, config, product_ids=stale, label="reembed")


def main(argv: list[str] | None = None) -> None:
    from jobs.cli import parser, setup
    from streaming.spark import get_spark

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    config = setup(args)
    print(reembed(get_spark(config), config))


if __name__ == "__main__":
    main()
