"""A loopback stand-in for the Databricks workspace REST APIs the project calls, written from the documented
contracts, not from the project's code: it imports nothing from ``fashion_catalog`` (a test greps this file),
so a wrong assumption of the product about Vector Search does not pass on both sides.

Each rule below names the page it comes from. Where the documentation is silent, the stand-in says so and
offers both plausible behaviours (``null_vectors``) so the product is tested against either.

* Vector Search (https://docs.databricks.com/api/workspace/vectorsearchendpoints,
  https://docs.databricks.com/api/workspace/vectorsearchindexes): endpoints of type STANDARD or
  STORAGE_OPTIMIZED; Delta Sync indexes over a Delta table (read here with ``deltalake``), synced on
  ``POST .../sync`` (TRIGGERED) or on every read (CONTINUOUS); queries of type ANN, FULL_TEXT and HYBRID.
* SQL Statement Execution (https://docs.databricks.com/api/workspace/statementexecution/executestatement):
  real SQL, run by DataFusion over the local Delta tables the Unity Catalog names map to.
* Files API (https://docs.databricks.com/api/workspace/files/download): files under mapped Volume folders.
* Model Serving (https://docs.databricks.com/api/workspace/servingendpoints): endpoints created, read,
  re-configured, with permissions, and invoked (``/serving-endpoints/{name}/invocations``) through a
  callable the test gives.
* Authentication: a personal access token (``Authorization: Bearer <token>``) on every call.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import numpy as np

# -- documented request/response examples, kept as fixtures ------------------------------------------------
# GET /api/2.0/vector-search/indexes/{index_name} (https://docs.databricks.com/api/workspace/vectorsearchindexes/getindex)
INDEX_EXAMPLE = {
    "name": "main.default.my_index", "endpoint_name": "my_endpoint", "primary_key": "id",
    "index_type": "DELTA_SYNC",
    "delta_sync_index_spec": {"source_table": "main.default.my_table", "pipeline_type": "TRIGGERED",
                              "pipeline_id": "pipeline-id"},
    "status": {"index_url": "host/api/2.0/vector-search/endpoints/my_endpoint/indexes/main.default.my_index",
               "indexed_row_count": 0, "ready": False,
               "message": "Delta sync Index creation is pending. Check latest status: ..."},
}
# POST /api/2.0/vector-search/endpoints (https://docs.databricks.com/api/workspace/vectorsearchendpoints/createendpoint)
ENDPOINT_TYPES = ("STANDARD", "STORAGE_OPTIMIZED")
# Query response (https://docs.databricks.com/api/workspace/vectorsearchindexes/queryindex): the score is the
# last column of each row of result.data_array.
QUERY_RESPONSE_EXAMPLE = {
    "manifest": {"column_count": 2, "columns": [{"name": "id"}, {"name": "score"}]},
    "result": {"row_count": 1, "data_array": [[1, 0.9]]},
}

# -- filters, standard endpoints: a dict whose keys encode column and operator ---------------------------
# https://docs.databricks.com/aws/en/vector-search/vector-search-filtering-guide: {"col": v} (a list: any of
# them), {"col NOT": v}, {"col <": n} (and <=, >, >=), {"col LIKE": "token"} (token match), keys ANDed.
# {"col1 OR col2": [v1, v2]} is the OR form of the query page (https://docs.databricks.com/aws/en/vector-search/query-vector-search).
_DICT_KEY = re.compile(r"^(?P<col>[A-Za-z_][A-Za-z0-9_]*)(?: (?P<op>NOT|<|<=|>|>=|LIKE))?$")
_OR_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?: OR [A-Za-z_][A-Za-z0-9_]*)+$")


class BadRequest(Exception):
    """Answered as 400 INVALID_PARAMETER_VALUE."""


def _tokens(text) -> list[str]:
    return re.findall(r"[a-z0-9]+", str(text or "").lower())


def _dict_predicate(filters: dict, synced: set[str]):
    checks = []
    for key, value in filters.items():
        if _OR_KEY.match(key):
            cols = key.split(" OR ")
            values = value if isinstance(value, list) else [value] * len(cols)
            for c in cols:
                if c not in synced:
                    raise BadRequest(f"Invalid filter: column {c} is not in the index")
            checks.append(lambda row, cols=cols, values=values: any(
                _same(row.get(c), v) for c, v in zip(cols, values, strict=False)))
            continue
        m = _DICT_KEY.match(key)
        if not m:
            raise BadRequest(f"Invalid operator used in filter: {key!r}")
        col, op = m.group("col"), m.group("op")
        if col not in synced:
            raise BadRequest(f"Invalid filter: column {col} is not in the index")
        if op is None:
            checks.append(lambda row, c=col, v=value: _in(row.get(c), v))
        elif op == "NOT":
            checks.append(lambda row, c=col, v=value: row.get(c) is not None and not _in(row.get(c), v))
        elif op == "LIKE":
            words = _tokens(value)
            checks.append(lambda row, c=col, w=words: set(w) <= set(_tokens(row.get(c))))
        else:
            checks.append(lambda row, c=col, o=op, v=value: row.get(c) is not None and _compare(row.get(c), o, v))
    return lambda row: all(check(row) for check in checks)


def _same(a, b) -> bool:
    return a is None and b is None or (a is not None and b is not None and a == b)


def _in(a, value) -> bool:
    return any(_same(a, v) for v in value) if isinstance(value, list) else _same(a, value)


def _compare(a, op: str, b) -> bool:
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "=": a == b, "!=": a != b, "<>": a != b}[op]


# -- filters, storage-optimized endpoints: a SQL-like string "similar to a WHERE clause" -----------------
# https://docs.databricks.com/aws/en/vector-search/vector-search-filtering-guide ("price < 200"): comparisons,
# IN / NOT IN lists, LIKE with % and _, IS [NOT] NULL, AND / OR / NOT and parentheses, with SQL's NULL rule
# (a comparison with NULL is not true).
_SQL_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|"
                        r"(?P<op><=|>=|<>|!=|=|<|>|\(|\)|,)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")


def _sql_tokens(text: str) -> list[tuple[str, object]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _SQL_TOKEN.match(text, pos)
        if not m:
            raise BadRequest(f"Invalid filter string at {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("lit", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("num") is not None:
            num = float(m.group("num"))
            out.append(("lit", int(num) if num.is_integer() and "." not in m.group("num") else num))
        elif m.group("op"):
            out.append(("op", m.group("op")))
        else:
            word = m.group("word")
            upper = word.upper()
            if upper in ("AND", "OR", "NOT", "IN", "LIKE", "IS", "NULL"):
                out.append(("kw", upper))
            elif upper in ("TRUE", "FALSE"):
                out.append(("lit", upper == "TRUE"))
            else:
                out.append(("col", word))
    return out


class _SqlFilter:
    """A recursive-descent parser of the filter string into a row predicate (three-valued: None is unknown)."""

    def __init__(self, text: str, synced: set[str]):
        self.tokens, self.i, self.synced = _sql_tokens(text), 0, synced
        self.predicate = self._or()
        if self.i != len(self.tokens):
            raise BadRequest(f"Invalid filter string: unexpected {self.tokens[self.i][1]!r}")

    def _peek(self, kind=None, value=None):
        if self.i >= len(self.tokens):
            return None
        tok = self.tokens[self.i]
        return tok if (kind is None or tok[0] == kind) and (value is None or tok[1] == value) else None

    def _take(self, kind=None, value=None):
        tok = self._peek(kind, value)
        if tok is None:
            raise BadRequest(f"Invalid filter string: expected {value or kind}")
        self.i += 1
        return tok

    def _accept(self, kind, value) -> bool:
        """Consume the next token when it is ``value``; say whether it was."""
        if self._peek(kind, value) is None:
            return False
        self.i += 1
        return True

    def _or(self):
        left = self._and()
        while self._peek("kw", "OR"):
            self.i += 1
            right = self._and()
            left = lambda row, a=left, b=right: _or3(a(row), b(row))  # noqa: E731
        return left

    def _and(self):
        left = self._not()
        while self._peek("kw", "AND"):
            self.i += 1
            right = self._not()
            left = lambda row, a=left, b=right: _and3(a(row), b(row))  # noqa: E731
        return left

    def _not(self):
        if self._peek("kw", "NOT"):
            self.i += 1
            inner = self._not()
            return lambda row: None if inner(row) is None else not inner(row)
        if self._peek("op", "("):
            self.i += 1
            inner = self._or()
            self._take("op", ")")
            return inner
        return self._predicate()

    def _predicate(self):
        col = self._take("col")[1]
        if col not in self.synced:
            raise BadRequest(f"Invalid filter string: column {col} is not in the index")
        if self._peek("kw", "IS"):
            self.i += 1
            negate = self._accept("kw", "NOT")
            self._take("kw", "NULL")
            return lambda row: (row.get(col) is not None) if negate else (row.get(col) is None)
        negate = self._accept("kw", "NOT")
        if self._peek("kw", "IN"):
            self.i += 1
            self._take("op", "(")
            values = [self._take("lit")[1]]
            while self._peek("op", ","):
                self.i += 1
                values.append(self._take("lit")[1])
            self._take("op", ")")
            return lambda row: None if row.get(col) is None else (row.get(col) in values) != negate
        if self._peek("kw", "LIKE"):
            self.i += 1
            pattern = self._take("lit")[1]
            regex = re.compile("^" + "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
                                             for ch in str(pattern)) + "$", re.DOTALL)
            return lambda row: None if row.get(col) is None else bool(regex.match(str(row.get(col)))) != negate
        if negate:
            raise BadRequest("Invalid filter string: NOT must precede IN or LIKE here")
        op = self._take("op")[1]
        if op not in ("=", "!=", "<>", "<", "<=", ">", ">="):
            raise BadRequest(f"Invalid filter string: operator {op!r}")
        value = self._take("lit")[1]
        return lambda row: None if row.get(col) is None else _compare(row.get(col), op, value)


def _and3(a, b):
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or3(a, b):
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def sql_predicate(text: str, synced: set[str]):
    """The rows a storage-optimized endpoint's filter string keeps (unknown counts as not kept)."""
    parsed = _SqlFilter(text, synced).predicate
    return lambda row: parsed(row) is True


# -- scores -----------------------------------------------------------------------------------------------
def ann_score(query: np.ndarray, vector: np.ndarray) -> float:
    """ANN similarity of Delta Sync indexes: 1 / (1 + d²), d the L2 distance (the query page's similarity
    score, https://docs.databricks.com/aws/en/vector-search/query-vector-search)."""
    d2 = float(np.sum((query - vector) ** 2))
    return 1.0 / (1.0 + d2)


def rrf(rankings: list[list[object]], k: int = 60) -> list[tuple[object, float]]:
    """Hybrid search merges the vector and the keyword rankings with Reciprocal Rank Fusion (the query page's
    hybrid section); k = 60 is RRF's usual constant (the page gives none)."""
    scores: dict[object, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def bm25(query: str, docs: dict[object, str], k1: float = 1.2, b: float = 0.75) -> list[tuple[object, float]]:
    """Full-text (keyword) relevance: Okapi BM25 over the query columns (the page documents keyword matching,
    not its formula; BM25 is what its full-text search is described as)."""
    terms = _tokens(query)
    tokenised = {key: _tokens(text) for key, text in docs.items()}
    n = len(tokenised) or 1
    avg = sum(len(t) for t in tokenised.values()) / n or 1.0
    df = {t: sum(1 for toks in tokenised.values() if t in toks) for t in set(terms)}
    out = []
    for key, toks in tokenised.items():
        score = 0.0
        for t in terms:
            tf = toks.count(t)
            if tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(toks) / avg))
        if score > 0:
            out.append((key, score))
    return sorted(out, key=lambda kv: (-kv[1], kv[0]))


class _Index:
    """One Delta Sync index: a snapshot of the source table's primary key, synced columns and vector."""

    def __init__(self, spec: dict, source_path: str, null_vectors: str):
        self.spec = spec
        self.source_path = source_path
        self.null_vectors = null_vectors
        sync = spec["delta_sync_index_spec"]
        self.vector_column = sync["embedding_vector_columns"][0]["name"]
        self.columns = set(sync.get("columns_to_sync") or []) | {spec["primary_key"], self.vector_column}
        self.rows: dict[object, dict] = {}
        self.version: int | None = None
        self.synced_at_ms: int | None = None
        self.lock = threading.Lock()
        self.sync()

    def sync(self) -> None:
        """Read the source table as of its latest version (a Delta Sync pipeline update)."""
        import pyarrow as pa
        from deltalake import DeltaTable, QueryBuilder

        table = DeltaTable(self.source_path)  # DataFusion reads deletion vectors (to_pyarrow_table does not)
        select = ", ".join(f'"{c}"' for c in sorted(self.columns))
        data = pa.table(QueryBuilder().register("t", table).execute(f"SELECT {select} FROM t").read_all()).to_pylist()
        rows = {}
        for row in data:
            vector = row.get(self.vector_column)
            if vector is None and self.null_vectors == "skip":
                continue  # the row is not in this index
            rows[row[self.spec["primary_key"]]] = row
        with self.lock:
            self.rows, self.version, self.synced_at_ms = rows, table.version(), int(time.time() * 1000)

    def refresh_if_continuous(self) -> None:
        if self.spec["delta_sync_index_spec"].get("pipeline_type") == "CONTINUOUS":
            from deltalake import DeltaTable

            if DeltaTable(self.source_path).version() != self.version:
                self.sync()

    def vector(self, row: dict) -> np.ndarray | None:
        value = row.get(self.vector_column)
        return None if value is None else np.asarray(value, dtype=np.float64)


class WorkspaceStandIn:
    """The workspace on 127.0.0.1: ``tables`` maps Unity Catalog names to local Delta folders, ``volumes``
    /Volumes prefixes to local folders. ``null_vectors`` says what a Delta Sync index does with a row whose
    vector is NULL, which the documentation does not say: ``"skip"`` (the row is not indexed) or ``"keep"``
    (the row is indexed and, having no vector, ranks last, with score 0)."""

    def __init__(self, tables: dict[str, str] | None = None, volumes: dict[str, str] | None = None,
                 endpoints: dict[str, str] | tuple = (), token: str = "test-token", null_vectors: str = "skip",
                 invocations=None):
        assert null_vectors in ("skip", "keep")
        self.token = token
        self.tables = dict(tables or {})
        self.volumes = dict(volumes or {})
        self.null_vectors = null_vectors
        endpoint_types = endpoints if isinstance(endpoints, dict) else {name: "STANDARD" for name in endpoints}
        self.endpoints = {name: {"name": name, "endpoint_type": kind} for name, kind in endpoint_types.items()}
        self.indexes: dict[str, _Index] = {}
        self.serving: dict[str, dict] = {}
        self.permissions: dict[str, list[dict]] = {}
        self.apps: dict[str, dict] = {}  # name -> {"name", "service_principal_client_id", ...}
        self.invocations = invocations
        self.requests: list[tuple[str, str, dict | None]] = []
        self.syncs: list[str] = []
        self.fail_syncs = 0  # the next N sync calls answer 500
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- Vector Search ------------------------------------------------------------------------------------
    def create_endpoint(self, body: dict) -> dict:
        if body.get("endpoint_type") not in ENDPOINT_TYPES:
            raise BadRequest(f"endpoint_type must be one of {ENDPOINT_TYPES}")
        self.endpoints[body["name"]] = {"name": body["name"], "endpoint_type": body["endpoint_type"]}
        return self.endpoint(body["name"])

    def endpoint(self, name: str) -> dict:
        return dict(self.endpoints[name], endpoint_status={"state": "ONLINE"}, num_indexes=len(
            [i for i in self.indexes.values() if i.spec["endpoint_name"] == name]))

    def create_index(self, body: dict) -> dict:
        endpoint = self.endpoints[body["endpoint_name"]]
        if body.get("index_type") != "DELTA_SYNC":
            raise BadRequest("only DELTA_SYNC indexes are served here")
        sync = body["delta_sync_index_spec"]
        if endpoint["endpoint_type"] == "STORAGE_OPTIMIZED" and sync.get("pipeline_type") != "TRIGGERED":
            # Storage-optimized endpoints support only the triggered sync mode
            # (https://docs.databricks.com/aws/en/vector-search/vector-search-endpoints, endpoint types).
            raise BadRequest("Storage-optimized endpoints only support TRIGGERED pipeline type")
        if sync["source_table"] not in self.tables:
            raise BadRequest(f"Table {sync['source_table']} does not exist")
        from deltalake import DeltaTable

        source = DeltaTable(self.tables[sync["source_table"]])
        present = set(source.schema().to_arrow().names)
        wanted = set(sync.get("columns_to_sync") or []) | {body["primary_key"]} | {
            c["name"] for c in sync["embedding_vector_columns"]}
        if wanted - present:
            raise BadRequest(f"Columns not found in the source table: {sorted(wanted - present)}")
        if (source.metadata().configuration or {}).get("delta.enableChangeDataFeed") != "true":
            # "the source table must have Change Data Feed enabled" (Delta Sync index requirements,
            # https://docs.databricks.com/aws/en/vector-search/create-vector-search)
            raise BadRequest(f"Change Data Feed is not enabled on {sync['source_table']}")
        self.indexes[body["name"]] = _Index(body, self.tables[sync["source_table"]], self.null_vectors)
        return {"name": body["name"], "status": {"ready": False}}

    def describe(self, name: str) -> dict:
        index = self.indexes[name]
        spec = index.spec
        index.refresh_if_continuous()
        return {
            "name": name, "endpoint_name": spec["endpoint_name"], "primary_key": spec["primary_key"],
            "index_type": "DELTA_SYNC", "delta_sync_index_spec": spec["delta_sync_index_spec"],
            "status": {
                "ready": True, "indexed_row_count": len(index.rows),
                "detailed_state": "ONLINE_NO_PENDING_UPDATE",
                "message": "Index is online",
                "index_url": f"127.0.0.1/api/2.0/vector-search/endpoints/{spec['endpoint_name']}/indexes/{name}",
                # Not in the API reference, but in real responses of triggered indexes (the last source
                # commit the pipeline applied); the product must cope with its absence.
                "triggered_update_status": {"last_processed_commit_version": index.version,
                                            "last_processed_commit_timestamp": index.synced_at_ms},
            },
        }

    def sync_index(self, name: str) -> dict:
        index = self.indexes[name]
        if index.spec["delta_sync_index_spec"].get("pipeline_type") != "TRIGGERED":
            # "This only works with managed delta sync index with pipeline type TRIGGERED" (sync endpoint).
            raise BadRequest("Sync is only supported for TRIGGERED Delta Sync indexes")
        self.syncs.append(name)
        if self.fail_syncs > 0:
            self.fail_syncs -= 1
            raise RuntimeError("sync failed")
        index.sync()
        return {}

    def query(self, name: str, body: dict) -> dict:
        index = self.indexes[name]
        index.refresh_if_continuous()
        endpoint_type = self.endpoints[index.spec["endpoint_name"]]["endpoint_type"]
        columns = list(body.get("columns") or [])
        missing = [c for c in columns if c not in index.columns]
        if missing:
            raise BadRequest(f"Requested columns to fetch are not present in index: {', '.join(missing)}")
        keep = self._filter(body, endpoint_type, index.columns)
        with index.lock:
            rows = [r for r in index.rows.values() if keep(r)]
        n = int(body.get("num_results") or 10)  # "Defaults to 10"
        query_type = (body.get("query_type") or "ANN").upper()
        pk = index.spec["primary_key"]
        by_key = {r[pk]: r for r in rows}
        if query_type == "FULL_TEXT":
            ranked = self._keyword(body, index, rows, pk)[:n]
        elif query_type == "HYBRID":
            vector_ranking = [k for k, _ in self._ann(body, index, rows, pk)[:n]]
            keyword_ranking = [k for k, _ in self._keyword(body, index, rows, pk)[:n]]
            ranked = rrf([vector_ranking, keyword_ranking])[:n]
        elif query_type == "ANN":
            ranked = self._ann(body, index, rows, pk)[:n]
        else:
            raise BadRequest(f"query_type must be ANN, HYBRID or FULL_TEXT, got {query_type}")
        cols = columns + ["score"]
        data = [[by_key[key].get(c) for c in columns] + [score] for key, score in ranked]
        return {"manifest": {"column_count": len(cols), "columns": [{"name": c} for c in cols]},
                "result": {"row_count": len(data), "data_array": data}}

    @staticmethod
    def _filter(body: dict, endpoint_type: str, columns: set[str]):
        filters_json, filter_string = body.get("filters_json"), body.get("filter_string")
        if endpoint_type == "STORAGE_OPTIMIZED":
            if filters_json:
                raise BadRequest("Storage-optimized endpoints take a SQL-like filter string, not filters_json")
            return sql_predicate(filter_string, columns) if filter_string else (lambda row: True)
        if filter_string:
            raise BadRequest("Standard endpoints take filters_json, not a filter string")
        filters = json.loads(filters_json) if filters_json else {}
        if not isinstance(filters, dict):
            raise BadRequest("filters_json must be a JSON object")
        return _dict_predicate(filters, columns)

    @staticmethod
    def _ann(body: dict, index: _Index, rows: list[dict], pk: str) -> list[tuple[object, float]]:
        if body.get("query_vector") is None:
            raise BadRequest("query_vector is required for ANN and HYBRID queries")
        query = np.asarray(body["query_vector"], dtype=np.float64)
        dim = index.spec["delta_sync_index_spec"]["embedding_vector_columns"][0]["embedding_dimension"]
        if query.shape != (dim,):
            raise BadRequest(f"query_vector has {query.size} dimensions, the index {dim}")
        scored = []
        for row in rows:
            vector = index.vector(row)
            scored.append((row[pk], 0.0 if vector is None else ann_score(query, vector)))
        return sorted(scored, key=lambda kv: (-kv[1], kv[0]))

    @staticmethod
    def _keyword(body: dict, index: _Index, rows: list[dict], pk: str) -> list[tuple[object, float]]:
        text = body.get("query_text")
        if not text:
            raise BadRequest("query_text is required for FULL_TEXT and HYBRID queries")
        query_columns = body.get("query_columns") or sorted(
            c for c in index.columns if rows and isinstance(rows[0].get(c), str))
        unknown = [c for c in query_columns if c not in index.columns]
        if unknown:
            raise BadRequest(f"query_columns not in the index: {unknown}")
        return bm25(text, {r[pk]: " ".join(str(r.get(c) or "") for c in query_columns) for r in rows})

    # -- SQL statements -----------------------------------------------------------------------------------
    def statement(self, body: dict) -> dict:
        from deltalake import DeltaTable, QueryBuilder

        sql = body["statement"]
        builder = QueryBuilder()
        for i, (name, local) in enumerate(self.tables.items()):
            if name in sql:
                builder.register(f"t{i}", DeltaTable(local))
                sql = sql.replace(name, f"t{i}")
        for param in body.get("parameters") or []:  # named parameter markers, :name
            sql = sql.replace(f":{param['name']}", "'" + str(param.get("value")).replace("'", "''") + "'")
        sql = sql.replace("`", '"')
        try:
            import pyarrow as pa

            table = pa.table(builder.execute(sql).read_all())
        except Exception as exc:  # noqa: BLE001 - the API answers a failed statement with state FAILED
            return {"statement_id": "s1", "status": {"state": "FAILED", "error": {"error_code": "BAD_REQUEST",
                                                                                  "message": str(exc)}}}
        columns = [{"name": f.name, "type_name": _type_name(f.type), "position": i}
                   for i, f in enumerate(table.schema)]
        data = [[_text(v) for v in row.values()] for row in table.to_pylist()]
        # JSON_ARRAY disposition INLINE: result.data_array holds every value as a string (or null).
        return {"statement_id": "s1", "status": {"state": "SUCCEEDED"},
                "manifest": {"format": "JSON_ARRAY", "schema": {"column_count": len(columns), "columns": columns},
                             "total_row_count": len(data)},
                "result": {"row_count": len(data), "data_array": data}}

    # -- Model Serving ------------------------------------------------------------------------------------
    def create_serving(self, body: dict) -> dict:
        if body["name"] in self.serving:
            raise Conflict(f"Endpoint with name '{body['name']}' already exists")
        self._check_served(body.get("config") or {})
        self.serving[body["name"]] = {"name": body["name"], "id": f"ep-{len(self.serving) + 1}",
                                      "config": body.get("config"), "state": {"ready": "READY",
                                                                              "config_update": "NOT_UPDATING"}}
        return self.serving[body["name"]]

    def update_serving_config(self, name: str, body: dict) -> dict:
        self._check_served(body)
        self.serving[name]["config"] = body
        return self.serving[name]

    def _check_served(self, config: dict) -> None:
        for entity in config.get("served_entities") or []:
            if entity.get("workload_size") not in ("Small", "Medium", "Large"):
                raise BadRequest("workload_size must be Small, Medium or Large")
            if "entity_name" not in entity or "entity_version" not in entity:
                raise BadRequest("served entities name a Unity Catalog model and its version")


class Conflict(Exception):
    """Answered as 409 RESOURCE_ALREADY_EXISTS."""


def _handler(ws: WorkspaceStandIn):
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

        def _not_found(self, what):
            return self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"{what} does not exist"})

        def _handle(self, method: str):
            body = self._body() if method != "HEAD" else None
            ws.requests.append((method, self.path, body))
            if self.headers.get("Authorization") != f"Bearer {ws.token}":
                return self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "Invalid access token"})
            path = urlparse(self.path).path
            try:
                return self._route(method, path, body)
            except BadRequest as exc:
                return self._reply(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": str(exc)})
            except Conflict as exc:
                return self._reply(409, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": str(exc)})
            except KeyError as exc:
                return self._not_found(exc.args[0] if exc.args else path)
            except Exception as exc:  # noqa: BLE001 - answered, as a server does, not a dropped connection
                return self._reply(500, {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"})

        def _route(self, method: str, path: str, body):  # noqa: C901 - one table of routes
            if path.startswith("/api/2.0/fs/files/"):
                return self._files(path, head=method == "HEAD")
            if method == "POST" and path == "/api/2.0/sql/statements":
                return self._reply(200, ws.statement(body))
            # Vector Search endpoints and indexes. The Python client sends queries as GET with a JSON body.
            if path == "/api/2.0/vector-search/endpoints" and method == "POST":
                return self._reply(200, ws.create_endpoint(body))
            m = re.match(r"^/api/2.0/vector-search/endpoints/([^/]+)$", path)
            if m and method == "GET":
                return self._reply(200, ws.endpoint(m.group(1)))
            m = re.match(r"^/api/2.0/vector-search/endpoints/([^/]+)/indexes$", path)
            if m and method == "POST":
                ws.endpoints[m.group(1)]  # noqa: B018 - KeyError: 404
                return self._reply(200, ws.create_index(dict(body, endpoint_name=m.group(1))))
            if m and method == "GET":
                return self._reply(200, {"vector_indexes": [{"name": n} for n, i in ws.indexes.items()
                                                            if i.spec["endpoint_name"] == m.group(1)]})
            if path == "/api/2.0/vector-search/indexes" and method == "POST":
                return self._reply(200, ws.create_index(body))
            m = re.match(r"^/api/2.0/vector-search/(?:endpoints/[^/]+/)?indexes/([^/]+)/(query|sync)$", path)
            if m and m.group(2) == "query" and method in ("GET", "POST"):
                return self._reply(200, ws.query(m.group(1), body or {}))
            if m and m.group(2) == "sync" and method == "POST":
                return self._reply(200, ws.sync_index(m.group(1)))
            m = re.match(r"^/api/2.0/vector-search/(?:endpoints/[^/]+/)?indexes/([^/]+)$", path)
            if m and method == "GET":
                return self._reply(200, ws.describe(m.group(1)))
            # Model Serving.
            if path == "/api/2.0/serving-endpoints" and method == "POST":
                return self._reply(200, ws.create_serving(body))
            m = re.match(r"^/api/2.0/serving-endpoints/([^/]+)$", path)
            if m and method == "GET":
                return self._reply(200, ws.serving[m.group(1)])
            m = re.match(r"^/api/2.0/serving-endpoints/([^/]+)/config$", path)
            if m and method == "PUT":
                return self._reply(200, ws.update_serving_config(m.group(1), body))
            m = re.match(r"^/api/2.0/permissions/serving-endpoints/([^/]+)$", path)
            if m and method in ("PATCH", "PUT"):
                acl = ws.permissions.setdefault(m.group(1), [])
                acl.extend(body.get("access_control_list") or [])
                return self._reply(200, {"object_id": f"/serving-endpoints/{m.group(1)}", "access_control_list": acl})
            # Apps (https://docs.databricks.com/api/workspace/apps/get): an App's own service principal.
            m = re.match(r"^/api/2.0/apps/([^/]+)$", path)
            if m and method == "GET":
                return self._reply(200, ws.apps[m.group(1)])
            m = re.match(r"^/serving-endpoints/([^/]+)/invocations$", path)
            if m and method == "POST" and ws.invocations is not None:
                return self._reply(200, ws.invocations(m.group(1), body))
            return self._not_found(path)

        def _files(self, path: str, head: bool):
            path = unquote(path[len("/api/2.0/fs/files"):])
            for prefix, folder in ws.volumes.items():
                if path.startswith(prefix + "/") and ".." not in path.split("/"):
                    try:
                        with open(folder + path[len(prefix):], "rb") as fh:
                            data = fh.read()
                    except OSError:
                        break
                    return self._reply(200, data, "application/octet-stream",
                                       {"Last-Modified": "Sat, 28 Nov 2026 00:00:00 GMT"})
            return self._not_found(path)

        def do_HEAD(self):  # noqa: N802
            self._handle("HEAD")

        def do_GET(self):  # noqa: N802
            self._handle("GET")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

        def do_PUT(self):  # noqa: N802
            self._handle("PUT")

        def do_PATCH(self):  # noqa: N802
            self._handle("PATCH")

        def log_message(self, *args):
            pass

    return Handler


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
        return json.dumps([v.item() if isinstance(v, np.generic) else v for v in value])
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# The older name of the stand-in.
VectorSearchStandIn = WorkspaceStandIn
