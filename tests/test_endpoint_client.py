"""Unit tests: EndpointEncoder against tiny local HTTP servers (retries, shapes, errors, auth)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from encoders.endpoint import EndpointEncoder, EndpointError, EndpointResponseError, parse_predictions


class _Server:
    """A loopback HTTP server answering POSTs from a list of (status, body) replies."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append({"body": json.loads(self.rfile.read(length)),
                                       "auth": self.headers.get("Authorization")})
                status, body = outer.replies[min(len(outer.requests), len(outer.replies)) - 1]
                if callable(body):
                    body = body(outer.requests[-1]["body"])
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/invocations"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


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
