"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class TextSearchRequest(BaseModel):
    query: str = Field(..., description="What the shopper typed, e.g. 'vintage leather jacket'")
    index: Literal["image", "text", "hybrid"] = Field(
        "image", description="Index to search: image (cross-modal, default), text or hybrid")
    limit: int | None = Field(None, ge=1, description="results to return (default: search.default_limit; "
                                                        "at most search.max_limit)")
    filters: dict[str, Any] | None = Field(
        None, description='Databricks-style filters, e.g. {"price <=": 50, "gender": ["Women", "Unisex"]}')


class SearchResponse(BaseModel):
    index: str
    count: int
    results: list[dict[str, Any]]
