"""Probes through HTTP on the running service (``python -m fashion_catalog.app.main``, its own process): what an
attacker or an unlucky editor can send costs a bounded amount, and nothing they send stops the stream."""

from __future__ import annotations

import io
import json
import os
import socket
import time

import numpy as np
import pytest
import requests
from PIL import Image

from bench.service import ServiceProcess
from fashion_catalog.streaming.runner import Embedder
from tests.conftest import make_config
from tests.helpers import append_products, stream_once
from tests.test_hostile_stream import hostile_rows

pytestmark = pytest.mark.slow
HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 2.0, 3.0


@pytest.fixture(scope="module")
def catalog(spark, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("probes")
    os.makedirs(root / "img")
    overrides = {"images.allowed_roots": [str(root / "img")], "search.sync_interval_s": 0.25,
                 "search.header_timeout_s": HEADER_TIMEOUT_S, "search.body_timeout_s": BODY_TIMEOUT_S}
    config = make_config(str(root), tiny_model_dir, **{k.replace(".", "__"): v for k, v in overrides.items()})
    append_products(spark, config, hostile_rows(str(root)))
    embedder = Embedder(spark, config)
    stream_once(embedder)
    return root, config, embedder, overrides


@pytest.fixture(scope="module")
def service(catalog, tiny_model_dir):
    root, config, _, overrides = catalog
    settings = {"storage.root": config.root, "model.name_or_path": tiny_model_dir, "model.id": config.model.id,
                "model.torch_threads": 1, **{k: json.dumps(v) if isinstance(v, list) else v
                                             for k, v in overrides.items()}}
    service = ServiceProcess(settings, str(root / "service.log"), timeout_s=180)
    yield service
    service.stop()


def _memory_kb(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as fh:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in fh) if k in ("VmRSS", "VmHWM")}


def _png16(side: int) -> bytes:
    buffer = io.BytesIO()
    row = (np.arange(side, dtype=np.uint32) * 65535 // (side - 1)).astype(np.uint16)
    Image.fromarray(np.repeat(row[None, :], side, axis=0), mode="I;16").save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def test_a_nul_path_neither_stops_the_stream_nor_breaks_a_page(catalog, service, spark):
    _, config, embedder, _ = catalog
    assert requests.get(f"{service.url}/api/v1/products/3", timeout=10).status_code == 200
    assert requests.get(f"{service.url}/images/3", timeout=10).status_code == 404
    spark.sql(f"UPDATE {config.tables.products.sql} SET product_display_name = 'Probe Edit' WHERE product_id = 2")
    stream_once(embedder)
    deadline = time.time() + 30
    while time.time() < deadline:
        found = requests.post(f"{service.url}/api/v1/search/text", json={"query": "probe edit", "mode": "keyword"},
                              timeout=10).json()["results"]
        if found and found[0]["product_id"] == 2:
            break
        time.sleep(0.25)
    else:
        pytest.fail("the later edit never reached the service")


def test_a_file_under_the_root_that_is_not_an_image_is_not_served(service):
    for pid in (6, 7, 8):
        r = requests.get(f"{service.url}/images/{pid}", timeout=10)
        assert r.status_code == 404 and "DATABRICKS_TOKEN" not in r.text


@pytest.mark.parametrize("side,status", [(6300, 415), (3900, 200)], ids=["over-the-upload-cap", "under-it"])
def test_a_small_16_bit_png_of_many_pixels_costs_the_service_under_300_mb(service, side, status):
    data = _png16(side)
    assert len(data) < 200_000
    before = _memory_kb(service.proc.pid)
    r = requests.post(f"{service.url}/api/v1/search/image", files={"file": ("q.png", data, "image/png")},
                      timeout=120)
    after = _memory_kb(service.proc.pid)
    assert r.status_code == status, r.text
    grew_mb = (max(after["VmHWM"], after["VmRSS"]) - before["VmRSS"]) / 1024
    assert grew_mb < 300, f"the service grew by {grew_mb:.0f} MB"


def test_a_number_of_thousands_of_digits_is_a_400(service):
    r = requests.get(f"{service.url}/api/v1/products/1/similar", params={"filters": '{"price <": ' + "9" * 5000 + "}"},
                     timeout=10)
    assert r.status_code == 400, r.text


def test_a_million_value_filter_list_is_refused_at_once(service):
    values = json.dumps({"gender": ["Men"] * 1_000_000})
    started = time.perf_counter()
    r = requests.post(f"{service.url}/api/v1/search/text", data=json.dumps({"query": "shirt", "filters": "@"})
                      .replace('"@"', values), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and time.perf_counter() - started < 3, (r.status_code, time.perf_counter() - started)
    started = time.perf_counter()
    form = {"query": (None, "shirt"), "filters": (None, values)}  # a multipart field past the parser's part bound
    r = requests.post(f"{service.url}/api/v1/search/hybrid", files=form, timeout=30)
    assert r.status_code == 400 and time.perf_counter() - started < 3, (r.status_code, time.perf_counter() - started)


def _slow_client(port: int, body: bool) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    if body:
        conn.sendall(b"POST /api/v1/search/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
    else:
        conn.sendall(b"GET /health HTTP/1.1\r\n")
    return conn


@pytest.mark.parametrize("body", [False, True], ids=["headers", "body"])
def test_three_slow_clients_are_closed_within_the_timeout(service, body):
    """Each sends one header line (or one body byte) every half second and never finishes."""
    port = int(service.url.rsplit(":", 1)[1])
    conns = [_slow_client(port, body) for _ in range(3)]
    limit = (BODY_TIMEOUT_S if body else HEADER_TIMEOUT_S) + 2.0
    started, closed = time.perf_counter(), set()
    try:
        while len(closed) < len(conns) and time.perf_counter() - started < limit + 5:
            for i, conn in enumerate(conns):
                if i in closed:
                    continue
                try:
                    conn.sendall(b"1" if body else b"X-Slow: yes\r\n")
                    conn.settimeout(0.5)
                    answer = conn.recv(4096)
                    if answer == b"" or answer.startswith(b"HTTP/1.1 408"):
                        closed.add(i)
                except TimeoutError:
                    pass
                except OSError:
                    closed.add(i)
        elapsed = time.perf_counter() - started
    finally:
        for conn in conns:
            conn.close()
    assert len(closed) == 3 and elapsed < limit, (closed, elapsed)
    assert requests.get(f"{service.url}/health", timeout=10).status_code == 200  # the service is still there
