"""The interface every search backend implements, so the service runs the same routes on both.

* :class:`search.local_index.LocalIndexStore` — the embedded index that follows the Delta table;
* :class:`search.databricks_index.DatabricksStore` — Databricks Vector Search Delta Sync indexes,
  a SQL warehouse for facets, the Files API for images.

``score`` means the same on both: the cosine similarity of the query and the product's vector
(the local index computes it; Vector Search returns ``1 / (1 + d²)`` of the L2 distance ``d``,
which for unit vectors is ``1 / (3 - 2 cos)`` and is converted back).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class IndexStore(Protocol):
    """Search and read products by index kind (image, text, hybrid)."""

    def search(self, kind: str, query: np.ndarray, k: int = 10, filters: dict | None = None,
               exact: bool | None = None) -> list[dict]:
        """Top-k products of index ``kind`` by cosine to ``query``, each with every metadata column and ``score``."""

    def keyword_search(self, query: str, k: int = 10, filters: dict | None = None,
                       phrases: list[str] | tuple = ()) -> list[dict]:
        """Top-k products by keyword relevance over name and description (``phrases``: synonym expansions),
        each with every metadata column and the backend's own ``score``. A backend with a native hybrid
        query also sets ``native_hybrid`` and has ``hybrid_search(kind, vector, query, k, filters, phrases)``
        (see :mod:`search.text_search`)."""

    def get(self, product_id: int) -> dict | None:
        """Every metadata column of one product, or None."""

    def vector(self, product_id: int, kind: str) -> np.ndarray | None:
        """The product's stored vector of index ``kind``, or None (unknown product, or no such vector)."""

    def distinct_values(self, column: str, limit: int = 200) -> list[str]:
        """The most frequent values of a metadata column, sorted."""

    def sync(self) -> object:
        """Bring the index up to its table now (or ask the backend to)."""

    def health(self) -> dict:
        """ready, rows, synced/table version and lag (when the backend knows them), last sync."""

    @property
    def synced_version(self) -> int | None:
        """The table version the index reflects (None when unknown)."""
