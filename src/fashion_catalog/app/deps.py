"""FastAPI dependencies: how a route receives the services of its app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fashion_catalog.app.services import Services
from fashion_catalog.search.queries import QueryEncoder
from fashion_catalog.search.service import SearchService
from fashion_catalog.search.text_search import TextSearch
from fashion_catalog.search.users import UserDirectory


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_search(request: Request) -> SearchService:
    return get_services(request).search


def get_queries(request: Request) -> QueryEncoder:
    return get_services(request).queries


def get_users(request: Request) -> UserDirectory:
    return get_services(request).users


def get_text_search(request: Request) -> TextSearch:
    return get_services(request).text


ServicesDep = Annotated[Services, Depends(get_services)]
SearchDep = Annotated[SearchService, Depends(get_search)]
QueriesDep = Annotated[QueryEncoder, Depends(get_queries)]
UsersDep = Annotated[UserDirectory, Depends(get_users)]
TextSearchDep = Annotated[TextSearch, Depends(get_text_search)]
