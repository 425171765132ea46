"""The search service's store on Databricks: three Vector Search Delta Sync indexes, a SQL warehouse, Volumes.

* Search, product rows and stored vectors come from the indexes (every metadata column and the
  vector column are synced with them). ``get_index`` is always called with keyword arguments (a
  positional call is what produced "Index name must be specified"); filters are validated with
  the local index's parser before anything leaves the process.
* ``score`` is the cosine similarity, as on the local backend: Vector Search ranks by L2
  distance and returns ``1 / (1 + d²)``; for unit vectors ``d² = 2 - 2 cos``, so
  ``cos = (3 - 1/score) / 2``.
* Rows without a vector of an index (a failed image has none) never come back from it: queries
  of the image index ask for ``hybrid_source`` in (text+image, image_only), of the text index for
  (text+image, text_only), whatever the index holds for such rows.
* Keyword search is Vector Search's ``query_type="FULL_TEXT"`` over the name and description (the
  text index syncs both); the fused mode of :mod:`search.text_search` asks each vector index for
  its ``query_type="HYBRID"`` ranking (query vector + query text). Their ``score`` is Vector
  Search's own (no cosine).
* Facets (distinct values) come from the embeddings table through a SQL warehouse, cached for a minute.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from fashion_catalog.encoders.vectors import HYBRID_BOTH, HYBRID_IMAGE_ONLY, HYBRID_TEXT_ONLY
from fashion_catalog.indexes.brands import brand_counts_sql, merge_spellings
from fashion_catalog.indexes.filters import FilterError, parse_filters, raw_filters, sql_filter
from fashion_catalog.schemas import FILTER_COLUMNS, INDEX_KINDS, KEYWORD_COLUMNS, METADATA_COLUMNS
from fashion_catalog.vectorsearch.client import make_client

log = logging.getLogger(__name__)

# Which rows hold a vector of each index (hybrid is never null: it falls back to the text vector).
HAS_VECTOR = {"image": [HYBRID_BOTH, HYBRID_IMAGE_ONLY], "text": [HYBRID_BOTH, HYBRID_TEXT_ONLY]}
FACET_CACHE_S = 60.0
BRANDS_KEY = " brands"  # the facet cache's entry for brand counts (no column has this name)
# Detailed index states in which every committed change has been applied.
UP_TO_DATE_STATES = ("ONLINE_NO_PENDING_UPDATE", "ONLINE")


def cosine_from_score(score: float) -> float:
    """Vector Search's ``1 / (1 + d²)`` (L2 distance on unit vectors) as the cosine similarity."""
    return (3.0 - 1.0 / float(score)) / 2.0 if score else -1.0


def rows_from_response(response: dict) -> list[dict]:
    """Turn ``manifest.columns`` + ``result.data_array`` into dicts (the score is the last column)."""
    columns = [c["name"] for c in response.get("manifest", {}).get("columns", [])]
    data = response.get("result", {}).get("data_array") or []
    return [dict(zip(columns, row, strict=True)) for row in data]


def _with_vector_filter(kind: str, filters: dict | None) -> dict:
    out = dict(filters or {})
    if kind in HAS_VECTOR and "hybrid_source" not in out:
        out["hybrid_source"] = HAS_VECTOR[kind]
    return out


def endpoint_filters(kind: str, filters, endpoint_type: str) -> dict | str | None:
    """The request's filters (plus the vector-presence filter of ``kind``) in the endpoint type's dialect: the dict
    of STANDARD endpoints, or the SQL-like string of STORAGE_OPTIMIZED ones (the client sends a str as
    ``filter_string``; https://docs.databricks.com/aws/en/vector-search/vector-search-filtering-guide)."""
    combined = _with_vector_filter(kind, raw_filters(filters))
    if endpoint_type == "STORAGE_OPTIMIZED":
        return sql_filter(combined, FILTER_COLUMNS)
    return combined


def _index_lag(status: dict, service_sync_at: float | None) -> dict:
    """How far an index is behind: the source version it has applied and the seconds since it last synced.

    The API reference documents neither; triggered indexes report ``triggered_update_status``
    (``last_processed_commit_version`` / ``_timestamp``, ms) in practice, so they are read when present. Without
    them the age is that of the service's own last sync call (``None`` before the first)."""
    update = status.get("triggered_update_status") or {}
    version, stamp_ms = update.get("last_processed_commit_version"), update.get("last_processed_commit_timestamp")
    synced_at = float(stamp_ms) / 1000.0 if stamp_ms else service_sync_at
    return {"indexed_version": version, "last_synced_at": synced_at,
            "seconds_since_sync": None if synced_at is None else round(max(0.0, time.time() - synced_at), 1)}


class DatabricksStore:
    """The :class:`indexes.store.IndexStore` of the Databricks backend, with :class:`indexes.store.HybridQueries`
    (fused text search uses Vector Search's HYBRID query per index)."""

    def __init__(self, endpoint_name: str, index_names: dict[str, str], client=None, dimension: int = 512,
                 table_name: str | None = None, warehouse=None, endpoint_type: str = "STANDARD"):
        self.endpoint_name = endpoint_name
        self.endpoint_type = endpoint_type
        self.index_names = index_names
        self.client = client or make_client()
        self.dim = dimension
        self.table_name = table_name
        self.warehouse = warehouse
        self._indexes: dict[str, object] = {}
        self._facets: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()
        self.last_sync_at: float | None = None
        self.last_sync_error: str | None = None

    def _index(self, kind: str):
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index {kind!r}; one of {sorted(INDEX_KINDS)}")
        if kind not in self._indexes:
            self._indexes[kind] = self.client.get_index(endpoint_name=self.endpoint_name,
                                                        index_name=self.index_names[kind])
        return self._indexes[kind]

    def _vector(self, query) -> list[float]:
        """A query vector as Vector Search takes it, checked against the index dimension before any call."""
        vector = [float(x) for x in np.asarray(query, dtype=np.float64).reshape(-1)]
        if len(vector) != self.dim:
            raise ValueError(f"query has {len(vector)} dimensions, the index {self.dim}")
        return vector

    def _query(self, kind: str, query, k: int, filters: dict | None, columns: list[str]) -> list[dict]:
        response = self._index(kind).similarity_search(
            query_vector=self._vector(query), columns=columns,
            filters=endpoint_filters(kind, filters, self.endpoint_type), num_results=k)
        rows = rows_from_response(response)
        for row in rows:
            row["score"] = cosine_from_score(row.pop("score", 0.0))
        return rows

    def _text_query(self, kind: str, query_type: str, text: str, k: int, filters: dict | None,
                    vector=None) -> list[dict]:
        parse_filters(filters, FILTER_COLUMNS)
        extra = {} if vector is None else {"query_vector": self._vector(vector)}
        response = self._index(kind).similarity_search(
            query_text=text, query_type=query_type, query_columns=KEYWORD_COLUMNS, columns=METADATA_COLUMNS,
            filters=endpoint_filters(kind, filters, self.endpoint_type), num_results=k, **extra)
        return rows_from_response(response)

    def keyword_search(self, query: str, k: int = 10, filters: dict | None = None,
                       phrases: list[str] | tuple = ()) -> list[dict]:
        """Vector Search's full-text (BM25) query over name and description, on the text index."""
        text = " ".join([query, *phrases]).strip()
        return self._text_query("text", "FULL_TEXT", text, k, filters) if text else []

    def hybrid_search(self, kind: str, vector, query: str, k: int = 10, filters: dict | None = None,
                      phrases: list[str] | tuple = ()) -> list[dict]:
        """Vector Search's hybrid query on index ``kind``: its vector and keyword rankings, fused by the service."""
        return self._text_query(kind, "HYBRID", " ".join([query, *phrases]).strip(), k, filters, vector)

    # -- the store interface -------------------------------------------------------------------
    def search(self, kind: str, query, k: int = 10, filters: dict | None = None, exact: bool | None = None):
        parse_filters(filters, FILTER_COLUMNS)  # same errors as the local backend, before any network call
        return self._query(kind, query, k, filters, METADATA_COLUMNS)

    def get(self, product_id: int) -> dict | None:
        rows = self._query("hybrid", np.full(self.dim, 1.0 / np.sqrt(self.dim)), 1, {"product_id": int(product_id)},
                           METADATA_COLUMNS)
        if not rows:
            return None
        rows[0].pop("score", None)
        return rows[0]

    def vector(self, product_id: int, kind: str) -> np.ndarray | None:
        column = INDEX_KINDS[kind]
        rows = self._query(kind, np.full(self.dim, 1.0 / np.sqrt(self.dim)), 1, {"product_id": int(product_id)},
                           METADATA_COLUMNS + [column])
        if not rows or rows[0].get(column) is None:
            return None
        return np.asarray(rows[0][column], dtype=np.float32)

    def distinct_values(self, column: str, limit: int = 200) -> list[str]:
        """The most frequent values of a metadata column, read through the SQL warehouse (cached a minute)."""
        if column not in FILTER_COLUMNS:
            raise FilterError(f"unknown column {column!r}; known: {sorted(FILTER_COLUMNS)}")
        if self.warehouse is None or self.table_name is None:
            return []
        cached = self._facets.get(column)
        if cached and time.time() - cached[0] < FACET_CACHE_S:
            return cached[1][:limit]
        rows = self.warehouse.query(
            f"SELECT CAST(`{column}` AS STRING) AS value, count(*) AS n FROM {self.table_name} "
            f"WHERE `{column}` IS NOT NULL GROUP BY 1 ORDER BY n DESC, value LIMIT {int(limit)}")
        values = sorted(str(r["value"]) for r in rows)
        self._facets[column] = (time.time(), values)
        return values

    def brand_counts(self) -> dict[str, int]:
        """The brands of the table's display names, counted by the SQL warehouse (cached a minute)."""
        if self.warehouse is None or self.table_name is None:
            return {}
        cached = self._facets.get(BRANDS_KEY)
        if cached and time.time() - cached[0] < FACET_CACHE_S:
            return dict(cached[1])
        rows = self.warehouse.query(brand_counts_sql(self.table_name))
        counts = merge_spellings((r["brand"], r["n"]) for r in rows)
        self._facets[BRANDS_KEY] = (time.time(), list(counts.items()))
        return counts

    def sync(self) -> dict:
        """Ask each TRIGGERED index to sync now (the service's refresh); errors are kept for /health."""
        try:
            for kind in INDEX_KINDS:
                self._index(kind).sync()
            self.last_sync_error = None
        except Exception as exc:  # noqa: BLE001 - reported by /health; queries keep working
            self.last_sync_error = f"{exc.__class__.__name__}: {exc}"
            log.warning("Vector Search sync failed: %s", self.last_sync_error)
        self.last_sync_at = time.time()
        self._facets.clear()
        return self.health()

    @property
    def synced_version(self) -> int | None:
        return None

    def health(self) -> dict:
        """Each index's readiness, rows and state; lag 0 when every index has applied every change."""
        indexes = {}
        for kind in INDEX_KINDS:
            try:
                status = self._index(kind).describe().get("status", {})
            except Exception as exc:  # noqa: BLE001 - the endpoint being down is what health reports
                status = {"ready": False, "message": f"{exc.__class__.__name__}: {exc}"}
            indexes[kind] = {"ready": bool(status.get("ready")), "rows": status.get("indexed_row_count"),
                             "state": status.get("detailed_state"), "message": status.get("message"),
                             **_index_lag(status, self.last_sync_at)}
        states = [i["state"] for i in indexes.values()]
        up_to_date = all(state in UP_TO_DATE_STATES for state in states)
        return {"backend": "databricks", "ready": all(i["ready"] for i in indexes.values()),
                "rows": indexes["hybrid"]["rows"], "lag_versions": 0 if up_to_date else None,
                "synced_version": None, "table_version": None, "last_sync_at": self.last_sync_at,
                "last_sync_error": self.last_sync_error, "indexes": indexes}
