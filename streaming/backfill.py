"""Batch-embed the whole products table (resumable), optionally reusing stored image vectors; reembed.

The snapshot is processed in product_id chunks, each one MERGE commit keyed for
idempotence on (snapshot version, model, chunk). A rerun after a crash skips
committed chunks and rows whose hashes already match, so it resumes where it
stopped. With ``tables.image_embeddings`` set, image vectors of the configured
model are copied from that table instead of being recomputed.
"""

from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from conf import Config
from lakehouse.tables import latest_version, read_table, table_exists, write_table
from streaming.reader import snapshot_as_state
from streaming.runner import Embedder
from udfs.vectors import norm_expr, normalize_expr

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
        todo.withColumn("image_hash", embedder.udfs.image_hash(F.col("image_path")))
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
        write_table(seeded, config.tables.embeddings)
    log.info("seeded %d rows with stored image vectors from %s", n, ref)
    return n


def backfill(spark: SparkSession, config: Config, product_ids: DataFrame | None = None,
             embedder: Embedder | None = None, label: str = "backfill") -> dict:
    """Embed every product (or those in ``product_ids``) at the table's current version."""
    embedder = embedder or Embedder(spark, config)
    version = latest_version(spark, config.tables.products)
    products = read_table(spark, config.tables.products, version)
    if product_ids is not None:
        products = products.join(product_ids.select("product_id").distinct(), "product_id", "left_semi")
    state = snapshot_as_state(products, version)
    seeded = seed_image_vectors(spark, config, state, embedder) if label == "backfill" else 0
    ids = sorted(r[0] for r in state.select("product_id").collect())
    chunks = _chunks(ids, config.backfill_chunk_rows)
    app_id = f"{config.stream.app_id}:{label}:v{version}:{config.model.id}"
    total, done, started = len(ids), 0, time.perf_counter()
    totals = {"products": total, "seeded_image_vectors": seeded, "texts_encoded": 0, "images_encoded": 0,
              "unchanged": 0, "image_errors": 0, "text_encode_seconds": 0.0, "image_encode_seconds": 0.0}
    for i, (lo, hi) in enumerate(chunks):
        chunk = state.filter(F.col("product_id").between(lo, hi))
        m = embedder.apply_state(chunk, batch_id=i, txn=(app_id, i))
        done += m.products
        for key in ("texts_encoded", "images_encoded", "unchanged", "image_errors"):
            totals[key] += getattr(m, key)
        totals["text_encode_seconds"] += m.phases_s.get("encode_text", 0.0)
        totals["image_encode_seconds"] += m.phases_s.get("encode_image", 0.0)
        rate = done / max(time.perf_counter() - started, 1e-9)
        log.info("%s progress: %d/%d products (%.1f%%), %.1f rows/s", label, done, total,
                 100.0 * done / max(total, 1), rate)
    totals["seconds"] = round(time.perf_counter() - started, 2)
    totals["snapshot_version"] = version
    log.info("%s done: %s", label, totals)
    return totals


def reembed(spark: SparkSession, config: Config, embedder: Embedder | None = None) -> dict:
    """Re-encode text and image of every stored row embedded with another model than ``model.id``."""
    stale = read_table(spark, config.tables.embeddings).filter(
        ~F.coalesce(F.col("embedding_model") == F.lit(config.model.id), F.lit(False))
    ).select("product_id")
    return backfill(spark, config, product_ids=stale, embedder=embedder, label="reembed")
