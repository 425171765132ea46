"""Delta tables read and merged into without Spark, through the ``deltalake`` package (delta-rs).

For work where a Spark query's fixed cost is most of the time: the search service
following the embeddings table, and a tiny stream batch looking up the stored rows
of the few products it changes, then merging its few rows (a Spark query resolves the
table's snapshot and plans a scan: ~0.5 s even for one row on a 2-vCPU box, a one-row
Spark MERGE ~3 s; these take tens of milliseconds). Its DataFusion reader applies the
table's deletion vectors, and its MERGE removes a file together with its deletion vector
and writes change data, so Spark and delta-rs commits interleave on one table. No pyspark
here: the search service imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute in table_rows


def local_path(path: str | None) -> str | None:
    """The file-system path of a table on this machine's file system (plain or ``file:``), else None.

    Tables on object stores or DBFS are left to Spark, which has their credentials.
    """
    if not path:
        return None
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return parsed.path
    return path if parsed.scheme == "" else None


def table_rows(path: str) -> int | None:
    """Rows the Delta table at ``path`` holds by its files' statistics (None: no Delta table there). Opens only
    the log, so a job can check its source before starting Spark."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(path)
    except (TableNotFoundError, OSError):
        return None
    actions = pa.table(table.get_add_actions(flatten=True))
    if not actions.num_rows:
        return 0
    records = actions["num_records"]
    # A file written without statistics counts as one row: it exists, so the table is not empty.
    return int(pa.compute.sum(records).as_py() or 0) + records.null_count


def plain_types(table: pa.Table) -> pa.Table:
    """Cast the view types delta-rs may return (string_view, list_view) to the plain ones pyarrow kernels take."""
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_string_view(t) or pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_list_view(t) or pa.types.is_large_list(t) or pa.types.is_large_list_view(t):
            t = pa.list_(pa.float64())
        fields.append(pa.field(f.name, t, f.nullable))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)


def rows_by_key(path: str, key: str, values: list[int], columns: list[str]) -> pa.Table:
    """The rows of the Delta table at ``path`` whose integer ``key`` is one of ``values``, latest version.

    Opens the table anew (its log from the last checkpoint: a few milliseconds), so the read
    sees every commit made before it, by any writer, and a table recreated at the same path.
    Files are skipped by their ``key`` statistics. Raises ``FileNotFoundError`` when no Delta
    table is there.
    """
    from deltalake import DeltaTable, QueryBuilder
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(path)
    except TableNotFoundError as exc:
        raise FileNotFoundError(f"no Delta table at {path}") from exc
    keys = ", ".join(str(int(v)) for v in sorted(set(values))) or "NULL"
    cols = ", ".join(f"`{c}`" for c in columns)
    reader = QueryBuilder().register("t", table).execute(f"SELECT {cols} FROM t WHERE `{key}` IN ({keys})")
    return one_chunk(plain_types(pa.table(reader.read_all())))


def one_chunk(table: pa.Table) -> pa.Table:
    """``table`` with one chunk per column: no rows come back from a query as columns of no chunks, which
    pyspark's ``createDataFrame`` cannot convert (an empty table gets one empty chunk)."""
    return table.combine_chunks() if table.num_rows else table.schema.empty_table()


@dataclass(frozen=True)
class MergeClauses:
    """A MERGE's join condition and clauses as SQL over target ``t`` and source ``s``, in the order they apply.

    ``update`` and ``insert`` map each target column to its expression. The same strings are
    Spark SQL and DataFusion SQL: keep to their common subset (CASE, coalesce, comparisons,
    ``current_timestamp()``).
    """

    on: str
    delete_when: str | None = None
    update_when: str | None = None
    update: dict[str, str] = field(default_factory=dict)
    insert_when: str | None = None
    insert: dict[str, str] = field(default_factory=dict)


def merge(path: str, source: pa.Table, clauses: MergeClauses, txn: tuple[str, int] | None = None,
          user_metadata: str | None = None) -> dict[str, int]:
    """MERGE ``source`` into the Delta table at ``path`` in one commit; returns Spark-named row counts.

    ``txn=(app_id, version)`` is Delta's idempotent write: when the table already holds a
    commit with that app id and a version >= this one (a replayed stream batch, whoever wrote
    it: Spark reads and writes the same ``txn`` actions), nothing is written and every count is
    0, as Spark does; otherwise the commit records it. ``user_metadata`` lands in the commit's
    ``userMetadata``, where ``DESCRIBE HISTORY`` shows it. Returns ``num_affected_rows``,
    ``num_inserted_rows``, ``num_updated_rows``, ``num_deleted_rows`` and ``executionTimeMs``.
    """
    from deltalake import CommitProperties, DeltaTable, Transaction

    table = DeltaTable(path)
    if txn is not None and (table.transaction_version(txn[0]) or -1) >= txn[1]:
        return {"num_affected_rows": 0, "num_inserted_rows": 0, "num_updated_rows": 0, "num_deleted_rows": 0,
                "executionTimeMs": 0}
    commit = CommitProperties(
        custom_metadata={"userMetadata": user_metadata} if user_metadata is not None else None,
        app_transactions=[Transaction(txn[0], txn[1])] if txn is not None else None)
    # streamed_exec=False: the source is small, and delta-rs then derives a pruning predicate from its
    # key values, so only the files that may hold those keys are read and rewritten.
    merger = table.merge(source, clauses.on, source_alias="s", target_alias="t", streamed_exec=False,
                         commit_properties=commit)
    if clauses.delete_when is not None:
        merger = merger.when_matched_delete(clauses.delete_when)
    if clauses.update:
        merger = merger.when_matched_update(clauses.update, clauses.update_when)
    if clauses.insert:
        merger = merger.when_not_matched_insert(clauses.insert, clauses.insert_when)
    done = merger.execute()
    counts = {"num_inserted_rows": int(done["num_target_rows_inserted"]),
              "num_updated_rows": int(done["num_target_rows_updated"]),
              "num_deleted_rows": int(done["num_target_rows_deleted"])}
    return {"num_affected_rows": sum(counts.values()), **counts, "executionTimeMs": int(done["execution_time_ms"])}
