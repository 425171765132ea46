"""One encoding worker for concurrent callers: requests queue up and are encoded together.

Why: the service answers requests on a thread pool. When each thread runs its own forward pass,
8 concurrent single-query passes each start torch's intra-op threads on the same cores; they
oversubscribe the CPU and throughput *falls* with concurrency. Here one worker owns the model:
at one client it encodes one query at a time (no added wait), under load it takes everything
queued as one batch, which costs far less than the same queries one by one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Request:
    kind: str  # "text" | "image"
    items: Sequence
    future: Future = field(default_factory=Future)


class BatchingEncoder:
    """Wraps an encoder (``encode_texts``/``encode_images``) so concurrent calls are batched by one worker."""

    def __init__(self, encoder, max_batch: int = 32):
        self.encoder = encoder
        self.max_batch = max_batch
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0  # forward passes run (a batch per kind per round)
        self.requests = 0

    @property
    def logit_scale(self) -> float | None:
        """The wrapped encoder's (see :class:`encoders.protocols.Encoder`)."""
        return self.encoder.logit_scale

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._submit("text", list(texts))

    def encode_images(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        return self._submit("image", list(images))

    def _submit(self, kind: str, items: list) -> np.ndarray:
        if not items:
            return self._encode(kind, items)
        self._ensure_worker()
        request = _Request(kind, items)
        self._queue.put(request)
        return request.future.result()

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            with self._start_lock:
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(target=self._run, daemon=True, name="query-encoder")
                    self._worker.start()

    def _encode(self, kind: str, items: list) -> np.ndarray:
        if kind == "text":
            return self.encoder.encode_texts(items, max(len(items), 1))
        return self.encoder.encode_images(items, max(len(items), 1))

    def _run(self) -> None:
        while True:
            pending = [self._queue.get()]
            size = len(pending[0].items)
            while size < self.max_batch:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                pending.append(request)
                size += len(request.items)
            for kind in ("text", "image"):
                group = [r for r in pending if r.kind == kind]
                if group:
                    self._run_group(kind, group)

    def _run_group(self, kind: str, group: list[_Request]) -> None:
        self.batches += 1
        self.requests += len(group)
        try:
            vectors = self._encode(kind, [item for r in group for item in r.items])
        except Exception:  # noqa: BLE001 - retried one by one below, so one bad item fails only its request
            vectors = None
        if vectors is None:
            for request in group:
                try:
                    request.future.set_result(self._encode(kind, list(request.items)))
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    request.future.set_exception(exc)
            return
        start = 0
        for request in group:
            request.future.set_result(vectors[start:start + len(request.items)])
            start += len(request.items)
