"""The fast lane (streaming/fast_lane.py): small products commits embedded at once, the stream still the record."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable, QueryBuilder

from fashion_catalog.conf import ConfigError
from fashion_catalog.lakehouse.tables import read_table
from fashion_catalog.streaming.checkpoint import committed_source_version
from fashion_catalog.streaming.fast_lane import FastLane, check_fast_lane
from fashion_catalog.streaming.runner import Embedder
from tests.helpers import append_products, draw_image, product, stream_once


def _embedded_names(config) -> dict[int, str]:
    """What the embeddings table holds now, read by delta-rs (deletion vectors applied), not by the code under test."""
    reader = QueryBuilder().register("t", DeltaTable(config.tables.embeddings.path)).execute(
        "SELECT product_id, product_display_name FROM t")
    return {r["product_id"]: r["product_display_name"] for r in pa.table(reader.read_all()).to_pylist()}


def _wait(condition, timeout_s: float = 60.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if condition():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s}s")


def _lane_commits(config) -> list[dict]:
    return [json.loads(c["userMetadata"]) for c in DeltaTable(config.tables.embeddings.path).history()
            if c.get("userMetadata") and json.loads(c["userMetadata"]).get("lane") == "fast"]


@pytest.mark.slow
def test_the_lane_applies_small_commits_at_once_and_the_stream_writes_nothing_after_it(spark, workspace):
    """An UPDATE made before the lane starts (after the stream's checkpoint) and one made while it runs are
    embedded by the lane without the stream; a commit above small_batch_max_rows is left to the stream; the
    stream then plans every commit again, writes only the large one, and the table equals a stream-only run's."""
    config = workspace.config(stream__small_batch_max_rows=4)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(i + 1, imgs[i]) for i in range(3)])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    table = config.tables.products.sql
    spark.sql(f"UPDATE {table} SET product_display_name = 'Renamed while down' WHERE product_id = 1")
    waiting = DeltaTable(config.tables.products.path).version()
    assert committed_source_version(config.stream.checkpoint) == waiting  # the stream has not read it yet

    lane = FastLane(config, embedder.processor).start()
    try:
        _wait(lambda: _embedded_names(config).get(1) == "Renamed while down")
        spark.sql(f"UPDATE {table} SET product_display_name = 'Renamed live', price = 61.0 WHERE product_id = 2")
        _wait(lambda: _embedded_names(config).get(2) == "Renamed live")
        # Three inserts: 3 change rows, at most 4 -> the lane; five: over 4 -> the stream's.
        append_products(spark, config, [product(10 + i, imgs[i % 3]) for i in range(5)])
        _wait(lambda: lane.next_version > DeltaTable(config.tables.products.path).version())
        assert not {10, 11, 12, 13, 14} & set(_embedded_names(config))
    finally:
        lane.stop()
    lane_commits = _lane_commits(config)
    assert [(c["road"], c["updates"], c["texts_encoded"], c["images_encoded"]) for c in lane_commits] == [
        ("delta-rs", 1, 1, 0), ("delta-rs", 1, 1, 0)]
    products_id = DeltaTable(config.tables.products.path).metadata().id
    assert {c["app_id"] for c in lane_commits} == {f"{config.stream.app_id}:fast-lane:{products_id}"}

    after = stream_once(embedder)
    assert [(b.inserts, b.updates, b.lane) for b in after] == [(5, 0, "stream")]  # the two updates: nothing to write
    # The same products embedded from scratch by the stream alone, into a table of its own.
    reference = workspace.config(stream__small_batch_max_rows=4,
                                 tables__products={"path": config.tables.products.path},
                                 tables__embeddings={"path": f"{workspace.path}/reference/embeddings"},
                                 stream__checkpoint=f"{workspace.path}/reference/checkpoint")
    stream_once(Embedder(spark, reference))
    columns = ["product_id", "product_display_name", "price", "text_hash", "image_hash", "description",
               "embedding_error", "hybrid_source", "failed_attempts"]
    assert_df_equality(read_table(spark, config.tables.embeddings).select(*columns),
                       read_table(spark, reference.tables.embeddings).select(*columns),
                       ignore_row_order=True, ignore_nullable=True)


def test_the_lane_refuses_tables_it_cannot_write_without_spark(workspace):
    config = workspace.config()
    assert check_fast_lane(config) == (config.tables.products.path, config.tables.embeddings.path)
    for overrides in ({"stream__tiny_merge": "spark"}, {"stream__small_batch_max_rows": 0},
                      {"tables__embeddings": {"path": "s3://bucket/embeddings"}},
                      {"tables__products": {"name": "main.fashion.products"}}):
        with pytest.raises(ConfigError, match="stream.fast_lane needs"):
            check_fast_lane(workspace.config(**overrides))


def _offset(root, batch: int, version: int, index: int, starting: bool, committed: bool) -> None:
    """One batch of a Structured Streaming checkpoint, in the format Spark writes (offsets log, then commit)."""
    for folder in ("offsets", "commits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    source = {"sourceVersion": 1, "reservoirId": "r", "reservoirVersion": version, "index": index,
              "isStartingVersion": starting}
    (root / "offsets" / str(batch)).write_text(
        f'v1\n{{"batchWatermarkMs":0,"batchTimestampMs":1,"conf":{{}}}}\n{json.dumps(source)}\n')
    if committed:
        (root / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}\n')


def test_the_lane_starts_where_the_streams_last_committed_batch_ended(tmp_path):
    root = tmp_path / "checkpoint"
    assert committed_source_version(str(root)) is None  # no checkpoint
    _offset(root, 0, 5, 3, True, committed=False)
    assert committed_source_version(str(root)) is None  # a batch planned, none committed
    _offset(root, 0, 5, 3, True, committed=True)
    assert committed_source_version(str(root)) == 6  # the snapshot of version 5: changes begin at 6
    _offset(root, 1, 9, -1, False, committed=True)
    _offset(root, 2, 12, -1, False, committed=False)  # written ahead, not done: its versions are not
    assert committed_source_version(str(root)) == 9
    _offset(root, 2, 12, 4, False, committed=True)  # part of version 12 read: 12 is read again
    assert committed_source_version(str(root)) == 12
    (root / "offsets" / "2").write_text("v1\nnot json\n")
    assert committed_source_version(str(root)) is None
    assert committed_source_version("s3://bucket/checkpoint") is None


@pytest.mark.slow
def test_the_stream_job_applies_a_waiting_edit_in_its_lane_before_its_stream_runs(spark, workspace):
    """``jobs.stream --trigger processingTime`` (the local profile: fast lane on) in its own process: an edit
    committed while no job ran is embedded by the lane, before the stream's query is up; SIGTERM stops the job
    cleanly; the stream's later plan of that commit writes nothing."""
    import os
    import signal
    import subprocess
    import sys

    config = workspace.config()
    assert config.tables.products.path.startswith(config.storage.root)  # the job finds the tables from the root
    append_products(spark, config, [product(1, draw_image(f"{workspace.path}/img/1.jpg", 1))])
    stream_once(Embedder(spark, config))
    spark.sql(f"UPDATE {config.tables.products.sql} SET product_display_name = 'Edited while down' "
              "WHERE product_id = 1")
    sets = {"storage.root": config.storage.root, "model.name_or_path": config.model.name_or_path,
            "model.id": config.model.id, "images.allowed_roots": json.dumps(config.images.allowed_roots)}
    log_path = f"{workspace.path}/stream.log"
    with open(log_path, "w") as log:
        job = subprocess.Popen([sys.executable, "-m", "fashion_catalog.jobs.stream", "--trigger", "processingTime",
                                *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1"))
    try:
        _wait(lambda: _embedded_names(config).get(1) == "Edited while down" or job.poll() is not None, timeout_s=240)
        _wait(lambda: "start-up phases" in open(log_path).read() or job.poll() is not None, timeout_s=240)
        assert job.poll() is None, open(log_path).read()[-4000:]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{open(log_path).read()[-4000:]}") from None
    finally:
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=120)
    text = open(log_path).read()
    assert job.returncode == 0, text[-3000:]
    assert text.index("fast lane: encoder loaded") < text.index("stream running")
    [commit] = _lane_commits(config)
    assert (commit["updates"], commit["texts_encoded"], commit["lane"]) == (1, 1, "fast")
    stream_commits = [c for c in DeltaTable(config.tables.embeddings.path).history()
                      if c.get("userMetadata") and '"lane": "stream"' in c["userMetadata"]]
    assert len(stream_commits) == 1  # the first run's snapshot; the job's stream wrote nothing


def _cdf(spark, config, first: int, last: int):
    """The products change feed of versions first..last, as the stream's micro-batch would hold it."""
    return (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", first)
            .option("endingVersion", last).load(config.tables.products.path))


@pytest.mark.slow
def test_neither_writer_undoes_a_delete_the_other_applied(spark, workspace):
    """A delete leaves no stored row to order states by, so the two writers of one process keep count
    (streaming.batch.Applied): a stream batch whose range ends before a delete the lane applied does not bring
    the product back, and the lane skips a commit the stream already applied (here, before its delete)."""
    config = workspace.config()
    append_products(spark, config, [product(1, None), product(2, None)])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    table = config.tables.products.sql
    spark.sql(f"UPDATE {table} SET product_display_name = 'Renamed then deleted' WHERE product_id = 1")
    renamed = DeltaTable(config.tables.products.path).version()
    spark.sql(f"DELETE FROM {table} WHERE product_id = 1")
    lane = FastLane(config, embedder.processor)
    lane.app_id = "test:fast-lane"
    assert lane.apply(renamed) and lane.apply(renamed + 1)  # the lane: renamed, then deleted
    assert set(_embedded_names(config)) == {2}
    # A stream micro-batch that ends at the rename (planned before the delete existed) writes nothing.
    embedder.process_batch(_cdf(spark, config, renamed, renamed), 1000)
    assert set(_embedded_names(config)) == {2}

    # The other way round: the stream applies a rename and a delete of product 2; the lane, behind, skips both.
    spark.sql(f"UPDATE {table} SET product_display_name = 'Gone' WHERE product_id = 2")
    spark.sql(f"DELETE FROM {table} WHERE product_id = 2")
    latest = DeltaTable(config.tables.products.path).version()
    embedder.process_batch(_cdf(spark, config, latest - 1, latest), 1001)
    assert _embedded_names(config) == {}
    before = DeltaTable(config.tables.embeddings.path).version()
    assert not lane.apply(latest - 1)
    assert _embedded_names(config) == {} and DeltaTable(config.tables.embeddings.path).version() == before
