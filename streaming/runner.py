"""Glue: plan -> encode -> MERGE for one batch, and the Structured Streaming query around it."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from conf import Config
from encoders.factory import EncoderSpec
from encoders.images import ImageLimits
from lakehouse.tables import ensure_all_tables, read_table
from streaming.embed import encode_plan
from streaming.planner import plan_changes
from streaming.reader import final_state, read_product_changes
from streaming.writer import merge_embeddings
from udfs.encoding import make_image_hash_udf, make_image_udf, make_text_udf

log = logging.getLogger(__name__)


@dataclass
class BatchMetrics:
    """What one batch did; logged as one JSON line per batch."""

    batch_id: int
    rows_in: int = 0
    products: int = 0
    inserts: int = 0
    updates: int = 0
    metadata_only: int = 0
    deletes: int = 0
    unchanged: int = 0
    stale: int = 0
    texts_encoded: int = 0
    images_encoded: int = 0
    image_errors: int = 0
    rows_written: int = 0
    latency_s: float = 0.0
    merge: dict = field(default_factory=dict)
    phases_s: dict = field(default_factory=dict)


class Embedder:
    """Applies product states to the embeddings table; shared by the stream, backfill and reembed."""

    def __init__(self, spark: SparkSession, config: Config):
        self.spark = spark
        self.config = config
        limits = ImageLimits.from_config(config)
        spec = EncoderSpec.from_config(config)
        # Accumulators count rows that really went through the model, on whichever worker.
        self.text_calls = spark.sparkContext.accumulator(0)
        self.image_calls = spark.sparkContext.accumulator(0)
        self.udfs = SimpleNamespace(
            text=make_text_udf(spec, self.text_calls),
            image=make_image_udf(spec, limits, self.image_calls),
            image_hash=make_image_hash_udf(limits),
        )
        self.history: list[BatchMetrics] = []
        self._app_id: str | None = None
        ensure_all_tables(spark, config)

    # -- one batch ---------------------------------------------------------------------------
    def apply_state(self, state: DataFrame, batch_id: int, txn: tuple[str, int] | None,
                    rows_in: int | None = None, started: float | None = None,
                    phases: dict[str, float] | None = None) -> BatchMetrics:
        """Plan, encode and MERGE a DataFrame of final product states (see streaming.reader).

        ``started`` and ``phases`` let the caller count its own earlier work (the CDF read) in the batch.
        """
        cfg = self.config
        started = started or time.perf_counter()
        metrics = BatchMetrics(batch_id=batch_id)
        phases = dict(phases or {})
        mark = [time.perf_counter()]

        def lap(name: str) -> None:
            now = time.perf_counter()
            phases[name] = round(now - mark[0], 3)
            mark[0] = now

        embeddings = read_table(self.spark, cfg.tables.embeddings)
        plan = plan_changes(state, embeddings, cfg.model.id, self.udfs.image_hash).persist()
        try:
            actions = {r["_action"]: r["count"] for r in plan.groupBy("_action").count().collect()}
            metrics.products = sum(actions.values())
            metrics.rows_in = rows_in if rows_in is not None else metrics.products
            metrics.inserts = actions.get("insert", 0)
            metrics.updates = actions.get("update", 0)
            metrics.metadata_only = actions.get("metadata", 0)
            metrics.deletes = actions.get("delete", 0)
            metrics.unchanged = actions.get("unchanged", 0) + actions.get("absent_delete", 0)
            metrics.stale = actions.get("stale", 0)
            lap("plan")
            to_write = metrics.inserts + metrics.updates + metrics.metadata_only + metrics.deletes
            if to_write:
                encoded = encode_plan(plan, embeddings, self.udfs, cfg.model.id, cfg.model.dimension,
                                      cfg.hybrid_text_weight, cfg.model.encode_partitions,
                                      has_updates=metrics.updates > 0)
                lap("encode")
                phases["encode_text"] = round(encoded.text_seconds, 3)
                phases["encode_image"] = round(encoded.image_seconds, 3)
                rows, metrics.rows_written, metrics.image_errors = self._materialize(encoded.rows, to_write)
                try:
                    metrics.texts_encoded, metrics.images_encoded = encoded.texts_encoded, encoded.images_encoded
                    lap("assemble")
                    inserts_only = metrics.inserts == to_write
                    metrics.merge = merge_embeddings(self.spark, cfg.tables.embeddings, rows, txn, inserts_only)
                    lap("merge")
                finally:
                    rows.unpersist()
                    encoded.release()
        finally:
            plan.unpersist()
        metrics.latency_s = round(time.perf_counter() - started, 3)
        metrics.phases_s = phases
        self.history.append(metrics)
        log.info("batch %s", json.dumps(asdict(metrics), sort_keys=True))
        return metrics

    def _materialize(self, rows: DataFrame, expected_rows: int) -> tuple[DataFrame, int, int]:
        """The MERGE source computed once and cut from its lineage, its row count and image errors.

        The MERGE reads its source twice and Delta analyses the source plan several
        times; the encoded rows' plan (CDF batch, joins, UDFs) is deep, and planning it
        cost more than the write (a 1-row MERGE: 3.3 s on the lineage, 1.9 s cut from it).
        Small batches come to the driver through Arrow and go back as a local relation
        (one job, the simplest plan, the counts then cost nothing); larger ones are
        checkpointed on the executors.
        """
        if expected_rows <= self.config.stream.local_merge_source_max_rows:
            import pyarrow.compute as pc

            table = rows.toArrow()
            errors = pc.sum(pc.and_(table["_need_image"], pc.is_valid(table["embedding_error"]))).as_py() or 0
            return self.spark.createDataFrame(table, schema=rows.schema), table.num_rows, int(errors)
        rows = rows.localCheckpoint(eager=True)
        counts = rows.agg(F.count(F.lit(1)).alias("n"), F.count(F.when(
            F.col("_need_image") & F.col("embedding_error").isNotNull(), 1)).alias("errors")).first()
        return rows, int(counts["n"]), int(counts["errors"])

    # -- the stream ----------------------------------------------------------------------------
    def app_id(self) -> str:
        """Idempotent-write app id: the configured id plus the checkpoint's query id.

        A new checkpoint restarts batch ids at 0; keying on its query id keeps those
        batches from being mistaken for already-committed ones.
        """
        if self._app_id is None:
            query_id = None
            meta = os.path.join(self.config.stream.checkpoint, "metadata")
            try:
                with open(meta, encoding="utf-8") as fh:
                    query_id = json.loads(fh.readline()).get("id")
            except (OSError, ValueError):
                log.warning("no readable checkpoint metadata at %s; txnAppId without query id", meta)
            self._app_id = f"{self.config.stream.app_id}:{query_id}" if query_id else self.config.stream.app_id
        return self._app_id

    def process_batch(self, batch: DataFrame, batch_id: int) -> None:
        """foreachBatch body: CDF rows -> final state per product -> apply."""
        started = time.perf_counter()
        batch = batch.persist()
        try:
            rows_in = batch.count()
            if rows_in == 0:
                return
            read_s = round(time.perf_counter() - started, 3)
            self.apply_state(final_state(batch), batch_id, (self.app_id(), batch_id), rows_in=rows_in,
                             started=started, phases={"cdf_read": read_s})
        finally:
            batch.unpersist()

    def start_stream(self, trigger: str | None = None) -> StreamingQuery:
        """Start the CDF -> embeddings query (``availableNow`` or ``processingTime`` from config)."""
        cfg = self.config.stream
        trigger = trigger or cfg.trigger
        writer = (
            read_product_changes(self.spark, self.config)
            .writeStream.foreachBatch(self.process_batch)
            .option("checkpointLocation", cfg.checkpoint)
            .queryName("product_embedder")
        )
        if trigger == "availableNow":
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=cfg.processing_time)
        log.info("starting stream (trigger %s, checkpoint %s)", trigger, cfg.checkpoint)
        return writer.start()
