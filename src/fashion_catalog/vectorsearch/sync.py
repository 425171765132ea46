"""Keep TRIGGERED Delta Sync indexes fresh from the stream: ``sync()`` each index after batches that wrote.

The stream calls :meth:`IndexSyncTrigger.request` after each MERGE that changed rows; a
background thread syncs every index at most once per ``min_interval_s`` (a sync starts a
pipeline update, billed per run), so the stream never waits for Vector Search. A failed
sync is logged and retried on the next round (backing off while rounds keep failing);
changes made while one runs are picked up by the next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class IndexSyncTrigger:
    """Rate-limited, non-blocking ``sync()`` of a set of indexes."""

    def __init__(self, indexes: Callable[[], list], min_interval_s: float, clock: Callable[[], float] = time.monotonic):
        self._indexes = indexes  # called lazily, on the worker thread: builds the client once
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._cond = threading.Condition()
        self._pending = False
        self._failing = 0  # rounds failed in a row
        self._busy = False  # a round is running (wait_idle must not return in the middle of one)
        self._last_round: float | None = None
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.failures = 0
        self.last_error: str | None = None

    def request(self) -> None:
        """Ask for a sync of every index (returns at once)."""
        with self._cond:
            self._pending = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="vector-search-sync")
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if not self._cond.wait(timeout=300):
                        self._thread = None  # idle for long: the next request starts a new worker
                        return
                if self._last_round is not None:
                    # Back off after failures in a row (an unreachable workspace is not hammered).
                    interval = self.min_interval_s * 2 ** min(self._failing, 6)
                    wait = self._last_round + min(interval, max(self.min_interval_s, 60.0)) - self._clock()
                    if wait > 0:
                        self._cond.wait(timeout=wait)
                        continue
                self._pending = False
                self._busy = True
                self._last_round = self._clock()
            failed = self._sync_all()
            with self._cond:
                self._pending = self._pending or failed
                self._failing = self._failing + 1 if failed else 0
                self._busy = False

    def _sync_all(self) -> bool:
        """One round over every index; True when it failed (the caller re-queues it)."""
        self.rounds += 1
        try:
            for index in self._indexes():
                index.sync()
            self.last_error = None
            return False
        except Exception as exc:  # noqa: BLE001 - retried on the next round; the stream goes on
            self.failures += 1
            self.last_error = f"{exc.__class__.__name__}: {exc}"
            log.warning("Vector Search sync failed (%s); retrying on the next round", self.last_error)
            return True

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no sync is pending or running (tests, shutdown); True when idle."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._cond:
                if not self._pending and not self._busy:
                    return True
            time.sleep(0.05)
        return False


def require_sync_client(config) -> None:
    """Stop at start, in one line, when the stream is to sync TRIGGERED indexes but no client is installed.

    Without it every sync would fail inside the background thread and the indexes would go stale with only a
    log line to show for it.
    """
    vs = config.vector_search
    if not (vs.sync_from_stream and vs.pipeline_type == "TRIGGERED"):
        return
    from fashion_catalog.vectorsearch.client import VectorSearchConfigError, client_class

    try:
        client_class()
    except ImportError:
        raise VectorSearchConfigError(
            "vector_search.sync_from_stream is on (TRIGGERED indexes) but no Vector Search client is installed: "
            "pip install databricks-ai-search (or databricks-vectorsearch), or set "
            "vector_search.sync_from_stream=false") from None


def indexes_of(config, client_factory: Callable | None = None) -> Callable[[], list]:
    """A lazy getter of the three configured index handles (the client is made on first use)."""
    from fashion_catalog.vectorsearch.client import make_client

    handles: list = []

    def get() -> list:
        if not handles:
            vs = config.vector_search
            client = (client_factory or make_client)(vs.workspace_url)
            handles.extend(client.get_index(endpoint_name=vs.endpoint_name, index_name=name)
                           for name in vs.indexes.values())
        return handles

    return get
