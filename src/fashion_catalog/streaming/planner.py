"""Decide, per product, what must be encoded: compare content hashes with the stored row.

Output rows carry the product columns, the description, both content hashes and
the flags ``_need_text`` / ``_need_image``. Rows whose stored state is already
identical are dropped, so a replayed or no-op change writes nothing.
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructField, StructType

from fashion_catalog.conf import TableRef
from fashion_catalog.encoders.images import ERROR_HASH_PREFIX
from fashion_catalog.lakehouse.direct import local_path, one_chunk, rows_by_key
from fashion_catalog.lakehouse.tables import read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.spark import PRODUCT_EMBEDDINGS_SCHEMA, STATE_SCHEMA
from fashion_catalog.streaming.batch import Rules
from fashion_catalog.udfs.columns import reusable_columns
from fashion_catalog.udfs.description import description_expr
from fashion_catalog.udfs.encoding import RETRYABLE_IMAGE_ERRORS

# Columns of the stored row the planner compares against (no vectors: they are large).
_CURRENT_COLUMNS = ["text_hash", "image_hash", "embedding_model", "source_commit_version", "embedding_error",
                    "failed_attempts"]


def has_error(codes: tuple[str, ...], column: str = "cur_embedding_error"):
    """Whether the comma-joined error column holds one of ``codes``."""
    parts = F.split(F.coalesce(F.col(column), F.lit("")), ",")
    found = F.lit(False)
    for code in codes:
        found = found | F.array_contains(parts, code)
    return found


# The stored columns the plan reads (as cur_<name>), and those it drops once it has decided: the error
# and the attempts stay for the assembly.
_STORED = [c for c in PRODUCT_COLUMNS if c != "product_id"] + _CURRENT_COLUMNS
_DROPPED = [f"cur_{c}" for c in [*_STORED, "has_text"] if c not in ("embedding_error", "failed_attempts")]


# What a tiny batch reads of its products' stored rows: what the plan compares, and both vectors.
STORED_READ = ["product_id", *_STORED, "text_embedding", "image_embedding"]
_STORED_SCHEMA = StructType([PRODUCT_EMBEDDINGS_SCHEMA[c] for c in STORED_READ])


def stored_arrow(ref: TableRef, product_ids: list[int]) -> pa.Table:
    """The stored rows (:data:`STORED_READ`) of ``product_ids`` in a table on this file system, read by delta-rs.

    Tens of milliseconds where a Spark query costs ~0.5 s; the twin for any other table is
    :func:`stored_arrow_spark`. Both read the table's latest version.
    """
    return rows_by_key(local_path(ref.path), "product_id", product_ids, STORED_READ)


def stored_arrow_spark(spark: SparkSession, ref: TableRef, product_ids: list[int]) -> pa.Table:
    """:func:`stored_arrow` through Spark (a catalog table, or one on an object store): Spark skips files
    by their product_id statistics and brings the few rows here."""
    rows = read_table(spark, ref, check=False).filter(F.col("product_id").isin(product_ids)).select(*STORED_READ)
    return rows.toArrow().cast(to_arrow_schema(_STORED_SCHEMA))


def current_state(embeddings: DataFrame) -> DataFrame:
    """Light projection of the embeddings table, prefixed ``cur_`` (no vectors)."""
    return embeddings.select(F.col("product_id"), *_current_columns(False, ""))


@reusable_columns
def _current_columns(with_vectors: bool, prefix: str) -> list:
    """The stored row's columns as the plan compares them, read from ``<prefix><column>`` (product_id aside)."""
    def stored(c: str):
        return F.col(prefix + c)

    vectors = [stored("text_embedding").alias("_old_text"), stored("image_embedding").alias("_old_image")]
    return [
        *[stored(c).alias(f"cur_{c}") for c in _STORED],
        stored("text_embedding").isNotNull().alias("cur_has_text"),
        *(vectors if with_vectors else []),
    ]


# A tiny batch's stored columns, beside its state's columns in one local relation.
_STORED_PREFIX = "_stored_"


def plan_local(spark: SparkSession, states: pa.Table, stored: pa.Table, image_hashes: dict,
               rules: Rules) -> DataFrame:
    """The plan of a tiny batch whose states and stored rows are in this process (Arrow); twin of :func:`plan_changes`.

    Each state row (:data:`STATE_SCHEMA`) gets its product's stored row (:data:`STORED_READ`)
    here, so Spark sees one local relation and only projections over it, which it evaluates while
    optimising the query (no join, no job). The rules are :func:`plan_changes`'s own columns;
    the stored vectors come along (``_old_text``, ``_old_image``), so a partial update's hybrid
    needs no second lookup. ``image_hashes`` maps each image path of the batch to its hash.
    """
    at = {pid: i for i, pid in enumerate(stored["product_id"].to_pylist())}
    picked = stored.take(pa.array([at.get(pid) for pid in states["product_id"].to_pylist()], pa.int64()))
    joined = states.select(STATE_SCHEMA.names).cast(to_arrow_schema(STATE_SCHEMA))
    fields = list(STATE_SCHEMA.fields)
    for f in _STORED_SCHEMA.fields[1:]:
        joined = joined.append_column(_STORED_PREFIX + f.name, picked[f.name])
        fields.append(StructField(_STORED_PREFIX + f.name, f.dataType))
    rows = _with_source(spark.createDataFrame(one_chunk(joined), schema=StructType(fields)),
                        literal_lookup(image_hashes))
    current = rows.select("*", *_current_columns(True, _STORED_PREFIX))
    return _decide(current.drop(*[_STORED_PREFIX + c for c in STORED_READ[1:]]), rules)


def literal_lookup(values: dict):
    """``image_path -> hash`` as a column function over hashes computed in this process (tiny batches: no UDF).

    ``values`` maps each path of the batch (``None`` included when a row has no path) to its hash.
    """
    known = {k: v for k, v in values.items() if k is not None}
    lookup = F.create_map(*[F.lit(x) for kv in known.items() for x in kv]) if known else None

    def column(path):
        found = F.element_at(lookup, path) if lookup is not None else F.lit(None).cast("string")
        return F.when(path.isNull(), F.lit(values.get(None))).otherwise(found)

    return column


def plan_changes(state: DataFrame, embeddings: DataFrame, image_hash_udf, rules: Rules) -> DataFrame:
    """Join final product states with stored rows and flag what to (re-)encode (Spark tasks; the
    in-process twin is :func:`plan_local`, with the same rule columns).

    ``image_hash_udf`` maps the ``image_path`` column to the image content hash (the hash UDF).

    * text is re-encoded when the description hash or the model differ, or the stored row has
      no text vector because the model call failed;
    * the image when its content hash or the model differ, or its model call failed
      (``IMAGE_ENCODE_FAILED`` / ``IMAGE_REJECTED``: the bytes are fine, the model was not);
    * a failed row is re-planned while it failed fewer than ``max_attempts`` times in a row
      (``rules.max_attempts``; None: always, for ``reembed --failed``); its error stays until an
      encode succeeds;
    * a price change inside one tier changes neither hash, so nothing is encoded;
    * deletes of products never embedded, stale changes (older than the stored
      row) and rows identical to the stored ones are dropped.
    """
    joined = _with_source(state, image_hash_udf).join(current_state(embeddings), "product_id", "left")
    return _decide(joined, rules)


def behind_deletes(rows: DataFrame, deletes_ahead: dict[int, int]) -> DataFrame:
    """Plan rows whose state is older than a delete another writer of this process applied (``deletes_ahead``:
    product_id -> the delete's version, ``streaming.batch.Applied``) become ``stale``: no stored row is left to
    say so. The Arrow twin is in ``streaming.arrow_rules.plan_arrow``."""
    if not deletes_ahead:
        return rows
    versions = F.create_map(*[F.lit(int(x)) for kv in deletes_ahead.items() for x in kv])
    older = F.coalesce(F.col("source_commit_version") < F.element_at(versions, F.col("product_id")), F.lit(False))
    return rows.withColumn("_action", F.when(older, F.lit("stale")).otherwise(F.col("_action")))


def _with_source(state: DataFrame, image_hash_udf) -> DataFrame:
    """States plus what the plan compares: the description, its hash and the image's hash (live rows only)."""
    description, text_hash = _source_columns()
    return state.withColumns({
        "description": description,
        "text_hash": text_hash,
        "image_hash": F.when(~F.col("_deleted"), image_hash_udf(F.col("image_path"))),
    })


def _decide(joined: DataFrame, rules: Rules) -> DataFrame:
    """The plan's flags and action over states joined with their stored rows (``cur_`` columns)."""
    return joined.withColumns(_decision_columns(rules.model_id, rules.max_attempts)).drop(*_DROPPED)


@reusable_columns
def _source_columns() -> tuple:
    """The description and its hash, for live rows (deleted ones carry neither)."""
    live = ~F.col("_deleted")
    description = F.when(live, description_expr())
    return description, F.when(live, F.sha2(description, 256))


@reusable_columns
def _decision_columns(model_id: str, max_attempts: int | None) -> dict:
    """The plan's flags and action over a state joined with its stored row (see :func:`plan_changes`)."""
    live = ~F.col("_deleted")
    exists = F.col("cur_source_commit_version").isNotNull() | F.col("cur_text_hash").isNotNull()
    model_changed = ~F.coalesce(F.col("cur_embedding_model") == F.lit(model_id), F.lit(False))
    may_retry = (F.lit(True) if max_attempts is None
                 else F.coalesce(F.col("cur_failed_attempts"), F.lit(0)) < F.lit(max_attempts))
    retry_text = ~F.col("cur_has_text") & may_retry
    retry_image = has_error(RETRYABLE_IMAGE_ERRORS) & may_retry
    need_text = live & (
        ~exists | model_changed | retry_text | ~F.col("text_hash").eqNullSafe(F.col("cur_text_hash"))
    )
    need_image = live & (
        ~exists | model_changed | retry_image | ~F.col("image_hash").eqNullSafe(F.col("cur_image_hash")))
    same_metadata = F.lit(True)
    for c in PRODUCT_COLUMNS:
        if c != "product_id":
            same_metadata = same_metadata & F.col(c).eqNullSafe(F.col(f"cur_{c}"))
    stale = F.coalesce(F.col("source_commit_version") < F.col("cur_source_commit_version"), F.lit(False))
    action = (
        F.when(stale, F.lit("stale"))
        .when(F.col("_deleted") & ~exists, F.lit("absent_delete"))
        .when(F.col("_deleted"), F.lit("delete"))
        .when(~exists, F.lit("insert"))
        .when(need_text | need_image, F.lit("update"))
        .when(~same_metadata, F.lit("metadata"))
        .otherwise(F.lit("unchanged"))
    )
    return {
        "_exists": exists,
        "_need_text": need_text,
        "_need_image": need_image,
        "_action": action,
        # An image that could not even be read needs no model call: its error is its result.
        "_image_read_error": F.when(F.col("image_hash").startswith(ERROR_HASH_PREFIX),
                                    F.expr(f"substring(image_hash, {len(ERROR_HASH_PREFIX) + 1})")),
    }
