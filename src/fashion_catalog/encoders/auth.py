"""Authentication headers for the serving-endpoint client: none, a static bearer token, or the
Databricks SDK's unified configuration (PAT, OAuth machine-to-machine, notebook/job native auth).

A provider is a callable returning the headers of one request; it is called for every request,
so an OAuth token that the SDK refreshes before it expires is picked up without a restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlparse

HeaderProvider = Callable[[], dict[str, str]]
AUTH_MODES = ("auto", "databricks", "token_env", "none")


def no_auth() -> dict[str, str]:
    return {}


def static_token(token: str | None) -> HeaderProvider:
    """A fixed bearer token (or no header when the token is empty)."""
    if not token:
        return no_auth
    header = {"Authorization": f"Bearer {token}"}
    return lambda: dict(header)


def databricks_auth(host: str) -> HeaderProvider:
    """Headers from the Databricks SDK for ``host``: whichever of PAT (DATABRICKS_TOKEN), OAuth M2M
    (DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET) or native runtime auth is configured."""
    from databricks.sdk.core import Config

    config = Config(host=host)
    return config.authenticate


def _is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def endpoint_auth(url: str, mode: str = "auto", token_env: str | None = None) -> HeaderProvider:
    """The header provider for an endpoint URL.

    ``auto``: a loopback URL (a local ``mlflow models serve``) needs none; any other URL
    authenticates through the Databricks SDK (which reads DATABRICKS_TOKEN, or
    DATABRICKS_CLIENT_ID/SECRET, or the runtime's native credentials). ``token_env``: the
    bearer token in that environment variable, as is.
    """
    if mode not in AUTH_MODES:
        raise ValueError(f"serving.auth must be one of {AUTH_MODES}, got {mode!r}")
    if mode == "none":
        return no_auth
    if mode == "token_env":
        return static_token(os.environ.get(token_env) if token_env else None)
    if mode == "auto" and _is_loopback(url):
        return no_auth
    parsed = urlparse(url)
    return databricks_auth(f"{parsed.scheme}://{parsed.netloc}")
