"""Batch-embed the whole products table (resumable), optionally reusing stored image vectors; reembed.

The snapshot is processed in product_id chunks, each one MERGE commit. Resuming is keyed on
what is in the table, never on chunk numbers: every chunk is planned against the stored rows,
so a rerun after a crash encodes exactly the products that are missing, stale (another model,
other content) or whose last encode failed (up to ``stream.max_encode_attempts``), whatever
the chunks look like this time. Each chunk keeps only products that still exist when it runs,
and the run ends with a reconciliation, so a backfill planned from a snapshot the stream has
since moved past never resurrects a deleted product. With ``tables.image_embeddings`` set,
image vectors of the configured model are copied from that table instead of being recomputed.
"""

from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashion_catalog.conf import Config
from fashion_catalog.lakehouse.tables import latest_version, merge_into, read_table, table_exists
from fashion_catalog.streaming.batch import with_retries
from fashion_catalog.streaming.planner import has_error
from fashion_catalog.streaming.reader import snapshot_as_state
from fashion_catalog.streaming.reconcile import reconcile
from fashion_catalog.streaming.runner import Embedder
from fashion_catalog.udfs.encoding import RETRYABLE_IMAGE_ERRORS, RETRYABLE_TEXT_ERRORS
from fashion_catalog.udfs.vectors import norm_expr, normalize_expr

log = logging.getLogger(__name__)


def _chunks(ids: list[int], size: int) -> list[tuple[int, int]]:
    return [(ids[i], ids[min(i + size, len(ids)) - 1]) for i in range(0, len(ids), size)]


def seed_image_vectors(spark: SparkSession, config: Config, state: DataFrame, embedder: Embedder) -> int:
    """Insert rows for products whose image vector exists in ``tables.image_embeddings``.

    They get the stored image vector and image hash now; the normal pass then
    sees the image as unchanged and encodes only the text. Returns rows seeded.
    """
    ref = config.tables.image_embeddings
    if ref is None or not table_exists(spark, ref):
        if ref is not None:
            log.warning("image_embeddings table %s not found: encoding every image", ref)
        return 0
    existing = read_table(spark, ref).filter(F.col("embedding_model") == config.model.id)
    stored = read_table(spark, config.tables.embeddings).select("product_id")
    todo = state.join(stored, "product_id", "left_anti").join(
        existing.select("product_id", F.col("image_embedding").alias("_reused")), "product_id")
    seeded = (
        todo.withColumn("image_hash", embedder.udfs["image_hash"](F.col("image_path")))
        # Vectors from elsewhere are re-normalised so the table's invariant holds.
        .withColumn("_n", norm_expr("_reused"))
        .withColumn("image_embedding", normalize_expr("_reused", "_n"))
        .select(*[c for c in state.columns if c != "_deleted"], "image_hash", "image_embedding")
        .withColumn("embedding_model", F.lit(config.model.id))
        .withColumn("embedding_dimension", F.size("image_embedding"))
        .withColumn("updated_at", F.current_timestamp())
    )
    n = seeded.count()
    if n:
        # Inserted only where no row exists yet: the stream may have written the product since ``stored`` was read.
        cols = ", ".join(f"`{c}`" for c in seeded.columns)
        values = ", ".join(f"s.`{c}`" for c in seeded.columns)
        result = with_retries(lambda _: merge_into(
            spark, config.tables.embeddings, seeded,
            f"ON t.product_id = s.product_id WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"),
            config, "seeding image vectors")
        n = int(result.get("num_inserted_rows", n))
    log.info("seeded %d rows with stored image vectors from %s", n, ref)
    return n


def backfill(spark: SparkSession, config: Config, product_ids: DataFrame | None = None,
             embedder: Embedder | None = None) -> dict:
    """Embed every product (or those in ``product_ids``) at the table's current version (see module docstring)."""
    return _embed_snapshot(embedder or Embedder(spark, config), product_ids, "backfill", retry_failed=False)


def _embed_snapshot(embedder: Embedder, product_ids: DataFrame | None, label: str, retry_failed: bool) -> dict:
    """The products' current states, in product_id chunks, each one batch on the Spark-task road."""
    spark, config = embedder.spark, embedder.config
    version = latest_version(spark, config.tables.products)
    products = read_table(spark, config.tables.products, version)
    if product_ids is not None:
        products = products.join(product_ids.select("product_id").distinct(), "product_id", "left_semi")
    state = snapshot_as_state(products, version)
    seeded = seed_image_vectors(spark, config, state, embedder) if label == "backfill" else 0
    ids = sorted(r[0] for r in state.select("product_id").collect())
    chunks = _chunks(ids, config.backfill_chunk_rows)
    total, done, started = len(ids), 0, time.perf_counter()
    totals = {"products": total, "seeded_image_vectors": seeded, "texts_encoded": 0, "images_encoded": 0,
              "unchanged": 0, "image_errors": 0, "text_encode_seconds": 0.0, "image_encode_seconds": 0.0,
              "phases_s": {}}
    for i, (lo, hi) in enumerate(chunks):
        # Products deleted since the snapshot was read are left out (the stream has deleted their rows).
        current = read_table(spark, config.tables.products).select("product_id")
        chunk = state.filter(F.col("product_id").between(lo, hi)).join(current, "product_id", "left_semi")
        # No idempotent-write ids: a replayed chunk is planned against the table and writes only what differs.
        m = embedder.apply_state(chunk, batch_id=i, txn=None, retry_failed=retry_failed)
        done += m.products
        for key in ("texts_encoded", "images_encoded", "unchanged", "image_errors"):
            totals[key] += getattr(m, key)
        totals["text_encode_seconds"] += m.phases_s.get("encode_text", 0.0)
        totals["image_encode_seconds"] += m.phases_s.get("encode_image", 0.0)
        for phase, seconds in m.phases_s.items():  # where the time goes, summed over the chunks
            totals["phases_s"][phase] = round(totals["phases_s"].get(phase, 0.0) + seconds, 3)
        rate = done / max(time.perf_counter() - started, 1e-9)
        log.info("%s progress: %d/%d products (%.1f%%), %.1f rows/s", label, done, total,
                 100.0 * done / max(total, 1), rate)
    totals["reconciled"] = reconcile(spark, config)["deleted"]
    totals["seconds"] = round(time.perf_counter() - started, 2)
    totals["snapshot_version"] = version
    log.info("%s done: %s", label, totals)
    return totals


def reembed(spark: SparkSession, config: Config, embedder: Embedder | None = None, failed_only: bool = False) -> dict:
    """Re-encode every stored row embedded with another model than ``model.id``; with ``failed_only``,
    every row whose last encode failed (model or endpoint error), whatever its attempts."""
    stored = read_table(spark, config.tables.embeddings)
    if failed_only:
        stale = stored.filter(has_error(RETRYABLE_TEXT_ERRORS + RETRYABLE_IMAGE_ERRORS, "embedding_error"))
    else:
        stale = stored.filter(~F.coalesce(F.col("embedding_model") == F.lit(config.model.id), F.lit(False)))
    return _embed_snapshot(embedder or Embedder(spark, config), stale.select("product_id"), "reembed",
                           retry_failed=failed_only)
