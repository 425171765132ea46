"""Run the encoders on a planned batch: each distinct description and image encoded once.

Three steps, each a function: :func:`encode_modalities` runs the models,
:func:`stored_vectors` looks up the vectors a partial update keeps, and
:func:`assemble_rows` builds the MERGE source: product columns, bookkeeping and
the new vectors (null where a modality was not re-encoded; the MERGE then keeps
the stored one). :func:`encode_plan` chains them.

Tiny batches (a catalog editor's single edit) skip the Spark jobs of the encode step:
:func:`encode_in_process` runs the same encoding functions as the UDFs, in the process
that runs the batch, on the plan it already holds as Arrow, and attaches the vectors to
its rows; :func:`assemble_columns` (the assembly's rules, shared) then needs no join.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashion_catalog.encoders.images import ImageLimits
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.spark import VECTOR_TYPE
from fashion_catalog.udfs.columns import reusable_columns
from fashion_catalog.udfs.encoding import (
    RETRYABLE_IMAGE_ERRORS,
    RETRYABLE_TEXT_ERRORS,
    encode_image_frame,
    encode_text_frame,
)
from fashion_catalog.udfs.vectors import with_hybrid

# Plan actions that reach the MERGE; "unchanged", "stale" and "absent_delete" do not.
WRITE_ACTIONS = ("insert", "update", "metadata", "delete")
# Above this many partially re-encoded rows, join instead of an IN-list filter.
_MAX_IN_LIST = 20000


@dataclass
class EncodedBatch:
    """The MERGE source and what was encoded to build it."""

    rows: DataFrame
    texts_encoded: int
    images_encoded: int
    cached: list[DataFrame] = field(default_factory=list)
    text_seconds: float = 0.0
    image_seconds: float = 0.0
    workers: list[str] = field(default_factory=list)

    def release(self) -> None:
        for df in self.cached:
            df.unpersist()


@dataclass
class EncodedModalities:
    """Vectors keyed by content hash: ``texts`` (text_hash -> _new_text, _text_error), ``images`` likewise."""

    texts: DataFrame
    images: DataFrame
    texts_encoded: int
    images_encoded: int
    text_seconds: float
    image_seconds: float
    workers: list[str]


def _materialise(encoded: DataFrame) -> tuple[int, list[str]]:
    """Run the persisted encoding once: how many rows went through the model, and in which processes."""
    row = encoded.agg(F.count(F.lit(1)).alias("n"), F.collect_set("_worker").alias("workers")).first()
    return int(row["n"]), sorted(row["workers"] or [])


def encode_modalities(todo: DataFrame, udfs, encode_partitions: int) -> EncodedModalities:
    """Encode each distinct description and readable image flagged by the plan, once.

    Results are persisted so the MERGE, which reads its source twice, never runs a
    model again; one aggregate per modality (timed apart, for per-modality throughput)
    materialises them and counts the rows and the processes that encoded them.
    """
    texts = (
        todo.filter("_need_text").select("text_hash", "description").dropDuplicates(["text_hash"])
        .repartition(encode_partitions)
        # Similar lengths side by side: each Arrow batch pads to its longest text, so sorted batches pad
        # little (the encoder sorts inside a batch too, but a batch of 256 is a small window).
        .sortWithinPartitions(F.length("description"))
        .withColumn("_t", udfs.text(F.col("description")))
        .select("text_hash", F.col("_t.embedding").alias("_new_text"), F.col("_t.error").alias("_text_error"),
                F.col("_t.worker").alias("_worker"))
        .persist()
    )
    images = (
        todo.filter("_need_image AND _image_read_error IS NULL")
        .select("image_hash", "image_path").dropDuplicates(["image_hash"])
        .repartition(encode_partitions)
        .withColumn("_i", udfs.image(F.col("image_path")))
        .select("image_hash", F.col("_i.embedding").alias("_new_image"), F.col("_i.error").alias("_image_error"),
                F.col("_i.worker").alias("_worker"))
        .persist()
    )
    t0 = time.perf_counter()
    n_texts, text_workers = _materialise(texts)
    t1 = time.perf_counter()
    n_images, image_workers = _materialise(images)
    t2 = time.perf_counter()
    return EncodedModalities(texts, images, n_texts, n_images, t1 - t0, t2 - t1,
                             sorted(set(text_workers) | set(image_workers)))


@dataclass
class EncodedInProcess:
    """A tiny batch's rows to write with their new vectors attached, and what encoding them took."""

    rows: pa.Table
    texts_encoded: int
    images_encoded: int
    text_seconds: float
    image_seconds: float
    workers: list[str]


def _attach(rows: pa.Table, hash_column: str, hashes: list, frame, vector: str, error: str) -> pa.Table:
    """Add ``vector`` and ``error`` columns: each row gets its hash's result (null where none was encoded)."""
    found = dict(zip(hashes, zip(frame["embedding"], frame["error"], strict=True), strict=True)) if hashes else {}
    need = [found.get(h, (None, None)) for h in rows[hash_column].to_pylist()]
    vectors = [None if v is None else [float(x) for x in v] for v, _ in need]
    rows = rows.append_column(vector, pa.array(vectors, pa.list_(pa.float64())))  # VECTOR_TYPE: array<double>
    return rows.append_column(error, pa.array([e for _, e in need], pa.string()))


def encode_in_process(plan: pa.Table, encoder, limits: ImageLimits, text_batch_size: int,
                      image_batch_size: int) -> EncodedInProcess:
    """Encode a tiny batch's plan (Arrow, in this process) and attach the new vectors to its rows to write.

    Same selection as :func:`encode_modalities` (each distinct flagged description and readable image
    once) and the same encoding functions as the UDFs, run with ``encoder`` (loaded and warmed once per
    process). The rows come back with ``_new_text``, ``_text_error``, ``_new_image``, ``_image_error``:
    what the joins of :func:`assemble_rows` add, so :func:`assemble_columns` needs no join.
    """
    rows = plan.filter(pc.is_in(plan["_action"], pa.array(WRITE_ACTIONS)))
    todo = rows.select(["text_hash", "description", "image_hash", "image_path", "_need_text", "_need_image",
                        "_image_read_error"]).to_pandas()
    texts = todo[todo["_need_text"]].drop_duplicates("text_hash")
    images = todo[todo["_need_image"] & todo["_image_read_error"].isna()].drop_duplicates("image_hash")
    t0 = time.perf_counter()
    text_frame = encode_text_frame(encoder, texts["description"], text_batch_size) if len(texts) else None
    t1 = time.perf_counter()
    image_frame = (encode_image_frame(encoder, images["image_path"], limits, image_batch_size)
                   if len(images) else None)
    t2 = time.perf_counter()
    rows = _attach(rows, "text_hash", list(texts["text_hash"]), text_frame, "_new_text", "_text_error")
    rows = _attach(rows, "image_hash", list(images["image_hash"]), image_frame, "_new_image", "_image_error")
    # This process, named so a batch's metrics say the model ran here and not in a Spark task.
    worker = f"{socket.gethostname()}:{os.getpid()}:batch-process"
    return EncodedInProcess(rows, len(texts), len(images), t1 - t0, t2 - t1,
                            [worker] if len(texts) or len(images) else [])


def stored_vectors(todo: DataFrame, embeddings: DataFrame, has_updates: bool) -> DataFrame | None:
    """Stored (product_id, _old_text, _old_image) of rows re-encoding only one modality; None when there are none.

    Such a row needs the other, stored vector to rebuild its hybrid. Without any
    ("update" rows are the only ones that can be partial) the embeddings table is not
    scanned at all: a smaller plan, a faster small batch.
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


def assemble_rows(todo: DataFrame, encoded: EncodedModalities, old: DataFrame | None, vector_type,
                  model_id: str, dimension: int, text_weight: float) -> DataFrame:
    """The MERGE source: new vectors joined by hash, the stored ones kept, the hybrid rebuilt, errors merged.

    ``old`` has the stored vectors of the partial updates, or None when there are none.
    """
    rows = (todo.join(F.broadcast(encoded.texts.drop("_worker")), "text_hash", "left")
            .join(F.broadcast(encoded.images.drop("_worker")), "image_hash", "left"))
    if old is not None:
        rows = rows.join(old, "product_id", "left")
    else:
        rows = rows.withColumns(_no_stored_vectors(vector_type))
    return assemble_columns(rows, model_id, dimension, text_weight)


def assemble_columns(rows: DataFrame, model_id: str, dimension: int, text_weight: float) -> DataFrame:
    """The MERGE source from rows that hold the new and the stored vectors: the hybrid rebuilt, errors merged.

    Projections only: over a tiny batch's local relation Spark evaluates them while optimising the
    query, with no job to run.
    """
    rows = with_hybrid(rows.withColumns(_full_columns()), "_text_full", "_image_full", text_weight)
    return rows.select(*_merge_source_columns(model_id, dimension))


@reusable_columns
def _no_stored_vectors(vector_type) -> dict:
    return {"_old_text": F.lit(None).cast(vector_type), "_old_image": F.lit(None).cast(vector_type)}


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
def _writes():
    return F.col("_action").isin(*WRITE_ACTIONS)


def encode_plan(plan: DataFrame, embeddings: DataFrame, udfs, model_id: str, dimension: int,
                text_weight: float, encode_partitions: int, has_updates: bool = True) -> EncodedBatch:
    """Encode what ``plan`` flags (Spark tasks run the models) and assemble the rows to MERGE.

    ``udfs`` has ``text`` and ``image`` pandas UDFs (see :mod:`udfs.encoding`).
    ``has_updates=False`` (the plan holds no "update" rows) skips looking up stored
    vectors: only updates re-encode one modality. Tiny batches take :func:`encode_in_process`
    and :func:`assemble_columns` instead.
    """
    todo = plan.filter(_writes())
    encoded = encode_modalities(todo, udfs, encode_partitions)
    old = stored_vectors(todo, embeddings, has_updates)
    rows = assemble_rows(todo, encoded, old, VECTOR_TYPE, model_id, dimension, text_weight)
    return EncodedBatch(rows, encoded.texts_encoded, encoded.images_encoded, [encoded.texts, encoded.images],
                        text_seconds=encoded.text_seconds, image_seconds=encoded.image_seconds,
                        workers=encoded.workers)
