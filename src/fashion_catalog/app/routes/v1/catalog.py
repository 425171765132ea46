"""/api/v1 catalog routes: one product, and the values of the page's filter pickers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from fashion_catalog.app.deps import SearchDep
from fashion_catalog.app.models import errors

router = APIRouter(prefix="/api/v1", tags=["catalog"])


@router.get("/products/{product_id}", responses=errors(404))
def product(product_id: int, search: SearchDep) -> dict[str, Any]:
    """Every column of one indexed product."""
    row = search.product(product_id)
    if row is None:
        raise HTTPException(404, f"product {product_id} not found")
    return row


@router.get("/facets", tags=["search"])
def facets(search: SearchDep) -> dict[str, list[str]]:
    """Values for the page's filter pickers."""
    return search.facets()
