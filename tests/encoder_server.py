"""A loopback scoring server with the served encoder's request and response shapes, that can be told to fail.

It encodes with the tiny CLIP in the test process, so the Spark workers that call it (the
embedder with ``model.name_or_path=http://127.0.0.1:<port>/invocations``) get real vectors, and
a test can make image or text requests fail (503) to play a transient model outage.
"""

from __future__ import annotations

import base64
import io
import threading

from PIL import Image

from tests.loopback import JsonServer


class EncoderServer(JsonServer):
    def __init__(self, encoder):
        self.encoder = encoder
        self.fail_images = False
        self.fail_texts = False
        self.calls = {"text": 0, "image": 0}
        self._lock = threading.Lock()
        super().__init__(self._answer)

    def _answer(self, body: dict) -> tuple[int, dict]:
        records = body["dataframe_records"]
        kinds = {"image" if "image" in r else "text" for r in records}
        if (self.fail_images and "image" in kinds) or (self.fail_texts and "text" in kinds):
            return 503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "model restarting"}
        rows = []
        with self._lock:
            for r in records:
                if "image" in r:
                    img = Image.open(io.BytesIO(base64.b64decode(r["image"]))).convert("RGB")
                    vec = self.encoder.encode_images([img])[0]
                    self.calls["image"] += 1
                else:
                    vec = self.encoder.encode_texts([r["text"]])[0]
                    self.calls["text"] += 1
                rows.append([float(x) for x in vec])
        return 200, {"predictions": rows}
