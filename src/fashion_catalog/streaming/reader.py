"""Read the products table's Change Data Feed and reduce it to one final state per product.

The final-state rule is written once in :mod:`fashion_catalog.schemas.change_feed`; :func:`final_state`
is its Spark implementation, ``schemas.change_feed.final_states`` its Arrow twin (tiny batches, and
the search index following the embeddings table).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fashion_catalog.conf import Config
from fashion_catalog.lakehouse.tables import TableMissingError, table_exists
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.change_feed import DELETE, STATE_CHANGES, TIE_COLUMNS
from fashion_catalog.udfs.columns import reusable_columns


def read_product_changes(spark: SparkSession, config: Config) -> DataFrame:
    """Streaming DataFrame of the products table's Change Data Feed.

    Without ``stream.starting_version`` the first micro-batch is the table's
    current snapshot delivered as inserts; afterwards only changes follow.
    """
    ref = config.tables.products
    if not table_exists(spark, ref):
        raise TableMissingError(f"products table {ref} does not exist: "
                                "run `python -m fashion_catalog.jobs.load_catalog` first")
    reader = (
        spark.readStream.format("delta")
        .option("readChangeFeed", "true")
        .option("maxFilesPerTrigger", config.stream.max_files_per_trigger)
    )
    if config.stream.starting_version is not None:
        reader = reader.option("startingVersion", config.stream.starting_version)
    return reader.table(ref.name) if ref.name else reader.load(ref.path)


def final_state(changes: DataFrame) -> DataFrame:
    """Keep the last state of each product in a batch of CDF rows (the rule of :mod:`schemas.change_feed`).

    Latest ``_commit_version`` wins; inside one commit a surviving row wins over a
    delete (an overwrite deletes and re-inserts in one commit), and two survivors are
    ordered by their product columns (rule 4, the same pick as the Arrow twin
    ``schemas.change_feed.final_states``). Returns the product columns plus ``_deleted``
    and ``source_commit_version``.
    """
    rows = changes.filter(F.col("_change_type").isin(*STATE_CHANGES))
    order = Window.partitionBy("product_id").orderBy(
        F.col("_commit_version").desc(),
        F.when(F.col("_change_type") == DELETE, 0).otherwise(1).desc(),
        *_tie_order(),
    )
    return (
        rows.withColumn("_rank", F.row_number().over(order))
        .filter(F.col("_rank") == 1)
        .select(
            *PRODUCT_COLUMNS,
            (F.col("_change_type") == DELETE).alias("_deleted"),
            F.col("_commit_version").cast("long").alias("source_commit_version"),
        )
    )


def snapshot_as_state(products: DataFrame, version: int) -> DataFrame:
    """A batch snapshot of products in the same shape as :func:`final_state` (for backfill).

    A product id that appears twice in the products table gives one state (the same
    deterministic pick as :func:`final_state`), so no path writes a second row for an id.
    """
    one = Window.partitionBy("product_id").orderBy(*_tie_order())
    return (
        products.withColumn("_rank", F.row_number().over(one)).filter(F.col("_rank") == 1)
        .select(*PRODUCT_COLUMNS, F.lit(False).alias("_deleted"),
                F.lit(version).cast("long").alias("source_commit_version"))
    )


@reusable_columns
def _tie_order() -> list:
    """Rule 4 of :mod:`schemas.change_feed`, greatest first: the reverse of ``ASC NULLS LAST`` per column."""
    return [F.col(c).desc_nulls_first() for c in TIE_COLUMNS]
