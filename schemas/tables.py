"""StructTypes and DDL for every table the embedder reads or writes.

Everything else (loader, stream, tests) imports these objects instead of
spelling column names or types again.
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# The retailer's catalog table. Change Data Feed must be on: the stream follows it.
PRODUCTS_SCHEMA = StructType(
    [
        StructField("product_id", IntegerType(), False),
        StructField("product_display_name", StringType(), True),
        StructField("master_category", StringType(), True),
        StructField("sub_category", StringType(), True),
        StructField("article_type", StringType(), True),
        StructField("base_color", StringType(), True),
        StructField("price", DoubleType(), True),
        StructField("image_path", StringType(), True),
        StructField("gender", StringType(), True),
        StructField("season", StringType(), True),
        StructField("year", IntegerType(), True),
        StructField("usage", StringType(), True),
    ]
)
PRODUCT_COLUMNS: list[str] = PRODUCTS_SCHEMA.fieldNames()

# The three CLIP vectors plus model identity, as the target schema asks.
EMBEDDING_VECTOR_FIELDS = [
    StructField("image_embedding", ArrayType(DoubleType(), False), True),
    StructField("text_embedding", ArrayType(DoubleType(), False), True),
    StructField("hybrid_embedding", ArrayType(DoubleType(), False), True),
    StructField("embedding_model", StringType(), True),
    StructField("embedding_dimension", IntegerType(), True),
    StructField("updated_at", TimestampType(), True),
]

# Bookkeeping that makes incremental encoding possible.
EMBEDDING_BOOKKEEPING_FIELDS = [
    # The text the text encoder saw (built by udfs.description).
    StructField("description", StringType(), True),
    # sha256 of the description: same hash -> the text vector is still valid.
    StructField("text_hash", StringType(), True),
    # sha256 of the image bytes (or of the failure): same hash -> image vector still valid.
    StructField("image_hash", StringType(), True),
    # Error code when the image could not be embedded (IMAGE_MISSING, ...), else null.
    StructField("embedding_error", StringType(), True),
    # "text+image" normally; "text_only" when the image failed and hybrid == text vector.
    StructField("hybrid_source", StringType(), True),
    # products table commit version this row reflects (ordering and replay guard).
    StructField("source_commit_version", LongType(), True),
]

PRODUCT_EMBEDDINGS_SCHEMA = StructType(
    list(PRODUCTS_SCHEMA.fields) + EMBEDDING_VECTOR_FIELDS + EMBEDDING_BOOKKEEPING_FIELDS
)

# Rows of a catalog file that could not be parsed, with the reason.
QUARANTINE_SCHEMA = StructType(
    [
        StructField("source_file", StringType(), False),
        StructField("line_number", LongType(), False),
        StructField("raw_line", StringType(), True),
        StructField("reason", StringType(), False),
        StructField("loaded_at", TimestampType(), False),
    ]
)

# An existing image-embeddings table the backfill may reuse (the retailer has 44k of them).
IMAGE_EMBEDDINGS_SCHEMA = StructType(
    [
        StructField("product_id", IntegerType(), False),
        StructField("image_embedding", ArrayType(DoubleType(), False), True),
        StructField("embedding_model", StringType(), True),
    ]
)


# One row per shopper persona: a style embedding in the hybrid space plus preferences.
USER_FEATURES_SCHEMA = StructType([
    StructField("user_id", StringType(), False),
    StructField("segment", StringType(), True),
    StructField("user_embedding", ArrayType(DoubleType(), False), True),
    StructField("color_prefs", ArrayType(StringType(), False), True),
    StructField("category_prefs", ArrayType(StringType(), False), True),
    StructField("min_price", DoubleType(), True),
    StructField("max_price", DoubleType(), True),
    StructField("matched_products", IntegerType(), True),
])


def _sql_type(field: StructField) -> str:
    return field.dataType.simpleString().upper() + ("" if field.nullable else " NOT NULL")


def create_table_ddl(
    table_sql_name: str, schema: StructType, change_data_feed: bool = True
) -> str:
    """Return a `CREATE TABLE IF NOT EXISTS` statement for a Delta table.

    ``table_sql_name`` is what SQL should refer to: a (catalog.)schema.table name
    or ``delta.`/path```.
    """
    cols = ",\n  ".join(f"`{f.name}` {_sql_type(f)}" for f in schema.fields)
    props = " TBLPROPERTIES (delta.enableChangeDataFeed = true)" if change_data_feed else ""
    return f"CREATE TABLE IF NOT EXISTS {table_sql_name} (\n  {cols}\n) USING DELTA{props}"
