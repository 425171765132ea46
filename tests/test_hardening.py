"""Faults a live catalog meets, in the pipeline: nothing lost, nothing stuck, nothing resurrected, no ghosts."""

from __future__ import annotations

import os
import shutil

import pytest
from chispa import assert_df_equality

from fashion_catalog.catalog.loader import load_catalog
from fashion_catalog.catalog.parser import parse_styles_csv
from fashion_catalog.encoders.clip import get_encoder
from fashion_catalog.lakehouse.tables import read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.streaming import backfill as backfill_module
from fashion_catalog.streaming.backfill import backfill, reembed
from fashion_catalog.streaming.runner import Embedder
from tests.encoder_server import EncoderServer
from tests.helpers import append_products, draw_image, embedding_rows, product, stream_once


def _same_products(spark, config):
    assert_df_equality(read_table(spark, config.tables.products).select(*PRODUCT_COLUMNS),
                       read_table(spark, config.tables.embeddings).select(*PRODUCT_COLUMNS),
                       ignore_row_order=True, ignore_nullable=True)


# -- 1. resume keyed on what is in the table ------------------------------------------------------
@pytest.mark.slow
def test_reembed_after_a_crash_resumes_by_table_content_not_by_chunk_index(spark, workspace, monkeypatch):
    config = workspace.config(backfill__chunk_rows=1)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(i + 1, imgs[i]) for i in range(3)])
    stream_once(Embedder(spark, config))
    new = workspace.config(backfill__chunk_rows=1, model__id="tiny-clip-v2")
    original, seen = Embedder.apply_state, []

    def crash_on_second_chunk(self, *args, **kwargs):
        seen.append(1)
        if len(seen) == 2:
            raise RuntimeError("driver lost after the first chunk")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Embedder, "apply_state", crash_on_second_chunk)
    with pytest.raises(RuntimeError, match="driver lost"):
        reembed(spark, new)
    monkeypatch.undo()
    reembed(spark, new)
    assert {pid: r.embedding_model for pid, r in embedding_rows(spark, config).items()} == {
        1: "tiny-clip-v2", 2: "tiny-clip-v2", 3: "tiny-clip-v2"}


# -- 2. a failed encode is retried, with a bound, the error kept --------------------------------
@pytest.fixture
def flaky_encoder(tiny_model_dir):
    server = EncoderServer(get_encoder(tiny_model_dir, "fp32", 1, 512))
    yield server
    server.close()


@pytest.mark.slow
def test_a_failed_image_encode_is_retried_and_the_attempts_are_bounded(spark, workspace, flaky_encoder):
    config = workspace.config(model__name_or_path=flaky_encoder.url, serving__max_retries=0,
                              serving__backoff_base_s=0.01, stream__max_encode_attempts=2)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(2)]
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1])])
    flaky_encoder.fail_images = True
    stream_once(Embedder(spark, config))
    rows = embedding_rows(spark, config)
    assert rows[1].embedding_error == "IMAGE_ENCODE_FAILED" and rows[1].image_embedding is None
    # The model is back: a backfill at the same table version re-plans the failed images (not a no-op).
    flaky_encoder.fail_images = False
    again = backfill(spark, config)
    assert again["images_encoded"] == 2 and again["texts_encoded"] == 0
    rows = embedding_rows(spark, config)
    assert all(r.image_embedding is not None and r.embedding_error is None for r in rows.values())
    # Failing for good: retried up to stream.max_encode_attempts, then left alone with its error.
    append_products(spark, config, [product(3, draw_image(f"{workspace.path}/img/3.jpg", 3))])
    flaky_encoder.fail_images = True
    stream_once(Embedder(spark, config))
    attempts = [backfill(spark, config)["images_encoded"] for _ in range(3)]
    assert attempts == [1, 0, 0]
    row = embedding_rows(spark, config)[3]
    assert row.embedding_error == "IMAGE_ENCODE_FAILED" and row.failed_attempts == 2
    # reembed can target failed rows explicitly, whatever their attempts.
    flaky_encoder.fail_images = False
    assert reembed(spark, config, failed_only=True)["images_encoded"] == 1
    assert embedding_rows(spark, config)[3].embedding_error is None


# -- 3. deletes the stream never saw; a backfill never resurrects ------------------------------
def test_a_new_checkpoint_reconciles_products_deleted_while_the_stream_was_down(spark, workspace):
    config = workspace.config()
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(i + 1, imgs[i]) for i in range(3)])
    stream_once(Embedder(spark, config))
    # Down: the checkpoint is lost, and product 2 is deleted meanwhile.
    shutil.rmtree(config.stream.checkpoint)
    spark.sql(f"DELETE FROM {config.tables.products.sql} WHERE product_id = 2")
    stream_once(Embedder(spark, config))
    assert sorted(embedding_rows(spark, config)) == [1, 3]
    _same_products(spark, config)


def test_reconcile_job_removes_orphans(spark, workspace):
    from fashion_catalog.streaming.reconcile import reconcile

    config = workspace.config()
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(2)]
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1])])
    stream_once(Embedder(spark, config))
    spark.sql(f"DELETE FROM {config.tables.products.sql} WHERE product_id = 1")  # the stream is not running
    assert reconcile(spark, config)["deleted"] == 1
    assert sorted(embedding_rows(spark, config)) == [2]


def test_a_backfill_planned_from_an_older_snapshot_never_resurrects_a_deleted_product(spark, workspace,
                                                                                     monkeypatch):
    from fashion_catalog.lakehouse.tables import latest_version

    config = workspace.config()
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(i + 1, imgs[i]) for i in range(3)])
    old = latest_version(spark, config.tables.products)
    spark.sql(f"DELETE FROM {config.tables.products.sql} WHERE product_id = 3")
    stream_once(Embedder(spark, config))
    # The backfill planned its snapshot before the delete (it read the version, then the stream ran).
    monkeypatch.setattr(backfill_module, "latest_version", lambda *_: old)
    backfill(spark, config)
    assert sorted(embedding_rows(spark, config)) == [1, 2]


# -- 6. one row per product_id, whatever the race --------------------------------------------
def test_duplicate_ids_in_products_leave_one_row_per_product(spark, workspace):
    config = workspace.config()
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(2)]
    append_products(spark, config, [product(1, imgs[0]), product(1, imgs[1], product_display_name="Twin")])
    backfill(spark, config)
    count = read_table(spark, config.tables.embeddings).filter("product_id = 1").count()
    assert count == 1


def test_seeded_image_vectors_never_duplicate_a_row_the_stream_wrote(spark, workspace, monkeypatch):
    from fashion_catalog.schemas.spark import IMAGE_EMBEDDINGS_SCHEMA

    img_table = f"{workspace.path}/delta/image_embeddings"
    config = workspace.config(tables__image_embeddings={"path": img_table})
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(2)]
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1])])
    spark.createDataFrame([(1, [1.0] + [0.0] * 511, "tiny-clip-test")], IMAGE_EMBEDDINGS_SCHEMA) \
        .write.format("delta").save(img_table)
    embedder = Embedder(spark, config)
    stream_once(embedder)  # the stream inserts product 1 first...
    # ...while the backfill had already listed it as missing (its read of the embeddings was earlier).
    real_read = backfill_module.read_table

    def before_the_stream(spark_, ref, *args, **kwargs):
        df = real_read(spark_, ref, *args, **kwargs)
        return df.limit(0) if ref == config.tables.embeddings else df

    monkeypatch.setattr(backfill_module, "read_table", before_the_stream)
    backfill(spark, config, embedder=embedder)
    monkeypatch.undo()
    assert read_table(spark, config.tables.embeddings).filter("product_id = 1").count() == 1


# -- 12. the catalog loader never aborts on one bad line ----------------------------------------
DIRTY = (
    "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
    "1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Good Tee\n"
    "2,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Caf\xe9 Tee\n"  # written as latin-1 below
    "3,Men,Apparel,Topwear,Tshirts,Blue,Summer,inf,Casual,Infinite Year Tee\n"
    "4,Men,Apparel,Topwear,Tshirts,Blue,Summer,1e400,Casual,Huge Year Tee\n"
    "99999999999,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Huge Id Tee\n"
    "6,Men,Apparel,Topwear,Tshirts,Blue,Summer,99999999999,Casual,Huge Year Int Tee\n"
    '7,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,"Casual, Sports",Polo\n'
    '8,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,"Two\nLine Tee"\n'
    "9,Men,Apparel,Topwear,Tshirts,Blue,Summer,2013,Casual,Last, Comma Tee\n"
)


def test_dirty_lines_become_correct_rows_or_quarantined_ones(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_bytes(DIRTY.encode("utf-8").replace("Caf\xe9".encode(), b"Caf\xe9"))
    parsed = parse_styles_csv(path)
    rows = {r["product_id"]: r for r in parsed.rows}
    assert sorted(rows) == [1, 7, 8, 9]
    assert rows[7]["usage"] == "Casual, Sports" and rows[7]["product_display_name"] == "Polo"
    assert rows[8]["product_display_name"] == "Two\nLine Tee" and rows[8]["usage"] == "Casual"
    assert rows[9]["product_display_name"] == "Last, Comma Tee"
    reasons = {number: reason for number, _, reason in parsed.quarantined}
    assert "UTF-8" in reasons[3] and "year" in reasons[4] and "year" in reasons[5]
    assert "id" in reasons[6] and "out of range" in reasons[6] and "year" in reasons[7]


def test_delete_missing_keeps_products_whose_line_was_quarantined(spark, workspace):
    config = workspace.config()
    src = os.path.join(workspace.path, "catalog")
    os.makedirs(os.path.join(src, "images"))
    header = DIRTY.splitlines()[0]
    with open(os.path.join(src, "styles.csv"), "w", encoding="utf-8") as fh:
        fh.write(header + "\n1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Good Tee\n"
                 "3,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Third Tee\n")
    load_catalog(spark, config, src)
    with open(os.path.join(src, "styles.csv"), "w", encoding="utf-8") as fh:  # 3's line is now broken
        fh.write(header + "\n1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Good Tee\n"
                 "3,Men,Apparel,Topwear,Tshirts,Blue,Summer,inf,Casual,Third Tee\n")
    counts = load_catalog(spark, config, src, delete_missing=True)
    assert counts["quarantined"] == 1
    assert sorted(r.product_id for r in read_table(spark, config.tables.products).collect()) == [1, 3]


# -- 5. the index reloads when the change feed cannot take it forward --------------------------
def _write(path, ids, mode="append"):
    from tests.helpers import write_synthetic_embeddings

    if mode == "overwrite" and os.path.isdir(path):
        shutil.rmtree(path)
    return write_synthetic_embeddings(path, len(ids), seed=len(ids), ids=ids)


def test_the_index_reloads_when_the_table_is_recreated(tmp_path):
    from fashion_catalog.indexes.local import LocalIndexStore

    path = str(tmp_path / "emb")
    _write(path, [1, 2, 3])
    _write(path, [4])  # version 1
    store = LocalIndexStore(path)
    store.sync()
    assert store.status().rows == 4
    # Recreated (new table id) with as many versions: the old feed would apply to the wrong base.
    _write(path, [10, 11], mode="overwrite")
    _write(path, [12])
    store.sync()
    assert sorted(store.live_rows("hybrid")[0]["product_id"]) == [10, 11, 12]
    # The keyword index was rebuilt with it: nothing of the old table is found.
    assert sorted(r["product_id"] for r in store.keyword_search("synthetic product", 10)) == [10, 11, 12]
    assert store.keyword_search("1", 10) == [] and [r["product_id"] for r in store.keyword_search("12", 10)] == [12]


def test_the_index_reloads_when_the_change_feed_is_gone(tmp_path, monkeypatch):
    from deltalake import DeltaTable

    from fashion_catalog.indexes.local import LocalIndexStore

    path = str(tmp_path / "emb")
    _write(path, [1, 2])
    store = LocalIndexStore(path)
    store.sync()
    _write(path, [3])

    def vacuumed(*args, **kwargs):
        raise OSError("Object at location .../_change_data/... not found")

    monkeypatch.setattr(DeltaTable, "load_cdf", vacuumed)
    store.sync()
    assert sorted(store.live_rows("hybrid")[0]["product_id"]) == [1, 2, 3] and store.status().lag_versions == 0
    assert sorted(r["product_id"] for r in store.keyword_search("synthetic product", 10)) == [1, 2, 3]
