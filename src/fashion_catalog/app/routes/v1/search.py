"""/api/v1 search routes: text, image and hybrid search, recommendations, users, zero-shot classification.

Routes are plain ``def``: FastAPI runs them in its thread pool, so CLIP inference, image
decoding and index reads never block the event loop (``/health`` answers during a slow query).
"""

from __future__ import annotations

import collections
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from pydantic import WithJsonSchema
from starlette.datastructures import UploadFile as StarletteUpload

from fashion_catalog.app.deps import QueriesDep, SearchDep, ServicesDep, TextSearchDep, UsersDep
from fashion_catalog.app.models import (
    FILTERS_SCHEMA,
    IMAGE_MEDIA_TYPES,
    MAX_IGNORED,
    MAX_IGNORED_CHARS,
    NON_BLANK,
    SearchResponse,
    TextSearchRequest,
    errors,
    json_form_field,
    labels_schema,
)
from fashion_catalog.personalization.personas import recommendation_filters, recommendation_reasons
from fashion_catalog.search.queries import MAX_QUERY_CHARS, is_blank
from fashion_catalog.search.service import SearchService

router = APIRouter(prefix="/api/v1", tags=["search"])

FiltersForm = Annotated[str | None, Form(), WithJsonSchema(json_form_field(
    "json-filters", FILTERS_SCHEMA, 'Filters as a JSON object, e.g. {"price <=": 50, "gender": ["Women"]}'))]
FiltersQuery = Annotated[str | None, Query(), WithJsonSchema(json_form_field(
    "json-filters", FILTERS_SCHEMA, 'Filters as a JSON object, e.g. {"price <=": 50, "gender": ["Women"]}'))]
LimitForm = Annotated[int | None, Form(ge=1), WithJsonSchema(
    {"type": "integer", "minimum": 1, "description": "results to return (at most search.max_limit)"})]
QueryForm = Annotated[str | None, Form(), WithJsonSchema(
    {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": NON_BLANK,
     "description": "query text"})]
WeightForm = Annotated[float, Form(ge=0.0, le=1.0), WithJsonSchema(
    {"type": "number", "minimum": 0, "maximum": 1, "description": "w in normalize(w*text + (1-w)*image)"})]
FilterWordsForm = Annotated[str | None, Form(), WithJsonSchema(
    {"type": "string", "maxLength": MAX_QUERY_CHARS,
     "description": "words whose filters apply (\"under 50\", \"for men\"); their other readings are not used"})]
UnderstandForm = Annotated[bool | None, Form(), WithJsonSchema(
    {"type": "boolean",
     "description": "read the words (default: search.understand); false: as typed, the hybrid index only"})]
IgnoreForm = Annotated[str | None, Form(), WithJsonSchema(json_form_field(
    "json-ignore", {"type": "array", "maxItems": MAX_IGNORED,
                    "items": {"type": "string", "minLength": 1, "maxLength": MAX_IGNORED_CHARS, "pattern": NON_BLANK}},
    "phrases of the query not to interpret (the page's removed chips), as a JSON list"))]
ProductForm = Annotated[int | None, Form(), WithJsonSchema({"type": "integer", "description": "an indexed product"})]
LabelsForm = Annotated[str | None, Form(), WithJsonSchema(json_form_field(
    "json-labels", labels_schema(1, 1), "Candidate labels as a JSON list of strings (bounds: app.openapi)"))]
OptionalImage = Annotated[UploadFile | None, File(), WithJsonSchema(
    {"type": "string", "contentMediaType": "application/octet-stream", "description": "an image"})]
# Upload fields name the image media types the server decodes (it sniffs the bytes, not the part's type).
IMAGE_ENCODING = {"requestBody": {"content": {"multipart/form-data": {"encoding": {
    "file": {"contentType": ", ".join(IMAGE_MEDIA_TYPES)}}}}}}


# The form fields the routes read (other fields are ignored, as the schema's additionalProperties allows).
FORM_FIELDS = frozenset({"query", "limit", "filters", "text_weight", "product_id", "label_set", "labels", "ignore",
                         "understand"})


async def one_upload(request: Request) -> None:
    """At most one file, and each field the route reads at most once (the form is already parsed and bounded
    by the body size limit)."""
    if not request.headers.get("content-type", "").startswith("multipart/"):
        return
    form = await request.form()
    names = [key for key, value in form.multi_items() if isinstance(value, StarletteUpload)]
    if len(names) > 1:
        raise HTTPException(400, f"send one image per request, in the 'file' field; got {len(names)} files "
                                 f"({', '.join(repr(n) for n in names)})")
    counts = collections.Counter(key for key, _ in form.multi_items() if key in FORM_FIELDS)
    repeated = sorted(k for k, n in counts.items() if n > 1)
    if repeated:  # ambiguous: which `limit` did the client mean?
        raise HTTPException(400, f"form fields may be given once; repeated: {', '.join(repr(k) for k in repeated)}")


def _json_field(raw: str | None, name: str) -> Any:
    """A JSON-valued form or query field; absent or empty is None (JSON null is refused by the callers)."""
    if raw is None or not raw.strip():
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"{name} is not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # an integer past Python's digit limit, nesting too deep
        raise HTTPException(400, f"{name} is not usable JSON: {str(exc).split(':')[0]}") from None


def _parse_filters(raw: str | None) -> dict | None:
    value = _json_field(raw, "filters")
    if value is None and raw is not None and raw.strip():
        raise HTTPException(400, "filters must be a JSON object (leave the field out for no filters)")
    if value is not None and not isinstance(value, dict):
        raise HTTPException(400, "filters must be a JSON object")
    return value


def _search(services, search: SearchService, index: str, vector, limit: int | None,
            filters: dict | None) -> SearchResponse:
    results = search.search(index, vector, limit or services.config.search.default_limit, filters)
    return SearchResponse(index=index, count=len(results), results=results)


def _read_upload(services, upload: UploadFile | None) -> bytes | None:
    if upload is None:
        return None
    limit = services.config.search.max_upload_bytes
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the upload is larger than {limit} bytes")
    return data


@router.post("/search/text", response_model=SearchResponse, responses=errors(400, 413, 503))
def search_text(body: TextSearchRequest, services: ServicesDep, text: TextSearchDep) -> SearchResponse:
    """A shopper's words: keyword, CLIP vector or both fused (``mode``), with the query's constraints read."""
    found = text.run(body.query, body.limit or services.config.search.default_limit, body.filters, body.mode,
                     body.index, body.understand, body.ignore or ())
    return SearchResponse(index=found.index, mode=found.mode, count=len(found.results), results=found.results,
                          interpreted=found.interpreted, exact_matches=found.exact_matches,
                          nothing_close=found.nothing_close)


def _parse_ignore(raw: str | None) -> list[str]:
    value = _json_field(raw, "ignore")
    if value is None:
        if raw is not None and raw.strip():
            raise HTTPException(400, "ignore must be a JSON list of phrases (leave the field out for none)")
        return []
    if not isinstance(value, list) or not all(isinstance(p, str) and not is_blank(p) for p in value) \
            or len(value) > MAX_IGNORED or any(len(p) > MAX_IGNORED_CHARS for p in value):
        raise HTTPException(400, f"ignore must be a JSON list of at most {MAX_IGNORED} non-empty phrases of at most "
                                 f"{MAX_IGNORED_CHARS} characters")
    return value


def _found(found) -> SearchResponse:
    return SearchResponse(index=found.index, mode=found.mode, count=len(found.results), results=found.results,
                          interpreted=found.interpreted, exact_matches=found.exact_matches)


@router.post("/search/image", response_model=SearchResponse, responses=errors(400, 413, 415, 503),
             dependencies=[Depends(one_upload)], openapi_extra=IMAGE_ENCODING)
def search_image(services: ServicesDep, queries: QueriesDep, text: TextSearchDep,
                 file: UploadFile = File(..., description="A product photo"),
                 limit: LimitForm = None, filters: FiltersForm = None, query: FilterWordsForm = None,
                 ignore: IgnoreForm = None) -> SearchResponse:
    """Image embedding of the uploaded photo, searched in the image index, within the filters ``query``'s words
    say ("under 50", "for men"; ``interpreted`` lists them)."""
    parsed, skip = _parse_filters(filters), _parse_ignore(ignore)
    data = _read_upload(services, file)
    vector = queries.image_embedding(data)
    return _found(text.image(vector, query, limit or services.config.search.default_limit, parsed, skip))


@router.post("/search/hybrid", response_model=SearchResponse, responses=errors(400, 413, 415, 503),
             dependencies=[Depends(one_upload)], openapi_extra=IMAGE_ENCODING)
def search_hybrid(services: ServicesDep, text: TextSearchDep,
                  query: QueryForm = None, file: OptionalImage = None,
                  text_weight: WeightForm = 0.5, limit: LimitForm = None,
                  filters: FiltersForm = None, ignore: IgnoreForm = None,
                  understand: UnderstandForm = None) -> SearchResponse:
    """The query read as in text search (its filters apply; ``interpreted`` says how) and the optional photo:
    normalize(w*text + (1-w)*image) in the hybrid index, fused with the keyword ranking and the boosts
    (``understand`` false: the hybrid index alone, the words as typed)."""
    parsed, skip = _parse_filters(filters), _parse_ignore(ignore)
    data = _read_upload(services, file)
    return _found(text.hybrid(query, data, text_weight, limit or services.config.search.default_limit, parsed, skip,
                              understand))


@router.get("/recommendations/{user_id}", response_model=SearchResponse, responses=errors(400, 404, 409, 503))
def recommendations(user_id: str, services: ServicesDep, search: SearchDep, users: UsersDep,
                    limit: int | None = Query(None, ge=1), filters: FiltersQuery = None) -> SearchResponse:
    """The user's style embedding in the hybrid index, filtered by their price range and categories."""
    user = users.get(user_id)
    if user is None:
        raise HTTPException(404, f"unknown user {user_id!r}; GET /api/v1/users lists the users")
    if user.get("user_embedding") is None:
        raise HTTPException(409, f"user {user_id!r} has no style embedding yet (no matching products indexed)")
    merged = recommendation_filters(user) | (_parse_filters(filters) or {})
    found = _search(services, search, "hybrid", user["user_embedding"], limit, merged)
    found.because = {"user_id": user_id, "segment": user.get("segment"), "preferences": recommendation_reasons(user)}
    return found


@router.get("/products/{product_id}/similar", response_model=SearchResponse, responses=errors(400, 404, 409, 503))
def similar_products(product_id: int, services: ServicesDep, search: SearchDep,
                     index: Literal["image", "hybrid", "text"] = Query("image"),
                     limit: int | None = Query(None, ge=1), filters: FiltersQuery = None) -> SearchResponse:
    """"More like this": the product's own stored vector searched in ``index``, without the product itself
    and without products whose photo is byte-identical (same image_hash)."""
    results = search.similar(product_id, index, limit or services.config.search.default_limit,
                             _parse_filters(filters))
    return SearchResponse(index=index, count=len(results), results=results)


@router.get("/examples")
def example_searches(services: ServicesDep) -> list[str]:
    """A few searches to try, for the page's first screen (search.examples)."""
    return list(services.config.search.examples)


@router.get("/users")
def list_users(users: UsersDep) -> list[dict[str, Any]]:
    """The personas (without their embeddings)."""
    return users.public()


def _candidate_labels(services, search: SearchService, label_set: str, labels: str | None) -> list[str]:
    candidates = _json_field(labels, "labels")
    if candidates is None and labels is not None and labels.strip():
        raise HTTPException(400, "labels must be a JSON list of non-empty strings (leave the field out for "
                                 "the catalog's labels)")
    if candidates is None:
        return search.distinct_values(label_set)
    se = services.config.search
    if not isinstance(candidates, list) or not all(isinstance(x, str) and not is_blank(x) for x in candidates):
        raise HTTPException(400, "labels must be a JSON list of non-empty strings")
    if not candidates or len(candidates) > se.max_labels:
        raise HTTPException(400, f"labels must name 1 to {se.max_labels} candidates, got {len(candidates)}")
    if any(len(x) > se.max_label_chars for x in candidates):
        raise HTTPException(400, f"labels must each be at most {se.max_label_chars} characters")
    return candidates


@router.post("/classify", responses=errors(400, 404, 413, 415, 503), dependencies=[Depends(one_upload)],
             openapi_extra=IMAGE_ENCODING)
def classify(services: ServicesDep, search: SearchDep, queries: QueriesDep,
             file: OptionalImage = None,
             product_id: ProductForm = None,
             label_set: Literal["article_type", "base_color", "usage"] = Form("article_type"),
             labels: LabelsForm = None) -> dict[str, Any]:
    """Zero-shot classification of an uploaded image or a product's image against candidate labels."""
    data = _read_upload(services, file)
    if (data is None) == (product_id is None):
        raise HTTPException(400, "give exactly one of an image file or a product_id")
    candidates = _candidate_labels(services, search, label_set, labels)
    if product_id is not None:
        vector = search.product_vector(product_id, "image")
        if vector is None:
            raise HTTPException(404, f"product {product_id} has no image embedding in the index")
    else:
        vector = queries.image_embedding(data)
    ranked = queries.classify(vector, candidates)
    return {"label_set": None if labels else label_set, "predictions": ranked[:20], "top": ranked[0]["label"]}
