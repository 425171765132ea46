"""Create and open the Delta tables named in the configuration."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from conf import Config, TableRef
from schemas import PRODUCT_EMBEDDINGS, PRODUCTS, QUARANTINE, TableSchema, create_table_ddl


class TableMissingError(RuntimeError):
    """A table the job reads does not exist yet."""


def ensure_table(spark: SparkSession, ref: TableRef, schema: TableSchema, change_data_feed: bool = True,
                 extra_properties: dict[str, str] | None = None) -> None:
    """Create the table from its schema if it does not exist (no-op otherwise)."""
    spark.sql(create_table_ddl(ref.sql, schema, change_data_feed, extra_properties))


def ensure_all_tables(spark: SparkSession, config: Config) -> None:
    """Create products, embeddings and quarantine tables (CDF on for the first two)."""
    ensure_table(spark, config.tables.products, PRODUCTS)
    # Deletion vectors let a small MERGE write only the changed rows, not rewrite whole files.
    ensure_table(spark, config.tables.embeddings, PRODUCT_EMBEDDINGS,
                 extra_properties={"delta.enableDeletionVectors": "true"})
    ensure_table(spark, config.tables.quarantine, QUARANTINE, change_data_feed=False)


def table_exists(spark: SparkSession, ref: TableRef) -> bool:
    """Whether the Delta table exists (by catalog name or at its path)."""
    if ref.name:
        return spark.catalog.tableExists(ref.name)
    return DeltaTable.isDeltaTable(spark, ref.path)


def delta_table(spark: SparkSession, ref: TableRef) -> DeltaTable:
    """Open a Delta table, with an actionable error when it is missing."""
    if not table_exists(spark, ref):
        raise TableMissingError(f"Delta table {ref} does not exist: run `python -m jobs.load_catalog` first")
    return DeltaTable.forName(spark, ref.name) if ref.name else DeltaTable.forPath(spark, ref.path)


def read_table(spark: SparkSession, ref: TableRef, version: int | None = None) -> DataFrame:
    """Batch-read a Delta table (optionally at a version)."""
    if not table_exists(spark, ref):
        raise TableMissingError(f"Delta table {ref} does not exist: run `python -m jobs.load_catalog` first")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.table(ref.name) if ref.name else reader.load(ref.path)


def latest_version(spark: SparkSession, ref: TableRef) -> int:
    """The table's current commit version."""
    return int(delta_table(spark, ref).history(1).select("version").first()[0])


def write_table(df: DataFrame, ref: TableRef, mode: str = "append", overwrite_schema: bool = False) -> None:
    """Write a DataFrame to the Delta table ``ref`` (``saveAsTable`` by name, ``save`` by path)."""
    writer = df.write.format("delta").mode(mode)
    if overwrite_schema:
        writer = writer.option("overwriteSchema", "true")
    if ref.name:
        writer.saveAsTable(ref.name)
    else:
        writer.save(ref.path)
