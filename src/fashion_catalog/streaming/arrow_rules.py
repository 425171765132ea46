"""The plan's and the assembly's rules over a tiny batch's Arrow rows, in this process, with no Spark.

Twins of the Spark column rules (:func:`fashion_catalog.streaming.planner._decision_columns`,
:func:`fashion_catalog.streaming.embed.assemble_columns` and the hybrid of
:mod:`fashion_catalog.udfs.vectors`), for the ``delta-rs`` road: an editor's edit is planned,
encoded, assembled and merged without a Spark call, so it needs no Spark session at all (the fast
lane runs it while the JVM is still starting) and costs milliseconds where Spark's optimiser took
a few hundred. Spark semantics are kept where they differ from Python's: null-safe equality with
NaN equal to NaN, ``concat_ws`` skipping nulls, the hybrid's norm summed left to right.

``tests/test_stream.py::test_every_road_writes_the_same_table`` holds this road's table equal,
row for row, to the Spark roads' on the same change feed, and ``tests/test_arrow_rules.py`` holds
the plan and the assembly equal to the Spark columns on the rarer cases (failed encodes and their
attempts, a model change, stale states, NaN metadata, malformed stored vectors). Tiny stream
batches take this road too, so a difference that slipped through is not mended by the stream.
"""

from __future__ import annotations

import math
from itertools import zip_longest

import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_schema, to_arrow_type
from pyspark.sql.types import BooleanType, StructField, StructType

from fashion_catalog.encoders.images import ERROR_HASH_PREFIX
from fashion_catalog.encoders.vectors import HYBRID_BOTH, HYBRID_IMAGE_ONLY, HYBRID_TEXT_ONLY
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.description import description, text_hash
from fashion_catalog.schemas.spark import PRODUCT_EMBEDDINGS_SCHEMA, STATE_SCHEMA, VECTOR_TYPE
from fashion_catalog.streaming.batch import Rules
from fashion_catalog.udfs.encoding import RETRYABLE_IMAGE_ERRORS, RETRYABLE_TEXT_ERRORS

_VECTOR = to_arrow_type(VECTOR_TYPE)
_METADATA = [c for c in PRODUCT_COLUMNS if c != "product_id"]

# The plan's rows: the state, what the plan compares, its decisions, and what the assembly reads of the stored row.
PLAN_SCHEMA = pa.schema([
    *to_arrow_schema(STATE_SCHEMA),
    pa.field("description", pa.string()), pa.field("text_hash", pa.string()), pa.field("image_hash", pa.string()),
    pa.field("cur_embedding_error", pa.string()), pa.field("cur_failed_attempts", pa.int32()),
    pa.field("_old_text", _VECTOR), pa.field("_old_image", _VECTOR),
    pa.field("_exists", pa.bool_()), pa.field("_need_text", pa.bool_()), pa.field("_need_image", pa.bool_()),
    pa.field("_action", pa.string()), pa.field("_image_read_error", pa.string()),
])

# The MERGE source (what embed.assemble_columns selects), typed as the embeddings table.
_SOURCE_COLUMNS = [*PRODUCT_COLUMNS, "image_embedding", "text_embedding", "hybrid_embedding", "embedding_model",
                   "embedding_dimension", "description", "text_hash", "image_hash", "embedding_error",
                   "hybrid_source", "source_commit_version", "failed_attempts"]
SOURCE_SCHEMA = to_arrow_schema(StructType(
    [PRODUCT_EMBEDDINGS_SCHEMA[c] for c in _SOURCE_COLUMNS]
    + [StructField(c, BooleanType()) for c in ("_deleted", "_need_text", "_need_image")]))


def _same(a: object, b: object) -> bool:
    """Spark's null-safe equality (``<=>``): nulls equal each other, and NaN equals NaN."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _codes(error: str | None) -> list[str]:
    """The comma-joined error column's codes (``split(coalesce(error, ''), ',')``)."""
    return (error or "").split(",")


def plan_arrow(states: pa.Table, stored: pa.Table, image_hashes: dict, rules: Rules,
               deletes_ahead: dict[int, int] | None = None) -> pa.Table:
    """Each final state (``STATE_SCHEMA``) against its product's stored row (``planner.STORED_READ``, read by
    delta-rs): the description, both hashes and the plan's flags and action (twin of ``planner.plan_local``
    followed by ``planner.behind_deletes``).

    ``image_hashes`` maps each image path of the batch (None included when a row has none) to its hash;
    ``deletes_ahead`` maps a product to the version of a delete another writer of this process applied
    (``streaming.batch.Applied``): an older state of it is stale, though no stored row says so.
    """
    deletes_ahead = deletes_ahead or {}
    by_id = {r["product_id"]: r for r in stored.to_pylist()}
    rows = []
    for state in states.select(STATE_SCHEMA.names).to_pylist():
        cur = by_id.get(state["product_id"], {})
        live = not state["_deleted"]
        text = description(state) if live else None
        digest = text_hash(text) if text is not None else None
        image = image_hashes.get(state["image_path"]) if live else None
        exists = cur.get("source_commit_version") is not None or cur.get("text_hash") is not None
        model_changed = cur.get("embedding_model") != rules.model_id
        attempts = cur.get("failed_attempts")
        may_retry = rules.max_attempts is None or (attempts or 0) < rules.max_attempts
        retry_text = cur.get("text_embedding") is None and may_retry
        retry_image = any(c in RETRYABLE_IMAGE_ERRORS for c in _codes(cur.get("embedding_error"))) and may_retry
        fresh = not exists or model_changed
        need_text = live and (fresh or retry_text or not _same(digest, cur.get("text_hash")))
        need_image = live and (fresh or retry_image or not _same(image, cur.get("image_hash")))
        newer = [v for v in (cur.get("source_commit_version"), deletes_ahead.get(state["product_id"])) if v is not None]
        version = state["source_commit_version"]
        if newer and version is not None and version < max(newer):
            action = "stale"
        elif not live:
            action = "delete" if exists else "absent_delete"
        elif not exists:
            action = "insert"
        elif need_text or need_image:
            action = "update"
        elif not all(_same(state[c], cur.get(c)) for c in _METADATA):
            action = "metadata"
        else:
            action = "unchanged"
        read_error = (image[len(ERROR_HASH_PREFIX):] if image is not None and image.startswith(ERROR_HASH_PREFIX)
                      else None)
        rows.append({**state, "description": text, "text_hash": digest, "image_hash": image,
                     "cur_embedding_error": cur.get("embedding_error"), "cur_failed_attempts": attempts,
                     "_old_text": cur.get("text_embedding"), "_old_image": cur.get("image_embedding"),
                     "_exists": exists, "_need_text": need_text, "_need_image": need_image, "_action": action,
                     "_image_read_error": read_error})
    return pa.Table.from_pylist(rows, schema=PLAN_SCHEMA)


def _hybrid(text: list | None, image: list | None, w: float) -> tuple[list | None, str | None]:
    """``udfs.vectors.with_hybrid`` for one row: normalize(w*text + (1-w)*image), the sum of squares taken left to
    right as Spark's ``aggregate`` does; with one side missing, the other vector as it is."""
    if text is not None and image is not None:
        # zip_with pads the shorter array with nulls, and a null element makes its sum and the norm null.
        raw = [None if a is None or b is None else w * a + (1.0 - w) * b for a, b in zip_longest(text, image)]
        if any(x is None for x in raw):
            return raw, HYBRID_BOTH
        squares = 0.0
        for x in raw:
            squares += x * x
        norm = math.sqrt(squares)
        # Spark orders NaN above every number: a NaN norm is "> 0".
        return ([x / norm for x in raw] if norm > 0 or math.isnan(norm) else raw), HYBRID_BOTH
    if text is not None:
        return text, HYBRID_TEXT_ONLY
    return image, (HYBRID_IMAGE_ONLY if image is not None else None)


def assemble_arrow(rows: pa.Table, rules: Rules) -> pa.Table:
    """The MERGE source from the encoded plan rows (twin of ``embed.assemble_columns``): new vectors only where a
    modality was re-encoded (the MERGE keeps the stored ones), the hybrid rebuilt, errors merged, attempts counted."""
    out = []
    for r in rows.to_pylist():
        need_text, need_image = r["_need_text"], r["_need_image"]
        text = r["_new_text"] if need_text else r["_old_text"]
        image = r["_new_image"] if need_image else r["_old_image"]
        if need_image:
            image_error = r["_image_read_error"] if r["_image_read_error"] is not None else r["_image_error"]
        else:  # image codes (IMAGE_*) are kept apart from text ones, so re-encoding the text keeps them
            image_error = ",".join(c for c in _codes(r["cur_embedding_error"]) if c.startswith("IMAGE_")) or None
        error = ",".join(p for p in (image_error, r["_text_error"] if need_text else None) if p is not None)
        any_new = need_text or need_image
        failed_now = ((need_text and r["_text_error"] in RETRYABLE_TEXT_ERRORS)
                      or (need_image and r["_image_error"] in RETRYABLE_IMAGE_ERRORS))
        attempts = ((r["cur_failed_attempts"] or 0) + 1 if failed_now
                    else 0 if any_new else r["cur_failed_attempts"])
        hybrid, source = _hybrid(text, image, float(rules.text_weight))
        out.append({
            **{c: r[c] for c in PRODUCT_COLUMNS},
            "image_embedding": r["_new_image"] if need_image else None,
            "text_embedding": r["_new_text"] if need_text else None,
            "hybrid_embedding": hybrid if any_new else None,
            "embedding_model": rules.model_id,
            "embedding_dimension": rules.dimension,
            "description": r["description"], "text_hash": r["text_hash"], "image_hash": r["image_hash"],
            "embedding_error": error or None,
            "hybrid_source": source if any_new else None,
            "source_commit_version": r["source_commit_version"],
            "failed_attempts": attempts,
            "_deleted": r["_deleted"], "_need_text": need_text, "_need_image": need_image,
        })
    return pa.Table.from_pylist(out, schema=SOURCE_SCHEMA)
