"""Table schemas: the single source of truth for DDL, StructTypes and tests."""

from schemas.tables import (
    EMBEDDING_BOOKKEEPING_FIELDS,
    EMBEDDING_VECTOR_FIELDS,
    IMAGE_EMBEDDINGS_SCHEMA,
    PRODUCT_COLUMNS,
    PRODUCT_EMBEDDINGS_SCHEMA,
    PRODUCTS_SCHEMA,
    QUARANTINE_SCHEMA,
    create_table_ddl,
)

__all__ = [
    "EMBEDDING_BOOKKEEPING_FIELDS",
    "EMBEDDING_VECTOR_FIELDS",
    "IMAGE_EMBEDDINGS_SCHEMA",
    "PRODUCT_COLUMNS",
    "PRODUCTS_SCHEMA",
    "PRODUCT_EMBEDDINGS_SCHEMA",
    "QUARANTINE_SCHEMA",
    "create_table_ddl",
]
