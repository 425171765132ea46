"""Tests: the Databricks Vector Search backend and create_indexes job, against a loopback REST stand-in."""

from __future__ import annotations

import sys

import pytest

from conf import load_config
from search import databricks_index
from search.databricks_index import DatabricksVectorIndex, client_class, create_configured_indexes
from search.filters import FilterError
from search.local_index import METADATA_COLUMNS, LocalIndexStore
from tests.helpers import write_synthetic_embeddings
from tests.vector_search_standin import VectorSearchStandIn


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("vs") / "emb")
    vecs = write_synthetic_embeddings(path, 200, seed=1)
    store = LocalIndexStore(path)
    store.sync()
    server = VectorSearchStandIn(store)
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
    states = create_configured_indexes(config, poll_s=0.01, timeout_s=10)
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
    assert set(METADATA_COLUMNS) <= set(sync["columns_to_sync"])
    # Running it again creates nothing new.
    before = len([r for r in server.requests if r[0] == "POST"])
    create_configured_indexes(config, poll_s=0.01, timeout_s=10)
    assert len([r for r in server.requests if r[0] == "POST"]) == before


def test_queries_match_the_local_backend_with_all_columns_and_filters(env):
    server, store, vecs, config = env
    create_configured_indexes(config, poll_s=0.01, timeout_s=10)
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


def test_bad_filters_fail_before_the_network_with_the_same_error(env):
    server, _, vecs, config = env
    create_configured_indexes(config, poll_s=0.01, timeout_s=10)
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
    create_configured_indexes(config, poll_s=0.01, timeout_s=10)
    legacy = DatabricksVectorIndex(config.vector_search.endpoint_name, config.vector_search.indexes,
                                   client=databricks_index.make_client())
    assert legacy.search("hybrid", vecs[1], 1)[0]["product_id"] == 1


def test_missing_credentials_are_reported(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.invalid")
    for var in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID"):
        databricks_index.make_client()
