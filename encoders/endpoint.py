"""Client for a model-serving endpoint that runs the CLIP multimodal encoder.

``POST {url}`` with ``{"dataframe_records": [{"text": ...}, {"image": <base64>}, ...]}``
-- a Databricks endpoint (``{host}/serving-endpoints/{name}/invocations``) or a
local ``mlflow models serve`` (``http://127.0.0.1:PORT/invocations``). Requests go
in batches (default 500) with bounded concurrency, timeouts, and retries with
exponential backoff and jitter on 429/5xx and connection failures. It exposes the
same ``encode_texts`` / ``encode_images`` interface as the in-process encoder.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

from encoders.vectors import l2_normalize

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
VECTOR_KEYS = ("embedding", "embeddings", "vector", "predictions")


class EndpointError(RuntimeError):
    """The endpoint refused the request or kept failing after the retries."""


class EndpointResponseError(EndpointError):
    """The endpoint answered with a body this client cannot read as vectors."""


def _snippet(payload) -> str:
    text = repr(payload)
    return text if len(text) <= 300 else text[:300] + "..."


def _is_vector(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)


def _from_record(record: dict, payload) -> tuple[list | None, str | None]:
    error = record.get("error")
    for key in VECTOR_KEYS:
        if key in record:
            vec = record[key]
            if vec is None and error:
                return None, str(error)
            if _is_vector(vec):
                return list(vec), None
            raise EndpointResponseError(f"field {key!r} is not a numeric vector in response {_snippet(payload)}")
    if error:
        return None, str(error)
    raise EndpointResponseError(f"no embedding field ({', '.join(VECTOR_KEYS)}) in response {_snippet(payload)}")


def parse_predictions(payload, expected: int) -> list[tuple[list | None, str | None]]:
    """Read ``expected`` (vector, error) pairs from any of the response shapes endpoints use.

    Accepted: ``{"predictions": [[...], ...]}``, a single flat vector (one input),
    a list of dicts (``{"embedding": [...], "error": ...}``), ``{"predictions":
    {"embedding": ...}}`` (one flat vector or a list of them), and the same without
    the ``predictions`` wrapper. Anything else raises :class:`EndpointResponseError`.
    """
    body = payload.get("predictions", payload) if isinstance(payload, dict) else payload
    if isinstance(body, dict):
        for key in VECTOR_KEYS[:-1]:
            if key in body:
                body = body[key]
                break
        else:
            body = None  # no known field: reported below with the accepted shapes
        if body and all(isinstance(v, (list, tuple)) or v is None for v in body):
            errors = payload.get("predictions", payload).get("error") if isinstance(payload, dict) else None
            rows = [(list(v) if v is not None else None,
                     (errors[i] if isinstance(errors, list) and i < len(errors) else None))
                    for i, v in enumerate(body)]
            return _check(rows, expected, payload)
    if _is_vector(body):
        return _check([(list(body), None)], expected, payload)
    if isinstance(body, list) and body:
        if all(isinstance(r, dict) for r in body):
            return _check([_from_record(r, payload) for r in body], expected, payload)
        if all(_is_vector(r) for r in body):
            return _check([(list(r), None) for r in body], expected, payload)
    raise EndpointResponseError(
        "unreadable endpoint response: expected {'predictions': [[...], ...]}, a flat vector, a list of "
        f"dicts with 'embedding', or {{'predictions': {{'embedding': ...}}}}; got {_snippet(payload)}"
    )


def _check(rows, expected: int, payload):
    if len(rows) != expected:
        raise EndpointResponseError(f"endpoint returned {len(rows)} predictions for {expected} inputs: "
                                    f"{_snippet(payload)}")
    dims = {len(v) for v, _ in rows if v is not None}
    if len(dims) > 1:
        raise EndpointResponseError(f"endpoint returned vectors of different sizes {sorted(dims)}")
    return rows


def image_to_base64(image) -> str:
    """PNG-encode a PIL image (lossless, so the server sees the same pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class EndpointEncoder:
    """Embeds texts and images through a serving endpoint; same interface as ClipEncoder."""

    def __init__(self, url: str, token: str | None = None, token_env: str | None = "DATABRICKS_TOKEN",
                 batch_size: int = 500, max_concurrency: int = 4, timeout_s: float = 60.0,
                 max_retries: int = 5, backoff_base_s: float = 0.5, backoff_max_s: float = 20.0,
                 text_weight: float | None = None, session: requests.Session | None = None):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint url must start with http:// or https://, got {url!r}")
        self.url = url
        self.token = token or (os.environ.get(token_env) if token_env else None)
        self.batch_size = batch_size
        self.max_concurrency = max(1, max_concurrency)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.text_weight = text_weight
        self.session = session or requests.Session()
        self.dimension: int | None = None

    @classmethod
    def for_databricks(cls, host: str, endpoint_name: str, **kwargs) -> EndpointEncoder:
        """Client for ``{host}/serving-endpoints/{endpoint_name}/invocations`` (token from DATABRICKS_TOKEN)."""
        host = host if host.startswith("http") else f"https://{host}"
        return cls(f"{host.rstrip('/')}/serving-endpoints/{endpoint_name}/invocations", **kwargs)

    # -- transport -------------------------------------------------------------------------
    def _post(self, records: list[dict], text_weight: float | None) -> list[tuple[list | None, str | None]]:
        body: dict = {"dataframe_records": records}
        weight = self.text_weight if text_weight is None else text_weight
        if weight is not None:
            body["params"] = {"text_weight": float(weight)}
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                resp = self.session.post(self.url, json=body, headers=headers, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{exc.__class__.__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    try:
                        payload = resp.json()
                    except ValueError:
                        raise EndpointResponseError(f"endpoint answered non-JSON: {resp.text[:300]!r}") from None
                    return parse_predictions(payload, len(records))
                if resp.status_code not in RETRY_STATUSES:
                    raise EndpointError(f"endpoint {self.url} answered {resp.status_code}: {resp.text[:500]}")
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                retry_after = resp.headers.get("Retry-After")
            if attempt == self.max_retries:
                break
            delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.5)
            if retry_after and retry_after.isdigit():
                delay = max(delay, float(retry_after))
            log.warning("endpoint %s failed (%s); retry %d/%d in %.2fs", self.url, last, attempt + 1,
                        self.max_retries, delay)
            time.sleep(delay)
        raise EndpointError(f"endpoint {self.url} still failing after {self.max_retries} retries: {last}")

    def embed_records(self, records: Sequence[dict], text_weight: float | None = None,
                      batch_size: int | None = None) -> list[tuple[list | None, str | None]]:
        """(vector, error) per record, in order; batches are sent concurrently."""
        size = batch_size or self.batch_size
        batches = [list(records[i : i + size]) for i in range(0, len(records), size)]
        if not batches:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(batches))) as pool:
            results = list(pool.map(lambda b: self._post(b, text_weight), batches))
        return [row for batch in results for row in batch]

    def _vectors(self, records: list[dict], batch_size: int | None) -> np.ndarray:
        rows = self.embed_records(records, batch_size=batch_size)
        bad = [(i, err) for i, (vec, err) in enumerate(rows) if vec is None]
        if bad:
            raise EndpointError(f"endpoint returned errors for {len(bad)} rows, first: row {bad[0][0]}: {bad[0][1]}")
        if not rows:
            return np.zeros((0, self.dimension or 0))
        matrix = l2_normalize(np.array([vec for vec, _ in rows], dtype=np.float64))
        self.dimension = matrix.shape[1]
        return matrix

    # -- the encoder interface ---------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return self._vectors([{"text": t} for t in texts], batch_size)

    def encode_images(self, images: Sequence, batch_size: int | None = None) -> np.ndarray:
        return self._vectors([{"image": image_to_base64(im)} for im in images], batch_size)
