"""Decide, per product, what must be encoded: compare content hashes with the stored row.

Output rows carry the product columns, the description, both content hashes and
the flags ``_need_text`` / ``_need_image``. Rows whose stored state is already
identical are dropped, so a replayed or no-op change writes nothing.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from encoders.images import ERROR_HASH_PREFIX
from schemas import PRODUCT_COLUMNS
from udfs.description import description_expr
from udfs.encoding import RETRYABLE_IMAGE_ERRORS

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


def current_state(embeddings: DataFrame, with_vectors: bool = False) -> DataFrame:
    """Light projection of the embeddings table, prefixed ``cur_`` (plus the stored vectors if asked)."""
    vectors = ([F.col("text_embedding").alias("_old_text"), F.col("image_embedding").alias("_old_image")]
               if with_vectors else [])
    return embeddings.select(
        "product_id",
        *[F.col(c).alias(f"cur_{c}") for c in PRODUCT_COLUMNS if c != "product_id"],
        *[F.col(c).alias(f"cur_{c}") for c in _CURRENT_COLUMNS],
        F.col("text_embedding").isNotNull().alias("cur_has_text"),
        *vectors,
    )


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


def plan_changes(state: DataFrame, embeddings: DataFrame, model_id: str, image_hash_udf,
                 max_attempts: int | None = 3, with_vectors: bool = False) -> DataFrame:
    """Join final product states with stored rows and flag what to (re-)encode.

    ``image_hash_udf`` maps the ``image_path`` column to the image content hash: the hash
    UDF, or :func:`literal_lookup` over hashes already computed for a tiny batch. ``with_vectors``
    carries the stored vectors along (``_old_text``, ``_old_image``): a tiny batch then needs no
    second lookup to rebuild a partial update's hybrid.

    * text is re-encoded when the description hash or the model differ, or the stored row has
      no text vector because the model call failed;
    * the image when its content hash or the model differ, or its model call failed
      (``IMAGE_ENCODE_FAILED`` / ``IMAGE_REJECTED``: the bytes are fine, the model was not);
    * a failed row is re-planned while it failed fewer than ``max_attempts`` times in a row
      (None: always, for ``reembed --failed``); its error stays until an encode succeeds;
    * a price change inside one tier changes neither hash, so nothing is encoded;
    * deletes of products never embedded, stale changes (older than the stored
      row) and rows identical to the stored ones are dropped.
    """
    live = ~F.col("_deleted")
    src = (
        state.withColumn("description", F.when(live, description_expr()))
        .withColumn("text_hash", F.when(live, F.sha2(F.col("description"), 256)))
        .withColumn("image_hash", F.when(live, image_hash_udf(F.col("image_path"))))
    )
    joined = src.join(current_state(embeddings, with_vectors), "product_id", "left")
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
    planned = (
        joined.withColumn("_exists", exists)
        .withColumn("_need_text", need_text)
        .withColumn("_need_image", need_image)
        .withColumn(
            "_action",
            F.when(stale, F.lit("stale"))
            .when(F.col("_deleted") & ~F.col("_exists"), F.lit("absent_delete"))
            .when(F.col("_deleted"), F.lit("delete"))
            .when(~F.col("_exists"), F.lit("insert"))
            .when(F.col("_need_text") | F.col("_need_image"), F.lit("update"))
            .when(~same_metadata, F.lit("metadata"))
            .otherwise(F.lit("unchanged")),
        )
        # An image that could not even be read needs no model call: its error is its result.
        .withColumn(
            "_image_read_error",
            F.when(F.col("image_hash").startswith(ERROR_HASH_PREFIX),
                   F.expr(f"substring(image_hash, {len(ERROR_HASH_PREFIX) + 1})")),
        )
    )
    keep = ("cur_embedding_error", "cur_failed_attempts")
    return planned.drop(*[c for c in planned.columns if c.startswith("cur_") and c not in keep])
