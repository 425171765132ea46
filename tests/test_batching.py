"""The query batcher: concurrent callers share forward passes, each gets its own rows, a bad item fails alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fashion_catalog.encoders.batching import BatchingEncoder


class RecordingEncoder:
    """Vectors that identify their input; records every batch and takes 50 ms per pass."""

    def __init__(self):
        self.batches: list[list] = []
        self.model = "inner-model"
        self.logit_scale = 42.0

    def encode_texts(self, texts, batch_size=64):
        self.batches.append(list(texts))
        time.sleep(0.05)
        if "boom" in texts:
            raise RuntimeError("model failure on 'boom'")
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=float)

    def encode_images(self, images, batch_size=32):
        self.batches.append(list(images))
        time.sleep(0.05)
        return np.array([[i, -i] for i in images], dtype=float)


def test_concurrent_queries_share_forward_passes_and_each_gets_its_own_rows():
    inner = RecordingEncoder()
    batcher = BatchingEncoder(inner, max_batch=32)
    texts = [f"query {chr(97 + i)}" * (i + 1) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda t: batcher.encode_texts([t]), texts))
        images = list(pool.map(lambda i: batcher.encode_images([i]), range(8)))
    for text, vec in zip(texts, results, strict=True):
        np.testing.assert_array_equal(vec, [[len(text), ord(text[0])]])
    for i, vec in enumerate(images):
        np.testing.assert_array_equal(vec, [[i, -i]])
    assert len(inner.batches) < 24 and max(len(b) for b in inner.batches) > 1
    assert batcher.logit_scale == 42.0  # declared by the Encoder protocol, read from the wrapped encoder


def test_a_failing_item_fails_only_its_own_request():
    """'boom' is encoded in one batch with two others (forced, not raced: the first call holds the worker until
    the three are queued); the batch fails, each is tried alone, and only 'boom' gets the error."""
    inner = RecordingEncoder()
    release = threading.Event()
    real = inner.encode_texts

    def first_call_waits(texts, batch_size=64):
        if texts == ["alpha"]:
            assert release.wait(10), "the other three requests never queued"
        return real(texts, batch_size)

    inner.encode_texts = first_call_waits
    batcher = BatchingEncoder(inner)
    outcomes: dict[str, object] = {}

    def call(text):
        try:
            outcomes[text] = batcher.encode_texts([text])
        except RuntimeError as exc:
            outcomes[text] = exc

    first = threading.Thread(target=call, args=("alpha",))
    first.start()
    deadline = time.monotonic() + 10
    while batcher.requests < 1 and time.monotonic() < deadline:  # the worker is inside alpha's pass
        time.sleep(0.01)
    others = [threading.Thread(target=call, args=(t,)) for t in ("boom", "gamma", "delta")]
    for t in others:
        t.start()
    while batcher._queue.qsize() < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher._queue.qsize() == 3
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert isinstance(outcomes["boom"], RuntimeError)
    for text in ("alpha", "gamma", "delta"):
        np.testing.assert_array_equal(outcomes[text], [[len(text), ord(text[0])]])
    # The failing query was batched with the others (then each was retried alone).
    assert inner.batches[0] == ["alpha"] and sorted(inner.batches[1]) == ["boom", "delta", "gamma"], inner.batches
    assert sorted(map(tuple, inner.batches[2:])) == [("boom",), ("delta",), ("gamma",)]


def test_one_caller_is_encoded_alone_without_waiting():
    inner = RecordingEncoder()
    batcher = BatchingEncoder(inner)
    started = time.perf_counter()
    batcher.encode_texts(["solo"])
    assert inner.batches == [["solo"]] and time.perf_counter() - started < 0.5
    with pytest.raises(AttributeError):
        batcher.no_such_attribute  # noqa: B018
