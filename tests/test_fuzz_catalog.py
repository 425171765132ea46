"""A generated hostile catalog (hypothesis, derandomised): hundreds of rows of any text, broken paths and files,
absurd prices and duplicate ids, written in several commits while the stream runs on a processing-time trigger
and a backfill commits beside it. The stream never stops, every current product has a row (vectors or an error
code), no deleted product remains, and the service answers every product and every search without a 5xx."""

from __future__ import annotations

import io
import math
import threading
import time
from collections import Counter

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fashion_catalog.app.main import create_app
from fashion_catalog.lakehouse.tables import read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.streaming.backfill import backfill
from fashion_catalog.streaming.runner import Embedder
from tests.conftest import make_config
from tests.helpers import append_products, draw_image, truncated_jpeg

pytestmark = pytest.mark.slow
ROWS, COMMITS, IDS = 320, 6, 260  # more rows than ids: duplicates, in one commit and across commits
INT32 = 2**31 - 1

# Any text but lone surrogates (no table or file system holds them), plus the classics.
TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\t\r\n", "<script>alert(1)</script>", "' OR 1=1 --", "%_%",
                     "\"quoted\"", "NULL", "é" * 300, "🙂" * 50, "x" * 20_000]),
    st.none())
PRICE = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-1.0, 0.0, -0.0, 1e308, 5e-324]),
                  st.none())


def _image_files(root: str) -> dict[str, str]:
    """The catalogue's files: photos, a file that is no image, a truncated JPEG, a tiny file of 50 Mpx."""
    files = {f"photo{i}": draw_image(f"{root}/img/photo{i}.jpg", i) for i in range(4)}
    with open(f"{root}/img/notes.txt", "w") as fh:
        fh.write("not an image")
    files["not-an-image"] = f"{root}/img/notes.txt"
    files["truncated"] = truncated_jpeg(f"{root}/img/cut.jpg")
    buffer = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(buffer, "PNG", optimize=True)
    with open(f"{root}/img/huge.png", "wb") as fh:
        fh.write(buffer.getvalue())
    files["huge-dimensions"] = f"{root}/img/huge.png"
    return files


def _path(root: str, files: dict[str, str]):
    return st.one_of(
        st.sampled_from(sorted(files.values())),
        st.sampled_from([f"{root}/img/../../../../etc/passwd", f"{root}/img/photo0.jpg\x00.png",
                         f"file://{root}/img/photo1.jpg%00.png", "file://[x/y.jpg", "http://example.com/a.jpg",
                         "dbfs:/nowhere/x.jpg", f"{root}/img/{'n' * 5000}.jpg", f"{root}/img/missing.jpg",
                         "relative/../x.jpg", "", " "]),
        TEXT)


def product_row(root: str, files: dict[str, str]):
    return st.fixed_dictionaries({
        "product_id": st.integers(1, IDS), "product_display_name": TEXT, "master_category": TEXT,
        "sub_category": TEXT, "article_type": TEXT, "base_color": TEXT, "price": PRICE,
        "image_path": _path(root, files), "gender": TEXT, "season": TEXT,
        "year": st.one_of(st.integers(-INT32 - 1, INT32), st.none()), "usage": TEXT})


@pytest.fixture(scope="module")
def workspace_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "img").mkdir()
    return str(root)


def _wait(predicate, what: str, timeout_s: float = 240):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def _batches(query) -> int:
    """Micro-batches the query has run (-1 before the first)."""
    progress = query.lastProgress
    return -1 if not progress else int(progress["batchId"])


SEARCHES = ["shirt", "\x00", "' OR 1=1 --", "%", "é" * 300, "🙂", "under 1,500", "size 10 to 12", "x" * 900,
            "NULL", "red dress for women under 50"]


def generated_rows(root: str, files: dict[str, str]) -> list[dict]:
    """ROWS product rows, each one example hypothesis generates (derandomised: the same rows every run), so
    the catalogue holds hypothesis's whole range of edge cases rather than one simplest example."""
    rows: list[dict] = []

    @settings(derandomize=True, max_examples=ROWS, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(product_row(root, files))
    def collect(row: dict) -> None:
        rows.append(row)

    collect()
    return rows


def test_a_generated_hostile_catalog_never_stops_the_stream_and_the_service_answers_every_request(
        spark, tiny_model_dir, workspace_root):
    files = _image_files(workspace_root)
    rows = generated_rows(workspace_root, files)
    assert len(rows) >= 300 and len({r["product_id"] for r in rows}) < len(rows)
    config = make_config(workspace_root, tiny_model_dir, images__allowed_roots=[f"{workspace_root}/img"],
                         stream__processing_time="1 second", stream__retry_backoff_s=0.2)
    append_products(spark, config, rows[: ROWS // COMMITS])
    embedder = Embedder(spark, config)
    query = embedder.start_stream("processingTime")
    maintenance_errors: list[BaseException] = []
    try:
        chunk = ROWS // COMMITS
        for i in range(1, COMMITS):
            seen = _batches(query)
            _wait(lambda seen=seen: _batches(query) > seen, "the stream's next batch")  # commits between batches
            append_products(spark, config, rows[i * chunk:(i + 1) * chunk] if i < COMMITS - 1 else rows[i * chunk:])
            if i == 2:  # a maintenance job commits beside the stream
                def maintain():
                    try:
                        backfill(spark, config)
                    except BaseException as exc:  # noqa: BLE001 - reported below
                        maintenance_errors.append(exc)

                worker = threading.Thread(target=maintain, name="backfill-beside-the-stream")
                worker.start()
            if i == 3:
                deleted = {r.product_id for r in read_table(spark, config.tables.products)
                           .filter("product_id % 7 = 0").select("product_id").collect()}
                spark.sql(f"DELETE FROM {config.tables.products.sql} WHERE product_id % 7 = 0")
            assert query.isActive and query.exception() is None, query.exception()
        worker.join(300)
        assert not maintenance_errors, [" ".join(str(e).split())[:2000] for e in maintenance_errors]

        def caught_up() -> bool:
            products = {r.product_id for r in read_table(spark, config.tables.products).select("product_id").collect()}
            stored = {r.product_id for r in read_table(spark, config.tables.embeddings).select("product_id").collect()}
            return products == stored

        _wait(caught_up, "the embeddings table to hold exactly the current products")
        assert query.isActive and query.exception() is None, query.exception()
    finally:
        query.stop()
    embedded = read_table(spark, config.tables.embeddings).collect()
    assert len({r.product_id for r in embedded}) == len(embedded)  # one row per product, duplicates or not
    for r in embedded:
        assert r.text_embedding is not None or r.embedding_error, r.product_id
        assert r.image_embedding is not None or r.embedding_error, r.product_id
        for vector in (r.image_embedding, r.text_embedding, r.hybrid_embedding):
            if vector is not None:
                assert abs(math.sqrt(sum(x * x for x in vector)) - 1) < 1e-6
    codes = Counter(c for r in embedded for c in (r.embedding_error or "").split(",") if c)
    # The generated rows reached every kind of bad image, and good ones still got their vectors.
    assert {"IMAGE_PATH_INVALID", "IMAGE_TOO_MANY_PIXELS", "IMAGE_UNDECODABLE", "IMAGE_PATH_NOT_ALLOWED",
            "IMAGE_MISSING", "IMAGE_PATH_NULL"} <= set(codes), codes
    assert sum(r.image_embedding is not None for r in embedded) >= 3
    assert len(embedder.history) >= 3  # several batches (the commits), not one
    current = {r.product_id: r for r in read_table(spark, config.tables.products).select(*PRODUCT_COLUMNS).collect()}
    assert deleted - set(current) and not (deleted - set(current)) & {r.product_id for r in embedded}

    with TestClient(create_app(config, background_sync=False), raise_server_exceptions=False) as client:
        for pid in sorted(current):
            for url in (f"/api/v1/products/{pid}", f"/images/{pid}", f"/api/v1/products/{pid}/similar"):
                r = client.get(url)
                assert r.status_code < 500, (url, r.status_code, r.text[:300])
        names = [r["product_display_name"] for r in rows[:40] if isinstance(r["product_display_name"], str)]
        for text in SEARCHES + names:
            for mode in ("fused", "keyword", "vector"):
                r = client.post("/api/v1/search/text", json={"query": text[:1000] or "x", "mode": mode})
                assert r.status_code < 500, (text[:50], mode, r.status_code, r.text[:300])
        assert client.get("/health").json()["status"] in ("ok", "degraded")
        for value in np.linspace(-1, 1e6, 5):
            r = client.post("/api/v1/search/text", json={"query": "shirt", "filters": {"price <": value}})
            assert r.status_code < 500
