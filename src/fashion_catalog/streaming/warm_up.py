"""Warm a continuous stream up before its first edit: the model loaded and run once, the tiny road run once.

A fresh JVM pays seconds the first time it plans the tiny road's queries and runs each kind of
MERGE (class loading, JIT, code generation), and a model pays its load and its first (slow) call
of each tower; paying them here keeps them off the first edit after a start. Nothing reaches the
embeddings table: with the table on this machine's file system the tiny road runs end to end on a
scratch table beside it (an insert, a text-only update, a delete); elsewhere (a catalog table, an
object store) the ``spark-merge`` road plans no rows and merges an empty source, which Delta does
not commit.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time

import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql.pandas.types import to_arrow_type

from fashion_catalog.conf import TableRef
from fashion_catalog.lakehouse.tables import ensure_embeddings_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.spark import PRODUCTS_SCHEMA, STATE_SCHEMA
from fashion_catalog.streaming.roads import SparkMergeRoad, road_name

log = logging.getLogger(__name__)

# The change-row columns a tiny batch reads, for the scratch edits.
_CHANGE_ROWS = pa.schema([pa.field(f.name, to_arrow_type(f.dataType)) for f in PRODUCTS_SCHEMA.fields]
                         + [pa.field("_change_type", pa.string()), pa.field("_commit_version", pa.int64())])
_STATES = pa.schema([pa.field(f.name, to_arrow_type(f.dataType)) for f in STATE_SCHEMA.fields])


def warm_up(processor, spark: SparkSession) -> float:
    """Warm the encoder and the tiny road of ``processor`` (a BatchProcessor); returns the seconds spent."""
    t0 = time.perf_counter()
    warm_encoder(processor.tools.encoder)
    log.info("encoder warmed up in %.2f s", time.perf_counter() - t0)
    t1 = time.perf_counter()
    if road_name(processor.config, tiny=True) == "delta-rs":
        _on_scratch(processor, spark)
    else:
        _empty_merge(processor, spark)
    processor.warmed_up_s = round(time.perf_counter() - t1, 3)
    log.info("Spark warmed up in %.2f s (the %s road)", processor.warmed_up_s, road_name(processor.config, True))
    return round(time.perf_counter() - t0, 3)


def warm_encoder(encoder) -> None:
    """One text and one image through ``encoder``: its first call of each tower is slow; an edit should not pay it."""
    from PIL import Image

    encoder.encode_texts(["warm-up"], 1)
    encoder.encode_images([Image.new("RGB", (224, 224), (128, 128, 128))], 1)


def _on_scratch(processor, spark: SparkSession) -> None:
    """Three made-up edits of one product down the tiny road, on a throwaway local table."""
    scratch_dir = tempfile.mkdtemp(prefix="embedder-warm-up-")
    try:
        ref = TableRef(path=scratch_dir)
        ensure_embeddings_table(spark, ref)
        config = processor.config.model_copy(update={
            "tables": processor.config.tables.model_copy(update={"embeddings": ref}),
            "vector_search": processor.config.vector_search.model_copy(update={"sync_from_stream": False})})
        scratch = type(processor)(config, processor.run_id)
        scratch.tools.share_encoder(processor.tools)
        edits = [("insert", "Warm-up shirt"), ("update_postimage", "Warm-up shirt, renamed"),
                 ("delete", "Warm-up shirt, renamed")]
        for version, (change, name) in enumerate(edits, 1):
            row = {c: None for c in PRODUCT_COLUMNS} | {
                "product_id": 1, "product_display_name": name, "price": 10.0,
                "image_path": os.path.join(scratch_dir, "no-image.jpg"),
                "_change_type": change, "_commit_version": version}
            scratch.apply_changes(scratch.context(spark, -version, None), pa.Table.from_pylist([row], _CHANGE_ROWS))
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)


def _empty_merge(processor, spark: SparkSession) -> None:
    """The tiny road's plan on no rows and its full MERGE (update and delete clauses too) of an empty source."""
    ctx = processor.context(spark, -1, None)
    road = SparkMergeRoad(ctx, processor.tools)
    plan = road.plan(_STATES.empty_table())
    source = road.assemble(road.encode(plan))
    ctx.metrics.updates = 1  # not inserts-only: every clause is planned; an empty source commits nothing
    road.merge(source)

