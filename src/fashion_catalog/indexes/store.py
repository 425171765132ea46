"""The interface every search backend implements, so the service runs the same routes on both.

* :class:`indexes.local.LocalIndexStore` — the embedded index that follows the Delta table;
* :class:`indexes.databricks.DatabricksStore` — Databricks Vector Search Delta Sync indexes,
  a SQL warehouse for facets, the Files API for images.

What only some backends can do is a capability declared here as a runtime-checkable protocol,
and callers ask ``isinstance(store, Capability)``: :class:`HybridQueries` (a native keyword +
vector query per index: Vector Search's HYBRID) and :class:`LiveRows` (every live row's vectors
at once: the local index, which derives user features from them).

``score`` means the same on both: the cosine similarity of the query and the product's vector
(the local index computes it; Vector Search returns ``1 / (1 + d²)`` of the L2 distance ``d``,
which for unit vectors is ``1 / (3 - 2 cos)`` and is converted back).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd


class IndexNotReadyError(RuntimeError):
    """The index has not loaded its table yet (or the table does not exist)."""


class IndexStore(Protocol):
    """Search and read products by index kind (image, text, hybrid)."""

    def search(self, kind: str, query: np.ndarray, k: int = 10, filters: dict | None = None,
               exact: bool | None = None) -> list[dict]:
        """Top-k products of index ``kind`` by cosine to ``query``, each with every metadata column and ``score``."""

    def keyword_search(self, query: str, k: int = 10, filters: dict | None = None,
                       phrases: list[str] | tuple = ()) -> list[dict]:
        """Top-k products by keyword relevance over name and description (``phrases``: synonym expansions),
        each with every metadata column and the backend's own ``score``."""

    def get(self, product_id: int) -> dict | None:
        """Every metadata column of one product, or None."""

    def vector(self, product_id: int, kind: str) -> np.ndarray | None:
        """The product's stored vector of index ``kind``, or None (unknown product, or no such vector)."""

    def distinct_values(self, column: str, limit: int = 200) -> list[str]:
        """The most frequent values of a metadata column, sorted."""

    def brand_counts(self) -> dict[str, int]:
        """Each brand the display names start with and how many products carry it (:mod:`indexes.brands`)."""

    def sync(self) -> object:
        """Bring the index up to its table now (or ask the backend to)."""

    def health(self) -> dict:
        """ready, rows, synced/table version and lag (when the backend knows them), last sync."""

    @property
    def synced_version(self) -> int | None:
        """The table version the index reflects (None when unknown)."""


@runtime_checkable
class HybridQueries(Protocol):
    """A backend that fuses keyword and vector rankings itself, per index (fused text search uses it)."""

    def hybrid_search(self, kind: str, vector: np.ndarray, query: str, k: int = 10, filters: dict | None = None,
                      phrases: list[str] | tuple = ()) -> list[dict]:
        """Top-k products of index ``kind`` by the backend's own fusion of ``query`` and ``vector``."""


@runtime_checkable
class LiveRows(Protocol):
    """A backend that can hand over every live row's vectors of one kind (users' features are computed from them)."""

    def live_rows(self, kind: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """A consistent copy of (metadata, vectors of ``kind``, has-live-vector mask), one row per slot."""
