"""/api/v1 routes: text, image and hybrid search, recommendations, zero-shot classification, products."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from pydantic import BaseModel, Field

from app.index.filters import FilterError
from app.index.local_index import IndexNotReadyError
from app.services.clip_service import BadQueryError
from app.services.personas import recommendation_filters
from app.services.vector_search_service import UnknownIndexError

router = APIRouter(prefix="/api/v1", tags=["search"])

LABEL_SETS = ("article_type", "base_color", "usage")


class TextSearchRequest(BaseModel):
    query: str = Field(..., description="What the shopper typed, e.g. 'vintage leather jacket'")
    index: Literal["image", "text", "hybrid"] = Field(
        "image", description="Index to search: image (cross-modal, default), text or hybrid")
    limit: int = Field(12, ge=1, le=100)
    filters: dict[str, Any] | None = Field(
        None, description='Databricks-style filters, e.g. {"price <=": 50, "gender": ["Women", "Unisex"]}')


class SearchResponse(BaseModel):
    index: str
    count: int
    results: list[dict[str, Any]]


def _services(request: Request):
    return request.app.state.clip, request.app.state.search


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


def _run(fn):
    """Translate domain errors into HTTP errors with their message."""
    try:
        return fn()
    except BadQueryError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except (FilterError, UnknownIndexError) as exc:
        raise HTTPException(400, str(exc)) from None
    except IndexNotReadyError as exc:
        raise HTTPException(503, str(exc)) from None


def _search(request: Request, index: str, vector, limit: int, filters: dict | None) -> SearchResponse:
    _, search = _services(request)
    results = _run(lambda: search.search(index, vector, limit, filters))
    return SearchResponse(index=index, count=len(results), results=results)


async def _read_upload(request: Request, upload: UploadFile | None) -> bytes | None:
    if upload is None:
        return None
    limit = request.app.state.config.search.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the upload is larger than {limit} bytes")
    return data


@router.post("/search/text", response_model=SearchResponse)
def search_text(request: Request, body: TextSearchRequest) -> SearchResponse:
    """CLIP text embedding of the query, searched in the image index (or text / hybrid)."""
    clip, _ = _services(request)
    vector = _run(lambda: clip.text_embedding(body.query))
    return _search(request, body.index, vector, body.limit, body.filters)


@router.post("/search/image", response_model=SearchResponse)
async def search_image(request: Request, file: UploadFile = File(..., description="A product photo"),
                       limit: int = Form(12, ge=1, le=100),
                       filters: str | None = Form(None, description="JSON object of filters")) -> SearchResponse:
    """Image embedding of the uploaded photo, searched in the image index."""
    clip, _ = _services(request)
    data = await _read_upload(request, file)
    parsed = _parse_filters(filters)
    vector = _run(lambda: clip.image_embedding(data))
    return _search(request, "image", vector, limit, parsed)


@router.post("/search/hybrid", response_model=SearchResponse)
async def search_hybrid(request: Request, query: str | None = Form(None), file: UploadFile | None = File(None),
                        text_weight: float = Form(0.5, ge=0.0, le=1.0), limit: int = Form(12, ge=1, le=100),
                        filters: str | None = Form(None, description="JSON object of filters")) -> SearchResponse:
    """normalize(w*text + (1-w)*image) of the query text and optional photo, in the hybrid index."""
    clip, _ = _services(request)
    data = await _read_upload(request, file)
    parsed = _parse_filters(filters)
    vector = _run(lambda: clip.hybrid_embedding(query, data, text_weight))
    return _search(request, "hybrid", vector, limit, parsed)


@router.get("/recommendations/{user_id}", response_model=SearchResponse)
def recommendations(request: Request, user_id: str, limit: int = Query(12, ge=1, le=100),
                    filters: str | None = Query(None, description="extra filters, JSON object")) -> SearchResponse:
    """The user's style embedding in the hybrid index, filtered by their price range and categories."""
    users = request.app.state.users
    user = users.get(user_id)
    if user is None:
        raise HTTPException(404, f"unknown user {user_id!r}; known: {sorted(users)}")
    if user.get("user_embedding") is None:
        raise HTTPException(409, f"user {user_id!r} has no style embedding yet (no matching products indexed)")
    merged = recommendation_filters(user) | (_parse_filters(filters) or {})
    response = _search(request, "hybrid", user["user_embedding"], limit, merged)
    return response


@router.get("/users")
def users(request: Request) -> list[dict[str, Any]]:
    """The personas (without their embeddings)."""
    return [{k: v for k, v in u.items() if k != "user_embedding"} for u in request.app.state.users.values()]


@router.post("/classify")
async def classify(request: Request, file: UploadFile | None = File(None), product_id: int | None = Form(None),
                   label_set: Literal["article_type", "base_color", "usage"] = Form("article_type"),
                   labels: str | None = Form(None, description='JSON list of candidate labels')) -> dict[str, Any]:
    """Zero-shot classification of an uploaded image or a product's image against candidate labels."""
    clip, search = _services(request)
    data = await _read_upload(request, file)
    if (data is None) == (product_id is None):
        raise HTTPException(400, "give exactly one of an image file or a product_id")
    if labels:
        try:
            candidates = json.loads(labels)
        except json.JSONDecodeError:
            raise HTTPException(400, "labels must be a JSON list of strings") from None
        if not isinstance(candidates, list) or not all(isinstance(x, str) and x.strip() for x in candidates):
            raise HTTPException(400, "labels must be a JSON list of non-empty strings")
    else:
        candidates = search.distinct_values(label_set)
    if product_id is not None:
        vector = search.product_vector(product_id, "image")
        if vector is None:
            raise HTTPException(404, f"product {product_id} has no image embedding in the index")
    else:
        vector = _run(lambda: clip.image_embedding(data))
    ranked = _run(lambda: clip.classify(vector, candidates))
    return {"label_set": None if labels else label_set, "predictions": ranked[:20], "top": ranked[0]["label"]}


@router.get("/products/{product_id}")
def product(request: Request, product_id: int) -> dict[str, Any]:
    _, search = _services(request)
    row = search.product(product_id)
    if row is None:
        raise HTTPException(404, f"product {product_id} not found")
    return row
