"""A loopback JSON server for the scoring-endpoint tests: records each POST, answers with ``respond(body)``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonServer:
    """POSTs to ``url`` are recorded in ``requests`` (body, Authorization, size) and answered by
    ``respond(body) -> (status, body)``; a ``bytes`` body is sent as is (malformed-response tests)."""

    def __init__(self, respond: Callable[[dict], tuple[int, object]]):
        self.respond = respond
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"body": json.loads(raw), "auth": self.headers.get("Authorization"),
                                       "bytes": len(raw)})
                status, body = outer.respond(outer.requests[-1]["body"])
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
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> JsonServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
