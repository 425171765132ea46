"""What the service reads from a Databricks workspace besides the indexes: SQL through a warehouse
(facets, user features) and files through the Files API (product images on Unity Catalog Volumes).

Authentication is the Databricks SDK's unified configuration (PAT, OAuth M2M, the App's own
service principal), refreshed by the SDK.
"""

from __future__ import annotations

import json
import logging
import os
from enum import Enum

from fashion_catalog.conf import ActionableError

log = logging.getLogger(__name__)

WAREHOUSE_ENV = "DATABRICKS_WAREHOUSE_ID"


class WorkspaceError(ActionableError, RuntimeError):
    """A workspace call failed (statement error, missing warehouse)."""


REACH_TIMEOUT_S = 5.0


def require_reachable(host: str | None) -> str:
    """The workspace URL, after one TCP connection to it succeeded within a few seconds: an unreachable workspace
    is one line at start-up, not minutes of client retries (each client backs off and retries on its own)."""
    import socket
    from urllib.parse import urlparse

    host = host or os.environ.get("DATABRICKS_HOST")
    if not host:
        raise WorkspaceError("no Databricks workspace: set DATABRICKS_HOST (a Databricks App gets it from the "
                             "platform) or vector_search.workspace_url")
    url = host if "://" in host else f"https://{host}"
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise WorkspaceError(f"cannot reach the Databricks workspace at {url} ({exc.__class__.__name__}: "
                             f"{exc.strerror or exc}); check DATABRICKS_HOST or vector_search.workspace_url "
                             "and that this machine can connect to it") from None
    return url


def workspace_client(host: str | None = None):
    """A ``WorkspaceClient`` (host from the argument or DATABRICKS_HOST; credentials from the environment)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    # The plain Files API download (GET /api/2.0/fs/files/...): one request, no presigned-URL transfer client.
    return WorkspaceClient(config=Config(host=host, disable_experimental_files_api_client=True))


class SqlWarehouse:
    """Runs read-only statements on a SQL warehouse (Statement Execution API, inline JSON results)."""

    def __init__(self, client, warehouse_id: str | None):
        self.client = client
        self.warehouse_id = warehouse_id or os.environ.get(WAREHOUSE_ENV)
        if not self.warehouse_id:
            raise WorkspaceError(f"set vector_search.warehouse_id (or ${WAREHOUSE_ENV}) to read tables on Databricks")

    def query(self, statement: str, parameters: dict[str, object] | None = None) -> list[dict]:
        """Rows of a statement as dicts; ARRAY/MAP/STRUCT values parsed from their JSON text."""
        from databricks.sdk.service.sql import Disposition, Format, StatementParameterListItem, StatementState

        params = [StatementParameterListItem(name=k, value=None if v is None else str(v))
                  for k, v in (parameters or {}).items()]
        response = self.client.statement_execution.execute_statement(
            statement=statement, warehouse_id=self.warehouse_id, wait_timeout="30s", parameters=params or None,
            format=Format.JSON_ARRAY, disposition=Disposition.INLINE)
        status = response.status
        if status is None or status.state != StatementState.SUCCEEDED:
            state, error = (status.state, status.error) if status is not None else (None, None)
            raise WorkspaceError(f"statement did not succeed ({state}): {error}")
        columns = response.manifest.schema.columns if response.manifest and response.manifest.schema else []
        rows = (response.result.data_array if response.result else None) or []
        return [{c.name: _value(c.type_name, v) for c, v in zip(columns, row, strict=True)} for row in rows]


def _value(type_name, raw: str | None):
    kind = (type_name.value if isinstance(type_name, Enum) else type_name) or ""  # the SDK's ColumnInfoTypeName
    if raw is None:
        return None
    if kind in ("ARRAY", "MAP", "STRUCT"):
        return json.loads(raw)
    if kind in ("INT", "LONG", "SHORT", "BYTE"):
        return int(raw)
    if kind in ("DOUBLE", "FLOAT", "DECIMAL"):
        return float(raw)
    if kind == "BOOLEAN":
        return raw.lower() == "true"
    return raw


class VolumeFiles:
    """Reads files from Unity Catalog Volumes through the Files API (a Databricks App has no /Volumes mount)."""

    def __init__(self, client):
        self.client = client

    def read(self, path: str, max_bytes: int) -> bytes:
        """The file's bytes; raises ``ValueError`` naming the limit when it holds more than ``max_bytes``."""
        size = self.client.files.get_metadata(path).content_length
        if size is not None and int(size) > max_bytes:
            raise ValueError(f"{path} has {size} bytes > {max_bytes}")
        contents = self.client.files.download(path).contents
        try:
            data = contents.read(max_bytes + 1)
        finally:
            contents.close()
        if len(data) > max_bytes:
            raise ValueError(f"{path} has more than {max_bytes} bytes")
        return data
