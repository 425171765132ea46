"""Hostile input and faults at the service: nothing leaked, nothing stalled, every error a 4xx with its reason."""

from __future__ import annotations

import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fashion_catalog.app.main import create_app
from fashion_catalog.indexes.local import LocalIndexStore
from fashion_catalog.personalization.features import build_user_features
from fashion_catalog.streaming.runner import Embedder
from tests.conftest import make_config
from tests.helpers import ThreadServer, append_products, draw_image, embedding_rows, product, stream_once

ALLOWED = "img"


@pytest.fixture(scope="module")
def hostile(spark, tiny_model_dir, tmp_path_factory):
    """Products whose image paths point outside the allowed roots, next to normal ones."""
    root = tmp_path_factory.mktemp("hostile")
    allowed = str(root / ALLOWED)
    config = make_config(str(root), tiny_model_dir, images__allowed_roots=[allowed],
                         search__max_upload_bytes=200_000)
    rows = [product(1, draw_image(f"{allowed}/1.jpg", 1), price=20.0),
            product(2, draw_image(f"{allowed}/2.jpg", 2), price=300.0, article_type="Dresses", gender="Women"),
            product(3, "/etc/passwd", product_display_name="Passwd"),
            product(4, f"{allowed}/../../../../etc/hosts", product_display_name="Dotdot"),
            product(5, "file://localhost/etc/hostname", product_display_name="File URI")]
    append_products(spark, config, rows)
    stream_once(Embedder(spark, config))
    build_user_features(spark, config)
    return config


@pytest.fixture(scope="module")
def client(hostile):
    app = create_app(hostile, background_sync=False)
    with TestClient(app) as c:
        yield c


# -- 7. image paths outside the allowed roots are never read, never served ---------------------
def test_paths_outside_allowed_roots_are_never_read_by_the_embedder(spark, hostile):
    rows = embedding_rows(spark, hostile)
    for pid in (3, 4, 5):
        assert rows[pid].embedding_error == "IMAGE_PATH_NOT_ALLOWED" and rows[pid].image_embedding is None
        assert rows[pid].image_hash == "error:IMAGE_PATH_NOT_ALLOWED"
    assert rows[1].embedding_error is None


def test_paths_outside_allowed_roots_are_never_served_and_never_shown(client):
    for pid in (3, 4, 5):
        r = client.get(f"/images/{pid}")
        assert r.status_code == 404 and "IMAGE_PATH_NOT_ALLOWED" in r.text and "root:" not in r.text
    assert client.get("/images/1").status_code == 200
    body = client.post("/api/v1/search/text", json={"query": "shirt", "limit": 5}).json()
    for result in body["results"]:
        assert not str(result.get("image_path") or "").startswith("/"), result["image_path"]
        assert result["image_url"] == f"/images/{result['product_id']}"
    product = client.get("/api/v1/products/3").json()
    assert product["image_path"] is None


# -- 8. LIKE runs in linear time, with a length bound ------------------------------------------
def test_a_pathological_like_pattern_is_fast():
    import pandas as pd

    from fashion_catalog.indexes.filters import evaluate, parse_filters

    frame = pd.DataFrame({"product_display_name": ["a" * 40] * 2000})
    conditions = parse_filters({"product_display_name LIKE": "%a%a%a%a%a%a%a%a%a%a%b"},
                               {"product_display_name": "string"})
    started = time.perf_counter()
    mask = evaluate(conditions, frame)
    assert time.perf_counter() - started < 1.0 and not mask.any()
    with pytest.raises(ValueError, match="LIKE pattern is longer than"):
        parse_filters({"product_display_name LIKE": "%a" * 300}, {"product_display_name": "string"})


# -- 9. uploads: bounded before the body is read, files and labels capped ------------------------
def test_an_oversized_upload_is_refused_from_its_content_length_before_it_is_read(hostile):

    served = ThreadServer(create_app(hostile, background_sync=False))
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
            conn.sendall((f"POST /api/v1/search/image HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Content-Type: multipart/form-data; boundary=xyz\r\n"
                          f"Content-Length: {5 * 1024**3}\r\n\r\n").encode() + b"--xyz\r\n")
            started = time.perf_counter()
            answer = conn.recv(4096).decode(errors="replace")
        assert answer.startswith("HTTP/1.1 413") and time.perf_counter() - started < 5
    finally:
        served.stop()


def test_too_many_files_and_labels_are_refused(client):
    png = _png((200, 30, 30))
    r = client.post("/api/v1/search/image", files=[("file", ("a.png", png, "image/png")),
                                                     ("file", ("b.png", png, "image/png")),
                                                     ("extra", ("c.png", png, "image/png"))])
    assert r.status_code in (400, 413, 422) and "file" in r.text
    labels = json.dumps([f"label {i}" for i in range(101)])
    r = client.post("/api/v1/classify", data={"product_id": "1", "labels": labels})
    assert r.status_code in (400, 422) and "labels" in r.text


# -- 10. CPU work never blocks the event loop; a rebuild never blocks readers -------------------
def test_health_answers_while_a_slow_query_is_being_encoded(hostile):
    """The query is held inside the encoder (an event, not a sleep race) while /health is asked."""
    inside, release = threading.Event(), threading.Event()

    class HeldEncoder:
        logit_scale = None

        def __init__(self, inner):
            self.inner = inner

        def encode_texts(self, texts, batch_size=64):
            return self.inner.encode_texts(texts, batch_size)

        def encode_images(self, images, batch_size=32):
            inside.set()
            assert release.wait(30)
            return self.inner.encode_images(images, batch_size)

    from fashion_catalog.encoders.clip import get_encoder

    app = create_app(hostile, encoder=HeldEncoder(get_encoder(hostile.model.name_or_path, "fp32", 1, 512)),
                     background_sync=False)
    with TestClient(app) as c:
        slow = threading.Thread(target=lambda: c.post("/api/v1/search/image",
                                                      files={"file": ("q.png", _png((1, 2, 3)), "image/png")}))
        slow.start()
        assert inside.wait(30), "the query never reached the encoder"
        started = time.perf_counter()
        assert c.get("/health").status_code == 200
        answered = time.perf_counter() - started
        release.set()
        slow.join(30)
    assert answered < 1.0


def test_searches_are_answered_while_the_index_rebuilds(hostile, monkeypatch):
    """The rebuild is held inside its snapshot read (an event) while a search runs on the current state."""
    store = LocalIndexStore(hostile.tables.embeddings.path, 512)
    store.sync()
    real_load = store.follower.builder.snapshot
    inside, release = threading.Event(), threading.Event()

    def held_build(*args, **kwargs):
        inside.set()
        assert release.wait(30)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(store.follower.builder, "snapshot", held_build)
    rebuild = threading.Thread(target=store.reload)
    rebuild.start()
    assert inside.wait(30), "the rebuild never started"
    started = time.perf_counter()
    assert store.search("hybrid", np.full(512, 1 / np.sqrt(512)), 2)
    answered = time.perf_counter() - started
    release.set()
    rebuild.join(30)
    assert answered < 1.0 and store.status().reloads == 1


# -- 11. filter values must match the column type; a 404 leaks nothing ---------------------------
@pytest.mark.parametrize("filters,key", [({"price": "50"}, "price"), ({"product_id": True}, "product_id"),
                                         ({"price": [1, "2"]}, "price"), ({"gender": 3}, "gender")])
def test_filter_values_of_the_wrong_type_are_a_400_naming_the_key(client, filters, key):
    r = client.post("/api/v1/search/text", json={"query": "shirt", "filters": filters})
    assert r.status_code == 400 and repr(key) in r.json()["detail"]


def test_an_unknown_user_does_not_list_the_others(client):
    r = client.get("/api/v1/recommendations/user_999999")
    assert r.status_code == 404 and "user_006327" not in r.text


# -- 4. the syncer survives everything and /health tells the truth -------------------------------
def test_the_index_syncer_survives_a_failing_refresh_and_health_reports_it(hostile, monkeypatch):
    """A refresh that fails makes /health degraded; the background loop survives failures and recovers. No window
    is raced: the failures are counted, and each state is read after the refresh that made it."""
    from fashion_catalog.search.users import UserDirectory

    app = create_app(hostile, background_sync=False)
    syncer = app.state.services.syncer
    failing = threading.Event()
    failing.set()
    real_reload = UserDirectory.reload

    def failing_reload(self, store):
        if failing.is_set():
            raise RuntimeError("user_style_features unreadable")
        return real_reload(self, store)

    monkeypatch.setattr(UserDirectory, "reload", failing_reload)
    app.state.services.users.users = {}
    with TestClient(app) as c:
        syncer.refresh()  # fails: recorded
        degraded = c.get("/health").json()
        syncer.interval_s = 0.05
        before = syncer.failures
        syncer.start()
        _until(lambda: syncer.failures >= before + 2, "two more failed background refreshes")
        alive_after_failures = syncer.running
        failing.clear()
        _until(lambda: syncer.problem() is None and len(app.state.services.users) == 5, "a successful refresh")
        body = c.get("/health").json()
        syncer.stop()
    assert degraded["status"] == "degraded" and "user_style_features unreadable" in degraded["index"]["last_sync_error"]
    assert alive_after_failures and body["status"] == "ok" and body["users"] == 5


def _until(predicate, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not predicate():
        pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def _png(colour, size=(40, 40), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, "PNG")
    return buf.getvalue()


def test_the_schema_and_the_server_agree_on_blank_text():
    """schemathesis (CLI run) sent query="\\x1d": the old pattern \\S let it through, the server called it blank."""
    import re

    from fashion_catalog.app.models import NON_BLANK
    from fashion_catalog.search.queries import is_blank

    # The pattern read as Python reads it, and as JSON Schema's ECMA dialect does (\s without U+001C-1F, U+0085).
    ecma_ws = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
    ecma = NON_BLANK.replace("\\S", f"[^{ecma_ws}]").replace("\\s", ecma_ws)
    chars = [chr(c) for c in range(0x3100)] + ["\ufeff"]
    for dialect in (NON_BLANK, ecma):
        disagree = [hex(ord(c)) for c in chars if (re.search(dialect, c) is None) != is_blank(c)]
        assert not disagree, (dialect, disagree[:8])
    assert is_blank("\x1d \ufeff") and not is_blank("\x1d red dress")


def test_a_repeated_form_field_and_json_null_fields_are_refused(client):
    """Found by the schemathesis CLI: `limit` sent twice, and labels/filters sent as the JSON text null."""
    png = _png((20, 200, 30))
    r = client.post("/api/v1/search/image", files={"file": ("q.png", png, "image/png")},
                    data={"limit": ["3", "4"]})
    assert r.status_code == 400 and "repeated: 'limit'" in r.text
    r = client.post("/api/v1/classify", data={"product_id": "1", "labels": "null"})
    assert r.status_code == 400 and "labels must be a JSON list" in r.text
    r = client.post("/api/v1/search/image", files={"file": ("q.png", png, "image/png")}, data={"filters": "null"})
    assert r.status_code == 400 and "filters must be a JSON object" in r.text
