"""A loopback stand-in for the Databricks workspace APIs the project calls, backed by local data.

It speaks the shapes the real clients send and read (the Vector Search client, the Databricks
SDK), and refuses what the real service refuses:

* Vector Search: endpoints (create, get), Delta Sync indexes (create, describe with
  ``status.detailed_state``, query with ``manifest.columns`` + ``result.data_array``, sync).
  Scores are Vector Search's ``1 / (1 + d²)`` of the L2 distance, not cosine. An invalid
  filter operator or a column not synced is a 400.
* SQL Statement Execution (``/api/2.0/sql/statements``): real SQL, run by DataFusion
  (``deltalake``) over the local Delta tables the Unity Catalog names map to.
* Files API (``/api/2.0/fs/files/Volumes/...``): files under the mapped Volume folders.
* Authentication: a personal access token (``Authorization: Bearer <token>``) on every call.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import numpy as np

from fashion_catalog.indexes.filters import FilterError, parse_filters
from fashion_catalog.schemas import FILTER_COLUMNS, INDEX_KINDS
from fashion_catalog.search.fusion import reciprocal_rank_fusion


def vector_search_score(cosine: float) -> float:
    """What Vector Search returns for unit vectors: 1 / (1 + d²) with d² = 2 - 2 cos."""
    return 1.0 / (3.0 - 2.0 * cosine)


class WorkspaceStandIn:
    def __init__(self, store, token: str = "test-token", tables: dict[str, str] | None = None,
                 volumes: dict[str, str] | None = None, endpoints: tuple[str, ...] = ()):
        self.store = store
        self.token = token
        self.tables = dict(tables or {})  # UC table name -> local Delta path
        self.volumes = dict(volumes or {})  # /Volumes/... prefix -> local folder
        self.endpoints: dict[str, dict] = {name: {"name": name, "endpoint_type": "STANDARD"} for name in endpoints}
        self.indexes: dict[str, dict] = {}  # name -> create request
        self.requests: list[tuple[str, str, dict | None]] = []
        self.syncs: list[str] = []
        self.fail_syncs = 0  # the next N sync calls answer 500
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body, content_type: str = "application/json", extra=None):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _body(self):
                n = int(self.headers.get("Content-Length", 0))
                return json.loads(self.rfile.read(n)) if n else None

            def _auth_ok(self):
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"})
                    return False
                return True

            def _not_found(self, what):
                return self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"{what} not found"})

            def do_HEAD(self):  # noqa: N802
                outer.requests.append(("HEAD", self.path, None))
                if self._auth_ok():
                    self._files(head=True)

            def do_GET(self):  # noqa: N802
                body = self._body()  # the Vector Search client sends its query as a GET with a JSON body
                outer.requests.append(("GET", self.path, body))
                if not self._auth_ok():
                    return
                path = urlparse(self.path).path
                if path.startswith("/api/2.0/fs/files/"):
                    return self._files(head=False)
                m = re.match(r"^/api/2.0/vector-search/indexes/([^/]+)/query$", path)
                if m and m.group(1) in outer.indexes:
                    return self._query(outer.indexes[m.group(1)], body)
                m = re.match(r"^/api/2.0/vector-search/endpoints/([^/]+)$", path)
                if m:
                    if m.group(1) not in outer.endpoints:
                        return self._not_found(f"endpoint {m.group(1)}")
                    return self._reply(200, dict(outer.endpoints[m.group(1)], endpoint_status={"state": "ONLINE"}))
                m = re.match(r"^/api/2.0/vector-search/endpoints/([^/]+)/indexes$", path)
                if m:
                    return self._reply(200, {"vector_indexes": [{"name": n} for n in outer.indexes]})
                m = re.match(r"^/api/2.0/vector-search/(?:endpoints/[^/]+/)?indexes/([^/]+)$", path)
                if m and m.group(1) in outer.indexes:
                    spec = outer.indexes[m.group(1)]
                    return self._reply(200, {
                        "name": m.group(1), "endpoint_name": spec["endpoint_name"], "primary_key": "product_id",
                        "index_type": "DELTA_SYNC", "delta_sync_index_spec": spec["delta_sync_index_spec"],
                        "status": {"ready": True, "indexed_row_count": int(outer.store.status().rows),
                                   "detailed_state": outer._state(),
                                   "index_url": f"127.0.0.1/api/2.0/vector-search/indexes/{m.group(1)}"}})
                return self._not_found(path)

            def do_POST(self):  # noqa: N802
                body = self._body()
                outer.requests.append(("POST", self.path, body))
                if not self._auth_ok():
                    return
                path = urlparse(self.path).path
                if path == "/api/2.0/sql/statements":
                    return self._statement(body)
                if path == "/api/2.0/vector-search/endpoints":
                    outer.endpoints[body["name"]] = {"name": body["name"], "endpoint_type": body["endpoint_type"]}
                    return self._reply(200, dict(outer.endpoints[body["name"]], endpoint_status={"state": "ONLINE"}))
                m = re.match(r"^/api/2.0/vector-search/endpoints/([^/]+)/indexes$", path)
                if m:
                    if m.group(1) not in outer.endpoints:
                        return self._not_found(f"endpoint {m.group(1)}")
                    outer.indexes[body["name"]] = dict(body, endpoint_name=m.group(1))
                    return self._reply(200, {"name": body["name"], "status": {"ready": False}})
                m = re.match(r"^/api/2.0/vector-search/indexes/([^/]+)/sync$", path)
                if m and m.group(1) in outer.indexes:
                    outer.syncs.append(m.group(1))
                    if outer.fail_syncs > 0:
                        outer.fail_syncs -= 1
                        return self._reply(500, {"error_code": "INTERNAL_ERROR", "message": "sync failed"})
                    outer.store.sync()
                    return self._reply(200, {})
                m = re.match(r"^/api/2.0/vector-search/indexes/([^/]+)/query$", path)
                if m and m.group(1) in outer.indexes:
                    return self._query(outer.indexes[m.group(1)], body)
                return self._not_found(f"{path}; indexes: {sorted(outer.indexes)}")

            def _files(self, head: bool):
                path = unquote(urlparse(self.path).path[len("/api/2.0/fs/files"):])
                for prefix, folder in outer.volumes.items():
                    if path.startswith(prefix + "/") and ".." not in path.split("/"):
                        local = folder + path[len(prefix):]
                        try:
                            with open(local, "rb") as fh:
                                data = fh.read()
                        except OSError:
                            break
                        return self._reply(200, data, "application/octet-stream",
                                           {"Last-Modified": "Sat, 28 Nov 2026 00:00:00 GMT"})
                return self._not_found(path)

            def _statement(self, body):
                from deltalake import DeltaTable, QueryBuilder

                sql = body["statement"]
                builder = QueryBuilder()
                for i, (name, local) in enumerate(outer.tables.items()):
                    if name in sql:
                        builder.register(f"t{i}", DeltaTable(local))
                        sql = sql.replace(name, f"t{i}")
                for param in body.get("parameters") or []:
                    sql = sql.replace(f":{param['name']}", "'" + str(param.get("value")).replace("'", "''") + "'")
                sql = sql.replace("`", '"')
                try:
                    import pyarrow as pa

                    table = pa.table(builder.execute(sql).read_all())
                except Exception as exc:  # noqa: BLE001 - the real API answers a failed statement too
                    return self._reply(200, {"statement_id": "s1", "status": {
                        "state": "FAILED", "error": {"error_code": "BAD_REQUEST", "message": str(exc)}}})
                columns = [{"name": f.name, "type_name": _type_name(f.type), "position": i}
                           for i, f in enumerate(table.schema)]
                data = [[_text(v) for v in row.values()] for row in table.to_pylist()]
                return self._reply(200, {"statement_id": "s1", "status": {"state": "SUCCEEDED"},
                                         "manifest": {"format": "JSON_ARRAY", "schema": {"column_count": len(columns),
                                                                                         "columns": columns},
                                                      "total_row_count": len(data)},
                                         "result": {"row_count": len(data), "data_array": data}})

            def _query(self, spec, body):
                synced = set(spec["delta_sync_index_spec"].get("columns_to_sync") or [])
                missing = [c for c in body["columns"] if c not in synced]
                if missing:
                    return self._reply(400, {"error_code": "INVALID_PARAMETER_VALUE",
                                             "message": f"Requested columns to fetch are not present in index: "
                                                        f"{', '.join(missing)}"})
                filters = json.loads(body["filters_json"]) if body.get("filters_json") else None
                try:
                    parse_filters(filters, FILTER_COLUMNS)
                except FilterError as exc:
                    return self._reply(400, {"error_code": "INVALID_PARAMETER_VALUE",
                                             "message": f"Invalid operator used in filter: {exc}"})
                column = spec["delta_sync_index_spec"]["embedding_vector_columns"][0]["name"]
                kind = {v: k for k, v in INDEX_KINDS.items()}[column]
                query_type = body.get("query_type") or "ANN"
                text_columns = body.get("query_columns") or []
                if [c for c in text_columns if c not in synced]:
                    return self._reply(400, {"error_code": "INVALID_PARAMETER_VALUE",
                                             "message": f"query_columns not synced: {text_columns}"})
                n = body["num_results"]
                if query_type == "FULL_TEXT":
                    rows = outer.store.keyword_search(body["query_text"], n, filters)
                elif query_type == "HYBRID":  # Vector Search fuses its ANN and keyword rankings (RRF)
                    by_id = {}
                    lists = {"ann": outer.store.search(kind, body["query_vector"], n, filters),
                             "text": outer.store.keyword_search(body["query_text"], n, filters)}
                    for found in lists.values():
                        by_id.update({r["product_id"]: r for r in found})
                    fused = reciprocal_rank_fusion({k: [r["product_id"] for r in v] for k, v in lists.items()})
                    rows = [dict(by_id[pid], score=score) for pid, score in fused[:n]]
                else:
                    rows = outer.store.search(kind, body["query_vector"], n, filters)
                for row in rows:
                    if query_type == "ANN":
                        row["score"] = vector_search_score(row["score"])
                    if column in body["columns"]:
                        vector = outer.store.vector(row["product_id"], kind)
                        row[column] = None if vector is None else [float(x) for x in vector]
                cols = list(body["columns"]) + ["score"]
                data = [[r.get(c) for c in cols] for r in rows]
                manifest = {"column_count": len(cols), "columns": [{"name": c} for c in cols]}
                return self._reply(200, {"manifest": manifest, "result": {"row_count": len(data), "data_array": data}})

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _state(self) -> str:
        status = self.store.status()
        return "ONLINE_NO_PENDING_UPDATE" if not status.lag_versions else "ONLINE_TRIGGERED_UPDATE"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _type_name(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        return "LONG" if arrow_type.bit_width == 64 else "INT"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_list_view(arrow_type):
        return "ARRAY"
    return "STRING"


def _text(value) -> str | None:
    """JSON_ARRAY results carry every value as text; arrays as JSON."""
    if value is None:
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return json.dumps([_plain(v) for v in value])
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


# The older name of the stand-in.
VectorSearchStandIn = WorkspaceStandIn
