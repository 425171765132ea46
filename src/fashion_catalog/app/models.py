"""Request and response bodies of the HTTP API, and the statuses each route documents.

The constraints the server checks are stated in the schema (what a client or a fuzzer reads
at ``/openapi.json``): query length, the filter dialect per column, label counts, image
media types. JSON carried in a form field (``filters``, ``labels``) is described with
``contentMediaType``/``contentSchema`` and a named ``format`` (``json-filters``,
``json-labels``) that tools can generate values for.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

from fashion_catalog.encoders.images import WEB_FORMATS
from fashion_catalog.indexes.filters import filters_json_schema
from fashion_catalog.schemas import FILTER_COLUMNS
from fashion_catalog.search.queries import MAX_QUERY_CHARS

FILTERS_SCHEMA = filters_json_schema(FILTER_COLUMNS)
# What the server accepts as an uploaded photo (sniffed from the bytes; the part's content type is not trusted).
IMAGE_MEDIA_TYPES = tuple(WEB_FORMATS.values())  # the formats decode_upload takes, and /images serves
# Non-blank, the same in Python's and ECMA's regex dialects (search.queries.is_blank): \s differs
# between them on U+001C-U+001F, U+0085 and U+FEFF, so those are named.
NON_BLANK = r"[^\s\x1c-\x1f\x85\ufeff]"

MAX_IGNORED, MAX_IGNORED_CHARS = 20, 100  # removed chips one request may name, and the length of each

Filters = Annotated[dict[str, Any] | None, WithJsonSchema({"anyOf": [FILTERS_SCHEMA, {"type": "null"}],
                                                          "title": "Filters"})]


def labels_schema(max_labels: int, max_chars: int) -> dict:
    """Candidate labels for zero-shot classification: a JSON list of non-blank strings."""
    return {"type": "array", "minItems": 1, "maxItems": max_labels,
            "items": {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": NON_BLANK}}


def json_form_field(fmt: str, content_schema: dict, description: str) -> dict:
    """A form field carrying JSON text: a string whose content the schema states."""
    return {"type": "string", "format": fmt, "contentMediaType": "application/json",
            "contentSchema": content_schema, "description": description}


class TextSearchRequest(BaseModel):
    # An index belongs to mode vector: keyword and fused take none (search.text_search.SearchModeError, 400).
    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["mode", "index"],
        "properties": {"mode": {"enum": ["keyword", "fused"]}, "index": {"type": "string"}}}})
    # Stated for clients; checked by search.queries, which answers 400 with its own message.
    query: str = Field(..., description="What the shopper typed, e.g. 'vintage leather jacket'",
                       json_schema_extra={"minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": NON_BLANK})
    mode: Literal["vector", "keyword", "fused"] | None = Field(
        None, description="vector: CLIP's text vector in one index; keyword: BM25 over name and description; "
                          "fused: reciprocal rank fusion of keyword and vector indexes. Default: search.default_mode "
                          "(vector when an index is named)")
    index: Literal["image", "text", "hybrid"] | None = Field(
        None, description="The vector index of mode vector: image (cross-modal, the default), text or hybrid")
    understand: StrictBool | None = Field(
        None, description="read price and gender phrases as filters, brands, known colours and types and the query "
                          "rules (occasions, seasons, ages, needs) as boosts, and apply the shopper synonyms "
                          "(default: search.understand, but off for a request naming only an index, served as "
                          "before modes existed); the response's 'interpreted' says how")
    ignore: list[Annotated[str, Field(min_length=1, max_length=MAX_IGNORED_CHARS)]] | None = Field(
        None, max_length=MAX_IGNORED, description="phrases of the query not to interpret (the page's removed chips)")
    limit: int | None = Field(None, ge=1, description="results to return (default: search.default_limit; "
                                                        "at most search.max_limit)")
    filters: Filters = Field(
        None, description='Databricks-style filters, e.g. {"price <=": 50, "gender": ["Women", "Unisex"]}')


class SearchResponse(BaseModel):
    index: str = Field(..., description="the index searched (image, text, hybrid), or keyword / fused")
    mode: str | None = Field(None, description="text search: vector, keyword or fused")
    count: int
    results: list[dict[str, Any]]
    interpreted: dict[str, Any] | None = Field(
        None, description="text, hybrid and image search with words: the filters and boosts read from the query, the "
                          "phrases behind them (kind, applied, mode: filter or boost), the brands kept 'only', the "
                          "synonyms added, the rest of the text and what the vector encoder saw")
    exact_matches: int | None = Field(
        None, description="text and hybrid search: results with every boost the query named (brand, colour, type, "
                          "occasion, season, age, need; null: it named none); 0 means the results are only the "
                          "closest")
    nothing_close: bool | None = Field(
        None, description="fused text search: no keyword hit and no vector close enough (search.nothing_close_below)")
    because: dict[str, Any] | None = Field(
        None, description="recommendations: the persona and the preferences behind them")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: what went wrong and what to do."""

    detail: str


_ERRORS = {
    400: "The request is well formed but invalid: the message names the field (filters, limit, labels, "
         "an empty query, too many files)",
    404: "No such product or user, or the product has no image or vector",
    409: "The user has no style embedding yet",
    413: "The request body or the upload is larger than the service accepts",
    415: "The upload is not a usable image (not an image, too many pixels, unreadable)",
    503: "The index has not been loaded yet (run the embedder) or the search backend is unavailable",
}


def errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for the error statuses a route returns (422 is FastAPI's own)."""
    return {s: {"model": ErrorResponse, "description": _ERRORS[s]} for s in statuses}
