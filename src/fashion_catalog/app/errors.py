"""Domain errors as HTTP answers: each handler maps one library exception to a status and its message."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fashion_catalog.indexes.filters import FilterError
from fashion_catalog.indexes.store import IndexNotReadyError
from fashion_catalog.search.queries import BadQueryError
from fashion_catalog.search.service import MissingVectorError, ProductNotFoundError, UnknownIndexError
from fashion_catalog.search.text_search import SearchModeError


def _answer(status: int):
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler


async def _bad_query(_request: Request, exc: BadQueryError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


def install_error_handlers(app: FastAPI) -> None:
    """Bad filters and unknown indexes are 400, unknown products 404, a missing vector 409, bad queries
    their own 4xx, an index not yet synced 503."""
    app.add_exception_handler(BadQueryError, _bad_query)
    app.add_exception_handler(FilterError, _answer(400))
    app.add_exception_handler(UnknownIndexError, _answer(400))
    app.add_exception_handler(SearchModeError, _answer(400))
    app.add_exception_handler(IndexNotReadyError, _answer(503))
    app.add_exception_handler(ProductNotFoundError, _answer(404))
    app.add_exception_handler(MissingVectorError, _answer(409))
