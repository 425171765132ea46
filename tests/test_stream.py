"""Integration tests: the CDF stream -> CLIP UDFs -> MERGE, on a real local Spark + Delta."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pyarrow as pa
import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from fashion_catalog.encoders import images as image_codes
from fashion_catalog.encoders.vectors import hybrid_vector
from fashion_catalog.lakehouse.tables import latest_version, read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.streaming.runner import Embedder
from tests.helpers import append_products, calls, draw_image, embedding_rows, product, stream_once, truncated_jpeg


@pytest.fixture
def env(spark, workspace):
    config = workspace.config()
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(6)]
    return spark, config, imgs


@pytest.fixture
def stream_env(any_spark, workspace, request):
    """Like ``env``, once on the classic session and once on Spark Connect (the restart test: the tiny road on
    Connect too; the other scenarios run on Connect chained in test_the_scenarios_on_spark_connect_in_one_table,
    on the Spark-task road: UDFs in the server's Python workers)."""
    connect = request.node.callspec.params.get("any_spark") == "connect"
    tiny_on_connect = request.node.name.startswith("test_stream_restarts_from_its_checkpoint")
    config = workspace.config(**({"stream__small_batch_max_rows": 0} if connect and not tiny_on_connect else {}))
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(6)]
    return any_spark, config, imgs


def _sql_update(spark, config, assignments: str, where: str, **args) -> None:
    """An editor's UPDATE of products, in SQL (works on classic and Connect sessions)."""
    spark.sql(f"UPDATE {config.tables.products.sql} SET {assignments} WHERE {where}", args=args or None)


def _sql_delete(spark, config, where: str) -> None:
    spark.sql(f"DELETE FROM {config.tables.products.sql} WHERE {where}")


def _norm(v):
    return float(np.linalg.norm(np.asarray(v)))


def _products_df(spark, config):
    return read_table(spark, config.tables.products).select(*PRODUCT_COLUMNS)


def _embedded_products_df(spark, config):
    return read_table(spark, config.tables.embeddings).select(*PRODUCT_COLUMNS)


def test_new_products_get_all_three_normalized_vectors(env, reference_clip):
    spark, config, imgs = env
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1], price=150.0), product(3, imgs[2])])
    embedder = Embedder(spark, config)
    batches = stream_once(embedder)
    assert [b.inserts for b in batches] == [3]
    assert_df_equality(_products_df(spark, config), _embedded_products_df(spark, config),
                       ignore_row_order=True, ignore_nullable=True)
    rows = embedding_rows(spark, config)
    for pid, row in rows.items():
        for col in ("image_embedding", "text_embedding", "hybrid_embedding"):
            vec = getattr(row, col)
            assert len(vec) == 512 and abs(_norm(vec) - 1.0) < 1e-9, (pid, col)
        assert row.embedding_model == "tiny-clip-test" and row.embedding_dimension == 512
        assert row.hybrid_source == "text+image" and row.embedding_error is None
        assert row.updated_at is not None and row.source_commit_version >= 0
        np.testing.assert_allclose(row.hybrid_embedding, hybrid_vector(
            np.array(row.text_embedding), np.array(row.image_embedding), 0.5), atol=1e-12)
        # The vectors are the model's own (an independent numpy CLIP says so), not something made up on the way.
        np.testing.assert_allclose(row.text_embedding, reference_clip.text([row.description])[0], atol=1e-5)
        np.testing.assert_allclose(row.image_embedding, reference_clip.images([row.image_path])[0], atol=1e-5)
    assert rows[2].description.endswith("luxury price") and "navy blue shirts" in rows[2].description
    assert_table_invariants(spark, config)


def test_the_scenarios_on_spark_connect_in_one_table(connect_spark, workspace, reference_clip, monkeypatch):
    """The stream scenarios above (new products, bad images, a tier crossing, a new image, a delete, a fixed file,
    replays), run on Spark Connect on the Spark-task road, chained on one table with disjoint products: two
    streamed batches instead of one table and two streams per scenario. Every scenario's assertion is kept,
    checked on its own products and on its batch's counts."""
    from tests.conftest import CONNECT_MODE_ENV

    monkeypatch.setenv(CONNECT_MODE_ENV, "1")
    spark = connect_spark
    config = workspace.config(stream__small_batch_max_rows=0)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(6)]
    base = os.path.dirname(imgs[0])
    empty, text_file = f"{base}/empty.jpg", f"{base}/notes.jpg"
    open(empty, "wb").close()
    with open(text_file, "w") as fh:
        fh.write("this is not a picture")
    good = [product(1, imgs[0]), product(2, imgs[1], price=150.0), product(3, imgs[2])]
    bad = [product(4, f"{base}/missing.jpg", product_display_name="Missing"),
           product(5, empty, product_display_name="Empty"),
           product(6, truncated_jpeg(f"{base}/cut.jpg"), product_display_name="Truncated"),
           product(7, text_file, product_display_name="Not an image"), product(8, None, product_display_name="No path")]
    append_products(spark, config, good + bad)
    embedder = Embedder(spark, config)
    [first] = stream_once(embedder)
    # New products: all three vectors, normalised, the model's own (an independent numpy CLIP says so). Images
    # sent to the model: the 3 good ones and the 2 files that read but do not decode (missing, empty and no path
    # fail before it).
    assert (first.inserts, first.image_errors, first.texts_encoded, first.images_encoded) == (8, 5, 8, 5)
    rows = embedding_rows(spark, config)
    for pid in (1, 2, 3):
        row = rows[pid]
        for col in ("image_embedding", "text_embedding", "hybrid_embedding"):
            assert len(getattr(row, col)) == 512 and abs(_norm(getattr(row, col)) - 1.0) < 1e-9, (pid, col)
        assert row.hybrid_source == "text+image" and row.embedding_error is None
        np.testing.assert_allclose(row.text_embedding, reference_clip.text([row.description])[0], atol=1e-5)
        np.testing.assert_allclose(row.image_embedding, reference_clip.images([row.image_path])[0], atol=1e-5)
    assert rows[2].description.endswith("luxury price")
    # Bad images: error codes, the text vector, the hybrid falling back to it.
    assert {pid: rows[pid].embedding_error for pid in range(4, 9)} == {
        4: image_codes.IMAGE_MISSING, 5: image_codes.IMAGE_EMPTY, 6: image_codes.IMAGE_UNDECODABLE,
        7: image_codes.IMAGE_UNDECODABLE, 8: image_codes.IMAGE_PATH_NULL}
    for pid in range(4, 9):
        r = rows[pid]
        assert r.image_embedding is None and r.text_embedding is not None
        assert r.hybrid_embedding == r.text_embedding and r.hybrid_source == "text_only"
    # One batch of edits: a tier crossing (1: text only), a new image (2: image only), a delete (3), a missing
    # file drawn and its row touched (4: image only).
    draw_image(f"{base}/missing.jpg", 5)
    _sql_update(spark, config, "price = 75.0", "product_id = 1")
    _sql_update(spark, config, "image_path = :path", "product_id = 2", path=imgs[3])
    _sql_delete(spark, config, "product_id = 3")
    _sql_update(spark, config, "year = 2013", "product_id = 4")
    [second] = stream_once(embedder)
    assert (second.updates, second.deletes, second.texts_encoded, second.images_encoded) == (3, 1, 1, 2)
    after = embedding_rows(spark, config)
    assert 3 not in after
    assert "premium price" in after[1].description and after[1].text_embedding != rows[1].text_embedding
    assert after[1].image_embedding == rows[1].image_embedding and abs(_norm(after[1].hybrid_embedding) - 1) < 1e-9
    assert after[2].text_embedding == rows[2].text_embedding and after[2].image_embedding != rows[2].image_embedding
    assert after[2].hybrid_embedding != rows[2].hybrid_embedding
    assert after[4].embedding_error is None and after[4].image_embedding is not None
    assert after[4].hybrid_source == "text+image"
    assert calls(embedder) == (9, 7)
    # Replays: the same CDF batch again writes nothing and encodes nothing; a batch id already committed under
    # the same write id is skipped even when its rows would change something.
    cdf = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0) \
        .load(config.tables.products.path)
    embedder.process_batch(cdf, 0)  # batch 0 again, under the stream's own write id
    version, calls_before = latest_version(spark, config.tables.embeddings), calls(embedder)
    before = sorted(read_table(spark, config.tables.embeddings).drop("updated_at").collect())
    embedder.process_batch(cdf, 0)  # and again, as after a crash before the checkpoint
    assert latest_version(spark, config.tables.embeddings) == version
    assert sorted(read_table(spark, config.tables.embeddings).drop("updated_at").collect()) == before
    assert calls(embedder) == calls_before == (9, 7)
    from fashion_catalog.streaming.reader import snapshot_as_state

    products = read_table(spark, config.tables.products).filter("product_id = 1")
    embedder.apply_state(snapshot_as_state(products, 1), batch_id=7, txn=("replay-test", 7))
    version = latest_version(spark, config.tables.embeddings)
    embedder.apply_state(snapshot_as_state(products.withColumn("price", F.lit(500.0)), 1), batch_id=7,
                         txn=("replay-test", 7))
    assert latest_version(spark, config.tables.embeddings) == version
    assert embedding_rows(spark, config)[1].price == 75.0
    assert_table_invariants(spark, config)


def test_price_change_inside_tier_reencodes_nothing(env):
    spark, config, imgs = env
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1])])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    before_rows, before_calls = embedding_rows(spark, config), calls(embedder)
    DeltaTable.forPath(spark, config.tables.products.path).update("product_id = 1", {"price": F.lit(49.5)})
    batches = stream_once(embedder)
    assert calls(embedder) == before_calls, "no text or image may be encoded"
    assert [(b.metadata_only, b.texts_encoded, b.images_encoded) for b in batches] == [(1, 0, 0)]
    after = embedding_rows(spark, config)
    assert after[1].price == 49.5
    for col in ("text_embedding", "image_embedding", "hybrid_embedding"):
        assert getattr(after[1], col) == getattr(before_rows[1], col)
    assert after[2] == before_rows[2]


def test_tier_crossing_reencodes_text_only(env):
    spark, config, imgs = env
    append_products(spark, config, [product(1, imgs[0])])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    before, (texts, images) = embedding_rows(spark, config)[1], calls(embedder)
    _sql_update(spark, config, "price = 75.0", "product_id = 1")
    stream_once(embedder)
    assert calls(embedder) == (texts + 1, images)
    after = embedding_rows(spark, config)[1]
    assert "premium price" in after.description and "mid-range" in before.description
    assert after.text_embedding != before.text_embedding
    assert after.image_embedding == before.image_embedding
    assert after.hybrid_embedding != before.hybrid_embedding and abs(_norm(after.hybrid_embedding) - 1) < 1e-9


def test_new_image_reencodes_image_only(env):
    spark, config, imgs = env
    append_products(spark, config, [product(1, imgs[0])])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    before, (texts, images) = embedding_rows(spark, config)[1], calls(embedder)
    _sql_update(spark, config, "image_path = :path", "product_id = 1", path=imgs[3])
    stream_once(embedder)
    assert calls(embedder) == (texts, images + 1)
    after = embedding_rows(spark, config)[1]
    assert after.text_embedding == before.text_embedding
    assert after.image_embedding != before.image_embedding
    assert after.hybrid_embedding != before.hybrid_embedding


def test_delete_removes_the_row(env):
    spark, config, imgs = env
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1])])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    _sql_delete(spark, config, "product_id = 2")
    stream_once(embedder)
    assert sorted(embedding_rows(spark, config)) == [1]


def test_several_changes_of_one_product_in_one_batch_land_as_final_state(env):
    spark, config, imgs = env
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1]), product(3, imgs[2])])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    table = DeltaTable.forPath(spark, config.tables.products.path)
    table.update("product_id = 1", {"product_display_name": F.lit("First rename")})
    table.update("product_id = 1", {"product_display_name": F.lit("Second rename"), "price": F.lit(20.0)})
    table.delete("product_id = 2")
    append_products(spark, config, [product(2, imgs[4], base_color="Red", product_display_name="Reborn")])
    table.delete("product_id = 3")
    append_products(spark, config, [product(4, imgs[5])])
    table.delete("product_id = 4")
    batches = stream_once(embedder)
    assert len(batches) == 1, "all commits arrive in one micro-batch"
    assert_df_equality(_products_df(spark, config), _embedded_products_df(spark, config),
                       ignore_row_order=True, ignore_nullable=True)
    rows = embedding_rows(spark, config)
    assert sorted(rows) == [1, 2]
    assert rows[1].product_display_name == "Second rename" and "affordable" in rows[1].description
    assert rows[2].base_color == "Red" and rows[2].source_commit_version == latest_version(
        spark, config.tables.products) - 3
    assert_table_invariants(spark, config)


def test_replaying_a_batch_changes_nothing(env):
    spark, config, imgs = env
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1])])
    _sql_update(spark, config, "price = 99.0", "product_id = 2")
    embedder = Embedder(spark, config)
    cdf = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0) \
        .load(config.tables.products.path)
    embedder.process_batch(cdf, 0)
    version = latest_version(spark, config.tables.embeddings)
    snapshot = read_table(spark, config.tables.embeddings).drop("updated_at")
    rows_before = sorted(snapshot.collect())
    calls_before = calls(embedder)
    embedder.process_batch(cdf, 0)  # the same batch again, as after a crash before the checkpoint
    assert latest_version(spark, config.tables.embeddings) == version
    assert sorted(read_table(spark, config.tables.embeddings).drop("updated_at").collect()) == rows_before
    assert calls(embedder) == calls_before


def test_replay_is_skipped_by_the_delta_transaction_id(env):
    """Even a batch whose rows would change something is not applied twice under the same id."""
    spark, config, imgs = env
    append_products(spark, config, [product(1, imgs[0])])
    embedder = Embedder(spark, config)
    from fashion_catalog.streaming.reader import snapshot_as_state

    products = read_table(spark, config.tables.products)
    embedder.apply_state(snapshot_as_state(products, 1), batch_id=7, txn=("replay-test", 7))
    version = latest_version(spark, config.tables.embeddings)
    changed = products.withColumn("price", F.lit(500.0))
    embedder.apply_state(snapshot_as_state(changed, 1), batch_id=7, txn=("replay-test", 7))
    assert latest_version(spark, config.tables.embeddings) == version
    assert embedding_rows(spark, config)[1].price == 45.0


def test_bad_images_get_error_codes_and_the_batch_lands(env):
    spark, config, imgs = env
    base = os.path.dirname(imgs[0])
    empty = f"{base}/empty.jpg"
    open(empty, "wb").close()
    text_file = f"{base}/notes.jpg"
    with open(text_file, "w") as fh:
        fh.write("this is not a picture")
    rows = [
        product(1, imgs[0]),
        product(2, f"{base}/missing.jpg", product_display_name="Missing"),
        product(3, empty, product_display_name="Empty"),
        product(4, truncated_jpeg(f"{base}/cut.jpg"), product_display_name="Truncated"),
        product(5, text_file, product_display_name="Not an image"),
        product(6, None, product_display_name="No path"),
    ]
    append_products(spark, config, rows)
    embedder = Embedder(spark, config)
    batches = stream_once(embedder)
    assert batches[0].image_errors == 5
    got = embedding_rows(spark, config)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    expected = {1: None, 2: image_codes.IMAGE_MISSING, 3: image_codes.IMAGE_EMPTY,
                4: image_codes.IMAGE_UNDECODABLE, 5: image_codes.IMAGE_UNDECODABLE, 6: image_codes.IMAGE_PATH_NULL}
    assert {pid: r.embedding_error for pid, r in got.items()} == expected
    for pid in range(2, 7):
        r = got[pid]
        assert r.image_embedding is None and r.text_embedding is not None
        assert r.hybrid_embedding == r.text_embedding and r.hybrid_source == "text_only"
    # Fixing a broken file re-encodes its image (the content hash changed), nothing else.
    draw_image(f"{base}/missing.jpg", 5)
    texts, images = calls(embedder)
    _sql_update(spark, config, "year = 2013", "product_id = 2")
    stream_once(embedder)
    assert calls(embedder) == (texts, images + 1)
    fixed = embedding_rows(spark, config)[2]
    assert fixed.embedding_error is None and fixed.image_embedding is not None and fixed.hybrid_source == "text+image"
    assert_table_invariants(spark, config)


def test_identical_descriptions_are_encoded_once(env):
    spark, config, imgs = env
    same = dict(product_display_name="Twin Shirt")
    append_products(spark, config, [product(1, imgs[0], **same), product(2, imgs[0], **same),
                                    product(3, imgs[1], **same)])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    assert calls(embedder) == (1, 2)
    rows = embedding_rows(spark, config)
    assert rows[1].text_embedding == rows[2].text_embedding == rows[3].text_embedding


def _wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_stream_restarts_from_its_checkpoint_without_losing_anything(stream_env):
    spark, config, imgs = stream_env
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1])])
    first = Embedder(spark, config)
    query = first.start_stream("processingTime")
    try:
        assert _wait_for(lambda: len(embedding_rows(spark, config)) == 2)
        append_products(spark, config, [product(3, imgs[2])])
        assert _wait_for(lambda: len(embedding_rows(spark, config)) == 3)
    finally:
        query.stop()
    # Changes made while the job is down are picked up after the restart...
    append_products(spark, config, [product(4, imgs[3]), product(5, imgs[4])])
    _sql_delete(spark, config, "product_id = 1")
    second = Embedder(spark, config)
    query = second.start_stream("processingTime")
    try:
        assert _wait_for(lambda: sorted(embedding_rows(spark, config)) == [2, 3, 4, 5])
    finally:
        query.stop()
    # ...and nothing already done is encoded again.
    assert calls(second) == (2, 2)
    # Each start warmed the tiny-batch road up (model, plan query, an empty MERGE) and committed nothing doing so.
    assert first.processor.warmed_up_s is not None and second.processor.warmed_up_s is not None
    assert [b.batch_id for b in first.history + second.history] == sorted(
        {b.batch_id for b in first.history + second.history}) and min(
        b.batch_id for b in first.history + second.history) >= 0
    assert_df_equality(_products_df(spark, config), _embedded_products_df(spark, config),
                       ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("local_max_rows", [0, 1000], ids=["checkpointed-source", "driver-source"])
def test_both_merge_source_paths_apply_inserts_updates_and_deletes(spark, workspace, local_max_rows):
    # Small batches bring the MERGE source to the driver, larger ones checkpoint it on the executors.
    config = workspace.config(stream__local_merge_source_max_rows=local_max_rows)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(4)]
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1]), product(3, imgs[2])])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    before = embedding_rows(spark, config)
    products = DeltaTable.forPath(spark, config.tables.products.path)
    products.update("product_id = 1", {"price": F.lit(75.0)})  # text only
    products.update("product_id = 2", {"image_path": F.lit(imgs[3])})  # image only
    products.delete("product_id = 3")
    append_products(spark, config, [product(4, imgs[0], product_display_name="Brand new")])
    [batch] = stream_once(embedder)
    assert (batch.updates, batch.deletes, batch.inserts, batch.rows_written) == (2, 1, 1, 4)
    assert_df_equality(_products_df(spark, config), _embedded_products_df(spark, config),
                       ignore_row_order=True, ignore_nullable=True)
    after = embedding_rows(spark, config)
    assert after[1].image_embedding == before[1].image_embedding and after[1].text_embedding != before[1].text_embedding
    assert after[2].text_embedding == before[2].text_embedding and after[2].image_embedding != before[2].image_embedding
    assert after[4].image_embedding == before[1].image_embedding and 3 not in after
    assert_table_invariants(spark, config)


# -- strengthened: hybrid arithmetic, replays from a real checkpoint, schema and norms ------------
def assert_table_invariants(spark, config):
    """The table's schema is the one in schemas/, and every stored vector has norm 1 within 1e-9 (SQL, whole table)."""
    from chispa.schema_comparer import assert_schema_equality

    from fashion_catalog.schemas.spark import PRODUCT_EMBEDDINGS_SCHEMA

    table = read_table(spark, config.tables.embeddings)
    assert_schema_equality(table.schema, PRODUCT_EMBEDDINGS_SCHEMA, ignore_nullable=False)
    off = spark.sql(" UNION ALL ".join(
        f"SELECT '{c}' AS col, count(*) AS n FROM {config.tables.embeddings.sql} WHERE {c} IS NOT NULL AND "
        f"abs(sqrt(aggregate({c}, 0D, (a, x) -> a + x * x)) - 1) > 1e-9"
        for c in ("image_embedding", "text_embedding", "hybrid_embedding"))).collect()
    assert all(r.n == 0 for r in off), off


def test_hybrid_is_rebuilt_from_the_stored_other_modality_with_the_configured_weight(spark, workspace):
    config = workspace.config(embedding__hybrid_text_weight=0.7)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(4)]
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1])])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    _sql_update(spark, config, "price = 75.0", "product_id = 1")  # text only
    _sql_update(spark, config, "image_path = :path", "product_id = 2", path=imgs[3])  # image only
    stream_once(embedder)
    for row in embedding_rows(spark, config).values():
        expected = hybrid_vector(np.array(row.text_embedding), np.array(row.image_embedding), 0.7)
        np.testing.assert_allclose(row.hybrid_embedding, expected, atol=1e-12)
        assert row.hybrid_source == "text+image"
        swapped = hybrid_vector(np.array(row.text_embedding), np.array(row.image_embedding), 0.3)
        assert np.abs(np.array(row.hybrid_embedding) - swapped).max() > 1e-6
    assert_table_invariants(spark, config)


def test_a_batch_replayed_from_a_real_checkpoint_writes_nothing_and_a_reset_checkpoint_loses_nothing(spark,
                                                                                                    workspace):
    from fashion_catalog.streaming.runner import checkpoint_query_id

    config = workspace.config()
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(1, imgs[0])])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    append_products(spark, config, [product(2, imgs[1])])
    stream_once(embedder)
    query_id = checkpoint_query_id(spark, config.stream.checkpoint)
    assert embedder.processor.app_id(spark) == f"{config.stream.app_id}:{query_id}"
    assert [b.app_id for b in embedder.history] == [f"{config.stream.app_id}:{query_id}"] * 2
    # Crash after the MERGE of batch 1, before its checkpoint commit: the batch runs again on restart.
    commits = os.path.join(config.stream.checkpoint, "commits")
    last = max((n for n in os.listdir(commits) if n.isdigit()), key=int)
    for name in (last, f".{last}.crc"):  # a crash before the commit leaves neither the file nor its checksum
        if os.path.exists(os.path.join(commits, name)):
            os.remove(os.path.join(commits, name))
    version, before = latest_version(spark, config.tables.embeddings), calls(embedder)
    replayed = Embedder(spark, config)
    stream_once(replayed)
    assert latest_version(spark, config.tables.embeddings) == version
    assert calls(replayed) == (0, 0) and calls(embedder) == before
    # Reset: a new checkpoint (new query id, batch ids from 0 again) while product 1 changed.
    shutil.rmtree(config.stream.checkpoint)
    _sql_update(spark, config, "product_display_name = 'Renamed'", "product_id = 1")
    fresh = Embedder(spark, config)
    stream_once(fresh)
    assert embedding_rows(spark, config)[1].product_display_name == "Renamed"
    assert calls(fresh) == (1, 0)
    assert fresh.history[0].app_id != f"{config.stream.app_id}:{query_id}"
    assert_table_invariants(spark, config)


def test_image_vectors_of_a_batch_with_failing_images_belong_to_their_own_rows(spark, workspace, reference_clip):
    config = workspace.config()
    base = f"{workspace.path}/img"
    imgs = [draw_image(f"{base}/{i}.jpg", i) for i in range(4)]
    rows = [product(1, imgs[0]), product(2, f"{base}/missing-a.jpg"), product(3, imgs[1]),
            product(4, truncated_jpeg(f"{base}/cut.jpg")), product(5, imgs[2]), product(6, None),
            product(7, imgs[3])]
    append_products(spark, config, rows)
    stream_once(Embedder(spark, config))
    got = embedding_rows(spark, config)
    expected = reference_clip.images([imgs[0], imgs[1], imgs[2], imgs[3]])
    for (pid, path), own in zip(((1, imgs[0]), (3, imgs[1]), (5, imgs[2]), (7, imgs[3])), expected, strict=True):
        np.testing.assert_allclose(got[pid].image_embedding, own, atol=1e-5, err_msg=path)
    assert [got[p].image_embedding is None for p in (2, 4, 6)] == [True, True, True]
    assert_table_invariants(spark, config)


@pytest.mark.slow
def test_every_road_writes_the_same_table(spark, tmp_path, tiny_model_dir):
    """The three roads (streaming.roads) write the same table, row for row, from the same change feed.

    ``spark-tasks`` (plan, UDFs and assembly in Spark tasks, Spark MERGE), ``delta-rs`` (a tiny batch in this
    process, merged by delta-rs) and ``spark-merge`` (a tiny batch in this process, merged by Spark: what a
    tiny batch on a Unity Catalog table takes in production). The same edits, in the same batches: inserts
    (one image missing, one truncated, one product id twice in one commit), a text-only update, an image-only
    update, a price change inside its tier, a delete, a re-insert. Product columns, hashes, errors and
    bookkeeping must be equal; vectors equal within float noise (the models run in different processes).
    """
    from tests.conftest import make_config

    imgs = [draw_image(f"{tmp_path}/img/{i}.jpg", i) for i in range(6)]
    broken = truncated_jpeg(f"{tmp_path}/img/broken.jpg")
    roads = {"spark-tasks": {"stream__small_batch_max_rows": 0}, "delta-rs": {},
             "spark-merge": {"stream__tiny_merge": "spark"}}
    tables, workers = {}, {}
    for road, overrides in roads.items():
        config = make_config(str(tmp_path / road), tiny_model_dir, **overrides)
        # Product 7 twice in one commit: both roads must keep the same one (rule 4 of schemas.change_feed).
        append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1]), product(3, imgs[2], price=45.0),
                                        product(4, imgs[3]), product(5, None), product(6, broken),
                                        product(7, imgs[4], product_display_name="Twin B"),
                                        product(7, imgs[5], product_display_name="Twin A")])
        embedder = Embedder(spark, config)
        batches = stream_once(embedder)
        _sql_update(spark, config, "product_display_name = 'Renamed Shirt'", "product_id = 1")
        _sql_update(spark, config, f"image_path = '{imgs[4]}'", "product_id = 2")
        _sql_update(spark, config, "price = 46.0", "product_id = 3")
        _sql_delete(spark, config, "product_id = 4")
        batches += stream_once(embedder)
        append_products(spark, config, [product(4, imgs[5])])
        batches += stream_once(embedder)
        assert [(b.inserts, b.updates, b.metadata_only, b.deletes) for b in batches] == [
            (7, 0, 0, 0), (0, 2, 1, 1), (1, 0, 0, 0)], road
        assert {b.road for b in batches} == {road}
        workers[road] = {w.rsplit(":", 2)[-1] if "batch-process" in w else "spark-task"
                         for b in batches for w in b.encoder_workers}
        tables[road] = read_table(spark, config.tables.embeddings).drop("updated_at")
    assert workers == {"spark-tasks": {"spark-task"}, "delta-rs": {"batch-process"}, "spark-merge": {"batch-process"}}
    assert {r.product_id: r.product_display_name for r in tables["delta-rs"].collect()}[7] == "Twin B"
    vectors = ["image_embedding", "text_embedding", "hybrid_embedding"]
    reference = {r.product_id: r for r in tables["spark-tasks"].collect()}
    for road in ("delta-rs", "spark-merge"):
        assert_df_equality(tables["spark-tasks"].drop(*vectors), tables[road].drop(*vectors), ignore_row_order=True,
                           ignore_nullable=True)
        for row in tables[road].collect():
            for col in vectors:
                a, b = getattr(row, col), getattr(reference[row.product_id], col)
                assert (a is None) == (b is None), (road, row.product_id, col)
                if a is not None:
                    np.testing.assert_allclose(a, b, atol=1e-6, err_msg=f"{road} {row.product_id} {col}")


def test_the_warm_up_of_each_tiny_road_commits_nothing(spark, workspace):
    """The warm-up runs the delta-rs road on a scratch table and the spark-merge road on no rows with an
    empty-source MERGE: both finish, and the real table gets no commit."""
    from fashion_catalog.streaming.warm_up import warm_up

    for merge in ("auto", "spark"):
        config = workspace.config(stream__tiny_merge=merge)
        embedder = Embedder(spark, config)
        version = latest_version(spark, config.tables.embeddings)
        warm_up(embedder.processor, spark)
        assert embedder.processor.warmed_up_s is not None, merge
        assert latest_version(spark, config.tables.embeddings) == version, merge


def test_arrow_and_spark_twins_of_each_step_agree_on_one_input(spark):
    """Where a step exists in Arrow/pandas (a tiny batch) and in Spark (Spark tasks), both give the same answer:
    what to encode per modality, the vectors attached to rows by hash, and the image errors counted."""
    import pandas as pd

    from fashion_catalog.streaming.embed import (
        MODALITIES,
        attach_vectors,
        image_errors,
        image_errors_spark,
        to_encode,
        to_encode_local,
    )

    plan = pd.DataFrame({
        "product_id": [1, 2, 3, 4, 5],
        "_need_text": [True, True, False, True, False],
        "text_hash": ["t1", "t1", "t3", "t4", None],
        "description": ["red dress", "red dress", "blue", "green shirt", None],
        "_need_image": [True, True, True, False, True],
        "image_hash": ["i1", "i2", "i1", "i4", "error:IMAGE_MISSING"],
        "image_path": ["/a.jpg", "/b.jpg", "/a.jpg", "/d.jpg", "/missing.jpg"],
        "_image_read_error": [None, None, None, None, "IMAGE_MISSING"],
        "embedding_error": [None, "IMAGE_UNDECODABLE", None, "TEXT_ENCODE_FAILED", "IMAGE_MISSING"],
    })
    frame = spark.createDataFrame(plan)
    # Worked out by hand: texts t1 (once) and t4; images i1 (once: rows 1 and 3) and i2 (the missing one is not read).
    expected = {"text": {("t1", "red dress"), ("t4", "green shirt")}, "image": {("i1", "/a.jpg"), ("i2", "/b.jpg")}}
    for m in MODALITIES:
        local = {tuple(r) for r in to_encode_local(plan, m).itertuples(index=False)}
        remote = {tuple(r) for r in to_encode(frame, m).collect()}
        assert local == remote == expected[m.name], m.name
    results = pd.DataFrame({"embedding": [[1.0, 0.0], None], "error": [None, "IMAGE_ENCODE_FAILED"]})
    image = MODALITIES[1]
    attached = attach_vectors(pa.Table.from_pandas(plan, preserve_index=False), image, ["i1", "i2"], results)
    encoded = spark.createDataFrame(pd.DataFrame({"image_hash": ["i1", "i2"], image.vector: results["embedding"],
                                                  image.error: results["error"]}))
    joined = frame.join(encoded, "image_hash", "left").select("product_id", image.vector, image.error)
    by_id = {r["product_id"]: (r[image.vector], r[image.error]) for r in attached.to_pylist()}
    assert by_id == {r.product_id: (r[image.vector], r[image.error]) for r in joined.collect()} == {
        1: ([1.0, 0.0], None), 2: (None, "IMAGE_ENCODE_FAILED"), 3: ([1.0, 0.0], None), 4: (None, None),
        5: (None, None)}
    counted = frame.agg(image_errors_spark().alias("n")).first()["n"]
    assert image_errors(pa.Table.from_pandas(plan, preserve_index=False)) == counted == 2  # rows 2 and 5


# -- the tiny road's lookups and the table's file layout ------------------------------------------
def test_stored_rows_read_without_spark_equal_the_spark_read_deletion_vectors_included(spark, workspace):
    """The tiny roads read their products' stored rows with delta-rs (stored_arrow) or Spark (stored_arrow_spark):
    the same rows and values, after a MERGE that wrote deletion vectors and after a delete; an id nobody has
    gives no row."""
    from fashion_catalog.streaming.planner import stored_arrow, stored_arrow_spark

    config = workspace.config(stream__tiny_merge="spark")  # Spark MERGEs: deletion vectors in the table
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(i, imgs[i % 3]) for i in range(1, 7)])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    _sql_update(spark, config, "product_display_name = 'Renamed'", "product_id IN (2, 5)")
    _sql_delete(spark, config, "product_id = 3")
    stream_once(embedder)
    ref = config.tables.embeddings
    ids = [1, 2, 3, 5, 99]
    direct, via_spark = stored_arrow(ref, ids), stored_arrow_spark(spark, ref, ids)
    assert sorted(direct["product_id"].to_pylist()) == [1, 2, 5]
    assert direct.schema == via_spark.schema
    assert direct.sort_by("product_id").to_pylist() == via_spark.sort_by("product_id").to_pylist()
    assert {r["product_id"]: r["product_display_name"] for r in direct.to_pylist()}[5] == "Renamed"
    assert stored_arrow(ref, [99]).num_rows == 0 and stored_arrow_spark(spark, ref, [99]).num_rows == 0


def test_large_batches_write_files_of_narrow_id_ranges(spark, workspace):
    """A large batch writes files of at most stream.max_rows_per_file rows whose product_id ranges do not overlap,
    so a later lookup or MERGE of one product reads one small file."""
    config = workspace.config(stream__max_rows_per_file=4, stream__small_batch_max_rows=0,
                              stream__local_merge_source_max_rows=0)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(i, imgs[i % 3]) for i in range(1, 15)])
    stream_once(Embedder(spark, config))
    files = (read_table(spark, config.tables.embeddings).groupBy(F.input_file_name().alias("f"))
             .agg(F.count(F.lit(1)).alias("n"), F.min("product_id").alias("lo"), F.max("product_id").alias("hi"))
             .orderBy("lo").collect())
    assert sum(f.n for f in files) == 14 and max(f.n for f in files) <= 4 and len(files) >= 4
    assert all(a.hi < b.lo for a, b in zip(files, files[1:], strict=False)), files


def test_delta_rs_and_spark_merges_interleave_on_one_table(spark, tmp_path):
    """The tiny road's delta-rs MERGE and the Spark MERGE share a table: same clauses, each sees the other's
    deletion vectors, idempotent-write ids and checkpoints, and Spark reads delta-rs's change data and metadata."""
    from pyspark.sql.types import BooleanType, StructField, StructType

    from fashion_catalog.conf import TableRef
    from fashion_catalog.lakehouse.tables import ensure_embeddings_table
    from fashion_catalog.schemas.spark import PRODUCT_EMBEDDINGS_SCHEMA
    from fashion_catalog.streaming.writer import MergeRequest, merge_embeddings, merge_embeddings_direct

    ref = TableRef(path=str(tmp_path / "embeddings"))
    ensure_embeddings_table(spark, ref)
    schema = StructType([f for f in PRODUCT_EMBEDDINGS_SCHEMA.fields if f.name != "updated_at"]
                        + [StructField(c, BooleanType()) for c in ("_deleted", "_need_text", "_need_image")])

    def source(ids, name, version, deleted=False, image=(1.0, 0.0)):
        rows = [{f.name: None for f in schema.fields} | {
            "product_id": i, "product_display_name": name, "price": 10.0, "image_embedding": list(image),
            "text_embedding": [0.0, 1.0], "hybrid_embedding": [0.6, 0.8], "embedding_model": "m",
            "embedding_dimension": 2, "source_commit_version": version, "failed_attempts": 0,
            "_deleted": deleted, "_need_text": True, "_need_image": False} for i in ids]
        return spark.createDataFrame(rows, schema).coalesce(1)

    def table():
        return read_table(spark, ref).select("product_id", "product_display_name", "source_commit_version",
                                             "image_embedding")

    from deltalake import DeltaTable as RsTable

    merge_embeddings(spark, ref, source(range(1, 7), "a", 1), MergeRequest(txn=("app", 0), inserts_only=True))
    assert DeltaTable.forPath(spark, ref.path).detail().first()["numFiles"] == 1
    merge_embeddings(spark, ref, source([2], "b", 2), MergeRequest(txn=("app", 1)))  # a deletion vector in that file
    assert pa.table(RsTable(ref.path).deletion_vectors()).num_rows == 1
    # Text re-encoded only: the image vector in the source is not the stored one, and must not land.
    edits = source([3], "c", 3, image=(9.0, 9.0)).union(source([4], "c", 3, deleted=True)).toArrow()
    done = merge_embeddings_direct(ref.path, edits, MergeRequest(txn=("app", 2), commit_metadata='{"by": "delta-rs"}',
                                                                 target_ids=[3, 4]))
    assert (done["num_updated_rows"], done["num_deleted_rows"], done["num_inserted_rows"]) == (1, 1, 0)
    version = latest_version(spark, ref)
    assert merge_embeddings_direct(ref.path, edits, MergeRequest(txn=("app", 2)))["num_affected_rows"] == 0  # replay
    merge_embeddings(spark, ref, source([5], "replayed", 9), MergeRequest(txn=("app", 2)))  # Spark skips delta-rs's
    replay_of_spark = source([2], "replayed", 9).toArrow()
    assert merge_embeddings_direct(ref.path, replay_of_spark, MergeRequest(txn=("app", 1)))["num_affected_rows"] == 0
    assert latest_version(spark, ref) == version
    RsTable(ref.path).create_checkpoint()
    merge_embeddings(spark, ref, source([5], "e", 4), MergeRequest(txn=("app", 3)))
    expected = spark.createDataFrame(
        [(1, "a", 1), (2, "b", 2), (3, "c", 3), (5, "e", 4), (6, "a", 1)],
        "product_id int, product_display_name string, source_commit_version long")
    got = table()
    assert_df_equality(got.drop("image_embedding"), expected, ignore_row_order=True, ignore_nullable=True)
    # An update that re-encoded text only kept the stored image vector, on both roads.
    assert {r.product_id: r.image_embedding for r in got.collect()}[3] == [1.0, 0.0]
    changes = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", version)
               .option("endingVersion", version).load(ref.path))
    assert sorted((r._change_type, r.product_id) for r in changes.collect()) == [
        ("delete", 4), ("update_postimage", 3), ("update_preimage", 3)]
    meta = spark.sql(f"DESCRIBE HISTORY delta.`{ref.path}`").filter(F.col("version") == version).first()
    assert meta["userMetadata"] == '{"by": "delta-rs"}'


def test_starting_version_skips_the_earlier_commits_and_a_backlog_splits_into_several_batches(spark, workspace):
    """stream.starting_version: only products committed from that version on are read; with one file a trigger,
    a backlog of four commits is four batches, each writing its own product (worked out by hand)."""
    config = workspace.config(stream__max_files_per_trigger=1)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(6)]
    for pid in (1, 2):  # before the starting version: never read
        append_products(spark, config, [product(pid, imgs[pid])])
    start = latest_version(spark, config.tables.products) + 1
    for pid in (3, 4, 5, 6):  # one commit (one file) each
        append_products(spark, config, [product(pid, imgs[pid % 6])])
    config = workspace.config(stream__max_files_per_trigger=1, stream__starting_version=start)
    batches = stream_once(Embedder(spark, config))
    assert sorted(embedding_rows(spark, config)) == [3, 4, 5, 6]
    assert [(b.batch_id, b.inserts, b.rows_in) for b in batches] == [(0, 1, 1), (1, 1, 1), (2, 1, 1), (3, 1, 1)]
