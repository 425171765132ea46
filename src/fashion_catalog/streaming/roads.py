"""Where each step of a batch runs: one road, chosen once per batch (:func:`choose_road`).

Every batch runs the same sequence, plan -> encode -> assemble -> merge
(:meth:`fashion_catalog.streaming.runner.BatchProcessor.run`); a road only decides where each
step runs. There are three, in one registry (:data:`ROADS`):

============== =============================================== ==============================
road            plan, encode, assemble                          merge
============== =============================================== ==============================
``delta-rs``    this process (Arrow rows, no Spark call)        delta-rs
``spark-merge`` this process (Arrow, one local relation)        Spark MERGE of the local rows
``spark-tasks`` Spark tasks (joins, encoding UDFs)              Spark MERGE
============== =============================================== ==============================

A tiny batch (an editor's edit) takes ``delta-rs`` when the embeddings table is on this
machine's file system and ``spark-merge`` otherwise (a Unity Catalog table, an object store:
what production takes on Databricks); a large batch, a backfill chunk or a reembed takes
``spark-tasks``. The rules they apply are written once as Spark columns (the planner's decision
columns, :data:`fashion_catalog.streaming.embed.MODALITIES`, ``assemble_columns``) and SQL
(``merge_clauses``, which delta-rs runs too); the ``delta-rs`` road applies the plan's and the
assembly's through their Arrow twins (:mod:`fashion_catalog.streaming.arrow_rules`), so an edit
needs no Spark call. ``tests/test_stream.py::test_every_road_writes_the_same_table`` holds the three
equal row for row.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from fashion_catalog.conf import Config, ConfigError
from fashion_catalog.encoders.factory import EncoderSpec
from fashion_catalog.encoders.images import ImageLimits
from fashion_catalog.lakehouse.direct import local_path, one_chunk
from fashion_catalog.lakehouse.tables import read_table
from fashion_catalog.schemas.spark import VECTOR_TYPE
from fashion_catalog.streaming.arrow_rules import assemble_arrow, plan_arrow
from fashion_catalog.streaming.batch import BatchContext
from fashion_catalog.streaming.embed import (
    MODALITIES,
    assemble_columns,
    assemble_rows,
    encode_in_process,
    encode_modalities,
    image_errors,
    image_errors_spark,
    stored_vectors,
    writes,
)
from fashion_catalog.streaming.planner import (
    behind_deletes,
    plan_changes,
    plan_local,
    stored_arrow,
    stored_arrow_spark,
)
from fashion_catalog.streaming.writer import merge_embeddings, merge_embeddings_direct, resolve_snapshot
from fashion_catalog.udfs.encoding import encode_task_profile, image_hashes, make_encoder, make_image_hash_udf

log = logging.getLogger(__name__)
_ENCODER_LOCK = threading.Lock()


@dataclass
class Plan:
    """The plan's rows (Arrow in this process, a persisted DataFrame in Spark tasks) and its action counts."""

    rows: pa.Table | DataFrame
    actions: dict[str, int]
    schema: StructType | None = None  # the Spark schema of Arrow rows


class Road(Protocol):
    """Where plan, encode, assemble and merge run for one batch (a new road per batch)."""

    name: str

    def plan(self, states: pa.Table | DataFrame) -> Plan:
        """Final product states against their stored rows: what to (re-)encode and write."""

    def encode(self, plan: Plan) -> object:
        """Run the models on what the plan flags; records the counts in the batch's metrics."""

    def assemble(self, encoded: object) -> pa.Table | DataFrame:
        """The MERGE source; records rows written and image errors."""

    def merge(self, source: pa.Table | DataFrame) -> dict[str, int]:
        """MERGE the source in one idempotent commit; returns the MERGE's row counts."""

    def release(self) -> None:
        """Free what the batch cached."""


class Tools:
    """What the roads use, built on first use in the process that runs the batches (never pickled)."""

    def __init__(self, config: Config):
        self.config = config
        self.spec = EncoderSpec.from_config(config)  # the Spark tasks' encoders
        # This process's encoder (tiny batches, the fast lane) runs a few rows at a time: its own thread count.
        self._tiny_spec = replace(self.spec, torch_threads=config.stream.tiny_batch_torch_threads)
        self.limits = ImageLimits.from_config(config)
        self._encoder = self._udfs = self._sync = self._profile = None
        self._resolving: threading.Thread | None = None

    @property
    def encoder(self):
        """The encoder of tiny batches (loaded once per process)."""
        with _ENCODER_LOCK:  # the warm-up thread and a batch may both ask first: one load
            if self._encoder is None:
                self._encoder = self._tiny_spec.encoder()
                log.info("tiny-batch encoder loaded in this process: %s (%s, %s)", self.config.model.name_or_path,
                         self.config.model.id, self.config.model.precision)
        return self._encoder

    def share_encoder(self, other: Tools) -> None:
        """Use ``other``'s encoder (a warm-up's scratch tools)."""
        self._encoder = other.encoder

    @property
    def udfs(self) -> dict:
        """The Spark tasks' functions: ``text`` and ``image`` (encoding maps), ``image_hash`` (a UDF)."""
        if self._udfs is None:
            self._udfs = {m.name: make_encoder(m.name, self.spec, self.limits, m.key, m.value) for m in MODALITIES}
            self._udfs["image_hash"] = make_image_hash_udf(self.limits)
        return self._udfs

    @property
    def encode_profile(self):
        """The encoding stages' ResourceProfile (``model.encode_task_gpus``), or None; built once."""
        if self._profile is None and self.config.model.encode_task_gpus:
            self._profile = encode_task_profile(self.config.model.encode_task_gpus)
        return self._profile

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

    def resolve_snapshot_soon(self, spark) -> None:
        """After a Spark commit of a tiny batch: compute the new snapshot in the background (see resolve_snapshot)."""
        if self._resolving is not None and self._resolving.is_alive():
            return

        def run() -> None:
            try:
                resolve_snapshot(spark, self.config.tables.embeddings)
            except Exception as exc:  # noqa: BLE001 - only a head start: the next MERGE computes it anyway
                log.debug("snapshot resolution after the commit failed: %s", exc)

        self._resolving = threading.Thread(target=run, daemon=True, name="resolve-snapshot")
        self._resolving.start()


def _record_encoding(ctx: BatchContext, counts: dict, seconds: dict, workers: list[str]) -> None:
    """Per-modality encode seconds and counts, and the processes that ran the model (either kind of road)."""
    for m in MODALITIES:
        ctx.metrics.phases_s[f"encode_{m.name}"] = round(seconds[m.name], 3)
    ctx.metrics.texts_encoded, ctx.metrics.images_encoded = counts["text"], counts["image"]
    ctx.metrics.encoder_workers = workers


def _actions(rows: pa.Table) -> dict[str, int]:
    counted = rows.group_by("_action").aggregate([("_action", "count")]).to_pylist()
    return {r["_action"]: r["_action_count"] for r in counted}


def _image_hashes(states: pa.Table, tools: Tools) -> dict:
    """Each image path of a tiny batch's live states (None included) -> its content hash, read here."""
    live = states.filter(pc.invert(states["_deleted"]))
    paths = pd.Series(pc.unique(live["image_path"]).to_pylist(), dtype=object)
    return dict(zip(paths, image_hashes(paths, tools.limits), strict=True))


def _encode_here(ctx: BatchContext, tools: Tools, rows: pa.Table) -> pa.Table:
    """Run the models of this process on a tiny batch's plan rows; the rows to write with their new vectors."""
    sizes = {"text": tools.spec.text_batch_size, "image": tools.spec.image_batch_size}
    encoded = encode_in_process(rows, tools.encoder, tools.limits, sizes)
    _record_encoding(ctx, encoded.counts, encoded.seconds, encoded.workers)
    return encoded.rows


def _source_table(ctx: BatchContext, source: pa.Table) -> pa.Table:
    """A tiny batch's MERGE source in product_id order (files in id order, as the Spark-task road writes them);
    records rows written and image errors."""
    table = source.sort_by("product_id")
    ctx.metrics.rows_written, ctx.metrics.image_errors = table.num_rows, image_errors(table)
    return table


class DeltaRsRoad:
    """A tiny batch into a table on this machine's file system, all in this process and no Spark call: stored rows
    read and rows merged by delta-rs, the plan's and the assembly's rules applied to Arrow rows
    (:mod:`fashion_catalog.streaming.arrow_rules`), the models run here. Needs no Spark session (the fast lane
    runs it before the JVM is up)."""

    name = "delta-rs"

    def __init__(self, ctx: BatchContext, tools: Tools):
        self.ctx, self.tools = ctx, tools
        self.ref = ctx.config.tables.embeddings
        self.path = local_path(self.ref.path)
        self.target_ids: list[int] = []

    def plan(self, states: pa.Table) -> Plan:
        self.target_ids = pc.unique(states["product_id"]).to_pylist()
        rows = plan_arrow(states, stored_arrow(self.ref, self.target_ids), _image_hashes(states, self.tools),
                          self.ctx.rules, self.ctx.deletes_ahead)
        deletes = rows.filter(pc.equal(rows["_action"], "delete"))
        self.ctx.planned_deletes = dict(zip(deletes["product_id"].to_pylist(),
                                            deletes["source_commit_version"].to_pylist(), strict=True))
        return Plan(rows, _actions(rows))

    def encode(self, plan: Plan) -> pa.Table:
        return _encode_here(self.ctx, self.tools, plan.rows)

    def assemble(self, encoded: pa.Table) -> pa.Table:
        return _source_table(self.ctx, assemble_arrow(encoded, self.ctx.rules))

    def merge(self, source: pa.Table) -> dict[str, int]:
        return merge_embeddings_direct(self.path, source, self.ctx.merge_request(target_ids=self.target_ids))

    def release(self) -> None:
        """Nothing is cached: the batch's rows live in this process."""


class SparkMergeRoad:
    """A tiny batch into a catalog table or one on an object store: stored rows read and rows merged by Spark; the
    plan's and the assembly's rules are Spark projections over one local relation (Spark evaluates them while
    optimising, no job), the models run in this process."""

    name = "spark-merge"

    def __init__(self, ctx: BatchContext, tools: Tools):
        self.ctx, self.tools = ctx, tools
        self.ref = ctx.config.tables.embeddings
        self.target_ids: list[int] = []
        self._source_schema: StructType | None = None

    def plan(self, states: pa.Table) -> Plan:
        self.target_ids = pc.unique(states["product_id"]).to_pylist()
        stored = stored_arrow_spark(self.ctx.spark, self.ref, self.target_ids)
        planned = behind_deletes(plan_local(self.ctx.spark, states, stored, _image_hashes(states, self.tools),
                                            self.ctx.rules), self.ctx.deletes_ahead)
        rows = planned.toArrow()
        return Plan(rows, _actions(rows), planned.schema)

    def encode(self, plan: Plan) -> DataFrame:
        rows = _encode_here(self.ctx, self.tools, plan.rows)
        fields = [*plan.schema.fields, *[f for m in MODALITIES for f in (
            StructType().add(m.vector, VECTOR_TYPE).add(m.error, "string").fields)]]
        return self.ctx.spark.createDataFrame(one_chunk(rows), schema=StructType(fields))

    def assemble(self, encoded: DataFrame) -> pa.Table:
        source = assemble_columns(encoded, self.ctx.rules)
        self._source_schema = source.schema
        return _source_table(self.ctx, source.toArrow())

    def merge(self, source: pa.Table) -> dict[str, int]:
        spark = self.ctx.spark
        rows = spark.createDataFrame(one_chunk(source), schema=self._source_schema)
        done = merge_embeddings(spark, self.ref, rows, self.ctx.merge_request(target_ids=self.target_ids))
        if done.get("num_affected_rows", 1):
            self.tools.resolve_snapshot_soon(spark)
        return done

    def release(self) -> None:
        """Nothing is cached: the batch's rows live in this process."""


class SparkTasksRoad:
    """A large batch, a backfill chunk or a reembed: plan, encoding UDFs and assembly in Spark tasks."""

    name = "spark-tasks"

    def __init__(self, ctx: BatchContext, tools: Tools):
        self.ctx, self.tools = ctx, tools
        self.embeddings = read_table(ctx.spark, ctx.config.tables.embeddings, check=False)
        self._cached: list = []

    def plan(self, states: DataFrame) -> Plan:
        rows = behind_deletes(plan_changes(states, self.embeddings, self.tools.udfs["image_hash"], self.ctx.rules),
                              self.ctx.deletes_ahead).persist()
        self._cached.append(rows)
        return Plan(rows, {r["_action"]: r["count"] for r in rows.groupBy("_action").count().collect()})

    def encode(self, plan: Plan):
        todo = plan.rows.filter(writes())
        encoded = encode_modalities(todo, self.tools.udfs, self.ctx.config.model.encode_partitions,
                                    self.tools.encode_profile)
        self._cached.append(encoded)
        _record_encoding(self.ctx, encoded.counts, encoded.seconds, encoded.workers)
        return todo, encoded

    def assemble(self, encoded) -> DataFrame:
        todo, modalities = encoded
        old = stored_vectors(todo, self.embeddings, self.ctx.metrics.updates > 0)
        source = self._materialize(assemble_rows(todo, modalities, old, self.ctx.rules))
        self._cached.append(source)
        return source

    def _materialize(self, rows: DataFrame) -> DataFrame:
        """The MERGE source computed once and cut from its lineage; records its row count and image errors.

        The MERGE reads its source twice and Delta analyses the source plan several times; the
        encoded rows' plan (CDF batch, joins, UDFs) is deep, and planning it cost more than the
        write (a 1-row MERGE: 3.3 s on the lineage, 1.9 s cut from it). Small sources come here
        through Arrow and go back as a local relation (one job, the simplest plan); larger ones
        are checkpointed on the executors.
        """
        spark, stream, metrics = self.ctx.spark, self.ctx.config.stream, self.ctx.metrics
        if metrics.to_write <= stream.local_merge_source_max_rows:
            table = rows.toArrow().sort_by("product_id")  # files in id order, as below
            metrics.rows_written, metrics.image_errors = table.num_rows, image_errors(table)
            return spark.createDataFrame(table, schema=rows.schema)
        # Ordered by product_id in ranges of at most max_rows_per_file rows: the MERGE writes files that each
        # hold a narrow id range (and caps them at that size), so a later edit's MERGE and lookup read one
        # small file instead of every big one (a seed written hash-partitioned spans all ids in each file).
        per_file = stream.max_rows_per_file
        rows = (rows.repartitionByRange(max(1, -(-metrics.to_write // per_file)), "product_id")
                .sortWithinPartitions("product_id").localCheckpoint(eager=True))
        counts = rows.agg(F.count(F.lit(1)).alias("n"), image_errors_spark().alias("errors")).first()
        metrics.rows_written, metrics.image_errors = int(counts["n"]), int(counts["errors"])
        return rows

    def merge(self, source: DataFrame) -> dict[str, int]:
        request = self.ctx.merge_request(max_rows_per_file=self.ctx.config.stream.max_rows_per_file)
        return merge_embeddings(self.ctx.spark, self.ctx.config.tables.embeddings, source, request)

    def release(self) -> None:
        for item in self._cached:
            item.unpersist() if isinstance(item, DataFrame) else item.release()
        self._cached = []


ROADS: dict[str, type] = {"delta-rs": DeltaRsRoad, "spark-merge": SparkMergeRoad, "spark-tasks": SparkTasksRoad}


def road_name(config: Config, tiny: bool) -> str:
    """The road of a batch: ``spark-tasks`` unless tiny; a tiny one per ``stream.tiny_merge`` and the table."""
    if not tiny:
        return "spark-tasks"
    local = local_path(config.tables.embeddings.path) is not None and not config.tables.embeddings.name
    if config.stream.tiny_merge == "delta-rs" and not local:
        raise ConfigError(f"stream.tiny_merge delta-rs needs an embeddings table on this machine's file system, "
                          f"not {config.tables.embeddings}; set stream.tiny_merge to auto or spark")
    return "delta-rs" if local and config.stream.tiny_merge != "spark" else "spark-merge"


def choose_road(ctx: BatchContext, tools: Tools, tiny: bool) -> Road:
    """The road this batch takes (see the module docstring)."""
    return ROADS[road_name(ctx.config, tiny)](ctx, tools)
