"""Table schemas: the single source of truth for DDL, StructTypes, the search index's columns and tests.

Plain definitions live in :mod:`schemas.tables` (no pyspark); :mod:`schemas.spark`
builds the StructTypes from them.
"""

from fashion_catalog.schemas.tables import (
    EMBEDDING_BOOKKEEPING,
    EMBEDDING_VECTORS,
    FILTER_COLUMNS,
    IMAGE_EMBEDDINGS,
    INDEX_KINDS,
    KEYWORD_COLUMNS,
    KEYWORD_EXTRA_COLUMNS,
    METADATA_COLUMNS,
    PRODUCT_COLUMNS,
    PRODUCT_EMBEDDINGS,
    PRODUCTS,
    QUARANTINE,
    USER_FEATURES,
    Column,
    TableSchema,
    create_table_ddl,
)

__all__ = [
    "EMBEDDING_BOOKKEEPING",
    "EMBEDDING_VECTORS",
    "FILTER_COLUMNS",
    "IMAGE_EMBEDDINGS",
    "INDEX_KINDS",
    "KEYWORD_COLUMNS",
    "KEYWORD_EXTRA_COLUMNS",
    "METADATA_COLUMNS",
    "PRODUCT_COLUMNS",
    "PRODUCT_EMBEDDINGS",
    "PRODUCTS",
    "QUARANTINE",
    "USER_FEATURES",
    "Column",
    "TableSchema",
    "create_table_ddl",
]
