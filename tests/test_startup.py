"""A stream's start: what it reads without a Spark job (tables already there, its checkpoint), and its phases."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from fashion_catalog.conf import TableRef
from fashion_catalog.lakehouse.tables import ensure_table
from fashion_catalog.schemas import PRODUCTS
from fashion_catalog.schemas.tables import TABLE_PROPERTIES
from fashion_catalog.streaming.checkpoint import CheckpointError, checkpoint_query_id
from fashion_catalog.streaming.startup import StartupClock, process_age_s


class NoSpark:
    """Fails the test on any use: what must be decided without a Spark statement."""

    def __getattr__(self, name):
        raise AssertionError(f"Spark was used: spark.{name}")


def _table(path: str, columns: list[str], properties: dict[str, str]) -> None:
    write_deltalake(path, pa.table({c: pa.array(["x"]) for c in columns}), configuration=properties)


def test_a_complete_local_table_is_checked_without_spark_and_an_incomplete_one_goes_to_spark(tmp_path):
    columns = [c.name for c in PRODUCTS.columns]
    complete = str(tmp_path / "complete")
    _table(complete, columns, dict(TABLE_PROPERTIES))
    ensure_table(NoSpark(), TableRef(path=complete), PRODUCTS)
    # A column or a table property missing: Spark adds it (here: the stand-in refuses, so it was asked).
    for name, cols, props in [("old-schema", columns[:-1], dict(TABLE_PROPERTIES)), ("no-props", columns, {})]:
        path = str(tmp_path / name)
        _table(path, cols, props)
        with pytest.raises(AssertionError, match="Spark was used"):
            ensure_table(NoSpark(), TableRef(path=path), PRODUCTS)
    with pytest.raises(AssertionError, match="Spark was used"):  # no table yet: Spark creates it
        ensure_table(NoSpark(), TableRef(path=str(tmp_path / "none")), PRODUCTS)


def test_a_local_checkpoint_is_read_without_spark(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    assert checkpoint_query_id(NoSpark(), str(checkpoint)) is None  # no stream has written it
    os.makedirs(checkpoint)
    (checkpoint / "metadata").write_text(json.dumps({"id": "3b1c0d1e-query"}) + "\n", encoding="utf-8")
    assert checkpoint_query_id(NoSpark(), str(checkpoint)) == "3b1c0d1e-query"
    assert checkpoint_query_id(NoSpark(), f"file://{checkpoint}") == "3b1c0d1e-query"
    (checkpoint / "metadata").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="does not hold a query id"):
        checkpoint_query_id(NoSpark(), str(checkpoint))


def test_the_startup_clock_adds_phases_up_from_the_process_start(monkeypatch):
    age = process_age_s()
    assert age is not None and 0 <= age < 24 * 3600  # this test process started before it ran
    ticks = iter([10.0, 10.5, 12.0, 12.25])
    monkeypatch.setattr("fashion_catalog.streaming.startup.time.perf_counter", lambda: next(ticks))
    monkeypatch.setattr("fashion_catalog.streaming.startup.process_age_s", lambda: 1.5)
    clock = StartupClock()
    clock.mark("table_check")
    clock.mark("spark_session")
    clock.mark("table_check")  # a phase met twice adds up
    assert clock.phases == {"process": 1.5, "table_check": 0.75, "spark_session": 1.5}
    assert clock.total() == 3.75
