"""Every table the project reads or writes, as plain Python: the single source of truth.

Spark ``StructType``s (``schemas.spark``), the ``CREATE TABLE`` DDL, the search
index's column lists and the tests are all derived from these definitions, so a
column is named and typed exactly once. This module imports no pyspark: the
search service and the served model read it too.
"""

from __future__ import annotations

from dataclasses import dataclass

# Spark SQL type names used below; schemas.spark maps each to its DataType.
INT, BIGINT, DOUBLE, STRING, TIMESTAMP = "int", "bigint", "double", "string", "timestamp"
VECTOR, STRINGS = "array<double>", "array<string>"
NUMERIC_TYPES = (INT, BIGINT, DOUBLE)


@dataclass(frozen=True)
class Column:
    """One column: its name, Spark SQL type and nullability."""

    name: str
    type: str
    nullable: bool = True
    doc: str = ""


@dataclass(frozen=True)
class TableSchema:
    """An ordered set of columns."""

    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def __add__(self, other: TableSchema) -> TableSchema:
        return TableSchema(self.columns + other.columns)


# The retailer's catalog table. Change Data Feed must be on: the stream follows it.
PRODUCTS = TableSchema((
    Column("product_id", INT, False),
    Column("product_display_name", STRING),
    Column("master_category", STRING),
    Column("sub_category", STRING),
    Column("article_type", STRING),
    Column("base_color", STRING),
    Column("price", DOUBLE),
    Column("image_path", STRING),
    Column("gender", STRING),
    Column("season", STRING),
    Column("year", INT),
    Column("usage", STRING),
))
PRODUCT_COLUMNS: list[str] = PRODUCTS.names

# The three CLIP vectors plus model identity, as the target schema asks.
EMBEDDING_VECTORS = TableSchema((
    Column("image_embedding", VECTOR, doc="L2-normalised CLIP image vector; null when the image failed"),
    Column("text_embedding", VECTOR, doc="L2-normalised CLIP text vector of `description`"),
    Column("hybrid_embedding", VECTOR, doc="normalize(w*text + (1-w)*image); the text vector without an image"),
    Column("embedding_model", STRING),
    Column("embedding_dimension", INT),
    Column("updated_at", TIMESTAMP),
))

# Bookkeeping that makes incremental encoding possible.
EMBEDDING_BOOKKEEPING = TableSchema((
    Column("description", STRING, doc="the text the text encoder saw (udfs.description)"),
    Column("text_hash", STRING, doc="sha256 of the description: same hash -> the text vector is still valid"),
    Column("image_hash", STRING, doc="sha256 of the image bytes (or error:<CODE>): same hash -> image vector valid"),
    Column("embedding_error", STRING, doc="error code(s) when a modality could not be embedded, else null"),
    Column("hybrid_source", STRING, doc="text+image normally; text_only when the image failed"),
    Column("source_commit_version", BIGINT, doc="products commit version this row reflects (ordering, replays)"),
    Column("failed_attempts", INT, doc="consecutive batches whose encode of the row failed (retries stop at "
                                       "stream.max_encode_attempts; 0 once an encode succeeds)"),
))

PRODUCT_EMBEDDINGS = PRODUCTS + EMBEDDING_VECTORS + EMBEDDING_BOOKKEEPING

# Rows of a catalog file that could not be parsed, with the reason.
QUARANTINE = TableSchema((
    Column("source_file", STRING, False),
    Column("line_number", BIGINT, False),
    Column("raw_line", STRING),
    Column("reason", STRING, False),
    Column("loaded_at", TIMESTAMP, False),
))

# An existing image-embeddings table the backfill may reuse (the retailer has 44k of them).
IMAGE_EMBEDDINGS = TableSchema((
    Column("product_id", INT, False),
    Column("image_embedding", VECTOR),
    Column("embedding_model", STRING),
))

# One row per shopper persona: a style embedding in the hybrid space plus preferences.
USER_FEATURES = TableSchema((
    Column("user_id", STRING, False),
    Column("segment", STRING),
    Column("user_embedding", VECTOR),
    Column("color_prefs", STRINGS),
    Column("category_prefs", STRINGS),
    Column("min_price", DOUBLE),
    Column("max_price", DOUBLE),
    Column("matched_products", INT),
))

# The multimodal table's vector column behind each search index.
INDEX_KINDS: dict[str, str] = {"image": "image_embedding", "text": "text_embedding", "hybrid": "hybrid_embedding"}
# What a search result carries besides its score: the product and how it was embedded.
# image_hash lets "more like this" leave out byte-identical photos.
METADATA_COLUMNS: list[str] = PRODUCT_COLUMNS + ["embedding_model", "embedding_error", "hybrid_source", "image_hash"]
# What the keyword index reads of each product (indexes.keyword): its name and the description
# the text encoder saw, so the keyword and the text vector index read the same words.
KEYWORD_COLUMNS: list[str] = ["product_display_name", "description"]
# What a search index keeps besides the metadata so keyword queries can read it.
KEYWORD_EXTRA_COLUMNS: list[str] = [c for c in KEYWORD_COLUMNS if c not in METADATA_COLUMNS]
# Columns a search filter may name, with the kind of value each takes. Not image_path: a server path
# is never shown to clients, so it cannot be probed through filters either (image_hash: no use).
FILTER_COLUMNS: dict[str, str] = {
    name: "number" if PRODUCT_EMBEDDINGS[name].type in NUMERIC_TYPES else "string"
    for name in METADATA_COLUMNS if name not in ("image_path", "image_hash")
}


# Every table the project creates. Spark writes a checkpoint every 10 commits by default and delta-rs (the
# stream's tiny batches) every 100; stated on the table, both engines checkpoint every 10, so a reader (the
# service opens the table every second) never replays more than 10 JSON commits, whoever wrote them.
TABLE_PROPERTIES = {"delta.checkpointInterval": "10"}


def create_table_ddl(table_sql_name: str, schema: TableSchema, change_data_feed: bool = True,
                     properties: dict[str, str] | None = None) -> str:
    """Return a ``CREATE TABLE IF NOT EXISTS`` statement for a Delta table.

    ``table_sql_name`` is what SQL should refer to: a (catalog.)schema.table name
    or ``delta.`/path```.
    """
    cols = ",\n  ".join(f"`{c.name}` {c.type.upper()}{'' if c.nullable else ' NOT NULL'}" for c in schema.columns)
    props = {**TABLE_PROPERTIES, **(properties or {})}
    if change_data_feed:
        props = {"delta.enableChangeDataFeed": "true", **props}
    clause = f" TBLPROPERTIES ({', '.join(f'{k} = {v}' for k, v in props.items())})" if props else ""
    return f"CREATE TABLE IF NOT EXISTS {table_sql_name} (\n  {cols}\n) USING DELTA{clause}"
