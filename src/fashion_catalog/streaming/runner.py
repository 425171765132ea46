"""The write path's one sequence, read -> plan -> encode -> assemble -> merge, and the stream around it.

:class:`BatchProcessor` is the ``foreachBatch`` body. It reads a micro-batch of change rows into final product
states, chooses the batch's road once (:mod:`fashion_catalog.streaming.roads`: where each step runs) and runs
:meth:`BatchProcessor.run`. It holds only picklable settings and takes its session from the batch, so Spark
Connect can ship it to the server-side foreachBatch worker; its encoder and UDFs are built in the process that
runs it. :class:`Embedder` is the client side: it owns the session, starts the stream, runs backfills.
"""

from __future__ import annotations

import logging
import threading
import uuid

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from fashion_catalog.conf import Config
from fashion_catalog.lakehouse.tables import ensure_all_tables
from fashion_catalog.schemas.change_feed import final_states
from fashion_catalog.streaming import metrics as batch_metrics
from fashion_catalog.streaming.batch import BatchContext, applied_in, with_retries, writer_lock
from fashion_catalog.streaming.checkpoint import CheckpointError, checkpoint_query_id
from fashion_catalog.streaming.metrics import BatchMetrics
from fashion_catalog.streaming.reader import final_state, read_product_changes
from fashion_catalog.streaming.roads import Tools, choose_road
from fashion_catalog.streaming.startup import run_beside
from fashion_catalog.streaming.writer import clear_write_identity
from fashion_catalog.vectorsearch.sync import require_sync_client

log = logging.getLogger(__name__)
_TOOLS_LOCK = threading.Lock()

__all__ = ["BatchMetrics", "BatchProcessor", "CheckpointError", "Embedder", "EmbedderQuery", "checkpoint_query_id"]


class BatchProcessor:
    """Applies product states to the embeddings table; the stream's foreachBatch body (picklable)."""

    def __init__(self, config: Config, run_id: str):
        self.config, self.run_id = config, run_id
        self.history: list[BatchMetrics] = []  # this process's batches (the table's commits hold them all)
        self._tools: Tools | None = None
        self._app_id: str | None = None
        self.warmed_up_s: float | None = None  # seconds the last Spark warm-up took (None: none ran)

    def __getstate__(self) -> dict:
        # The encoder, the UDFs, the sync thread and the history stay in the process that made them.
        return {"config": self.config, "run_id": self.run_id, "history": [], "_tools": None, "_app_id": None,
                "warmed_up_s": None}

    @property
    def tools(self) -> Tools:
        """The encoder, UDFs and background helpers of the roads, in the process that runs the batches."""
        with _TOOLS_LOCK:  # the warm-up thread and the first batch may both ask first
            if self._tools is None:
                self._tools = Tools(self.config)
        return self._tools

    def context(self, spark: SparkSession | None, batch_id: int, txn: tuple[str, int] | None,
                retry_failed: bool = False) -> BatchContext:
        """A new batch's context (its metrics start now); ``spark`` None: the delta-rs road, which needs none."""
        metrics = BatchMetrics(batch_id=batch_id, run_id=self.run_id, app_id=txn[0] if txn else None)
        return BatchContext(spark, self.config, metrics, txn, retry_failed)

    # -- read ---------------------------------------------------------------------------------
    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """foreachBatch body: change rows -> final state per product -> :meth:`run`, on the batch's own session.

        A batch of at most ``stream.small_batch_max_rows`` change rows (an editor's edit) comes to this process in
        one job and runs as a tiny batch; a larger one is persisted and planned and encoded by Spark tasks."""
        spark = batch.sparkSession
        ctx = self.context(spark, batch_id, (self.app_id(spark), batch_id))
        small = self.config.stream.small_batch_max_rows
        if small:
            head = batch.limit(small + 1).toArrow()
            if 0 < head.num_rows <= small:
                self.apply_changes(ctx, head)
            if head.num_rows <= small:
                return
        batch = batch.persist()
        try:
            ctx.metrics.rows_in = batch.count()
            if ctx.metrics.rows_in:
                if self.config.stream.fast_lane:  # the lane skips what the stream applied (streaming.batch.Applied)
                    ctx.source_through = batch.agg(F.max("_commit_version")).first()[0]
                ctx.lap("cdf_read")
                self.run(ctx, final_state(batch), tiny=False)
        finally:
            batch.unpersist()

    def apply_changes(self, ctx: BatchContext, changes: pa.Table) -> BatchMetrics:
        """A tiny batch of change rows already in this process (Arrow, product and CDF columns)."""
        ctx.metrics.rows_in, ctx.source_through = changes.num_rows, max(changes["_commit_version"].to_pylist())
        ctx.lap("cdf_read")
        return self.run(ctx, final_states(changes), tiny=True)

    def apply_state(self, spark: SparkSession, state: DataFrame, batch_id: int, txn: tuple[str, int] | None,
                    retry_failed: bool = False) -> BatchMetrics:
        """Plan, encode and MERGE a DataFrame of final product states (backfill, reembed: Spark tasks).

        ``retry_failed`` re-plans failed encodes whatever their attempts (``reembed --failed``).
        """
        return self.run(self.context(spark, batch_id, txn, retry_failed), state, tiny=False)

    # -- plan -> encode -> assemble -> merge --------------------------------------------------
    def run(self, ctx: BatchContext, states: pa.Table | DataFrame, tiny: bool) -> BatchMetrics:
        """The one sequence every batch runs, on the road chosen for it (``tiny``: states are Arrow);
        a batch that fails as a whole is run again (:func:`streaming.batch.with_retries`); one process's batches
        into one table (the stream's, the fast lane's) run one at a time."""
        with writer_lock(str(self.config.tables.embeddings)):
            applied = applied_in(str(self.config.tables.embeddings))
            if not applied.before(ctx):
                return ctx.finish()
            metrics = with_retries(lambda n: self._run_once(ctx, states, tiny, n), self.config,
                                   f"batch {ctx.metrics.batch_id}")
            applied.after(ctx)
            return metrics

    def _run_once(self, ctx: BatchContext, states: pa.Table | DataFrame, tiny: bool, retry: int) -> BatchMetrics:
        road, metrics = choose_road(ctx, self.tools, tiny), ctx.metrics
        metrics.road, metrics.retries = road.name, retry
        try:
            plan = road.plan(states)
            metrics.count(plan.actions)
            metrics.rows_in = metrics.rows_in or metrics.products
            ctx.lap("plan")
            if metrics.to_write:
                encoded = road.encode(plan)
                ctx.lap("encode")
                source = road.assemble(encoded)
                ctx.lap("assemble")
                metrics.merge = road.merge(source)
                ctx.lap("merge")
                sync = self.tools.sync_trigger
                if sync is not None and metrics.merge.get("num_affected_rows", 1):
                    sync.request()
        finally:
            road.release()
        ctx.finish()
        self.history.append(metrics)
        metrics.log()
        return metrics

    # -- the stream ----------------------------------------------------------------------------
    def app_id(self, spark: SparkSession) -> str:
        """Idempotent-write app id: the configured id plus the checkpoint's query id.

        A new checkpoint restarts batch ids at 0; keying on its query id keeps those
        batches from being mistaken for already-committed ones.
        """
        if self._app_id is None:
            query_id = checkpoint_query_id(spark, self.config.stream.checkpoint)
            if query_id is None:
                log.warning("no stream checkpoint at %s; txnAppId without a query id", self.config.stream.checkpoint)
            self._app_id = f"{self.config.stream.app_id}:{query_id}" if query_id else self.config.stream.app_id
        return self._app_id


class EmbedderQuery:
    """The running stream (a ``StreamingQuery``) whose :meth:`stop` also clears the batch's write identity.

    On Spark Connect the foreachBatch body runs on the client's own server-side session (classic streams run on
    a clone), and stopping the query kills that body wherever it is: a batch stopped inside its MERGE leaves the
    write ids and commit metadata set on the client session, where the client's next write would carry them (and
    Delta would skip it as a replay). Stopping through here removes them."""

    def __init__(self, query: StreamingQuery, spark: SparkSession):
        self._query, self._spark = query, spark
        self._background: list[threading.Thread] = []

    def beside(self, work, name: str) -> None:
        """Run ``work`` in a thread while the query runs (the warm-up); :meth:`stop` waits for it."""
        self._background.append(run_beside(work, name))

    def stop(self) -> None:
        for thread in self._background:
            thread.join(timeout=300)
        self._query.stop()
        clear_write_identity(self._spark)

    def __getattr__(self, name: str):
        return getattr(self._query, name)


class Embedder:
    """The client side: owns the session, creates the tables, starts the stream, runs backfill batches."""

    def __init__(self, spark: SparkSession, config: Config, processor: BatchProcessor | None = None):
        self.spark, self.config = spark, config
        require_sync_client(config)
        self.processor = processor or BatchProcessor(config, uuid.uuid4().hex)  # the job's: shared with the fast lane
        self.run_id = self.processor.run_id
        ensure_all_tables(spark, config)

    @property
    def udfs(self) -> dict:
        return self.processor.tools.udfs

    @property
    def history(self) -> list[BatchMetrics]:
        """Every batch of this embedder that wrote, wherever it ran: read from the embeddings table's commits."""
        return batch_metrics.history(self.spark, self.config.tables.embeddings, self.run_id)

    def apply_state(self, state: DataFrame, batch_id: int, txn: tuple[str, int] | None,
                    retry_failed: bool = False) -> BatchMetrics:
        """Plan, encode and MERGE final product states on this embedder's session (backfill, reembed)."""
        return self.processor.apply_state(self.spark, state, batch_id, txn, retry_failed)

    def process_batch(self, batch: DataFrame, batch_id: int) -> None:
        """Run the foreachBatch body on a batch of CDF rows (what the stream does for each micro-batch)."""
        self.processor(batch, batch_id)

    def start_stream(self, trigger: str | None = None, clock=None, warm_up: bool = True) -> EmbedderQuery:
        """Start the CDF -> embeddings query (``availableNow`` or ``processingTime``); ``clock``: a StartupClock."""
        mark = clock.mark if clock is not None else (lambda _phase: None)
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
        mark("stream_plan")  # the change feed's read analysed: the products table's log loaded
        if checkpoint_query_id(self.spark, cfg.checkpoint) is None:
            # A new checkpoint replays the current snapshot, which cannot show products deleted while no
            # stream was running: remove their rows first.
            from fashion_catalog.streaming.reconcile import reconcile

            reconcile(self.spark, self.config)
        mark("reconcile")
        log.info("starting stream (trigger %s, checkpoint %s)", trigger, cfg.checkpoint)
        query = EmbedderQuery(writer.start(), self.spark)
        mark("query_start")
        if trigger != "availableNow" and cfg.warm_up and warm_up and cfg.small_batch_max_rows:
            # A continuous stream waits for edits: load the model and warm the JVM for them, beside the first trigger
            # rather than before it (an edit waiting is not held up by it); ``warm_up`` False: a fast lane does it.
            from fashion_catalog.streaming.warm_up import warm_up

            query.beside(lambda: warm_up(self.processor, self.spark), "warm-up")
        return query
