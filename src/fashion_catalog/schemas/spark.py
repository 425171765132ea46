"""Spark ``StructType``s built from the plain definitions in :mod:`schemas.tables`."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from fashion_catalog.schemas import tables as t

_TYPES: dict[str, DataType] = {
    t.INT: IntegerType(),
    t.BIGINT: LongType(),
    t.DOUBLE: DoubleType(),
    t.STRING: StringType(),
    t.TIMESTAMP: TimestampType(),
    # SQL DDL cannot declare non-null array elements, so the tables hold containsNull=true arrays;
    # the StructTypes say the same (the writers never store a null element: tests check the norms).
    t.VECTOR: ArrayType(DoubleType(), True),
    t.STRINGS: ArrayType(StringType(), True),
}


def struct_type(schema: t.TableSchema) -> StructType:
    """The StructType of a table schema."""
    return StructType([StructField(c.name, _TYPES[c.type], c.nullable) for c in schema.columns])


PRODUCTS_SCHEMA = struct_type(t.PRODUCTS)
PRODUCT_EMBEDDINGS_SCHEMA = struct_type(t.PRODUCT_EMBEDDINGS)
QUARANTINE_SCHEMA = struct_type(t.QUARANTINE)
IMAGE_EMBEDDINGS_SCHEMA = struct_type(t.IMAGE_EMBEDDINGS)
USER_FEATURES_SCHEMA = struct_type(t.USER_FEATURES)
VECTOR_TYPE = _TYPES[t.VECTOR]
# A product's final state in a batch of changes (streaming.reader.final_state and its Arrow twin
# schemas.change_feed.final_states): the product columns, whether it was deleted, and its commit.
STATE_SCHEMA = StructType([*PRODUCTS_SCHEMA.fields, StructField("_deleted", BooleanType()),
                           StructField("source_commit_version", LongType())])
