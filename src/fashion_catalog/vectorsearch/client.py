"""The Vector Search client, from whichever package is installed, authenticated the way the workspace allows."""

from __future__ import annotations

import os

from fashion_catalog.conf import ActionableError


class VectorSearchConfigError(ActionableError, RuntimeError):
    """The Vector Search client cannot be built: no workspace URL or no credentials."""


def client_class():
    """The Vector Search client class: ``databricks-ai-search``, else the older ``databricks-vectorsearch``."""
    try:
        from databricks.ai_search.client import AISearchClient

        return AISearchClient
    except ImportError:
        from databricks.vector_search.client import VectorSearchClient

        return VectorSearchClient


def make_client(workspace_url: str | None = None):
    """A client authenticated by token (DATABRICKS_TOKEN), service principal (DATABRICKS_CLIENT_ID /
    DATABRICKS_CLIENT_SECRET; OAuth M2M, refreshed by the client), or, inside a Databricks job or
    notebook, the runtime's own credentials."""
    url = workspace_url or os.environ.get("DATABRICKS_HOST")
    cls = client_class()
    token = os.environ.get("DATABRICKS_TOKEN")
    client_id, secret = os.environ.get("DATABRICKS_CLIENT_ID"), os.environ.get("DATABRICKS_CLIENT_SECRET")
    if not url:
        if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
            return cls(disable_notice=True)  # notebook / job native auth
        raise VectorSearchConfigError("set DATABRICKS_HOST (or vector_search.workspace_url) for Vector Search")
    url = url if url.startswith("http") else f"https://{url}"
    if token:
        return cls(workspace_url=url, personal_access_token=token, disable_notice=True)
    if client_id and secret:
        return cls(workspace_url=url, service_principal_client_id=client_id,
                   service_principal_client_secret=secret, disable_notice=True)
    raise VectorSearchConfigError("set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET")
