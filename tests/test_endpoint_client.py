"""Unit tests: EndpointEncoder against tiny local HTTP servers (retries, shapes, errors, auth)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from fashion_catalog.encoders.endpoint import EndpointEncoder, EndpointError, EndpointResponseError, parse_predictions
from tests.loopback import JsonServer


class _Server(JsonServer):
    """Answers POSTs from a list of (status, body) replies, in order (the last one repeats); a callable body
    is computed from the request."""

    def __init__(self, replies):
        self.replies = list(replies)
        super().__init__(self._next)

    def _next(self, body):
        status, reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        return status, reply(body) if callable(reply) else reply


def _echo_vectors(body):
    return {"predictions": [[float(i + 1), 0.0, 0.0] for i, _ in enumerate(body["dataframe_records"])]}


def test_retries_503_twice_then_succeeds():
    with _Server([(503, {"error": "busy"}), (503, {"error": "busy"}), (200, _echo_vectors)]) as srv:
        enc = EndpointEncoder(srv.url, backoff_base_s=0.01, token_env=None)
        out = enc.encode_texts(["red dress"])
    assert len(srv.requests) == 3
    np.testing.assert_allclose(out, [[1.0, 0.0, 0.0]])


def test_gives_up_after_max_retries_with_the_last_error():
    with _Server([(429, {"error": "slow down"})]) as srv:
        enc = EndpointEncoder(srv.url, max_retries=2, backoff_base_s=0.01, token_env=None)
        with pytest.raises(EndpointError, match=r"still failing after 2 retries: HTTP 429"):
            enc.encode_texts(["x"])
    assert len(srv.requests) == 3


def test_client_errors_are_not_retried():
    with _Server([(400, {"error_code": "BAD_REQUEST", "message": "missing column"})]) as srv:
        enc = EndpointEncoder(srv.url, backoff_base_s=0.01, token_env=None)
        with pytest.raises(EndpointError, match="answered 400: .*missing column"):
            enc.encode_texts(["x"])
    assert len(srv.requests) == 1


def test_malformed_response_raises_a_clear_error():
    with _Server([(200, {"result": "ok"})]) as srv:
        enc = EndpointEncoder(srv.url, token_env=None)
        with pytest.raises(EndpointResponseError, match="unreadable endpoint response.*'result': 'ok'"):
            enc.encode_texts(["x"])
    with _Server([(200, b"<html>oops</html>")]) as srv:
        with pytest.raises(EndpointResponseError, match="non-JSON"):
            EndpointEncoder(srv.url, token_env=None).encode_texts(["x"])


def test_batches_concurrency_order_auth_and_params(monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "s3cret")
    with _Server([(200, lambda b: {"predictions": [[float(r["text"]), 1.0] for r in b["dataframe_records"]]})]) as srv:
        enc = EndpointEncoder(srv.url, token_env="MY_TOKEN", batch_size=3, max_concurrency=2, text_weight=0.3)
        out = enc.encode_texts([str(i) for i in range(1, 9)])
    assert sorted(len(r["body"]["dataframe_records"]) for r in srv.requests) == [2, 3, 3]
    assert {r["auth"] for r in srv.requests} == {"Bearer s3cret"}
    assert {r["body"]["params"]["text_weight"] for r in srv.requests} == {0.3}
    firsts = out[:, 0] / out[:, 1]
    np.testing.assert_allclose(firsts, np.arange(1, 9))  # order kept across concurrent batches


@pytest.mark.parametrize(
    "payload,n,expected",
    [
        ({"predictions": [[1.0, 0.0], [0.0, 2.0]]}, 2, [[1.0, 0.0], [0.0, 2.0]]),
        ({"predictions": [3.0, 4.0]}, 1, [[3.0, 4.0]]),
        ([3.0, 4.0], 1, [[3.0, 4.0]]),
        ({"predictions": [{"embedding": [1.0, 2.0], "error": None}, {"embedding": [2.0, 1.0]}]}, 2,
         [[1.0, 2.0], [2.0, 1.0]]),
        ([{"embedding": [1.0, 2.0]}], 1, [[1.0, 2.0]]),
        ({"predictions": {"embedding": [5.0, 6.0]}}, 1, [[5.0, 6.0]]),
        ({"predictions": {"embedding": [[5.0, 6.0], [1.0, 1.0]]}}, 2, [[5.0, 6.0], [1.0, 1.0]]),
    ],
)
def test_accepted_response_shapes(payload, n, expected):
    assert [v for v, _ in parse_predictions(payload, n)] == expected


def test_per_row_errors_are_kept_and_counts_checked():
    rows = parse_predictions({"predictions": [{"embedding": None, "error": "EMPTY_INPUT: row 0"},
                                              {"embedding": [1.0]}]}, 2)
    assert rows == [(None, "EMPTY_INPUT: row 0"), ([1.0], None)]
    with pytest.raises(EndpointResponseError, match="returned 1 predictions for 2 inputs"):
        parse_predictions({"predictions": [[1.0, 2.0]]}, 2)
    with pytest.raises(EndpointResponseError, match="different sizes"):
        parse_predictions({"predictions": [[1.0, 2.0], [1.0]]}, 2)
    with pytest.raises(EndpointResponseError):
        parse_predictions({"predictions": [["a", "b"]]}, 1)


def test_databricks_url_shape():
    enc = EndpointEncoder.for_databricks("adb-123.azuredatabricks.net", "clip-encoder", token="t")
    assert enc.url == "https://adb-123.azuredatabricks.net/serving-endpoints/clip-encoder/invocations"
    with pytest.raises(ValueError, match="must start with http"):
        EndpointEncoder("ftp://x")


def _reject_bad(body):
    """400 for any batch holding the text "bad" (the way a strict endpoint refuses one malformed row)."""
    records = body["dataframe_records"]
    if any(r.get("text") == "bad" for r in records):
        return 400, {"error_code": "BAD_REQUEST", "message": "row cannot be parsed"}
    return 200, {"predictions": [[float(len(r.get("text", ""))), 1.0] for r in records]}


class _DynamicServer(JsonServer):
    """Replies computed from the request: handler(body) -> (status, body)."""


def test_a_rejected_row_gets_its_own_error_and_the_rest_keep_their_vectors():
    texts = ["a", "bb", "ccc", "bad", "eeeee", "ffffff"]
    with _DynamicServer(_reject_bad) as srv:
        enc = EndpointEncoder(srv.url, token_env=None, batch_size=6, backoff_base_s=0.01)
        vectors, errors = enc.embed_rows("text", texts)
    assert [e is None for e in errors] == [True, True, True, False, True, True]
    assert errors[3].startswith("REJECTED:") and "row cannot be parsed" in errors[3]
    assert [round(float(v[0] / v[1]), 6) for v in vectors if v is not None] == [1, 2, 3, 5, 6]
    # 1 batch + 2 halves + the rejected half's halves, down to the one row: far fewer than one request a row.
    assert len(srv.requests) <= 7


def test_a_request_the_endpoint_refuses_as_a_whole_is_not_split_row_by_row():
    with _Server([(400, {"error_code": "BAD_REQUEST", "message": "missing column"})]) as srv:
        enc = EndpointEncoder(srv.url, token_env=None, batch_size=500, backoff_base_s=0.01, max_split_requests=16)
        _, errors = enc.embed_rows("text", [str(i) for i in range(400)])
    assert all(e and "missing column" in e for e in errors)
    assert len(srv.requests) <= 17  # the batch, then at most max_split_requests halves


def test_several_bad_rows_in_both_halves_still_leave_the_good_rows_their_vectors():
    texts = ["bad" if i in (2, 11) else "x" * (i + 1) for i in range(16)]
    with _DynamicServer(_reject_bad) as srv:
        enc = EndpointEncoder(srv.url, token_env=None, batch_size=16, backoff_base_s=0.01)
        vectors, errors = enc.embed_rows("text", texts)
    assert [i for i, e in enumerate(errors) if e] == [2, 11]
    assert all(v is not None for i, v in enumerate(vectors) if i not in (2, 11))


def test_requests_stay_below_the_byte_bound_and_an_oversized_row_is_refused_locally():
    from PIL import Image

    rng = np.random.default_rng(0)
    noisy = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(6)]
    huge = Image.fromarray(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8))
    with _DynamicServer(lambda b: (200, {"predictions": [[1.0, 0.0]] * len(b["dataframe_records"])})) as srv:
        enc = EndpointEncoder(srv.url, token_env=None, batch_size=500, max_request_bytes=40_000)
        vectors, errors = enc.embed_rows("image", noisy[:3] + [huge] + noisy[3:])
    assert all(r["bytes"] <= 40_000 for r in srv.requests) and len(srv.requests) >= 2
    assert errors[3].startswith("REQUEST_TOO_LARGE") and vectors[3] is None
    assert all(e is None for i, e in enumerate(errors) if i != 3)
    assert sum(len(r["body"]["dataframe_records"]) for r in srv.requests) == 6


def test_udf_rows_keep_their_vectors_when_the_endpoint_rejects_one():
    from fashion_catalog.udfs.encoding import TEXT_REJECTED, encode_rows

    with _DynamicServer(_reject_bad) as srv:
        enc = EndpointEncoder(srv.url, token_env=None, batch_size=8, backoff_base_s=0.01)
        vectors, errors = encode_rows(enc, "text", ["ok", "bad", "fine"], 8)
    assert errors == [None, TEXT_REJECTED, None] and vectors[1] is None and vectors[0] is not None


class _OAuthWorkspace:
    """A loopback Databricks workspace for OAuth M2M: discovery, a token endpoint issuing short-lived tokens,
    and a serving endpoint that only answers requests carrying a token it issued and that has not expired."""

    def __init__(self, lifetime_s: float):
        import itertools
        import time

        self.issued: dict[str, float] = {}
        self.seen: list[str] = []
        counter = itertools.count(1)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path == "/.well-known/databricks-config":
                    return self._reply(200, {"oidc_endpoint": f"{outer.url}/oidc", "workspace_id": "1", "cloud": "aws"})
                if self.path == "/oidc/.well-known/oauth-authorization-server":
                    return self._reply(200, {"authorization_endpoint": f"{outer.url}/oidc/v1/authorize",
                                             "token_endpoint": f"{outer.url}/oidc/v1/token"})
                return self._reply(404, {"error_code": "NOT_FOUND"})

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/oidc/v1/token":
                    token = f"token-{next(counter)}"
                    outer.issued[token] = time.time() + lifetime_s
                    return self._reply(200, {"access_token": token, "token_type": "Bearer",
                                             "expires_in": lifetime_s})
                auth = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                outer.seen.append(auth)
                if outer.issued.get(auth, 0) < time.time():
                    return self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "token expired"})
                n = len(json.loads(raw)["dataframe_records"])
                return self._reply(200, {"predictions": [[1.0, 0.0]] * n})

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_oauth_m2m_token_is_refreshed_after_expiry(monkeypatch):
    import time

    from fashion_catalog.encoders.auth import endpoint_auth

    workspace = _OAuthWorkspace(lifetime_s=1)
    try:
        for var in ("DATABRICKS_TOKEN", "DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_AUTH_TYPE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("DATABRICKS_CLIENT_ID", "fashion-sp")
        monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "s3cret")
        url = f"{workspace.url}/serving-endpoints/clip/invocations"
        enc = EndpointEncoder(url, auth=endpoint_auth(url, "databricks"), backoff_base_s=0.01, max_retries=1)
        enc.encode_texts(["red dress"])
        # Wait until the workspace itself holds the first token expired (a deadline read from it, not a guess).
        time.sleep(max(0.0, workspace.issued[workspace.seen[0]] - time.time()) + 0.5)
        enc.encode_texts(["black shoes"])
    finally:
        workspace.close()
    assert len(workspace.seen) == 2 and workspace.seen[0] != workspace.seen[1]
    assert all(token in workspace.issued for token in workspace.seen)
