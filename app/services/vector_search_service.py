"""Index access for the API: indexes by name, all metadata columns, validated filters."""

from __future__ import annotations

import numpy as np

from app.index.filters import FilterError
from app.index.local_index import INDEX_KINDS, LocalIndexStore

# Names the retailer uses on Databricks, accepted here too.
INDEX_ALIASES = {
    "image": "image", "vs_image_search": "image",
    "text": "text", "vs_text_search": "text",
    "hybrid": "hybrid", "vs_hybrid_search": "hybrid",
}


class UnknownIndexError(ValueError):
    pass


class VectorSearchService:
    """Searches the image, text and hybrid indexes; results carry every product column and a score."""

    def __init__(self, store: LocalIndexStore, max_limit: int):
        self.store = store
        self.max_limit = max_limit

    def kind(self, index: str) -> str:
        try:
            return INDEX_ALIASES[index]
        except KeyError:
            raise UnknownIndexError(f"unknown index {index!r}; use one of {sorted(INDEX_ALIASES)}") from None

    def search(self, index: str, vector: np.ndarray, limit: int, filters: dict | None) -> list[dict]:
        if limit < 1 or limit > self.max_limit:
            raise FilterError(f"limit must be between 1 and {self.max_limit}")
        return self.store.search(self.kind(index), vector, limit, filters)

    def product(self, product_id: int) -> dict | None:
        return self.store.get(product_id)

    def product_vector(self, product_id: int, index: str) -> np.ndarray | None:
        return self.store.vector(product_id, self.kind(index))

    def distinct_values(self, column: str, limit: int = 200) -> list[str]:
        return self.store.distinct_values(column, limit)


__all__ = ["INDEX_KINDS", "UnknownIndexError", "VectorSearchService"]
