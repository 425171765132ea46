"""Client for a model-serving endpoint that runs the CLIP multimodal encoder.

``POST {url}`` with ``{"dataframe_records": [{"text": ...}, {"image": <base64>}, ...]}``
-- a Databricks endpoint (``{host}/serving-endpoints/{name}/invocations``) or a
local ``mlflow models serve`` (``http://127.0.0.1:PORT/invocations``).

* Batches are bounded by rows (``serving.batch_size``) and by request bytes
  (``serving.max_request_bytes``, below Model Serving's 16 MB cap); a single row over
  the byte bound is refused locally (``REQUEST_TOO_LARGE``), never sent.
* Bounded concurrency, timeouts, retries with exponential backoff and jitter on
  429/5xx and connection failures (honouring ``Retry-After``).
* A batch the endpoint rejects (400/413/422) is split in halves and retried, so a bad
  row gets its own error (``REJECTED``) while the rest of the batch keeps its vectors.
* Authentication is a header provider (:mod:`encoders.auth`): the Databricks SDK's
  unified config (PAT, OAuth machine-to-machine, notebook/job native auth, refreshed
  before expiry), a static bearer token, or none.

``encode_texts`` / ``encode_images`` have the in-process encoder's interface (they
raise if any row failed); ``embed_rows`` returns (vector, error) per row.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

from fashion_catalog.encoders.auth import HeaderProvider, static_token
from fashion_catalog.encoders.vectors import l2_normalize

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A batch answered with one of these is split and retried: one of its rows may be the cause.
SPLIT_STATUSES = frozenset({400, 413, 422})
REJECTED = "REJECTED"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
DEFAULT_MAX_REQUEST_BYTES = 15_000_000  # Model Serving refuses requests over 16 MB
VECTOR_KEYS = ("embedding", "embeddings", "vector", "predictions")


class EndpointError(RuntimeError):
    """The endpoint refused the request or kept failing after the retries."""


class EndpointResponseError(EndpointError):
    """The endpoint answered with a body this client cannot read as vectors."""


class EndpointRejectedError(EndpointError):
    """The endpoint refused a request (a 4xx that retrying cannot fix)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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
                 text_weight: float | None = None, session: requests.Session | None = None,
                 auth: HeaderProvider | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 max_split_requests: int = 32):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint url must start with http:// or https://, got {url!r}")
        self.url = url
        # An explicit header provider wins; else a static bearer token (argument or environment variable).
        self.auth = auth or static_token(token or (os.environ.get(token_env) if token_env else None))
        self.batch_size = batch_size
        self.max_request_bytes = max_request_bytes
        self.max_split_requests = max_split_requests
        self.max_concurrency = max(1, max_concurrency)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.text_weight = text_weight
        self.session = session or requests.Session()
        self.dimension: int | None = None

    @property
    def logit_scale(self) -> float | None:
        """Unknown: the endpoint returns vectors, not its model's temperature."""
        return None

    @classmethod
    def for_databricks(cls, host: str, endpoint_name: str, **kwargs) -> EndpointEncoder:
        """Client for ``{host}/serving-endpoints/{endpoint_name}/invocations``."""
        host = host if host.startswith("http") else f"https://{host}"
        return cls(f"{host.rstrip('/')}/serving-endpoints/{endpoint_name}/invocations", **kwargs)

    # -- transport -------------------------------------------------------------------------
    def _post(self, records: list[dict], text_weight: float | None) -> list[tuple[list | None, str | None]]:
        """One request; retried on 429/5xx and connection errors; a 4xx raises EndpointRejectedError."""
        body: dict = {"dataframe_records": records}
        weight = self.text_weight if text_weight is None else text_weight
        if weight is not None:
            body["params"] = {"text_weight": float(weight)}
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            # Headers are asked for on every attempt: an OAuth token refreshes itself before it expires.
            headers = {"Content-Type": "application/json", **self.auth()}
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
                    raise EndpointRejectedError(
                        resp.status_code, f"endpoint {self.url} answered {resp.status_code}: {resp.text[:500]}")
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

    def _post_splitting(self, records: list[dict], text_weight: float | None) -> list[tuple[list | None, str | None]]:
        """Send a batch; when the endpoint rejects it, split it to find the rows it rejects."""
        try:
            return self._post(records, text_weight)
        except EndpointRejectedError as exc:
            return self._split_rejected(records, text_weight, exc, [self.max_split_requests])

    def _split_rejected(self, records: list[dict], text_weight: float | None, exc: EndpointRejectedError,
                        budget: list[int]) -> list[tuple[list | None, str | None]]:
        """Rows of a rejected batch: each half is tried again, a rejected half is split further.

        A few bad rows cost about two requests per halving on their way down; a request
        the endpoint refuses as a whole (a missing column) would split down to every row,
        so the extra requests per batch are bounded (``max_split_requests``): rows still
        unresolved then keep the rejection as their error.
        """
        if len(records) == 1 or exc.status not in SPLIT_STATUSES or budget[0] <= 0:
            return [(None, f"{REJECTED}: {exc}")] * len(records)
        log.warning("endpoint rejected a batch of %d rows (%s); splitting it", len(records), exc.status)
        mid = len(records) // 2
        rows: list[tuple[list | None, str | None]] = []
        for half in (records[:mid], records[mid:]):
            if budget[0] <= 0:
                rows += [(None, f"{REJECTED}: {exc}")] * len(half)
                continue
            budget[0] -= 1
            try:
                rows += self._post(half, text_weight)
            except EndpointRejectedError as half_exc:
                rows += self._split_rejected(half, text_weight, half_exc, budget)
        return rows

    def _batches(self, records: Sequence[dict], size: int) -> tuple[list[list[int]], dict[int, str]]:
        """Row positions grouped into requests bounded by rows and bytes; rows too large on their own."""
        batches: list[list[int]] = []
        too_large: dict[int, str] = {}
        current: list[int] = []
        current_bytes = 0
        envelope = 64  # {"dataframe_records": [...], "params": {...}}
        for i, record in enumerate(records):
            n = len(json.dumps(record)) + 2
            if n + envelope > self.max_request_bytes:
                too_large[i] = (f"{REQUEST_TOO_LARGE}: row {i} needs {n} bytes, more than one request may carry "
                                f"({self.max_request_bytes}; serving.max_request_bytes)")
                continue
            if current and (len(current) >= size or current_bytes + n + envelope > self.max_request_bytes):
                batches.append(current)
                current, current_bytes = [], 0
            current.append(i)
            current_bytes += n
        if current:
            batches.append(current)
        return batches, too_large

    def embed_records(self, records: Sequence[dict], text_weight: float | None = None,
                      batch_size: int | None = None) -> list[tuple[list | None, str | None]]:
        """(vector, error) per record, in order; batches are sent concurrently."""
        records = list(records)
        batches, too_large = self._batches(records, batch_size or self.batch_size)
        out: list[tuple[list | None, str | None]] = [(None, too_large.get(i)) for i in range(len(records))]
        if batches:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(batches))) as pool:
                results = list(pool.map(lambda b: self._post_splitting([records[i] for i in b], text_weight),
                                        batches))
            for batch, rows in zip(batches, results, strict=True):
                for i, row in zip(batch, rows, strict=True):
                    out[i] = row
        return out

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

    def embed_rows(self, kind: str, items: Sequence, batch_size: int | None = None
                   ) -> tuple[list[np.ndarray | None], list[str | None]]:
        """Unit vectors and per-row errors for texts (``kind="text"``) or PIL images (``"image"``)."""
        records = [{"text": t} for t in items] if kind == "text" else [{"image": image_to_base64(im)} for im in items]
        rows = self.embed_records(records, batch_size=batch_size)
        vectors = [None if vec is None else l2_normalize(np.asarray(vec, dtype=np.float64)) for vec, _ in rows]
        return vectors, [err for _, err in rows]
