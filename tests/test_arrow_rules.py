"""The delta-rs road's Arrow rules (streaming/arrow_rules.py) against the Spark columns they twin, case by case.

``tests/test_stream.py::test_every_road_writes_the_same_table`` covers the common edits end to end; this
holds the plan and the assembly equal on the rarer states: failed encodes and their attempts, a model
change, a stale state, a delete another writer applied, NaN metadata, an unreadable image, malformed
stored vectors. Expected actions are written out too, not only compared.
"""

from __future__ import annotations

import math

import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType

from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.description import description, text_hash
from fashion_catalog.schemas.spark import STATE_SCHEMA, VECTOR_TYPE
from fashion_catalog.streaming.arrow_rules import assemble_arrow, plan_arrow
from fashion_catalog.streaming.batch import Rules
from fashion_catalog.streaming.embed import MODALITIES, WRITE_ACTIONS, assemble_columns
from fashion_catalog.streaming.planner import _STORED_SCHEMA, behind_deletes, literal_lookup, plan_local
from tests.helpers import product

RULES = Rules(model_id="m1", dimension=3, text_weight=0.7, max_attempts=3)
IMAGE = "sha-image"


def _state(pid: int, version: int = 5, deleted: bool = False, **fields) -> dict:
    return {**product(pid, f"/img/{pid}.jpg"), **fields, "_deleted": deleted, "source_commit_version": version}


def _stored(state: dict, **overrides) -> dict:
    """The stored row a state would have left: same columns, its hashes, the model m1, both vectors."""
    row = {c: state[c] for c in PRODUCT_COLUMNS} | {
        "text_hash": text_hash(description(state)), "image_hash": IMAGE, "embedding_model": "m1",
        "source_commit_version": 4, "embedding_error": None, "failed_attempts": 0,
        "text_embedding": [1.0, 0.0, 0.0], "image_embedding": [0.0, 1.0, 0.0]}
    return row | overrides


def _cases():
    states, stored, expected = [], [], {}

    def case(state, stored_row, action):
        states.append(state)
        if stored_row is not None:
            stored.append(stored_row)
        expected[state["product_id"]] = action

    case(_state(1), None, "insert")
    s = _state(2)
    case(s, _stored(s), "unchanged")
    s = _state(3)
    case(s, _stored(s, embedding_model="m0"), "update")
    s = _state(4)
    case(s, _stored(s, embedding_error="IMAGE_ENCODE_FAILED", failed_attempts=1), "update")  # retried
    s = _state(5)
    case(s, _stored(s, embedding_error="IMAGE_ENCODE_FAILED", failed_attempts=3), "unchanged")  # gave up
    s = _state(6)
    case(s, _stored(s, text_embedding=None, embedding_error="TEXT_ENCODE_FAILED", failed_attempts=2), "update")
    s = _state(7, version=3)
    case(s, _stored(s | {"product_display_name": "Newer"}), "stale")
    s = _state(8, deleted=True)
    case(s, _stored(s), "delete")
    case(_state(9, deleted=True), None, "absent_delete")
    s = _state(10, price=46.0)
    case(s, _stored(_state(10, price=45.0)) | {"text_hash": text_hash(description(s))}, "metadata")
    s = _state(11, price=float("nan"))
    case(s, _stored(s), "unchanged")  # NaN equals NaN, as Spark compares
    case(_state(12, version=6, image_path="/img/missing.jpg"), None, "insert")
    s = _state(13, version=6)
    case(s, _stored(s, product_display_name="Old"), "stale")  # older than a delete another writer applied
    s = _state(14, product_display_name="Renamed")
    case(s, _stored(_state(14), image_embedding=[0.0, None, 1.0, 2.0]), "update")  # a malformed stored vector
    return states, stored, expected


def _tables(states, stored):
    state_table = pa.Table.from_pylist(states, schema=to_arrow_schema(STATE_SCHEMA))
    stored_table = pa.Table.from_pylist(stored, schema=to_arrow_schema(_STORED_SCHEMA))
    hashes = {s["image_path"]: IMAGE for s in states}
    hashes["/img/missing.jpg"] = "error:IMAGE_MISSING"
    return state_table, stored_table, hashes


def _by_id(table: pa.Table) -> dict:
    return {r["product_id"]: r for r in table.to_pylist()}


def _same(a, b) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def test_the_arrow_plan_and_assembly_are_the_spark_columns(spark):
    states, stored, expected = _cases()
    state_table, stored_table, hashes = _tables(states, stored)
    deletes_ahead = {13: 7}
    spark_plan = behind_deletes(plan_local(spark, state_table, stored_table, hashes, RULES), deletes_ahead)
    spark_rows = _by_id(spark_plan.toArrow())
    arrow_rows = _by_id(plan_arrow(state_table, stored_table, hashes, RULES, deletes_ahead))
    assert {p: r["_action"] for p, r in arrow_rows.items()} == expected
    compared = ["_action", "_need_text", "_need_image", "_exists", "_image_read_error", "description", "text_hash",
                "image_hash", "cur_embedding_error", "cur_failed_attempts", "_old_text", "_old_image"]
    for pid, row in spark_rows.items():
        for column in compared:
            assert _same(arrow_rows[pid][column], row[column]), (pid, column, arrow_rows[pid][column], row[column])
    assert arrow_rows[12]["_image_read_error"] == "IMAGE_MISSING"

    # The assembly, on the rows to write with made-up encoder results: a vector, a failure, nothing.
    written = [pid for pid, r in arrow_rows.items() if r["_action"] in WRITE_ACTIONS]
    results = {"text": {6: (None, "TEXT_ENCODE_FAILED")}, "image": {4: (None, "IMAGE_ENCODE_FAILED")}}
    encoded = []
    for pid in written:
        row = dict(arrow_rows[pid])
        for m in MODALITIES:
            vector, error = results[m.name].get(pid, ([0.6, 0.8, 0.0] if m.name == "text" else [0.0, 0.0, 1.0], None))
            need = row[m.need] and (m.blocked_by is None or row[m.blocked_by] is None)
            row[m.vector], row[m.error] = (vector, error) if need else (None, None)
        encoded.append(row)
    fields = [*spark_plan.schema.fields, *[f for m in MODALITIES for f in (
        StructType().add(m.vector, VECTOR_TYPE).add(m.error, "string").fields)]]
    schema = StructType(fields)
    encoded_table = pa.Table.from_pylist(encoded, schema=to_arrow_schema(schema))
    spark_source = _by_id(assemble_columns(spark.createDataFrame(encoded_table, schema=schema), RULES).toArrow())
    arrow_source = _by_id(assemble_arrow(encoded_table, RULES))
    assert set(arrow_source) == set(spark_source) == set(written)
    for pid, row in spark_source.items():
        for column, value in row.items():
            assert _same(arrow_source[pid][column], value), (pid, column, arrow_source[pid][column], value)
    assert (arrow_source[4]["failed_attempts"], arrow_source[4]["embedding_error"]) == (2, "IMAGE_ENCODE_FAILED")
    assert (arrow_source[6]["failed_attempts"], arrow_source[6]["embedding_error"]) == (3, "TEXT_ENCODE_FAILED")
    assert arrow_source[12]["embedding_error"] == "IMAGE_MISSING"
    assert arrow_source[10]["hybrid_embedding"] is None  # metadata only: the MERGE keeps the stored vectors


def test_literal_lookup_keeps_a_missing_path_apart(spark):
    """plan_local's hash lookup (the Spark side of the comparison above) maps a null path to its own value."""
    df = spark.createDataFrame([("a",), (None,)], "image_path string")
    got = [r[0] for r in df.select(literal_lookup({"a": "h", None: "none"})(df["image_path"])).collect()]
    assert got == ["h", "none"]
