"""Tests: the Databricks Vector Search backend and create_indexes job, against a loopback REST stand-in."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from fashion_catalog.conf import load_config
from fashion_catalog.indexes.databricks import DatabricksStore as DatabricksVectorIndex
from fashion_catalog.indexes.filters import FilterError
from fashion_catalog.indexes.local import METADATA_COLUMNS, LocalIndexStore
from fashion_catalog.vectorsearch import client as databricks_index
from fashion_catalog.vectorsearch.client import client_class
from fashion_catalog.vectorsearch.lifecycle import create_configured_indexes
from tests.helpers import write_synthetic_embeddings
from tests.vector_search_standin import VectorSearchStandIn

SOURCE = "main.fashion_demo.product_embeddings_multimodal"  # the databricks profile's tables.embeddings


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("vs") / "emb")
    vecs = write_synthetic_embeddings(path, 200, seed=1)
    store = LocalIndexStore(path)
    store.sync()
    server = VectorSearchStandIn(tables={SOURCE: path})
    yield server, store, vecs
    server.close()


@pytest.fixture
def env(standin, monkeypatch):
    server, store, vecs = standin
    monkeypatch.setenv("DATABRICKS_HOST", server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", server.token)
    config = load_config("databricks", overrides={"vector_search.pipeline_type": "CONTINUOUS"})
    return server, store, vecs, config


def test_create_indexes_job_creates_three_delta_sync_indexes_and_waits(env):
    server, _, _, config = env
    states = create_configured_indexes(config, timeout_s=10)
    assert states == {name: True for name in config.vector_search.indexes.values()}
    created = {b["name"]: b for m, p, b in server.requests if m == "POST" and p.endswith("/indexes")}
    assert set(created) == {"main.fashion_demo.vs_image_search", "main.fashion_demo.vs_text_search",
                            "main.fashion_demo.vs_hybrid_search"}
    spec = created["main.fashion_demo.vs_image_search"]
    assert spec["primary_key"] == "product_id"
    sync = spec["delta_sync_index_spec"]
    assert sync["source_table"] == "main.fashion_demo.product_embeddings_multimodal"
    assert sync["pipeline_type"] == "CONTINUOUS"
    assert sync["embedding_vector_columns"] == [{"name": "image_embedding", "embedding_dimension": 512}]
    assert set(METADATA_COLUMNS) <= set(sync["columns_to_sync"]) and "description" in sync["columns_to_sync"]
    # Running it again creates nothing new.
    before = len([r for r in server.requests if r[0] == "POST"])
    create_configured_indexes(config, timeout_s=10)
    assert len([r for r in server.requests if r[0] == "POST"]) == before


def test_queries_match_the_local_backend_with_all_columns_and_filters(env):
    server, store, vecs, config = env
    create_configured_indexes(config, timeout_s=10)
    remote = DatabricksVectorIndex(config.vector_search.endpoint_name, config.vector_search.indexes)
    filters = {"gender": "Women", "price <": 150}
    got = remote.search("text", vecs[3], 5, filters)
    want = store.search("text", vecs[3], 5, filters)
    assert [r["product_id"] for r in got] == [r["product_id"] for r in want]
    assert [round(r["score"], 5) for r in got] == [round(r["score"], 5) for r in want]
    assert set(METADATA_COLUMNS) <= set(got[0]) and all(r["gender"] == "Women" for r in got)
    query = [b for m, p, b in server.requests if p.endswith("/query")][-1]
    assert query["columns"] == METADATA_COLUMNS and '"price <": 150' in query["filters_json"]
    assert remote.get(7)["product_id"] == 7


def test_keyword_and_fused_text_search_map_to_full_text_and_hybrid_queries(env):
    from fashion_catalog.search.service import SearchService
    from fashion_catalog.search.text_search import FusionSettings, TextSearch

    server, store, vecs, config = env
    create_configured_indexes(config, timeout_s=10)
    remote = DatabricksVectorIndex(config.vector_search.endpoint_name, config.vector_search.indexes)
    filters = {"gender": "Women"}
    got = remote.keyword_search("product 12", 5, filters)
    want = store.keyword_search("product 12", 5, filters)
    assert [r["product_id"] for r in got] == [r["product_id"] for r in want] and got
    query = [b for m, p, b in server.requests if p.endswith("/query")][-1]
    assert query["query_type"] == "FULL_TEXT" and query["query_text"] == "product 12"
    assert query["query_columns"] == ["product_display_name", "description"] and "query_vector" not in query

    class Queries:  # the synthetic rows' vector 12 stands for the query's CLIP vector
        def check_text(self, text):
            return text

        def text_embedding(self, text):
            return vecs[12]

    text = TextSearch(SearchService(remote, 100), Queries(), FusionSettings(), understand=False)
    before = len(server.requests)
    found = text.run("product 12", 5, mode="fused")
    hybrid = [b for m, p, b in server.requests[before:] if p.endswith("/query")]
    assert sorted(p.rsplit("/", 2)[-2] for m, p, b in server.requests[before:] if p.endswith("/query")) == [
        "main.fashion_demo.vs_image_search", "main.fashion_demo.vs_text_search"]
    assert all(b["query_type"] == "HYBRID" and b["query_text"] == "product 12" and len(b["query_vector"]) == 512
               for b in hybrid)
    assert found.mode == "fused" and found.results[0]["product_id"] == 12
    assert set(found.results[0]["ranks"]) == {"image", "text"}


def test_bad_filters_fail_before_the_network_with_the_same_error(env):
    server, _, vecs, config = env
    create_configured_indexes(config, timeout_s=10)
    remote = DatabricksVectorIndex(config.vector_search.endpoint_name, config.vector_search.indexes)
    n = len(server.requests)
    with pytest.raises(FilterError, match="invalid filter key 'price <= '"):
        remote.search("image", vecs[0], 5, {"price <= ": 50})
    assert len(server.requests) == n


def test_both_client_packages_work(env, monkeypatch):
    server, _, vecs, config = env
    from databricks.ai_search.client import AISearchClient
    from databricks.vector_search.client import VectorSearchClient

    assert client_class() is AISearchClient
    monkeypatch.setitem(sys.modules, "databricks.ai_search.client", None)  # only the legacy package "installed"
    assert client_class() is VectorSearchClient
    create_configured_indexes(config, timeout_s=10)
    legacy = DatabricksVectorIndex(config.vector_search.endpoint_name, config.vector_search.indexes,
                                   client=databricks_index.make_client())
    assert legacy.search("hybrid", vecs[1], 1)[0]["product_id"] == 1


def test_missing_credentials_are_reported(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.invalid")
    for var in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID"):
        databricks_index.make_client()


def test_create_indexes_creates_the_endpoint_when_missing_and_waits_with_the_clients_helpers(env):
    server, _, _, config = env
    server.endpoints.pop(config.vector_search.endpoint_name, None)
    create_configured_indexes(config, timeout_s=10)
    created = [b for m, p, b in server.requests if m == "POST" and p == "/api/2.0/vector-search/endpoints"]
    assert created and created[-1] == {"name": config.vector_search.endpoint_name, "endpoint_type": "STANDARD"}
    # wait_until_ready read each index's detailed_state.
    described = {p.rsplit("/", 1)[-1] for m, p, _ in server.requests if m == "GET" and "/indexes/" in p
                 and not p.endswith("/query")}
    assert set(config.vector_search.indexes.values()) <= described


def test_scores_are_cosine_on_both_backends_though_vector_search_returns_l2_scores(env):
    server, store, vecs, config = env
    create_configured_indexes(config, timeout_s=10)
    remote = DatabricksVectorIndex(config.vector_search.endpoint_name, config.vector_search.indexes)
    raw = [b for m, p, b in server.requests if p.endswith("/query")]
    got = remote.search("hybrid", vecs[5], 3)
    assert got[0]["product_id"] == 5 and abs(got[0]["score"] - 1.0) < 1e-6
    for row in got:
        assert abs(row["score"] - float(np.dot(vecs[5], vecs[row["product_id"]]))) < 1e-5
    assert len([p for m, p, b in server.requests if p.endswith("/query")]) == len(raw) + 1


def _table_with_failed_images(path: str, n: int = 30, failed: tuple[int, ...] = (3, 7, 11)) -> np.ndarray:
    """A multimodal table where some products have no image vector (their image failed)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from fashion_catalog.schemas import METADATA_COLUMNS

    rng = np.random.default_rng(4)
    vecs = rng.normal(size=(n, 512))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cols = {c: pa.array([None] * n, pa.string()) for c in METADATA_COLUMNS}
    cols["product_id"] = pa.array(np.arange(n, dtype=np.int32))
    cols["price"] = pa.array(rng.uniform(5, 300, n))
    cols["year"] = pa.array(np.full(n, 2012, dtype=np.int32))
    cols["hybrid_source"] = pa.array(["text_only" if i in failed else "text+image" for i in range(n)])
    cols["embedding_error"] = pa.array(["IMAGE_MISSING" if i in failed else None for i in range(n)])
    image = [None if i in failed else list(vecs[i]) for i in range(n)]
    cols["image_embedding"] = pa.array(image, pa.list_(pa.float64()))
    cols["text_embedding"] = pa.array(list(vecs), pa.list_(pa.float64()))
    cols["hybrid_embedding"] = pa.array(list(vecs), pa.list_(pa.float64()))
    cols["description"] = pa.array([f"product {i}" for i in range(n)])
    write_deltalake(path, pa.table(cols), configuration={"delta.enableChangeDataFeed": "true"})
    return vecs


@pytest.mark.parametrize("null_vectors", ["skip", "keep"])
def test_rows_without_an_image_vector_never_come_back_from_the_image_index(tmp_path, monkeypatch, null_vectors):
    """The docs do not say what Delta Sync does with a NULL vector: skip the row, or index it with no vector.
    Queries of the image and text indexes filter on hybrid_source, so either way no such row comes back."""
    path = str(tmp_path / "emb")
    vecs = _table_with_failed_images(path)
    store = LocalIndexStore(path)
    store.sync()
    server = VectorSearchStandIn(tables={SOURCE: path}, null_vectors=null_vectors)
    try:
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", server.token)
        config = load_config("databricks", overrides={"model.dimension": 512})
        create_configured_indexes(config, timeout_s=10)
        remote = DatabricksVectorIndex(config.vector_search.endpoint_name, config.vector_search.indexes)
        for backend in (store, remote):
            # The query IS a failed product's text vector: it must not come back from the image index.
            image_hits = [r["product_id"] for r in backend.search("image", vecs[3], 30)]
            assert 3 not in image_hits and 7 not in image_hits and len(image_hits) == 27
            assert backend.search("text", vecs[3], 1)[0]["product_id"] == 3
            assert backend.vector(3, "image") is None and backend.vector(4, "image") is not None
        image_queries = [b for m, p, b in server.requests if p.endswith("/query") and "image_search" in p]
        assert all('"hybrid_source"' in b["filters_json"] for b in image_queries)
    finally:
        server.close()


def test_the_sync_trigger_is_not_idle_while_a_round_runs_and_retries_a_failed_one():
    """wait_idle must not return in the middle of a round (CI once saw it return before the failure landed)."""
    import threading

    from fashion_catalog.vectorsearch.sync import IndexSyncTrigger

    release, calls = threading.Event(), []

    class Index:
        def sync(self):
            calls.append(1)
            release.wait(5)
            if len(calls) == 1:
                raise RuntimeError("sync failed")

    trigger = IndexSyncTrigger(lambda: [Index()], min_interval_s=0.0)
    trigger.request()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls and not trigger.wait_idle(0.3)  # the first round is still running
    release.set()
    assert trigger.wait_idle(10)
    assert (trigger.failures, trigger.last_error, len(calls)) == (1, None, 2)


def test_the_stream_syncs_triggered_indexes_after_batches_that_wrote(spark, workspace, tmp_path, monkeypatch, request):
    from fashion_catalog.streaming.runner import Embedder
    from tests.helpers import append_products, draw_image, product, stream_once

    write_synthetic_embeddings(str(tmp_path / "emb"), 20, seed=2)
    server = VectorSearchStandIn(tables={SOURCE: str(tmp_path / "emb")})  # TRIGGERED indexes of its own
    request.addfinalizer(server.close)
    monkeypatch.setenv("DATABRICKS_HOST", server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", server.token)
    vs = load_config("databricks").vector_search
    create_configured_indexes(load_config("databricks"), timeout_s=10)
    config = workspace.config(vector_search__sync_from_stream=True, vector_search__pipeline_type="TRIGGERED",
                              vector_search__min_sync_interval_s=0.5, vector_search__indexes=vs.indexes,
                              vector_search__endpoint_name=vs.endpoint_name)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(1, imgs[0])])
    embedder = Embedder(spark, config)
    before = len(server.syncs)
    server.fail_syncs = 1  # the first sync round fails: it is retried, the stream goes on
    stream_once(embedder)
    trigger = embedder.processor.tools.sync_trigger
    assert trigger.wait_idle(30), trigger.last_error
    assert trigger.failures == 1 and trigger.last_error is None
    assert sorted(server.syncs[before:][-3:]) == sorted(vs.indexes.values())  # the retry synced all three
    # A batch that writes nothing asks for no sync.
    rounds = trigger.rounds
    stream_once(embedder)
    assert trigger.rounds == rounds


def test_volume_photos_are_read_through_the_files_api_and_only_under_the_allowed_roots(tmp_path, monkeypatch):
    """files.get_metadata + files.download for /Volumes paths; nothing outside images.allowed_roots is requested."""
    from fashion_catalog.encoders.images import ImageError, ImageLimits
    from fashion_catalog.indexes.images import ImageReader
    from fashion_catalog.indexes.workspace import VolumeFiles, workspace_client
    from tests.helpers import draw_image
    from tests.vector_search_standin import WorkspaceStandIn

    raw, secret = tmp_path / "raw", tmp_path / "secret"
    draw_image(str(raw / "images" / "1.jpg"), 1)
    secret.mkdir()
    (secret / "token.txt").write_bytes(b"do not serve")
    server = WorkspaceStandIn(volumes={"/Volumes/main/fashion_demo/raw": str(raw),
                                                   "/Volumes/main/hr/secret": str(secret)})
    try:
        monkeypatch.setenv("DATABRICKS_TOKEN", server.token)
        limits = ImageLimits(max_bytes=1_000_000, max_pixels=10_000_000,
                             allowed_roots=("/Volumes/main/fashion_demo/raw",))
        reader = ImageReader(limits, volumes=VolumeFiles(workspace_client(server.url)))
        assert reader.read("/Volumes/main/fashion_demo/raw/images/1.jpg") == (raw / "images" / "1.jpg").read_bytes()
        before = len(server.requests)
        for outside in ("/Volumes/main/hr/secret/token.txt",
                        "/Volumes/main/fashion_demo/raw/../../hr/secret/token.txt"):
            with pytest.raises(ImageError) as err:
                reader.read(outside)
            assert err.value.code == "IMAGE_PATH_NOT_ALLOWED"
        assert len(server.requests) == before  # refused before any request
        with pytest.raises(ImageError) as err:
            reader.read("/Volumes/main/fashion_demo/raw/images/404.jpg")
        assert err.value.code == "IMAGE_UNREADABLE"
        small = ImageReader(ImageLimits(max_bytes=100, max_pixels=10_000_000,
                                        allowed_roots=("/Volumes/main/fashion_demo/raw",)),
                            volumes=VolumeFiles(workspace_client(server.url)))
        with pytest.raises(ImageError) as err:
            small.read("/Volumes/main/fashion_demo/raw/images/1.jpg")
        assert err.value.code == "IMAGE_TOO_LARGE"
    finally:
        server.close()


def test_a_configured_sync_without_a_search_client_stops_at_start(monkeypatch):
    from fashion_catalog.conf import load_config
    from fashion_catalog.vectorsearch import client, sync

    config = load_config("databricks")
    assert config.vector_search.sync_from_stream and config.vector_search.pipeline_type == "TRIGGERED"

    def missing():
        raise ImportError("No module named 'databricks.ai_search'")

    monkeypatch.setattr(client, "client_class", missing)
    with pytest.raises(client.VectorSearchConfigError, match="pip install databricks-ai-search"):
        sync.require_sync_client(config)
    sync.require_sync_client(load_config("databricks", overrides={"vector_search.sync_from_stream": False}))


def test_the_standin_imports_nothing_from_the_product():
    """The stand-in is written from the REST documentation: sharing the product's code would let a wrong
    assumption pass on both sides."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent / "vector_search_standin.py").read_text()
    assert not re.findall(r"^\s*(?:from|import)\s+(?:fashion_catalog|tests)\b", text, re.M)
    assert "fashion_catalog" not in text.replace("``fashion_catalog``", "")


FILTER_ROWS = [
    {"product_id": 1, "gender": "Men", "price": 20.0, "base_color": "Blue", "season": "Summer",
     "product_display_name": "Blue Shirt"},
    {"product_id": 2, "gender": "Women", "price": 55.5, "base_color": "Red", "season": None,
     "product_display_name": "Red Dress"},
    {"product_id": 3, "gender": "Women", "price": 120.0, "base_color": None, "season": "Winter",
     "product_display_name": "Wool Coat"},
    {"product_id": 4, "gender": "Men", "price": 49.99, "base_color": "Red", "season": "Fall",
     "product_display_name": "O'Neill Shirt"},
]
FILTER_CASES = [
    {"gender": "Men"}, {"gender": ["Men", "Women"], "price <": 50}, {"price >=": 55.5, "price <=": 120},
    {"base_color NOT": "Red"}, {"season": None}, {"season NOT": ["Summer", None]}, {"base_color": ["Red", None]},
    {"product_display_name LIKE": "Shirt"}, {"gender OR base_color": ["Women", "Blue"]},
    {"product_display_name": "O'Neill Shirt"}, {"price >": 20, "gender NOT": "Women"}, {},
]


@pytest.mark.parametrize("filters", FILTER_CASES, ids=[str(f) for f in FILTER_CASES])
def test_both_filter_dialects_keep_the_rows_the_local_index_keeps(filters):
    """The product's dict filters and the SQL-like strings it generates for storage-optimized endpoints,
    evaluated by the stand-in's own parsers, keep exactly the rows the local index keeps."""
    import pandas as pd

    from fashion_catalog.indexes.filters import evaluate, parse_filters, sql_filter
    from fashion_catalog.schemas import FILTER_COLUMNS
    from tests.vector_search_standin import _dict_predicate, sql_predicate

    columns = set(FILTER_ROWS[0])
    local = [r["product_id"] for r, keep in zip(FILTER_ROWS, evaluate(parse_filters(filters, FILTER_COLUMNS),
                                                                      pd.DataFrame(FILTER_ROWS)), strict=True)
             if keep]
    text = sql_filter(filters, FILTER_COLUMNS)
    storage = [r["product_id"] for r in FILTER_ROWS if text is None or sql_predicate(text, columns)(r)]
    standard = [r["product_id"] for r in FILTER_ROWS if _dict_predicate(filters, columns)(r)]
    assert local == storage == standard, text
