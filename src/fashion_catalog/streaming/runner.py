"""Glue: plan -> encode -> MERGE for one batch, and the Structured Streaming query around it.

:class:`BatchProcessor` is the ``foreachBatch`` body. It holds only picklable
settings and takes its session from the batch (``batch.sparkSession``), so Spark
Connect can ship it to the server-side foreachBatch worker; its UDFs are built in
the process that runs it. :class:`Embedder` is the client side: it owns the session,
starts the stream, and runs the same processor for backfills.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

from fashion_catalog.conf import Config, TableRef
from fashion_catalog.encoders.factory import EncoderSpec
from fashion_catalog.encoders.images import ImageLimits
from fashion_catalog.lakehouse.direct import local_path
from fashion_catalog.lakehouse.tables import ensure_all_tables, ensure_embeddings_table, read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.change_feed import DELETE, final_changes, has_tied_survivors
from fashion_catalog.schemas.spark import PRODUCTS_SCHEMA, VECTOR_TYPE
from fashion_catalog.streaming import metrics as batch_metrics
from fashion_catalog.streaming.embed import WRITE_ACTIONS, assemble_columns, encode_in_process, encode_plan
from fashion_catalog.streaming.metrics import BatchMetrics
from fashion_catalog.streaming.planner import literal_lookup, plan_changes, plan_tiny_changes, stored_arrow, stored_rows
from fashion_catalog.streaming.reader import final_state, read_product_changes
from fashion_catalog.streaming.writer import (
    clear_write_identity,
    merge_embeddings,
    merge_embeddings_direct,
    resolve_snapshot,
)
from fashion_catalog.udfs.encoding import image_hashes, make_image_hash_udf, make_image_udf, make_text_udf

log = logging.getLogger(__name__)

__all__ = ["BatchMetrics", "BatchProcessor", "CheckpointError", "Embedder", "EmbedderQuery"]


class CheckpointError(RuntimeError):
    """The stream's checkpoint exists but its metadata cannot be read."""


def checkpoint_query_id(spark: SparkSession, checkpoint: str) -> str | None:
    """The query id in ``<checkpoint>/metadata``, read through Spark (any URI Spark reads: file:, dbfs:, s3://...).

    None when no stream has written the checkpoint yet; a checkpoint whose metadata
    exists but cannot be parsed raises :class:`CheckpointError` (guessing would let
    Delta skip a new stream's batches as replays).
    """
    import json

    path = checkpoint.rstrip("/") + "/metadata"
    try:
        first = spark.read.text(path).first()
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            return None
        raise CheckpointError(f"cannot read the stream checkpoint's metadata at {path}: {exc}") from exc
    try:
        return json.loads(first["value"])["id"]
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} does not hold a query id: {first!r}") from exc


def _state_schema(products_schema: StructType) -> StructType:
    """The schema of final product states (streaming.reader.final_state): product columns, _deleted, version."""
    return StructType([products_schema[c] for c in PRODUCT_COLUMNS]
                      + [StructField("_deleted", BooleanType()), StructField("source_commit_version", LongType())])


# The change-row columns the tiny-batch road reads, for the warm-up's made-up edits.
_WARM_UP_CDF = pa.schema([pa.field(f.name, to_arrow_type(f.dataType)) for f in PRODUCTS_SCHEMA.fields]
                         + [pa.field("_change_type", pa.string()), pa.field("_commit_version", pa.int64())])


# The columns encode_in_process attaches to a tiny batch's rows, in its order.
_ENCODED_FIELDS = [StructField("_new_text", VECTOR_TYPE), StructField("_text_error", StringType()),
                   StructField("_new_image", VECTOR_TYPE), StructField("_image_error", StringType())]


def _image_errors(rows: pa.Table) -> int:
    """MERGE-source rows whose image was (re-)encoded and failed."""
    return int(pc.sum(pc.and_(rows["_need_image"], pc.is_valid(rows["embedding_error"]))).as_py() or 0)


def _record_encoding(metrics: BatchMetrics, phases: dict, encoded) -> None:
    """Per-modality encode seconds, counts and the processes that ran the model (either road's result)."""
    phases["encode_text"] = round(encoded.text_seconds, 3)
    phases["encode_image"] = round(encoded.image_seconds, 3)
    metrics.texts_encoded, metrics.images_encoded = encoded.texts_encoded, encoded.images_encoded
    metrics.encoder_workers = encoded.workers


@dataclass(frozen=True)
class TinyBatch:
    """What the tiny-batch path computes from the change rows it holds: image hashes, product ids and,
    unless a tie sent them to the Spark rule, the final states (Arrow, columns of ``schema``)."""

    image_hashes: dict
    product_ids: list[int]
    state: pa.Table | None = None
    schema: StructType | None = None


class BatchProcessor:
    """Applies product states to the embeddings table; the stream's foreachBatch body (picklable)."""

    def __init__(self, config: Config, run_id: str):
        self.config = config
        self.run_id = run_id
        self.history: list[BatchMetrics] = []  # this process's batches (the metrics table holds them all)
        self._udfs: SimpleNamespace | None = None
        self._app_id: str | None = None
        self._sync = None
        self._encoder = None
        self._resolving: threading.Thread | None = None
        self.warmed_up_s: float | None = None  # seconds the last Spark warm-up took (None: none ran)

    def __getstate__(self) -> dict:
        # UDF objects, the encoder, the sync thread and history stay in the process that made them.
        return {"config": self.config, "run_id": self.run_id, "history": [], "_udfs": None, "_app_id": None,
                "_sync": None, "_encoder": None, "_resolving": None, "warmed_up_s": None}

    @property
    def encoder(self):
        """The encoder of tiny batches, in the process that runs the batches (loaded on first use)."""
        if self._encoder is None:
            spec = EncoderSpec.from_config(self.config)
            self._encoder = spec.encoder()
            log.info("tiny-batch encoder loaded in this process: %s (%s, %s)", self.config.model.name_or_path,
                     self.config.model.id, self.config.model.precision)
        return self._encoder

    def warm_up(self) -> float:
        """Load the tiny-batch encoder and run one text and one image through it; returns the seconds spent.

        Called before the stream's first trigger (``stream.warm_up``), so the first edit after a start
        does not wait for the model load, and the first (slow) call of each tower happens here.
        """
        if not self.config.stream.small_batch_max_rows:
            return 0.0
        from PIL import Image

        t0 = time.perf_counter()
        encoder = self.encoder
        encoder.encode_texts(["warm-up"], 1)
        encoder.encode_images([Image.new("RGB", (224, 224), (128, 128, 128))], 1)
        seconds = round(time.perf_counter() - t0, 3)
        log.info("encoder warmed up in %.2f s", seconds)
        return seconds

    @property
    def sync_trigger(self):
        """Syncs TRIGGERED Vector Search indexes after batches that wrote (``vector_search.sync_from_stream``)."""
        vs = self.config.vector_search
        if not (vs.sync_from_stream and vs.pipeline_type == "TRIGGERED"):
            return None
        if self._sync is None:
            from fashion_catalog.vectorsearch.sync import IndexSyncTrigger, indexes_of

            self._sync = IndexSyncTrigger(indexes_of(self.config), vs.min_sync_interval_s)
        return self._sync

    @property
    def udfs(self) -> SimpleNamespace:
        """The encoding UDFs, built once in the process that runs the batches."""
        if self._udfs is None:
            limits = ImageLimits.from_config(self.config)
            spec = EncoderSpec.from_config(self.config)
            self._udfs = SimpleNamespace(text=make_text_udf(spec), image=make_image_udf(spec, limits),
                                         image_hash=make_image_hash_udf(limits))
        return self._udfs

    # -- one batch ---------------------------------------------------------------------------
    def apply_state(self, spark: SparkSession, state: DataFrame | None, batch_id: int, txn: tuple[str, int] | None,
                    rows_in: int | None = None, started: float | None = None,
                    phases: dict[str, float] | None = None, retry_failed: bool = False,
                    tiny_batch: TinyBatch | None = None) -> BatchMetrics:
        """Plan, encode and MERGE a DataFrame of final product states (see streaming.reader).

        ``started`` and ``phases`` let the caller count its own earlier work (the CDF read) in the batch;
        ``retry_failed`` re-plans failed encodes whatever their attempts (``reembed --failed``).
        ``tiny_batch`` (its ids and image hashes, computed by the caller) marks a tiny batch: its plan
        comes to this process once, and the models run here instead of in Spark tasks; ``state`` may then
        be None when ``tiny_batch`` holds the states.
        """
        cfg = self.config
        started = started or time.perf_counter()
        metrics = BatchMetrics(batch_id=batch_id, run_id=self.run_id, app_id=txn[0] if txn else None)
        phases = dict(phases or {})
        mark = [time.perf_counter()]

        def lap(name: str) -> None:
            now = time.perf_counter()
            phases[name] = round(now - mark[0], 3)
            mark[0] = now

        max_attempts = None if retry_failed else cfg.stream.max_encode_attempts
        tiny = tiny_batch is not None
        if tiny:
            embeddings = None
            stored = stored_arrow(cfg.tables.embeddings, tiny_batch.product_ids)
            if stored is not None and tiny_batch.state is not None:
                # States and stored rows are both here: one local relation, the plan's rules as projections.
                planned = plan_tiny_changes(spark, tiny_batch.state, _state_schema(tiny_batch.schema), stored,
                                            cfg.model.id, tiny_batch.image_hashes, max_attempts)
            else:
                if state is None:
                    state = spark.createDataFrame(tiny_batch.state, schema=_state_schema(tiny_batch.schema))
                stored_df = stored_rows(spark, cfg.tables.embeddings, tiny_batch.product_ids, read=stored)
                planned = plan_changes(state, stored_df, cfg.model.id, literal_lookup(tiny_batch.image_hashes),
                                       max_attempts, with_vectors=True)
            plan_table, plan = planned.toArrow(), None
            counted = plan_table.group_by("_action").aggregate([("_action", "count")]).to_pylist()
            actions = {r["_action"]: r["_action_count"] for r in counted}
        else:
            embeddings = read_table(spark, cfg.tables.embeddings, check=False)
            plan = plan_changes(state, embeddings, cfg.model.id, self.udfs.image_hash, max_attempts).persist()
        try:
            if not tiny:
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
            if to_write and tiny:
                writes = plan_table.filter(pc.is_in(plan_table["_action"], pa.array(WRITE_ACTIONS)))
                self._encode_and_merge_tiny(spark, plan_table, planned.schema, metrics, phases, lap, to_write, txn,
                                            started, writes["product_id"].to_pylist())
            elif to_write:
                self._encode_and_merge(spark, plan, embeddings, metrics, phases, lap, to_write, txn, started)
        finally:
            if plan is not None:
                plan.unpersist()
        metrics.latency_s = round(time.perf_counter() - started, 3)
        metrics.phases_s = phases
        self.history.append(metrics)
        metrics.log()
        return metrics

    def _encode_and_merge(self, spark, plan, embeddings, metrics: BatchMetrics, phases: dict, lap,
                          to_write: int, txn, started: float) -> None:
        """Encode in Spark tasks, then MERGE with Spark: batches above ``stream.small_batch_max_rows``."""
        cfg = self.config
        encoded = encode_plan(plan, embeddings, self.udfs, cfg.model.id, cfg.model.dimension,
                              cfg.hybrid_text_weight, cfg.model.encode_partitions, has_updates=metrics.updates > 0)
        lap("encode")
        _record_encoding(metrics, phases, encoded)
        # The MERGE source comes to this process once (Arrow) and goes back as one local relation: planning
        # the MERGE over the assembly's joins, twice, costs more than this copy even for a tiny batch.
        rows, metrics.rows_written, metrics.image_errors = self._materialize(spark, encoded.rows, to_write)
        try:
            lap("assemble")
            metrics.phases_s = dict(phases)
            metrics.latency_s = round(time.perf_counter() - started, 3)
            metrics.merge = merge_embeddings(spark, cfg.tables.embeddings, rows, txn, metrics.inserts == to_write,
                                             commit_metadata=metrics.commit_metadata(),
                                             max_rows_per_file=cfg.stream.max_rows_per_file)
            lap("merge")
            if self.sync_trigger is not None and metrics.merge.get("num_affected_rows", 1):
                self.sync_trigger.request()
        finally:
            rows.unpersist()
            encoded.release()

    def _encode_and_merge_tiny(self, spark: SparkSession, plan: pa.Table, plan_schema: StructType,
                               metrics: BatchMetrics, phases: dict, lap, to_write: int, txn, started: float,
                               target_ids: list[int]) -> None:
        """Encode in this process, assemble over one local relation, MERGE: a tiny batch whose plan is here.

        A table on this file system is merged by delta-rs (same clauses and write ids, tens of
        milliseconds); a catalog table or one on an object store by a Spark MERGE of the assembled rows.
        """
        cfg = self.config
        spec = EncoderSpec.from_config(cfg)
        encoded = encode_in_process(plan, self.encoder, ImageLimits.from_config(cfg), spec.text_batch_size,
                                    spec.image_batch_size)
        lap("encode")
        _record_encoding(metrics, phases, encoded)
        rows = spark.createDataFrame(encoded.rows, schema=StructType([*plan_schema.fields, *_ENCODED_FIELDS]))
        source = assemble_columns(rows, cfg.model.id, cfg.model.dimension, cfg.hybrid_text_weight)
        table = source.toArrow().sort_by("product_id")
        metrics.rows_written, metrics.image_errors = table.num_rows, _image_errors(table)
        lap("assemble")
        metrics.phases_s = dict(phases)
        metrics.latency_s = round(time.perf_counter() - started, 3)
        inserts_only = metrics.inserts == to_write
        path = local_path(cfg.tables.embeddings.path)
        if path is not None:
            metrics.merge = merge_embeddings_direct(path, table, txn, inserts_only,
                                                    commit_metadata=metrics.commit_metadata(), target_ids=target_ids)
        else:
            metrics.merge = merge_embeddings(spark, cfg.tables.embeddings,
                                             spark.createDataFrame(table, schema=source.schema), txn, inserts_only,
                                             commit_metadata=metrics.commit_metadata(), target_ids=target_ids)
            if metrics.merge.get("num_affected_rows", 1):
                self._resolve_snapshot_soon(spark)
        lap("merge")
        if self.sync_trigger is not None and metrics.merge.get("num_affected_rows", 1):
            self.sync_trigger.request()

    def _resolve_snapshot_soon(self, spark: SparkSession) -> None:
        """After a tiny batch's commit: compute the new snapshot in the background (see resolve_snapshot)."""
        if self._resolving is not None and self._resolving.is_alive():
            return

        def run() -> None:
            try:
                resolve_snapshot(spark, self.config.tables.embeddings)
            except Exception as exc:  # noqa: BLE001 - only a head start: the next MERGE computes it anyway
                log.debug("snapshot resolution after the commit failed: %s", exc)

        self._resolving = threading.Thread(target=run, daemon=True, name="resolve-snapshot")
        self._resolving.start()

    def _materialize(self, spark: SparkSession, rows: DataFrame, expected_rows: int) -> tuple[DataFrame, int, int]:
        """The MERGE source computed once and cut from its lineage, its row count and image errors.

        The MERGE reads its source twice and Delta analyses the source plan several
        times; the encoded rows' plan (CDF batch, joins, UDFs) is deep, and planning it
        cost more than the write (a 1-row MERGE: 3.3 s on the lineage, 1.9 s cut from it).
        Small batches come to the driver through Arrow and go back as a local relation
        (one job, the simplest plan, the counts then cost nothing); larger ones are
        checkpointed on the executors.
        """
        if expected_rows <= self.config.stream.local_merge_source_max_rows:
            table = rows.toArrow().sort_by("product_id")  # files in id order, as below
            return spark.createDataFrame(table, schema=rows.schema), table.num_rows, _image_errors(table)
        # Ordered by product_id in ranges of at most max_rows_per_file rows: the MERGE writes files that each
        # hold a narrow id range (and caps them at that size), so a later edit's MERGE and lookup read one
        # small file instead of every big one (a seed written hash-partitioned spans all ids in each file).
        per_file = self.config.stream.max_rows_per_file
        rows = (rows.repartitionByRange(max(1, -(-expected_rows // per_file)), "product_id")
                .sortWithinPartitions("product_id").localCheckpoint(eager=True))
        counts = rows.agg(F.count(F.lit(1)).alias("n"), F.count(F.when(
            F.col("_need_image") & F.col("embedding_error").isNotNull(), 1)).alias("errors")).first()
        return rows, int(counts["n"]), int(counts["errors"])

    def warm_up_spark(self, spark: SparkSession) -> float:
        """Run the tiny-batch road before the first edit; returns the seconds spent.

        A fresh JVM pays seconds the first time it plans these queries and runs each kind of MERGE
        (class loading, JIT, code generation); paying them here keeps them off the first edit after a
        start. Nothing reaches the embeddings table: with the table on this machine's file system the
        road runs end to end on a scratch table beside it (an insert, a text-only update writing
        deletion vectors and change data, a delete); elsewhere (a catalog table, an object store) it
        runs the plan on no rows and a MERGE of an empty source, which Delta does not commit.
        """
        t0 = time.perf_counter()
        if local_path(self.config.tables.embeddings.path) is not None:
            self._warm_up_on_scratch(spark)
            what = "the tiny-batch road on a scratch table: insert, update, delete"
        else:
            self._warm_up_empty_merge(spark)
            what = "plan query and an empty MERGE, nothing committed"
        seconds = round(time.perf_counter() - t0, 3)
        log.info("Spark warmed up in %.2f s (%s)", seconds, what)
        self.warmed_up_s = seconds
        return seconds

    def _warm_up_on_scratch(self, spark: SparkSession) -> None:
        """Three made-up edits of one product down the tiny-batch road, on a throwaway local table."""
        scratch_dir = tempfile.mkdtemp(prefix="embedder-warm-up-")
        try:
            ref = TableRef(path=scratch_dir)
            ensure_embeddings_table(spark, ref)
            cfg = self.config.model_copy(update={
                "tables": self.config.tables.model_copy(update={"embeddings": ref}),
                "vector_search": self.config.vector_search.model_copy(update={"sync_from_stream": False})})
            scratch = BatchProcessor(cfg, self.run_id)
            scratch._encoder = self.encoder
            edits = [("insert", "Warm-up shirt"), ("update_postimage", "Warm-up shirt, renamed"),
                     ("delete", "Warm-up shirt, renamed")]
            for version, (change, name) in enumerate(edits, 1):
                row = {c: None for c in PRODUCT_COLUMNS} | {
                    "product_id": 1, "product_display_name": name, "price": 10.0,
                    "image_path": os.path.join(scratch_dir, "no-image.jpg"),
                    "_change_type": change, "_commit_version": version}
                head = pa.Table.from_pylist([row], schema=_WARM_UP_CDF)
                scratch._apply_tiny(spark, head, PRODUCTS_SCHEMA, -version, None, time.perf_counter())
            if scratch._resolving is not None:
                scratch._resolving.join()
        finally:
            shutil.rmtree(scratch_dir, ignore_errors=True)

    def _warm_up_empty_merge(self, spark: SparkSession) -> None:
        """The plan on no rows and a MERGE of an empty source into the embeddings table (nothing committed)."""
        cfg = self.config
        state = spark.createDataFrame([], _state_schema(PRODUCTS_SCHEMA))
        nobody = [-1]
        planned = plan_changes(state, stored_rows(spark, cfg.tables.embeddings, nobody), cfg.model.id,
                               literal_lookup({}), cfg.stream.max_encode_attempts, with_vectors=True)
        metrics = BatchMetrics(batch_id=-1, run_id=self.run_id, app_id=None)
        # to_write=1 with no inserts: the full MERGE (update and delete clauses too), on an empty source.
        self._encode_and_merge_tiny(spark, planned.toArrow(), planned.schema, metrics, {}, lambda _: None, 1, None,
                                    time.perf_counter(), nobody)

    @staticmethod
    def _tiny_state(head: pa.Table) -> pa.Table | None:
        """Final product states of a tiny batch's change rows (Arrow): the pandas rule here, no window over Spark.

        None when one commit holds two surviving rows of one product (duplicate ids in an insert): such a
        batch goes to the Spark rule, whose deterministic tie-break a replay repeats.
        """
        frame = head.select(["product_id", "_change_type", "_commit_version"]).to_pandas()
        if has_tied_survivors(frame):
            return None
        final = final_changes(frame)
        rows = head.take(pa.array(final["_row"].to_numpy())).select(PRODUCT_COLUMNS)
        rows = rows.append_column("_deleted", pa.array(~final["_live"].to_numpy(), pa.bool_()))
        return rows.append_column("source_commit_version", pa.array(final["_commit_version"].to_numpy(), pa.int64()))

    def _apply_tiny(self, spark: SparkSession, head: pa.Table, schema: StructType, batch_id: int,
                    txn: tuple[str, int] | None, started: float) -> BatchMetrics:
        """The tiny-batch road for change rows already in this process (``head``, Arrow, CDF columns)."""
        limits = ImageLimits.from_config(self.config)
        live = head.filter(pc.invert(pc.equal(head["_change_type"], DELETE)))
        paths = pd.Series(pc.unique(live["image_path"]).to_pylist(), dtype=object)
        hashes = dict(zip(paths, image_hashes(paths, limits), strict=True))
        read_s = round(time.perf_counter() - started, 3)
        rows = self._tiny_state(head)
        # The Spark frame of the states only when the Spark rule must pick them; else apply_state builds one
        # only if its plan needs it (a table that is not local).
        states = None if rows is not None else final_state(spark.createDataFrame(head, schema=schema))
        tiny = TinyBatch(hashes, pc.unique(head["product_id"]).to_pylist(), rows, schema)
        return self.apply_state(spark, states, batch_id, txn, rows_in=head.num_rows, started=started,
                                phases={"cdf_read": read_s}, tiny_batch=tiny)

    # -- the stream ----------------------------------------------------------------------------
    def app_id(self, spark: SparkSession) -> str:
        """Idempotent-write app id: the configured id plus the checkpoint's query id.

        A new checkpoint restarts batch ids at 0; keying on its query id keeps those
        batches from being mistaken for already-committed ones.
        """
        if self._app_id is None:
            query_id = checkpoint_query_id(spark, self.config.stream.checkpoint)
            if query_id is None:
                log.warning("no stream checkpoint at %s yet; txnAppId without a query id",
                            self.config.stream.checkpoint)
            self._app_id = f"{self.config.stream.app_id}:{query_id}" if query_id else self.config.stream.app_id
        return self._app_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """foreachBatch body: CDF rows -> final state per product -> apply, on the batch's own session.

        A batch of at most ``stream.small_batch_max_rows`` change rows (an editor's edit) comes to this
        process in one job and takes the tiny-batch path; a larger one is persisted and planned and
        encoded by Spark tasks.
        """
        started = time.perf_counter()
        spark = batch.sparkSession
        small = self.config.stream.small_batch_max_rows
        if small:
            head = batch.limit(small + 1).toArrow()
            if head.num_rows == 0:
                return
            if head.num_rows <= small:
                self._apply_tiny(spark, head, batch.schema, batch_id, (self.app_id(spark), batch_id), started)
                return
        batch = batch.persist()
        try:
            rows_in = batch.count()
            if rows_in == 0:
                return
            read_s = round(time.perf_counter() - started, 3)
            self.apply_state(spark, final_state(batch), batch_id, (self.app_id(spark), batch_id), rows_in=rows_in,
                             started=started, phases={"cdf_read": read_s})
        finally:
            batch.unpersist()


class EmbedderQuery:
    """The running stream (a ``StreamingQuery``) whose :meth:`stop` also clears the batch's write identity.

    On Spark Connect the foreachBatch body runs on the client's own server-side session
    (classic streams run on a clone), and stopping the query kills that body wherever it
    is: a batch stopped inside its MERGE leaves the idempotent-write ids and commit
    metadata set on the client session, where the client's next write would carry them
    (and Delta would skip it as a replay). Stopping through here removes them.
    """

    def __init__(self, query: StreamingQuery, spark: SparkSession):
        self._query, self._spark = query, spark

    def stop(self) -> None:
        self._query.stop()
        clear_write_identity(self._spark)

    def __getattr__(self, name: str):
        return getattr(self._query, name)


class Embedder:
    """The client side: owns the session, creates the tables, starts the stream, runs backfill batches."""

    def __init__(self, spark: SparkSession, config: Config):
        self.spark = spark
        self.config = config
        self.run_id = uuid.uuid4().hex
        self.processor = BatchProcessor(config, self.run_id)
        ensure_all_tables(spark, config)

    @property
    def udfs(self) -> SimpleNamespace:
        return self.processor.udfs

    @property
    def history(self) -> list[BatchMetrics]:
        """Every batch of this embedder that wrote, wherever it ran: read from the embeddings table's commits."""
        return batch_metrics.history(self.spark, self.config.tables.embeddings, self.run_id)

    def apply_state(self, state: DataFrame, batch_id: int, txn: tuple[str, int] | None,
                    rows_in: int | None = None, started: float | None = None,
                    phases: dict[str, float] | None = None, retry_failed: bool = False) -> BatchMetrics:
        """Plan, encode and MERGE final product states on this embedder's session (backfill, reembed)."""
        return self.processor.apply_state(self.spark, state, batch_id, txn, rows_in, started, phases, retry_failed)

    def process_batch(self, batch: DataFrame, batch_id: int) -> None:
        """Run the foreachBatch body on a batch of CDF rows (what the stream does for each micro-batch)."""
        self.processor(batch, batch_id)

    def start_stream(self, trigger: str | None = None) -> EmbedderQuery:
        """Start the CDF -> embeddings query (``availableNow`` or ``processingTime`` from config)."""
        cfg = self.config.stream
        trigger = trigger or cfg.trigger
        writer = (
            read_product_changes(self.spark, self.config)
            .writeStream.foreachBatch(self.processor)
            .option("checkpointLocation", cfg.checkpoint)
            .queryName("product_embedder")
        )
        if trigger == "availableNow":
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=cfg.processing_time)
        if trigger != "availableNow" and cfg.warm_up and cfg.small_batch_max_rows:
            # A continuous stream waits for edits: load the model and warm the JVM before the first one.
            self.processor.warm_up()
            self.processor.warm_up_spark(self.spark)
        if checkpoint_query_id(self.spark, cfg.checkpoint) is None:
            # A new checkpoint replays the current snapshot, which cannot show products deleted while no
            # stream was running: remove their rows first.
            from fashion_catalog.streaming.reconcile import reconcile

            reconcile(self.spark, self.config)
        log.info("starting stream (trigger %s, checkpoint %s)", trigger, cfg.checkpoint)
        return EmbedderQuery(writer.start(), self.spark)
