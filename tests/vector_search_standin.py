"""A loopback stand-in for the Databricks Vector Search REST API, backed by the local index.

It speaks the shapes the real client uses (index GET with status, create, and
``/query`` answering ``manifest.columns`` + ``result.data_array``) and refuses what
the real service refuses: an invalid filter operator, or columns not synced.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from search.filters import FilterError, parse_filters
from search.local_index import FILTER_COLUMNS, INDEX_KINDS


class VectorSearchStandIn:
    def __init__(self, store, token: str = "test-token"):
        self.store = store
        self.token = token
        self.indexes: dict[str, dict] = {}  # name -> create request
        self.requests: list[tuple[str, str, dict | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                n = int(self.headers.get("Content-Length", 0))
                return json.loads(self.rfile.read(n)) if n else None

            def _auth_ok(self):
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"})
                    return False
                return True

            def do_GET(self):  # noqa: N802
                body = self._body()  # the real client sends its query as a GET with a JSON body
                outer.requests.append(("GET", self.path, body))
                if not self._auth_ok():
                    return
                path = self.path.split("?")[0]
                m = re.match(r"^/api/2.0/vector-search/indexes/([^/]+)/query$", path)
                if m and m.group(1) in outer.indexes:
                    return self._query(outer.indexes[m.group(1)], body)
                m = re.match(r"^/api/2.0/vector-search/endpoints/([^/]+)$", path)
                if m:
                    return self._reply(200, {"name": m.group(1), "endpoint_status": {"state": "ONLINE"}})
                m = re.match(r"^/api/2.0/vector-search/endpoints/([^/]+)/indexes$", path)
                if m:
                    return self._reply(200, {"vector_indexes": [{"name": n} for n in outer.indexes]})
                m = re.match(r"^/api/2.0/vector-search/(?:endpoints/[^/]+/)?indexes/([^/]+)$", path)
                if m and m.group(1) in outer.indexes:
                    spec = outer.indexes[m.group(1)]
                    return self._reply(200, {
                        "name": m.group(1), "endpoint_name": spec["endpoint_name"], "primary_key": "product_id",
                        "index_type": "DELTA_SYNC", "delta_sync_index_spec": spec,
                        "status": {"ready": True, "indexed_row_count": int(outer.store.status().rows),
                                   "index_url": f"127.0.0.1/api/2.0/vector-search/indexes/{m.group(1)}"}})
                return self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"{path} not found"})

            def do_POST(self):  # noqa: N802
                body = self._body()
                outer.requests.append(("POST", self.path, body))
                if not self._auth_ok():
                    return
                m = re.match(r"^/api/2.0/vector-search/endpoints/([^/]+)/indexes$", self.path)
                if m:
                    spec = dict(body, endpoint_name=m.group(1))
                    outer.indexes[body["name"]] = spec
                    return self._reply(200, {"name": body["name"], "status": {"ready": False}})
                m = re.match(r"^/api/2.0/vector-search/indexes/([^/]+)/query$", self.path)
                if m and m.group(1) in outer.indexes:
                    return self._query(outer.indexes[m.group(1)], body)
                return self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST",
                                         "message": f"{self.path} not found; indexes: {sorted(outer.indexes)}"})

            def _query(self, spec, body):
                synced = set(spec.get("delta_sync_index_spec", spec).get("columns_to_sync") or [])
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
                column = spec["delta_sync_index_spec"]["embedding_vector_columns"][0]["name"] \
                    if "delta_sync_index_spec" in spec else spec["embedding_vector_column"]
                kind = {v: k for k, v in INDEX_KINDS.items()}[column]
                rows = outer.store.search(kind, body["query_vector"], body["num_results"], filters)
                cols = list(body["columns"]) + ["score"]
                data = [[r.get(c) for c in cols] for r in rows]
                manifest = {"column_count": len(cols), "columns": [{"name": c} for c in cols]}
                return self._reply(200, {"manifest": manifest, "result": {"row_count": len(data), "data_array": data}})

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
