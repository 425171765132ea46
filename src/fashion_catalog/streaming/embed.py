"""The encode and assemble steps: each distinct description and image encoded once, then the MERGE source.

What a modality's encode step reads and writes is declared once (:data:`MODALITIES`): which
plan rows need it, the content hash that deduplicates them, the value the model reads, and
the columns its vector and error land in. Two engines run that declaration:

* Spark tasks (a large batch): :func:`encode_modalities` runs the encoding UDFs over the
  distinct rows, :func:`assemble_rows` joins the vectors back by hash and rebuilds the hybrid;
* this process (a tiny batch): :func:`encode_in_process` runs the same encoding functions on
  the plan it holds as Arrow and attaches the vectors by hash (:func:`attach_vectors`).

Both end in :func:`assemble_columns`, the assembly's rules as Spark column expressions: new
vectors where a modality was re-encoded (null elsewhere: the MERGE keeps the stored one), the
hybrid rebuilt, error codes merged, attempts counted. ``tests/test_stream.py`` holds the
Arrow and Spark versions of each step equal on the same input.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fashion_catalog.encoders.images import ImageLimits
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.spark import VECTOR_TYPE
from fashion_catalog.streaming.batch import Rules
from fashion_catalog.udfs.columns import reusable_columns
from fashion_catalog.udfs.encoding import (
    RETRYABLE_IMAGE_ERRORS,
    RETRYABLE_TEXT_ERRORS,
    encode_image_frame,
    encode_text_frame,
    encoded_schema,
)
from fashion_catalog.udfs.vectors import with_hybrid

# Plan actions that reach the MERGE; "unchanged", "stale" and "absent_delete" do not.
WRITE_ACTIONS = ("insert", "update", "metadata", "delete")
# Above this many partially re-encoded rows, join instead of an IN-list filter.
_MAX_IN_LIST = 20000


@dataclass(frozen=True)
class Modality:
    """One modality's encode step, declared once for both engines."""

    name: str  # "text" | "image": the encoding UDF and function to run
    need: str  # the plan's flag: this modality is (re-)encoded
    key: str  # content hash: each distinct one is encoded once
    value: str  # what the model reads
    blocked_by: str | None  # a plan column that, when set, is the result already (an image that could not be read)
    vector: str  # the new vector's column
    error: str  # the model call's error code column


TEXT = Modality("text", "_need_text", "text_hash", "description", None, "_new_text", "_text_error")
IMAGE = Modality("image", "_need_image", "image_hash", "image_path", "_image_read_error", "_new_image",
                 "_image_error")
MODALITIES = (TEXT, IMAGE)


# -- Spark tasks ---------------------------------------------------------------------------------
def to_encode(todo: DataFrame, m: Modality) -> DataFrame:
    """The distinct (hash, value) rows of ``m`` to encode (Spark; twin of :func:`to_encode_local`)."""
    need = F.col(m.need) if m.blocked_by is None else F.col(m.need) & F.col(m.blocked_by).isNull()
    return todo.filter(need).select(m.key, m.value).dropDuplicates([m.key])


@dataclass
class EncodedModalities:
    """Vectors keyed by content hash, one persisted frame per modality (key, vector, error, _worker)."""

    frames: dict[str, DataFrame]
    counts: dict[str, int]
    seconds: dict[str, float]
    workers: list[str]

    def release(self) -> None:
        for frame in self.frames.values():
            frame.unpersist()


def encode_modalities(todo: DataFrame, encoders: dict, encode_partitions: int, profile=None) -> EncodedModalities:
    """Encode each modality's distinct rows once, in Spark tasks (``encoders``: name -> ``mapInPandas`` function
    of :func:`fashion_catalog.udfs.encoding.make_encoder`; ``profile``: the encoding stages' ResourceProfile).

    Results are persisted so the MERGE, which reads its source twice, never runs a model again;
    one aggregate per modality (timed apart, for per-modality throughput) materialises them and
    counts the rows and the processes that encoded them.
    """
    frames, counts, seconds, workers = {}, {}, {}, set()
    for m in MODALITIES:
        rows = to_encode(todo, m).repartition(encode_partitions)
        if m is TEXT:
            # Similar lengths side by side: each Arrow batch pads to its longest text, so sorted batches pad
            # little (the encoder sorts inside a batch too, but a batch of 256 is a small window).
            rows = rows.sortWithinPartitions(F.length(m.value))
        result = rows.mapInPandas(encoders[m.name], encoded_schema(rows.schema[m.key]), profile=profile)
        frames[m.name] = (result.select(m.key, F.col("embedding").alias(m.vector), F.col("error").alias(m.error),
                                        F.col("worker").alias("_worker"))
                          .persist())
        t0 = time.perf_counter()
        done = frames[m.name].agg(F.count(F.lit(1)).alias("n"), F.collect_set("_worker").alias("workers")).first()
        seconds[m.name] = time.perf_counter() - t0
        counts[m.name] = int(done["n"])
        workers.update(done["workers"] or [])
    return EncodedModalities(frames, counts, seconds, sorted(workers))


def stored_vectors(todo: DataFrame, embeddings: DataFrame, has_updates: bool) -> DataFrame | None:
    """Stored (product_id, _old_text, _old_image) of rows re-encoding only one modality; None when there are none.

    Such a row needs the other, stored vector to rebuild its hybrid. Without any
    ("update" rows are the only ones that can be partial) the embeddings table is not
    scanned at all: a smaller plan, a faster batch.
    """
    if not has_updates:
        return None
    partial = todo.filter(F.col("_exists") & ~F.col("_deleted") & (F.col("_need_text") != F.col("_need_image")))
    partial_ids = [r[0] for r in partial.select("product_id").limit(_MAX_IN_LIST + 1).collect()]
    if not partial_ids:
        return None
    old = embeddings.select(
        "product_id", F.col("text_embedding").alias("_old_text"), F.col("image_embedding").alias("_old_image")
    )
    if len(partial_ids) <= _MAX_IN_LIST:
        return old.filter(F.col("product_id").isin(partial_ids))
    return old.join(partial.select("product_id"), "product_id", "left_semi")


def assemble_rows(todo: DataFrame, encoded: EncodedModalities, old: DataFrame | None, rules: Rules) -> DataFrame:
    """The MERGE source: new vectors joined by hash (twin of :func:`attach_vectors`), the stored ones kept.

    ``old`` has the stored vectors of the partial updates, or None when there are none.
    """
    rows = todo
    for m in MODALITIES:
        rows = rows.join(F.broadcast(encoded.frames[m.name].drop("_worker")), m.key, "left")
    rows = rows.join(old, "product_id", "left") if old is not None else rows.withColumns(_no_stored_vectors())
    return assemble_columns(rows, rules)


@reusable_columns
def image_errors_spark() -> Column:
    """MERGE-source rows whose image was (re-)encoded and failed, as an aggregate (twin of :func:`image_errors`)."""
    return F.count(F.when(F.col("_need_image") & F.col("embedding_error").isNotNull(), 1))


# -- this process --------------------------------------------------------------------------------
def to_encode_local(todo: pd.DataFrame, m: Modality) -> pd.DataFrame:
    """The distinct (hash, value) rows of ``m`` to encode (pandas; twin of :func:`to_encode`)."""
    need = todo[m.need] if m.blocked_by is None else todo[m.need] & todo[m.blocked_by].isna()
    return todo[need].drop_duplicates(m.key)[[m.key, m.value]]


def attach_vectors(rows: pa.Table, m: Modality, keys: list, frame: pd.DataFrame | None) -> pa.Table:
    """Add ``m``'s vector and error columns: each row gets its hash's result, null where none was encoded.

    The in-process twin of the join in :func:`assemble_rows`; ``frame`` holds the results of ``keys``.
    """
    found = dict(zip(keys, zip(frame["embedding"], frame["error"], strict=True), strict=True)) if keys else {}
    need = [found.get(h, (None, None)) for h in rows[m.key].to_pylist()]
    vectors = [None if v is None else [float(x) for x in v] for v, _ in need]
    rows = rows.append_column(m.vector, pa.array(vectors, pa.list_(pa.float64())))  # VECTOR_TYPE: array<double>
    return rows.append_column(m.error, pa.array([e for _, e in need], pa.string()))


@dataclass
class EncodedInProcess:
    """A tiny batch's rows to write with their new vectors attached, and what encoding them took."""

    rows: pa.Table
    counts: dict[str, int]
    seconds: dict[str, float]
    workers: list[str]


def encode_in_process(plan: pa.Table, encoder, limits: ImageLimits, batch_sizes: dict[str, int]) -> EncodedInProcess:
    """Encode a tiny batch's plan (Arrow, in this process) and attach the new vectors to its rows to write.

    The same selection as :func:`encode_modalities` and the same encoding functions as the UDFs,
    run with ``encoder`` (loaded and warmed once per process; ``batch_sizes``: name -> batch size).
    """
    rows = plan.filter(pc.is_in(plan["_action"], pa.array(WRITE_ACTIONS)))
    todo = rows.select([c for m in MODALITIES for c in (m.need, m.key, m.value, m.blocked_by) if c]).to_pandas()
    counts, seconds = {}, {}
    for m in MODALITIES:
        values = to_encode_local(todo, m)
        t0 = time.perf_counter()
        frame = None
        if len(values) and m is TEXT:
            frame = encode_text_frame(encoder, values[m.value], batch_sizes[m.name])
        elif len(values):
            frame = encode_image_frame(encoder, values[m.value], limits, batch_sizes[m.name])
        seconds[m.name], counts[m.name] = time.perf_counter() - t0, len(values)
        rows = attach_vectors(rows, m, list(values[m.key]), frame)
    # This process, named so a batch's metrics say the model ran here and not in a Spark task.
    worker = f"{socket.gethostname()}:{os.getpid()}:batch-process"
    return EncodedInProcess(rows, counts, seconds, [worker] if any(counts.values()) else [])


def image_errors(rows: pa.Table) -> int:
    """MERGE-source rows whose image was (re-)encoded and failed (Arrow; twin of :func:`image_errors_spark`)."""
    return int(pc.sum(pc.and_(rows["_need_image"], pc.is_valid(rows["embedding_error"]))).as_py() or 0)


# -- the assembly's rules, shared ----------------------------------------------------------------
def assemble_columns(rows: DataFrame, rules: Rules) -> DataFrame:
    """The MERGE source from rows that hold the new and the stored vectors: the hybrid rebuilt, errors merged.

    Projections only: over a tiny batch's local relation Spark evaluates them while optimising the
    query, with no job to run.
    """
    rows = with_hybrid(rows.withColumns(_full_columns()), "_text_full", "_image_full", rules.text_weight)
    return rows.select(*_merge_source_columns(rules.model_id, rules.dimension))


@reusable_columns
def _no_stored_vectors() -> dict:
    return {"_old_text": F.lit(None).cast(VECTOR_TYPE), "_old_image": F.lit(None).cast(VECTOR_TYPE)}


@reusable_columns
def _full_columns() -> dict:
    """Each modality's vector after this batch (new where re-encoded, else stored) and the image error."""
    # Image error codes (IMAGE_*) are kept apart from text ones (TEXT_*) so that re-encoding one side keeps
    # the other's code.
    stored_image_error = F.array_join(F.filter(
        F.split(F.coalesce(F.col("cur_embedding_error"), F.lit("")), ","), lambda code: code.startswith("IMAGE_")), ",")
    return {
        "_text_full": F.when(F.col("_need_text"), F.col("_new_text")).otherwise(F.col("_old_text")),
        "_image_full": F.when(F.col("_need_image"), F.col("_new_image")).otherwise(F.col("_old_image")),
        "_image_err": F.when(F.col("_need_image"), F.coalesce(F.col("_image_read_error"), F.col("_image_error")))
        .otherwise(F.when(stored_image_error != "", stored_image_error)),
    }


@reusable_columns
def _merge_source_columns(model_id: str, dimension: int) -> list:
    """The MERGE source's columns: new vectors only where re-encoded (the MERGE keeps the stored ones)."""
    any_new = F.col("_need_text") | F.col("_need_image")
    error = F.concat_ws(",", F.col("_image_err"), F.when(F.col("_need_text"), F.col("_text_error")))
    # A model call that failed in this batch counts one more attempt; an encode that worked starts over.
    failed_now = ((F.col("_need_text") & F.col("_text_error").isin(*RETRYABLE_TEXT_ERRORS))
                  | (F.col("_need_image") & F.col("_image_error").isin(*RETRYABLE_IMAGE_ERRORS)))
    attempts = (F.when(failed_now, F.coalesce(F.col("cur_failed_attempts"), F.lit(0)) + 1)
                .when(any_new, F.lit(0)).otherwise(F.col("cur_failed_attempts")))
    return [
        *[F.col(c) for c in PRODUCT_COLUMNS],
        F.when(F.col("_need_image"), F.col("_new_image")).alias("image_embedding"),
        F.when(F.col("_need_text"), F.col("_new_text")).alias("text_embedding"),
        F.when(any_new, F.col("hybrid_embedding")).alias("hybrid_embedding"),
        F.lit(model_id).alias("embedding_model"),
        F.lit(dimension).alias("embedding_dimension"),
        F.col("description"),
        F.col("text_hash"),
        F.col("image_hash"),
        F.when(error != "", error).alias("embedding_error"),
        F.when(any_new, F.col("hybrid_source")).alias("hybrid_source"),
        F.col("source_commit_version"),
        attempts.cast("int").alias("failed_attempts"),
        F.col("_deleted"),
        F.col("_need_text"),
        F.col("_need_image"),
    ]


@reusable_columns
def writes() -> Column:
    """The plan rows that reach the MERGE (:data:`WRITE_ACTIONS`)."""
    return F.col("_action").isin(*WRITE_ACTIONS)
