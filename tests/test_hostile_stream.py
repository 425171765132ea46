"""A hostile catalog through the stream and the service: every row lands (vectors or an error code), the stream
never stops, a second writer never kills it, and the service serves only images and answers every request."""

from __future__ import annotations

import io
import json
import os
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fashion_catalog.app.main import create_app
from fashion_catalog.conf import ConfigError
from fashion_catalog.lakehouse.tables import latest_version, read_table
from fashion_catalog.streaming.runner import Embedder
from tests.conftest import make_config
from tests.helpers import append_products, draw_image, embedding_rows, product, stream_once, truncated_jpeg

INVALID, UNDECODABLE = "IMAGE_PATH_INVALID", "IMAGE_UNDECODABLE"


def hostile_rows(root: str) -> list[dict]:
    """Products whose image paths hold NUL bytes or a malformed URI, or name files under the root that are not
    images (a secrets file, the catalogue's CSV, a truncated JPEG), beside two good ones."""
    img = f"{root}/img"
    with open(f"{img}/.secret.env", "w") as fh:
        fh.write("DATABRICKS_TOKEN=dapi-not-a-real-one\n")
    with open(f"{img}/styles.csv", "w") as fh:
        fh.write("id,gender\n1,Men\n")
    return [product(1, draw_image(f"{img}/1.jpg", 1)), product(2, draw_image(f"{img}/2.jpg", 2), price=150.0),
            product(3, f"{img}/1.jpg\x00.png", product_display_name="Nul Shirt"),
            product(4, f"file://{img}/1.jpg%00.png", product_display_name="Escaped Nul Shirt"),
            product(5, "file://[x/y.jpg", product_display_name="Bad Uri Shirt"),
            product(6, f"{img}/.secret.env", product_display_name="Secret Shirt"),
            product(7, f"{img}/styles.csv", product_display_name="Csv Shirt"),
            product(8, truncated_jpeg(f"{img}/cut.jpg"), product_display_name="Cut Shirt")]


EXPECTED_ERRORS = {1: None, 2: None, 3: INVALID, 4: INVALID, 5: INVALID, 6: UNDECODABLE, 7: UNDECODABLE,
                   8: UNDECODABLE}


@pytest.fixture(scope="module")
def hostile(spark, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-stream")
    os.makedirs(root / "img")
    config = make_config(str(root), tiny_model_dir, images__allowed_roots=[str(root / "img")])
    append_products(spark, config, hostile_rows(str(root)))
    stream_once(Embedder(spark, config))
    return config


@pytest.mark.parametrize("small", [64, 0], ids=["tiny-road", "spark-tasks"])
def test_invalid_paths_and_non_images_are_recorded_and_the_stream_goes_on(spark, tmp_path, tiny_model_dir, small):
    os.makedirs(tmp_path / "img")
    config = make_config(str(tmp_path), tiny_model_dir, images__allowed_roots=[str(tmp_path / "img")],
                         stream__small_batch_max_rows=small)
    append_products(spark, config, hostile_rows(str(tmp_path)))
    embedder = Embedder(spark, config)
    stream_once(embedder)
    rows = embedding_rows(spark, config)
    assert {pid: r.embedding_error for pid, r in rows.items()} == EXPECTED_ERRORS
    assert all(rows[p].text_embedding is not None for p in rows)
    # Deleting a bad row and editing a good one afterwards both go through (nothing is stuck at that offset).
    spark.sql(f"DELETE FROM {config.tables.products.sql} WHERE product_id = 3")
    spark.sql(f"UPDATE {config.tables.products.sql} SET product_display_name = 'Later Edit' WHERE product_id = 1")
    stream_once(embedder)
    rows = embedding_rows(spark, config)
    assert 3 not in rows and rows[1].product_display_name == "Later Edit"


def test_the_created_tables_checkpoint_every_ten_commits_in_both_engines(spark, hostile):
    for ref in (hostile.tables.products, hostile.tables.embeddings):
        props = {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES {ref.sql}").collect()}
        assert props.get("delta.checkpointInterval") == "10", (ref, props)


@pytest.fixture(scope="module")
def client(hostile):
    with TestClient(create_app(hostile, background_sync=False)) as c:
        yield c


def test_every_product_and_every_search_over_the_hostile_rows_answers_without_a_server_error(client):
    for pid in EXPECTED_ERRORS:
        r = client.get(f"/api/v1/products/{pid}")
        assert r.status_code == 200, (pid, r.text)
    for query in ("shirt", "nul", "secret csv cut", "bad uri"):
        r = client.post("/api/v1/search/text", json={"query": query, "limit": 10})
        assert r.status_code == 200, (query, r.text)
        assert {x["product_id"] for x in r.json()["results"]} & {3, 4, 5, 6, 7, 8}, query


def test_only_files_that_are_images_are_served_and_hashed(client):
    good = client.get("/images/1")
    assert good.status_code == 200 and good.headers["content-type"] == "image/jpeg"
    assert good.headers["x-content-type-options"] == "nosniff"
    for pid in (3, 4, 5, 6, 7, 8):
        r = client.get(f"/images/{pid}")
        assert r.status_code == 404, (pid, r.status_code)
        assert "DATABRICKS_TOKEN" not in r.text and "id,gender" not in r.text
        assert client.get(f"/api/v1/products/{pid}").json()["image_hash"] is None, pid
    assert client.get("/api/v1/products/1").json()["image_hash"]


@pytest.mark.parametrize("roots", [[], ["/"], ["/tmp/../"]])
def test_roots_that_allow_everything_are_a_configuration_error(tmp_path, tiny_model_dir, roots):
    with pytest.raises(ConfigError, match="images.allowed_roots"):
        make_config(str(tmp_path), tiny_model_dir, images__allowed_roots=roots)


def _png(color=(10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_number_of_thousands_of_digits_is_a_400_on_every_route_that_reads_json(client):
    huge = '{"price <": ' + "9" * 5000 + "}"
    assert client.get("/api/v1/products/1/similar", params={"filters": huge}).status_code == 400
    assert client.post("/api/v1/search/image", files={"file": ("q.png", _png(), "image/png")},
                       data={"filters": huge}).status_code == 400
    assert client.post("/api/v1/search/hybrid", data={"query": "shirt", "filters": huge}).status_code == 400
    assert client.get("/api/v1/recommendations/nobody", params={"filters": huge}).status_code in (400, 404)
    labels = "[" + "9" * 5000 + "]"
    assert client.post("/api/v1/classify", data={"product_id": "1", "labels": labels}).status_code == 400
    body = '{"query": "shirt", "filters": ' + huge + "}"
    r = client.post("/api/v1/search/text", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text


def test_filter_lists_and_json_bodies_are_bounded(client):
    r = client.post("/api/v1/search/text", json={"query": "shirt", "filters": {"gender": ["Men"] * 1001}})
    assert r.status_code == 400 and "'gender'" in r.text and "1000" in r.text
    big = {"query": "shirt", "filters": {"gender": ["Men"] * 1_240_000}}
    r = client.post("/api/v1/search/text", json=big)
    assert r.status_code == 413, r.status_code


def test_the_classifier_encodes_a_label_set_once(client, hostile):
    services = client.app.state.services
    calls = []
    real = services.queries.encoder.encode_texts

    def counting(texts, batch_size=64):
        calls.append(len(texts))
        return real(texts, batch_size)

    services.queries.encoder.encode_texts = counting
    try:
        labels = json.dumps([f"hostile label {i}" for i in range(100)])
        for _ in range(3):
            assert client.post("/api/v1/classify", data={"product_id": "1", "labels": labels}).status_code == 200
    finally:
        del services.queries.encoder.encode_texts
    assert calls == [100], calls


def test_health_shows_ids_and_codes_not_paths(client):
    body = client.get("/health").json()
    text = json.dumps(body)
    assert "model_source" not in body and "/tmp" not in text and body["model"] == "tiny-clip-test"


# -- a stopped stream is reported; a second writer never stops it -----------------------------------
def test_health_reports_embeddings_behind_products_when_no_stream_runs(spark, tmp_path, tiny_model_dir):
    config = make_config(str(tmp_path), tiny_model_dir, images__allowed_roots=[str(tmp_path)],
                         search__stream_stale_after_s=0)
    append_products(spark, config, [product(1, draw_image(f"{tmp_path}/1.jpg", 1))])
    stream_once(Embedder(spark, config))
    with TestClient(create_app(config, background_sync=False)) as c:
        body = c.get("/health").json()
        assert body["stream"]["behind_versions"] == 0 and body["status"] == "ok", body
        append_products(spark, config, [product(2, None)])
        append_products(spark, config, [product(3, None)])  # two product versions the stream never read
        body = c.get("/health").json()
    assert body["stream"]["behind_versions"] == 2 and body["status"] == "degraded", body


def test_a_commit_of_another_writer_inside_a_merge_is_retried_not_fatal(spark, tmp_path, tiny_model_dir,
                                                                         monkeypatch):
    """A real conflict: a maintenance write (Spark) commits to the embeddings table after the batch's delta-rs
    MERGE read the table and before it commits; delta-rs refuses the commit, the batch is planned again on the
    new version and lands, and the stream goes on."""
    from deltalake.table import TableMerger

    config = make_config(str(tmp_path), tiny_model_dir, images__allowed_roots=[str(tmp_path)])
    append_products(spark, config, [product(i, draw_image(f"{tmp_path}/{i}.jpg", i)) for i in (1, 2)])
    embedder = Embedder(spark, config)
    stream_once(embedder)
    real_execute, interfered = TableMerger.execute, []

    def execute_after_another_writer(self):
        if not interfered:
            interfered.append(latest_version(spark, config.tables.embeddings))
            spark.sql(f"UPDATE {config.tables.embeddings.sql} SET failed_attempts = 0 WHERE product_id IN (1, 2)")
        return real_execute(self)

    monkeypatch.setattr(TableMerger, "execute", execute_after_another_writer)
    spark.sql(f"UPDATE {config.tables.products.sql} SET product_display_name = 'Edited' WHERE product_id = 1")
    batches = stream_once(embedder)
    assert interfered and [(b.updates, b.retries) for b in batches] == [(1, 1)]  # refused once, then landed
    assert embedding_rows(spark, config)[1].product_display_name == "Edited"
    assert read_table(spark, config.tables.embeddings).count() == 2


def test_a_batch_that_keeps_failing_gives_up_after_its_retries(spark, tmp_path, tiny_model_dir, monkeypatch):
    from fashion_catalog.streaming import roads

    config = make_config(str(tmp_path), tiny_model_dir, stream__batch_retries=2, stream__retry_backoff_s=0.01)
    append_products(spark, config, [product(1, None)])
    attempts = []

    def always_failing(self, source):
        attempts.append(1)
        raise OSError("the object store is gone")

    monkeypatch.setattr(roads.DeltaRsRoad, "merge", always_failing)
    embedder = Embedder(spark, config)
    with pytest.raises(Exception, match="object store is gone"):
        stream_once(embedder)
    assert len(attempts) == 3  # the first try and two retries


def test_concurrent_decodes_are_bounded(client, monkeypatch):
    from fashion_catalog.search import queries

    limit = client.app.state.services.config.search.max_concurrent_decodes
    active, peak, lock = [0], [0], threading.Lock()
    real = queries.decode_image

    def tracked(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            threading.Event().wait(0.2)
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(queries, "decode_image", tracked)
    threads = [threading.Thread(target=lambda: client.post(
        "/api/v1/search/image", files={"file": ("q.png", _png(), "image/png")})) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert 1 <= peak[0] <= limit, (peak[0], limit)
