"""Create, read, write and change the Delta tables named in the configuration.

Everything here goes through the DataFrame API and Spark SQL (``MERGE INTO``,
``DESCRIBE HISTORY``, ``UPDATE``), never through py4j or the ``DeltaTable`` class:
the same code runs on a classic session, on Spark Connect (Databricks Standard
access mode, serverless, Databricks Connect) and on a cluster.
"""

from __future__ import annotations

import uuid

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from fashion_catalog.conf import ActionableError, Config, TableRef
from fashion_catalog.lakehouse.direct import local_path, table_rows
from fashion_catalog.schemas import PRODUCT_EMBEDDINGS, PRODUCTS, QUARANTINE, TableSchema, create_table_ddl
from fashion_catalog.schemas.tables import TABLE_PROPERTIES


class TableMissingError(ActionableError, RuntimeError):
    """A table the job reads does not exist yet."""


def require_rows(ref: TableRef, setting: str, what_to_do: str, spark: SparkSession | None = None) -> None:
    """A job's source table must exist and hold rows: else one actionable error naming the table and the setting.

    A table on this machine's file system is checked from its log, before Spark starts (a mistyped
    ``storage.root`` stops at once, with no JVM output); a catalog table through ``spark``.
    """
    path = local_path(ref.path)
    if path is not None:
        rows = table_rows(path)
    elif spark is not None:
        rows = (read_table(spark, ref, check=False).limit(1).count() if table_exists(spark, ref) else None)
    else:
        return
    if rows is None:
        raise TableMissingError(f"{setting} {ref} does not exist: {what_to_do}")
    if rows == 0:
        raise TableMissingError(f"{setting} {ref} is empty: {what_to_do}")


def spark_over_rows(config: Config, ref: TableRef, setting: str, what_to_do: str, clock=None) -> SparkSession:
    """A job's Spark session, once its source table holds rows: :func:`require_rows` before Spark starts (a
    table on this file system) and after (a catalog table). ``clock``: marks ``spark_session`` and ``table_check``."""
    from fashion_catalog.lakehouse.session import get_spark

    mark = clock.mark if clock is not None else (lambda _phase: None)
    require_rows(ref, setting, what_to_do)
    mark("table_check")
    spark = get_spark(config)
    mark("spark_session")
    require_rows(ref, setting, what_to_do, spark)
    mark("table_check")
    return spark


def _missing(ref: TableRef) -> TableMissingError:
    return TableMissingError(f"Delta table {ref} does not exist: "
                             "run `python -m fashion_catalog.jobs.load_catalog` first")


def ensure_table(spark: SparkSession, ref: TableRef, schema: TableSchema, change_data_feed: bool = True,
                 extra_properties: dict[str, str] | None = None) -> None:
    """Create the table from its schema if it does not exist; add the columns a newer schema has."""
    if _ensured_on_this_machine(ref, schema):
        return
    spark.sql(create_table_ddl(ref.sql, schema, change_data_feed, extra_properties))
    existing = {f.name for f in spark.read.format("delta").table(ref.name).schema} if ref.name else \
        {f.name for f in spark.read.format("delta").load(ref.path).schema}
    missing = [c for c in schema.columns if c.name not in existing]
    if missing:
        cols = ", ".join(f"`{c.name}` {c.type.upper()}" for c in missing)
        spark.sql(f"ALTER TABLE {ref.sql} ADD COLUMNS ({cols})")
    # A table created before TABLE_PROPERTIES were set gets them once.
    have = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {ref.sql}").collect()}
    unset = {k: v for k, v in TABLE_PROPERTIES.items() if have.get(k) != v}
    if unset:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in unset.items())
        spark.sql(f"ALTER TABLE {ref.sql} SET TBLPROPERTIES ({pairs})")


def _ensured_on_this_machine(ref: TableRef, schema: TableSchema) -> bool:
    """A table on this file system that already has every column and table property: read with delta-rs in
    milliseconds, where the Spark statements below cost seconds on a cold JVM (a stream's start-up)."""
    path = local_path(ref.path)
    if path is None:
        return False
    from deltalake import DeltaTable

    try:
        table = DeltaTable(path)
        columns = {f.name for f in table.schema().fields}
        props = table.metadata().configuration
    except Exception:  # noqa: BLE001 - no table yet, or one delta-rs cannot read: Spark decides
        return False
    return all(c.name in columns for c in schema.columns) and all(
        props.get(k) == v for k, v in TABLE_PROPERTIES.items())


def ensure_embeddings_table(spark: SparkSession, ref: TableRef) -> None:
    """Create the embeddings table (Change Data Feed and deletion vectors on) if it does not exist."""
    # Deletion vectors let a small MERGE write only the changed rows, not rewrite whole files.
    ensure_table(spark, ref, PRODUCT_EMBEDDINGS, extra_properties={"delta.enableDeletionVectors": "true"})


def ensure_all_tables(spark: SparkSession, config: Config) -> None:
    """Create products, embeddings and quarantine tables (CDF on for the first two)."""
    ensure_table(spark, config.tables.products, PRODUCTS)
    ensure_embeddings_table(spark, config.tables.embeddings)
    ensure_table(spark, config.tables.quarantine, QUARANTINE, change_data_feed=False)


def table_exists(spark: SparkSession, ref: TableRef) -> bool:
    """Whether the Delta table exists (by catalog name or at its path)."""
    if ref.name:
        return spark.catalog.tableExists(ref.name)
    try:
        # Resolving the schema analyses the read: "not a Delta table" or a missing path fail here.
        spark.read.format("delta").load(ref.path).schema  # noqa: B018
    except AnalysisException:
        return False
    return True


def read_table(spark: SparkSession, ref: TableRef, version: int | None = None, check: bool = True) -> DataFrame:
    """Batch-read a Delta table (optionally at a version); ``check=False`` skips the existence check."""
    if check and not table_exists(spark, ref):
        raise _missing(ref)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.table(ref.name) if ref.name else reader.load(ref.path)


def latest_version(spark: SparkSession, ref: TableRef) -> int:
    """The table's current commit version."""
    if not table_exists(spark, ref):
        raise _missing(ref)
    return int(spark.sql(f"DESCRIBE HISTORY {ref.sql} LIMIT 1").select("version").first()[0])


def write_table(df: DataFrame, ref: TableRef, mode: str = "append", overwrite_schema: bool = False) -> None:
    """Write a DataFrame to the Delta table ``ref`` (``saveAsTable`` by name, ``save`` by path)."""
    writer = df.write.format("delta").mode(mode)
    if overwrite_schema:
        writer = writer.option("overwriteSchema", "true")
    if ref.name:
        writer.saveAsTable(ref.name)
    else:
        writer.save(ref.path)


def merge_into(spark: SparkSession, target: TableRef, source: DataFrame, statement: str) -> dict[str, int]:
    """Run ``MERGE INTO <target> t USING <source> s <statement>``; returns Delta's MERGE metrics.

    The source is registered as a uniquely named temporary view for the statement
    and dropped afterwards (the SQL form works on classic and Connect sessions alike).
    """
    view = f"_merge_source_{uuid.uuid4().hex}"
    source.createOrReplaceTempView(view)
    try:
        first = spark.sql(f"MERGE INTO {target.sql} t USING {view} s {statement}").first()
    finally:
        spark.catalog.dropTempView(view)
    return {k: int(v) for k, v in first.asDict().items()} if first else {}
