"""/api/v1 search routes: text, image and hybrid search, recommendations, users, zero-shot classification."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile

from app.deps import QueriesDep, SearchDep, ServicesDep, UsersDep
from app.models import SearchResponse, TextSearchRequest
from personalization.personas import recommendation_filters
from search.service import SearchService

router = APIRouter(prefix="/api/v1", tags=["search"])


def _parse_filters(raw: str | None) -> dict | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"filters is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "filters must be a JSON object")
    return value


def _search(services, search: SearchService, index: str, vector, limit: int | None,
            filters: dict | None) -> SearchResponse:
    results = search.search(index, vector, limit or services.config.search.default_limit, filters)
    return SearchResponse(index=index, count=len(results), results=results)


async def _read_upload(services, upload: UploadFile | None) -> bytes | None:
    if upload is None:
        return None
    limit = services.config.search.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the upload is larger than {limit} bytes")
    return data


@router.post("/search/text", response_model=SearchResponse)
def search_text(body: TextSearchRequest, services: ServicesDep, search: SearchDep,
                queries: QueriesDep) -> SearchResponse:
    """CLIP text embedding of the query, searched in the image index (or text / hybrid)."""
    vector = queries.text_embedding(body.query)
    return _search(services, search, body.index, vector, body.limit, body.filters)


@router.post("/search/image", response_model=SearchResponse)
async def search_image(services: ServicesDep, search: SearchDep, queries: QueriesDep,
                       file: UploadFile = File(..., description="A product photo"),
                       limit: int | None = Form(None, ge=1),
                       filters: str | None = Form(None, description="JSON object of filters")) -> SearchResponse:
    """Image embedding of the uploaded photo, searched in the image index."""
    data = await _read_upload(services, file)
    parsed = _parse_filters(filters)
    return _search(services, search, "image", queries.image_embedding(data), limit, parsed)


@router.post("/search/hybrid", response_model=SearchResponse)
async def search_hybrid(services: ServicesDep, search: SearchDep, queries: QueriesDep,
                        query: str | None = Form(None), file: UploadFile | None = File(None),
                        text_weight: float = Form(0.5, ge=0.0, le=1.0), limit: int | None = Form(None, ge=1),
                        filters: str | None = Form(None, description="JSON object of filters")) -> SearchResponse:
    """normalize(w*text + (1-w)*image) of the query text and optional photo, in the hybrid index."""
    data = await _read_upload(services, file)
    parsed = _parse_filters(filters)
    vector = queries.hybrid_embedding(query, data, text_weight)
    return _search(services, search, "hybrid", vector, limit, parsed)


@router.get("/recommendations/{user_id}", response_model=SearchResponse)
def recommendations(user_id: str, services: ServicesDep, search: SearchDep, users: UsersDep,
                    limit: int | None = Query(None, ge=1),
                    filters: str | None = Query(None, description="extra filters, JSON object")) -> SearchResponse:
    """The user's style embedding in the hybrid index, filtered by their price range and categories."""
    user = users.get(user_id)
    if user is None:
        raise HTTPException(404, f"unknown user {user_id!r}; known: {sorted(users.users)}")
    if user.get("user_embedding") is None:
        raise HTTPException(409, f"user {user_id!r} has no style embedding yet (no matching products indexed)")
    merged = recommendation_filters(user) | (_parse_filters(filters) or {})
    return _search(services, search, "hybrid", user["user_embedding"], limit, merged)


@router.get("/users")
def list_users(users: UsersDep) -> list[dict[str, Any]]:
    """The personas (without their embeddings)."""
    return users.public()


def _candidate_labels(search: SearchService, label_set: str, labels: str | None) -> list[str]:
    if not labels:
        return search.distinct_values(label_set)
    try:
        candidates = json.loads(labels)
    except json.JSONDecodeError:
        raise HTTPException(400, "labels must be a JSON list of strings") from None
    if not isinstance(candidates, list) or not all(isinstance(x, str) and x.strip() for x in candidates):
        raise HTTPException(400, "labels must be a JSON list of non-empty strings")
    return candidates


@router.post("/classify")
async def classify(services: ServicesDep, search: SearchDep, queries: QueriesDep,
                   file: UploadFile | None = File(None), product_id: int | None = Form(None),
                   label_set: Literal["article_type", "base_color", "usage"] = Form("article_type"),
                   labels: str | None = Form(None, description='JSON list of candidate labels')) -> dict[str, Any]:
    """Zero-shot classification of an uploaded image or a product's image against candidate labels."""
    data = await _read_upload(services, file)
    if (data is None) == (product_id is None):
        raise HTTPException(400, "give exactly one of an image file or a product_id")
    candidates = _candidate_labels(search, label_set, labels)
    if product_id is not None:
        vector = search.product_vector(product_id, "image")
        if vector is None:
            raise HTTPException(404, f"product {product_id} has no image embedding in the index")
    else:
        vector = queries.image_embedding(data)
    ranked = queries.classify(vector, candidates)
    return {"label_set": None if labels else label_set, "predictions": ranked[:20], "top": ranked[0]["label"]}
