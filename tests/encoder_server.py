"""A loopback scoring server with the served encoder's request and response shapes, that can be told to fail.

It encodes with the tiny CLIP in the test process, so the Spark workers that call it (the
embedder with ``model.name_or_path=http://127.0.0.1:<port>/invocations``) get real vectors, and
a test can make image or text requests fail (503) to play a transient model outage.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


class EncoderServer:
    def __init__(self, encoder):
        self.encoder = encoder
        self.fail_images = False
        self.fail_texts = False
        self.calls = {"text": 0, "image": 0}
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                records = body["dataframe_records"]
                kinds = {"image" if "image" in r else "text" for r in records}
                if (outer.fail_images and "image" in kinds) or (outer.fail_texts and "text" in kinds):
                    return self._reply(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "model restarting"})
                rows = []
                with outer._lock:
                    for r in records:
                        if "image" in r:
                            img = Image.open(io.BytesIO(base64.b64decode(r["image"]))).convert("RGB")
                            vec = outer.encoder.encode_images([img])[0]
                            outer.calls["image"] += 1
                        else:
                            vec = outer.encoder.encode_texts([r["text"]])[0]
                            outer.calls["text"] += 1
                        rows.append([float(x) for x in vec])
                return self._reply(200, {"predictions": rows})

            def _reply(self, status, body):
                data = json.dumps(body).encode()
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

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
