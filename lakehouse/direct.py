"""Delta tables read without Spark, through the ``deltalake`` package (delta-rs).

For reads where a Spark query's fixed cost is most of the time: the search service
following the embeddings table, and a tiny stream batch looking up the stored rows
of the few products it changes (a Spark query resolves the table's snapshot and plans
a scan: ~0.5 s even for one row on a 2-vCPU box; this read takes tens of
milliseconds). Its DataFusion reader applies the table's deletion vectors. No pyspark
here: the search service imports this module.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pyarrow as pa


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
    rows = plain_types(pa.table(reader.read_all()))
    # No rows come back as columns of no chunks, which pyspark's createDataFrame cannot convert.
    return rows.combine_chunks() if rows.num_rows else rows.schema.empty_table()
