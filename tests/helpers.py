"""Helpers for the integration tests: products, drawn images, one-shot stream runs."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from fashion_catalog.lakehouse.tables import ensure_all_tables, read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.spark import PRODUCTS_SCHEMA

COLOURS = [(200, 30, 40), (20, 30, 90), (40, 140, 60), (235, 200, 40), (110, 50, 140), (20, 20, 20)]


def draw_image(path: str, seed: int) -> str:
    """A small distinct JPEG per seed."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (48, 64), COLOURS[seed % len(COLOURS)])
    arr = np.asarray(img).copy()
    arr[rng.integers(0, 64, 200), rng.integers(0, 48, 200)] = rng.integers(0, 255, (200, 3))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path, "JPEG")
    return path


def truncated_jpeg(path: str) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    with open(path, "wb") as fh:
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def product(pid: int, image_path: str | None, **overrides) -> dict:
    row = {
        "product_id": pid,
        "product_display_name": f"Test Brand Men Navy Blue Shirt {pid}",
        "master_category": "Apparel",
        "sub_category": "Topwear",
        "article_type": "Shirts",
        "base_color": "Navy Blue",
        "price": 45.0,
        "image_path": image_path,
        "gender": "Men",
        "season": "Fall",
        "year": 2012,
        "usage": "Casual",
    }
    row.update(overrides)
    return row


def append_products(spark, config, rows: list[dict]) -> None:
    ensure_all_tables(spark, config)
    df = spark.createDataFrame([tuple(r[c] for c in PRODUCT_COLUMNS) for r in rows], PRODUCTS_SCHEMA)
    df.write.format("delta").mode("append").save(config.tables.products.path)


def stream_once(embedder) -> list:
    """Run the CDF stream with availableNow; return the metrics of the batches it ran."""
    before = len(embedder.history)
    embedder.start_stream("availableNow").awaitTermination()
    return embedder.history[before:]


def embedding_rows(spark, config) -> dict:
    return {r.product_id: r for r in read_table(spark, config.tables.embeddings).collect()}


def calls(embedder) -> tuple[int, int]:
    """(texts, images) that went through the model in this embedder's batches so far.

    Counted from the encoded data of each batch (recorded in the batch-metrics table), so it
    holds wherever the batches ran: in this process, on a Spark Connect server or on executors.
    """
    history = embedder.history
    return sum(m.texts_encoded for m in history), sum(m.images_encoded for m in history)


def write_synthetic_embeddings(path: str, n: int, seed: int, dim: int = 512, clusters: int = 0,
                               ids: list[int] | None = None) -> np.ndarray:
    """A multimodal-shaped Delta table of ``n`` random unit vectors (written without Spark); returns them.

    ``clusters=0``: uniform on the sphere (no structure at all, the hardest case for an
    approximate index); otherwise Gaussian clusters around that many centres, like real embeddings.
    ``ids`` (default 0..n-1) are the product ids; an existing table is appended to (Change Data Feed on).
    """
    import pyarrow as pa
    from deltalake import write_deltalake

    from fashion_catalog.indexes.local import INDEX_KINDS, METADATA_COLUMNS

    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, dim))
    if clusters:
        vecs = rng.normal(size=(clusters, dim))[rng.integers(0, clusters, n)] + 0.6 * vecs
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cols = {c: pa.array([None] * n, pa.string()) for c in METADATA_COLUMNS}
    cols["product_id"] = pa.array(np.asarray(ids if ids is not None else np.arange(n), dtype=np.int32))
    cols["product_display_name"] = pa.array([f"Synthetic product {i}" for i in cols["product_id"].to_pylist()])
    cols["description"] = pa.array([f"synthetic product number {i}" for i in cols["product_id"].to_pylist()])
    cols["price"] = pa.array(rng.uniform(5, 300, n))
    cols["year"] = pa.array(np.full(n, 2012, dtype=np.int32))
    cols["gender"] = pa.array(rng.choice(["Men", "Women"], n))
    cols["hybrid_source"] = pa.array(["text+image"] * n)  # every row has both vectors
    for col in INDEX_KINDS.values():
        cols[col] = pa.array(list(vecs), pa.list_(pa.float64()))
    write_deltalake(path, pa.table(cols), mode="append",
                    configuration={"delta.enableChangeDataFeed": "true"})
    return vecs


class ThreadServer:
    """An ASGI app served by uvicorn in a thread, on a port the server binds itself (port 0, read back)."""

    def __init__(self, app, timeout_s: float = 30, **settings):
        import socket
        import threading
        import time

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **settings))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            raise RuntimeError(f"uvicorn did not start on {self.url} within {timeout_s}s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
