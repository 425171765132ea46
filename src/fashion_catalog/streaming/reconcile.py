"""Remove rows of the multimodal table whose product no longer exists.

The stream learns about deletes from the products table's Change Data Feed. A stream that
starts on a new checkpoint replays the current snapshot, which cannot show products deleted
while no stream ran, and a backfill planned from an older snapshot may race a delete: this
reconciliation (run when a new checkpoint starts, at the end of every backfill, and as
``jobs.reconcile``) deletes those orphans in one MERGE, which the indexes follow like any delete.
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from fashion_catalog.conf import Config
from fashion_catalog.lakehouse.tables import merge_into, read_table
from fashion_catalog.streaming.batch import with_retries

log = logging.getLogger(__name__)


def reconcile(spark: SparkSession, config: Config) -> dict:
    """Delete embeddings rows of products absent from the products table; returns {"deleted": n}."""
    detail = spark.sql(f"DESCRIBE DETAIL {config.tables.embeddings.sql}").select("numFiles").first()
    if detail is not None and detail.numFiles == 0:
        return {"deleted": 0}  # nothing stored yet (a first start): skip the join (metadata only, no scan)
    def attempt(_: int) -> dict:
        # Read anew on each attempt: a concurrent writer (the stream) that committed first may have added both.
        products = read_table(spark, config.tables.products).select("product_id").distinct()
        return merge_into(spark, config.tables.embeddings, products,
                          "ON t.product_id = s.product_id WHEN NOT MATCHED BY SOURCE THEN DELETE")

    result = with_retries(attempt, config, "reconcile")
    deleted = int(result.get("num_deleted_rows", 0))
    if deleted:
        log.info("reconcile: removed %d rows of products that no longer exist", deleted)
    return {"deleted": deleted}
