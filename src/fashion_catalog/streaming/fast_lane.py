"""The fast lane: an editor's commit to the products table embedded at once, outside the stream's trigger cycle.

Structured Streaming spends most of a small edit's second noticing the commit and preparing the
micro-batch (its idle poll, offsets, the Delta source's planning: ~0.8 s on two cores) before the
batch itself starts. Where both tables are on this machine's file system, the stream job also runs
this lane: a thread that watches the products table's ``_delta_log`` folder
(:class:`fashion_catalog.indexes.watch.DeltaLogWatch`), reads each new commit's change rows with
delta-rs and, when a commit holds at most ``stream.small_batch_max_rows`` of them, runs the one
write path on them (:meth:`BatchProcessor.apply_changes`, the ``delta-rs`` road: no Spark call).

The stream stays the durable record: it still reads every commit and plans it again, which
writes nothing where the lane already wrote the same state (the plan compares content hashes and
drops stale states by commit version), and writes what the lane skipped (a large commit) or
failed. The lane needs no Spark session, so it starts before the JVM does and catches up from the
stream's checkpoint: an edit made while the job was down or starting is searchable seconds after
launch. Its writes carry their own idempotent-write id (``<app_id>:fast-lane:<products table id>``,
the products version), batches of one process never write at once (``BatchProcessor.run``'s lock),
and neither writer undoes the other's work (``streaming.batch.Applied``: the lane skips a commit the
stream applied; a stream batch treats a state older than a delete the lane applied as stale).

Off on Databricks (``stream.fast_lane: false``): the tables are in Unity Catalog, and Vector
Search's Delta Sync, not this job, sets how fast an edit is searchable there.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import pyarrow as pa

from fashion_catalog.conf import Config, ConfigError
from fashion_catalog.indexes.watch import DeltaLogWatch
from fashion_catalog.lakehouse.direct import local_path, plain_types
from fashion_catalog.streaming.batch import writer_lock
from fashion_catalog.streaming.checkpoint import committed_source_version
from fashion_catalog.streaming.roads import road_name
from fashion_catalog.streaming.warm_up import warm_encoder

log = logging.getLogger(__name__)

LANE = "fast"
# How long the job waits for the lane's model before it starts Spark anyway (a slow disk, a large model).
MODEL_LOAD_WAIT_S = 120.0


def check_fast_lane(config: Config) -> tuple[str, str]:
    """The products and embeddings folders the lane works on; a ConfigError when it cannot run here."""
    products, embeddings = config.tables.products, config.tables.embeddings
    paths = (local_path(products.path), local_path(embeddings.path))
    if (products.name or embeddings.name or None in paths or road_name(config, tiny=True) != "delta-rs"
            or not config.stream.small_batch_max_rows):
        raise ConfigError("stream.fast_lane needs the products and embeddings tables on this machine's file "
                          "system, stream.tiny_merge auto or delta-rs and stream.small_batch_max_rows above 0; "
                          "set stream.fast_lane false")
    return paths  # type: ignore[return-value]


class FastLane:
    """Applies each small new commit of the products table as soon as it lands (see the module docstring)."""

    def __init__(self, config: Config, processor):
        self.config = config
        self.processor = processor  # a streaming.runner.BatchProcessor, shared with the stream
        self.products_dir, self.embeddings_dir = check_fast_lane(config)
        self.app_id: str | None = None  # <stream.app_id>:fast-lane:<products table id>, set on start
        self.next_version: int | None = None
        self.applied = 0
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FastLane:
        self._thread = threading.Thread(target=self._run, daemon=True, name="fast-lane")
        self._thread.start()
        return self

    def wait_loaded(self, timeout_s: float = MODEL_LOAD_WAIT_S) -> None:
        """Wait until the lane's model is loaded (the job starts Spark after it: on two cores a JVM starting beside
        the load slowed it from seconds to 13 s); raises the load's error, so a model that cannot load stops the
        job at start in one line."""
        self._loaded.wait(timeout_s)
        if self._load_error is not None:
            raise self._load_error

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        try:
            watch = DeltaLogWatch(self.products_dir, self.config.stream.fast_lane_poll_s)
            t0 = time.perf_counter()
            try:
                self.processor.tools.encoder  # noqa: B018 - load the model now, not on the first edit
            except BaseException as exc:
                self._load_error = exc
                raise
            finally:
                self._loaded.set()
            log.info("fast lane: encoder loaded in %.2f s", time.perf_counter() - t0)
            from deltalake import DeltaTable

            # The write id names the products table too: one recreated at the same path starts its versions over.
            products_id = DeltaTable(self.products_dir).metadata().id
            self.app_id = f"{self.config.stream.app_id}:fast-lane:{products_id}"
            self.next_version = committed_source_version(self.config.stream.checkpoint)
            if self.next_version is None:  # no committed batch: the stream's first snapshot covers what is there
                self.next_version = self._latest() + 1
            if not self.catch_up():
                self._warm_up()
            while not self._stop.is_set():
                watch.wait(60.0, self._stop)  # a commit, or a minute (a file system whose folder times are coarse)
                self.catch_up()
        except Exception:  # noqa: BLE001 - the lane only speeds edits up: the stream goes on without it
            log.exception("fast lane stopped; the stream goes on applying every commit")

    def _latest(self) -> int:
        from deltalake import DeltaTable

        return DeltaTable(self.products_dir).version()

    def catch_up(self) -> int:
        """Apply every commit from ``next_version`` to the latest, in order; returns the commits that wrote."""
        wrote = 0
        try:
            latest = self._latest()
        except Exception as exc:  # noqa: BLE001 - a table being replaced: the next commit wakes us again
            log.warning("fast lane: cannot open the products table: %s", exc)
            return 0
        while self.next_version <= latest and not self._stop.is_set():
            version = self.next_version
            try:
                wrote += self.apply(version)
            except Exception:  # noqa: BLE001 - the stream applies this commit anyway
                log.exception("fast lane: products version %d failed; the stream will apply it", version)
            self.next_version = version + 1
        return wrote

    def apply(self, version: int) -> bool:
        """Run one products commit through the write path when it is small; False when it was left to the stream."""
        changes = self.changes(version)
        if changes is None or not changes.num_rows:
            return False
        if not os.path.isdir(os.path.join(self.embeddings_dir, "_delta_log")):
            return False  # the job creates the table before its stream's first batch
        ctx = self.processor.context(None, version, (self.app_id, version))
        ctx.metrics.lane = LANE
        metrics = self.processor.apply_changes(ctx, changes)
        self.applied += 1
        return metrics.rows_written > 0

    def changes(self, version: int) -> pa.Table | None:
        """The change rows of one products commit (delta-rs), or None when it holds more than a tiny batch."""
        from deltalake import DeltaTable

        limit = self.config.stream.small_batch_max_rows
        reader = DeltaTable(self.products_dir).load_cdf(starting_version=version, ending_version=version)
        batches, rows = [], 0
        for batch in pa.RecordBatchReader.from_stream(reader):  # delta-rs streams arro3 batches: read as pyarrow
            rows += batch.num_rows
            if rows > limit:
                log.info("fast lane: products version %d has over %d change rows; left to the stream", version, limit)
                return None
            batches.append(batch)
        if not batches:
            return None
        return plain_types(pa.Table.from_batches(batches))

    def _warm_up(self) -> None:
        """Nothing was waiting: one text and one image through the model, so an edit is not its first call."""
        with writer_lock(str(self.config.tables.embeddings)):  # the model is the stream's tiny batches' too
            warm_encoder(self.processor.tools.encoder)
