"""Databricks Vector Search backend: the three Delta Sync indexes, created and queried.

The client comes from ``databricks-ai-search`` (``databricks.ai_search``) or, for
older installs, ``databricks-vectorsearch`` (``databricks.vector_search``).
``get_index`` is always called with keyword arguments (a positional call is what
produced "Index name must be specified"), every query asks for all metadata
columns (which is why the indexes sync them all), and filters are validated with
the same parser as the local index before they leave the process.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from schemas import FILTER_COLUMNS, INDEX_KINDS, METADATA_COLUMNS
from search.filters import parse_filters

log = logging.getLogger(__name__)


def client_class():
    """The Vector Search client class, from whichever package is installed."""
    try:
        from databricks.ai_search.client import AISearchClient

        return AISearchClient
    except ImportError:
        from databricks.vector_search.client import VectorSearchClient

        return VectorSearchClient


def make_client(workspace_url: str | None = None):
    """Client authenticated by token (DATABRICKS_TOKEN) or service principal (DATABRICKS_CLIENT_ID/SECRET)."""
    url = workspace_url or os.environ.get("DATABRICKS_HOST")
    if not url:
        raise RuntimeError("set DATABRICKS_HOST (or vector_search.workspace_url) for the Databricks backend")
    url = url if url.startswith("http") else f"https://{url}"
    token = os.environ.get("DATABRICKS_TOKEN")
    client_id, secret = os.environ.get("DATABRICKS_CLIENT_ID"), os.environ.get("DATABRICKS_CLIENT_SECRET")
    cls = client_class()
    if token:
        return cls(workspace_url=url, personal_access_token=token, disable_notice=True)
    if client_id and secret:
        return cls(workspace_url=url, service_principal_client_id=client_id,
                   service_principal_client_secret=secret, disable_notice=True)
    raise RuntimeError("set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET")


def rows_from_response(response: dict) -> list[dict]:
    """Turn ``manifest.columns`` + ``result.data_array`` into dicts (the score is the last column)."""
    columns = [c["name"] for c in response.get("manifest", {}).get("columns", [])]
    data = response.get("result", {}).get("data_array") or []
    return [dict(zip(columns, row, strict=True)) for row in data]


class DatabricksVectorIndex:
    """Same ``search`` / ``get`` interface as the local store, over Databricks Delta Sync indexes."""

    def __init__(self, endpoint_name: str, index_names: dict[str, str], client=None, dimension: int = 512):
        self.endpoint_name = endpoint_name
        self.index_names = index_names
        self.client = client or make_client()
        self.dim = dimension
        self._indexes: dict[str, object] = {}

    def _index(self, kind: str):
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index {kind!r}; one of {sorted(INDEX_KINDS)}")
        if kind not in self._indexes:
            self._indexes[kind] = self.client.get_index(endpoint_name=self.endpoint_name,
                                                        index_name=self.index_names[kind])
        return self._indexes[kind]

    def search(self, kind: str, query, k: int = 10, filters: dict | None = None, exact: bool | None = None):
        parse_filters(filters, FILTER_COLUMNS)  # same errors as the local backend, before any network call
        vector = [float(x) for x in np.asarray(query, dtype=np.float64).reshape(-1)]
        response = self._index(kind).similarity_search(
            query_vector=vector, columns=METADATA_COLUMNS, filters=filters or None, num_results=k)
        rows = rows_from_response(response)
        for row in rows:
            row["score"] = float(row.pop("score", row.get("score", 0.0)))
        return rows

    def get(self, product_id: int) -> dict | None:
        rows = self.search("hybrid", np.full(self.dim, 1.0 / np.sqrt(self.dim)), 1, {"product_id": int(product_id)})
        if not rows:
            return None
        rows[0].pop("score", None)
        return rows[0]

    def status(self) -> dict:
        out = {}
        for kind in INDEX_KINDS:
            st = self._index(kind).describe().get("status", {})
            out[kind] = {"ready": st.get("ready"), "indexed_row_count": st.get("indexed_row_count"),
                         "message": st.get("message")}
        return out


def create_indexes(client, endpoint_name: str, index_names: dict[str, str], source_table: str,
                   pipeline_type: str, dimension: int, timeout_s: float = 3600, poll_s: float = 10) -> dict:
    """Create (if missing) the image/text/hybrid Delta Sync indexes with self-managed embeddings; wait until ready."""
    existing = set()
    try:
        for item in client.list_indexes(endpoint_name).get("vector_indexes", []) or []:
            existing.add(item.get("name"))
    except Exception:  # noqa: BLE001 - listing is only an optimisation
        log.debug("could not list indexes on %s", endpoint_name, exc_info=True)
    for kind, column in INDEX_KINDS.items():
        name = index_names[kind]
        if name in existing:
            log.info("index %s exists", name)
            continue
        log.info("creating Delta Sync index %s on %s (%s, %s)", name, source_table, column, pipeline_type)
        client.create_delta_sync_index(
            endpoint_name=endpoint_name, index_name=name, primary_key="product_id",
            source_table_name=source_table, pipeline_type=pipeline_type, embedding_dimension=dimension,
            embedding_vector_column=column, columns_to_sync=METADATA_COLUMNS + [column])
    deadline = time.time() + timeout_s
    states = {}
    while True:
        states = {}
        for kind in INDEX_KINDS:
            index = client.get_index(endpoint_name=endpoint_name, index_name=index_names[kind])
            states[index_names[kind]] = bool(index.describe().get("status", {}).get("ready"))
        if all(states.values()) or time.time() > deadline:
            break
        time.sleep(poll_s)
    if not all(states.values()):
        raise TimeoutError(f"indexes not ready after {timeout_s}s: {states}")
    return states


def create_configured_indexes(config, client=None, timeout_s: float = 3600, poll_s: float = 10) -> dict:
    """Create the three indexes ``config.vector_search`` names over ``tables.embeddings`` and wait until ready."""
    from conf import ConfigError

    ref = config.tables.embeddings
    if not ref.name:
        raise ConfigError("Delta Sync indexes need a Unity Catalog table: use the databricks profile "
                          "(tables.embeddings.name), not a path-based table")
    client = client or make_client(config.vector_search.workspace_url)
    vs = config.vector_search
    return create_indexes(client, vs.endpoint_name, vs.indexes, ref.name, vs.pipeline_type,
                          config.model.dimension, timeout_s, poll_s)
