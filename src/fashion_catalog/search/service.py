"""Index access for the API and jobs: indexes by name, every metadata column, validated filters and limits."""

from __future__ import annotations

import numpy as np

from fashion_catalog.encoders.images import ImageLimits, file_error
from fashion_catalog.indexes.filters import FilterError
from fashion_catalog.schemas import INDEX_KINDS

# Names the retailer uses on Databricks, accepted here too.
INDEX_ALIASES = {
    "image": "image", "vs_image_search": "image",
    "text": "text", "vs_text_search": "text",
    "hybrid": "hybrid", "vs_hybrid_search": "hybrid",
}
FACET_COLUMNS = ("gender", "base_color", "master_category", "article_type")


class UnknownIndexError(ValueError):
    """A request named an index that does not exist."""


class ProductNotFoundError(LookupError):
    """A request named a product that is not in the index."""


class MissingVectorError(ValueError):
    """The product has no vector in the index asked for (e.g. its image could not be read)."""


class SearchService:
    """Searches the image, text and hybrid indexes of a store; results carry every product column and a score.

    What leaves the service never shows a server path: ``image_path`` is given relative to the
    allowed image root holding it (null when outside every root), and ``image_url`` is the
    service's own ``/images/{product_id}``.
    """

    def __init__(self, store, max_limit: int, limits: ImageLimits | None = None):
        self.store = store
        self.max_limit = max_limit
        self.limits = limits or ImageLimits(0, 0)

    def public(self, row: dict | None) -> dict | None:
        """A product row as clients see it."""
        if row is None:
            return None
        out = dict(row)
        if "image_path" in out:
            out["image_path"] = self.limits.relative(out["image_path"]) if self.limits.allowed_roots else None
        out["image_url"] = f"/images/{out['product_id']}"
        if "image_hash" in out and file_error(out.get("embedding_error")) is not None:
            out["image_hash"] = None  # the hash of a file that is no image (or of no file) is nobody's business
        return out

    def kind(self, index: str) -> str:
        """The index kind (image, text, hybrid) behind an index name or alias."""
        try:
            return INDEX_ALIASES[index]
        except KeyError:
            raise UnknownIndexError(f"unknown index {index!r}; use one of {sorted(INDEX_ALIASES)}") from None

    def search(self, index: str, vector: np.ndarray, limit: int, filters: dict | None) -> list[dict]:
        """Top ``limit`` products of ``index`` nearest to ``vector`` that match ``filters``."""
        if limit < 1 or limit > self.max_limit:
            raise FilterError(f"limit must be between 1 and {self.max_limit}")
        return [self.public(r) for r in self.store.search(self.kind(index), vector, limit, filters)]

    def similar(self, product_id: int, index: str, limit: int, filters: dict | None) -> list[dict]:
        """"More like this": products nearest to a product's own stored vector in ``index``.

        The product itself and products with a byte-identical photo (same ``image_hash``) are left
        out; ``filters`` apply as in any search.
        """
        if limit < 1 or limit > self.max_limit:
            raise FilterError(f"limit must be between 1 and {self.max_limit}")
        kind = self.kind(index)
        row = self.store.get(product_id)
        if row is None:
            raise ProductNotFoundError(f"product {product_id} not found")
        vector = self.store.vector(product_id, kind)
        if vector is None:
            raise MissingVectorError(f"product {product_id} has no {kind} vector ({row.get('embedding_error')}); "
                                     f"try another index")
        same = row.get("image_hash")
        k = limit + 1
        while True:  # widen until enough remain after leaving out the duplicates (or the index is exhausted)
            hits = self.store.search(kind, vector, k, filters)
            kept = [h for h in hits if h["product_id"] != product_id and (same is None or h.get("image_hash") != same)]
            if len(kept) >= limit or len(hits) < k or k >= 4 * self.max_limit:
                return [self.public(h) for h in kept[:limit]]
            k = min(2 * k + (len(hits) - len(kept)), 4 * self.max_limit)

    def product(self, product_id: int) -> dict | None:
        return self.public(self.store.get(product_id))

    def product_vector(self, product_id: int, index: str) -> np.ndarray | None:
        return self.store.vector(product_id, self.kind(index))

    def distinct_values(self, column: str, limit: int = 200) -> list[str]:
        return self.store.distinct_values(column, limit)

    def facets(self) -> dict[str, list[str]]:
        """Values for the page's filter pickers."""
        return {c: self.distinct_values(c) for c in FACET_COLUMNS}


__all__ = ["INDEX_KINDS", "FACET_COLUMNS", "MissingVectorError", "ProductNotFoundError", "SearchService",
           "UnknownIndexError"]
