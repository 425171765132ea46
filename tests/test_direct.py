"""lakehouse/direct.py: which tables are read without Spark, and reads by key (no Spark session here)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from fashion_catalog.lakehouse.direct import local_path, plain_types, rows_by_key


@pytest.mark.parametrize(("path", "expected"), [
    ("/data/delta/embeddings", "/data/delta/embeddings"),
    ("file:/data/delta/embeddings", "/data/delta/embeddings"),
    ("file:///data/delta/embeddings", "/data/delta/embeddings"),
    ("data/delta/embeddings", "data/delta/embeddings"),
    ("s3://bucket/embeddings", None),
    ("abfss://container@account.dfs.core.windows.net/embeddings", None),
    ("dbfs:/delta/embeddings", None),
    (None, None),
])
def test_only_tables_on_this_machines_file_system_are_read_directly(path, expected):
    assert local_path(path) == expected


def test_rows_by_key_reads_the_latest_version_and_plain_types(tmp_path):
    from deltalake import write_deltalake

    path = str(tmp_path / "t")
    write_deltalake(path, pa.table({"product_id": pa.array([1, 2, 3], pa.int32()), "name": ["a", "b", "c"],
                                    "v": pa.array([[1.0], [2.0], [3.0]], pa.list_(pa.float64()))}))
    write_deltalake(path, pa.table({"product_id": pa.array([4], pa.int32()), "name": ["d"],
                                    "v": pa.array([[4.0]], pa.list_(pa.float64()))}), mode="append")
    rows = rows_by_key(path, "product_id", [4, 2, 2, 9], ["product_id", "name", "v"]).sort_by("product_id")
    assert rows.to_pylist() == [{"product_id": 2, "name": "b", "v": [2.0]}, {"product_id": 4, "name": "d", "v": [4.0]}]
    assert rows.schema == plain_types(rows).schema and rows.schema.field("name").type == pa.string()
    none = rows_by_key(path, "product_id", [], ["product_id", "name"])
    assert none.num_rows == 0 and all(c.num_chunks == 1 for c in none.columns)  # pyspark converts it
    with pytest.raises(FileNotFoundError, match="no Delta table"):
        rows_by_key(str(tmp_path / "missing"), "product_id", [1], ["product_id"])
