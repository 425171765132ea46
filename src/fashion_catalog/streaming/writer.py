"""MERGE encoded rows into product_embeddings_multimodal, idempotently per batch.

The clauses are defined once (:func:`merge_clauses`) and run two ways. Spark SQL
(``MERGE INTO ... USING <temp view>``) runs unchanged on a classic session and on
Spark Connect (no ``DeltaTable`` client plugin needed); the idempotent-write
identifiers are session confs, which both carry to the commit. A tiny batch into a
table on this machine's file system is merged by delta-rs instead
(:func:`merge_embeddings_direct`): same clauses, same write identifiers, no Spark job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession

from fashion_catalog.conf import TableRef
from fashion_catalog.lakehouse.direct import MergeClauses, merge
from fashion_catalog.lakehouse.session import session_confs
from fashion_catalog.lakehouse.tables import merge_into, read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.streaming.metrics import USER_METADATA_CONF

log = logging.getLogger(__name__)

TXN_APP_ID_CONF = "spark.databricks.delta.write.txnAppId"
TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
MATERIALIZE_SOURCE_CONF = "spark.databricks.delta.merge.materializeSource"
MAX_RECORDS_PER_FILE_CONF = "spark.sql.files.maxRecordsPerFile"

_NEWER = "s.source_commit_version >= coalesce(t.source_commit_version, -1)"
_ANY_NEW = "(s._need_text OR s._need_image)"


def _update_set() -> dict[str, str]:
    cols = {c: f"s.{c}" for c in PRODUCT_COLUMNS}
    cols.update(
        description="s.description",
        text_hash="s.text_hash",
        image_hash="s.image_hash",
        source_commit_version="s.source_commit_version",
        # A modality that was not re-encoded keeps its stored vector.
        text_embedding="CASE WHEN s._need_text THEN s.text_embedding ELSE t.text_embedding END",
        image_embedding="CASE WHEN s._need_image THEN s.image_embedding ELSE t.image_embedding END",
        updated_at="current_timestamp()",
    )
    for c in ("hybrid_embedding", "hybrid_source", "embedding_error", "embedding_model", "embedding_dimension",
              "failed_attempts"):
        cols[c] = f"CASE WHEN {_ANY_NEW} THEN s.{c} ELSE t.{c} END"
    return cols


def _insert_values() -> dict[str, str]:
    cols = {c: f"s.{c}" for c in PRODUCT_COLUMNS}
    for c in ("image_embedding", "text_embedding", "hybrid_embedding", "embedding_model", "embedding_dimension",
              "description", "text_hash", "image_hash", "embedding_error", "hybrid_source", "source_commit_version",
              "failed_attempts"):
        cols[c] = f"s.{c}"
    cols["updated_at"] = "current_timestamp()"
    return cols


def _clause(assignments: dict[str, str]) -> str:
    return ", ".join(f"`{col}` = {expr}" for col, expr in assignments.items())


@dataclass(frozen=True)
class MergeRequest:
    """What one batch's MERGE needs besides its rows: which clauses, and the commit's identity.

    * ``inserts_only`` (every row was planned as a new product) leaves out the matched clauses,
      so Delta takes its insert-only MERGE path: an anti-join and an append instead of
      rewriting matched rows. A row that exists after all is left as it is, never duplicated.
    * ``target_ids`` (every product id of the source, a tiny batch) adds ``t.product_id IN (...)``
      to the join condition: a target-only predicate Delta prunes files with (by their product_id
      statistics), so the MERGE reads the few files holding those products, not the whole table.
    * ``txn=(app_id, version)``: Delta's idempotent-write identifiers. If a commit with that app id
      and a version >= this one already exists (a replayed micro-batch), the write is skipped.
    * ``commit_metadata`` (the batch's metrics JSON) lands in the commit's ``userMetadata``.
    * ``max_rows_per_file`` caps the files a Spark MERGE writes (with a source ordered by
      product_id, each file then holds a narrow id range that later MERGEs and lookups skip to).
    """

    inserts_only: bool = False
    target_ids: list[int] | None = None
    txn: tuple[str, int] | None = None
    commit_metadata: str | None = None
    max_rows_per_file: int | None = None

    @property
    def clauses(self) -> MergeClauses:
        return merge_clauses(self.inserts_only, self.target_ids)


def merge_clauses(inserts_only: bool, target_ids: list[int] | None = None) -> MergeClauses:
    """The embeddings MERGE (target ``t``, source ``s``): one definition for Spark and delta-rs (see
    :class:`MergeRequest` for the two arguments)."""
    on = "t.product_id = s.product_id"
    if target_ids is not None:
        # No ids (an empty source): IN (NULL) matches nothing, as the source does.
        on += f" AND t.product_id IN ({', '.join(str(int(i)) for i in sorted(set(target_ids))) or 'NULL'})"
    insert = {"insert_when": "NOT s._deleted", "insert": _insert_values()}
    if inserts_only:
        return MergeClauses(on, **insert)
    return MergeClauses(on, delete_when=f"s._deleted AND {_NEWER}", update_when=f"NOT s._deleted AND {_NEWER}",
                        update=_update_set(), **insert)


def merge_statement(clauses: MergeClauses) -> str:
    """The ``ON`` and ``WHEN`` clauses of the embeddings MERGE in Spark SQL (see :func:`merge_clauses`)."""
    c = clauses
    sql = f"ON {c.on}"
    if c.delete_when is not None:
        sql += f" WHEN MATCHED AND {c.delete_when} THEN DELETE"
    if c.update:
        sql += f" WHEN MATCHED AND {c.update_when} THEN UPDATE SET {_clause(c.update)}"
    columns = ", ".join(f"`{col}`" for col in c.insert)
    return sql + (f" WHEN NOT MATCHED AND {c.insert_when} THEN INSERT ({columns}) "
                  f"VALUES ({', '.join(c.insert.values())})")


def merge_embeddings(spark: SparkSession, target: TableRef, rows: DataFrame,
                     request: MergeRequest = MergeRequest()) -> dict[str, int]:
    """Apply inserts, updates and deletes in one Spark MERGE commit; returns Delta's MERGE metrics.

    ``rows`` must be persisted (or cheap and deterministic to recompute): the MERGE reads it twice.
    The twin for a table on this file system is :func:`merge_embeddings_direct` (same clauses).
    """
    confs: dict[str, str | None] = {
        # Delta copies a non-Delta MERGE source before reading it twice, to guard against a source that
        # changes between reads. Ours is materialised by the caller and deterministic (same input, same
        # vectors), so the copy is pure cost: ~0.6 s of a ~1.5 s small MERGE locally.
        MATERIALIZE_SOURCE_CONF: "none",
    }
    if request.max_rows_per_file:
        confs[MAX_RECORDS_PER_FILE_CONF] = str(request.max_rows_per_file)
    if request.txn is not None:
        confs.update({TXN_APP_ID_CONF: request.txn[0], TXN_VERSION_CONF: str(request.txn[1])})
    if request.commit_metadata is not None:
        confs[USER_METADATA_CONF] = request.commit_metadata
    with session_confs(spark, confs, required=frozenset({TXN_APP_ID_CONF, TXN_VERSION_CONF})):
        return merge_into(spark, target, rows, merge_statement(request.clauses))


def merge_embeddings_direct(path: str, rows: pa.Table, request: MergeRequest = MergeRequest()) -> dict[str, int]:
    """:func:`merge_embeddings` for a tiny batch's rows (Arrow) into a table on this file system, without Spark.

    Same clauses, same idempotent-write ids and commit metadata, one commit (delta-rs, see
    :func:`lakehouse.direct.merge`): tens of milliseconds where a one-row Spark MERGE takes seconds
    of planning. A matched row is rewritten with the rest of its file instead of being marked in a
    deletion vector, so the cost grows with the file (``stream.max_rows_per_file`` bounds it).
    """
    return merge(path, rows, request.clauses, request.txn, request.commit_metadata)


def resolve_snapshot(spark: SparkSession, target: TableRef) -> None:
    """Have Spark compute the table's latest snapshot (its file list and statistics), as the next MERGE would.

    Delta computes a new version's snapshot state (checkpoint + the commits since, a Spark job) the
    first time a query needs it, and keeps it: ~1.3 s of a one-row MERGE on a 2-vCPU box. Run after a
    commit, while the stream waits for the next edit, it takes that off the next MERGE (a MERGE that
    starts meanwhile waits for the same computation instead of repeating it). Reads only.
    """
    read_table(spark, target, check=False).filter("product_id = -1").limit(1).collect()


def clear_write_identity(spark: SparkSession) -> None:
    """Unset the idempotent-write ids and commit metadata a MERGE sets (left behind by an interrupted batch)."""
    for key in (TXN_APP_ID_CONF, TXN_VERSION_CONF, USER_METADATA_CONF):
        try:
            spark.conf.unset(key)
        except PySparkException:
            log.debug("could not unset %s", key)
