"""Keep the local index (and the users derived from it) in step with the multimodal table, in the background."""

from __future__ import annotations

import logging
import threading
import time

from fashion_catalog.indexes.store import IndexNotReadyError
from fashion_catalog.indexes.watch import ChangeSignal, Interval
from fashion_catalog.search.users import UserDirectory

log = logging.getLogger(__name__)


class IndexSyncer:
    """Pulls the multimodal table's Change Data Feed into the index every ``interval_s`` seconds, and at once
    when ``signal`` says the table changed (a local table's commit:
    :class:`~fashion_catalog.indexes.watch.DeltaLogWatch`).

    With ``sync_index=False`` (Databricks Vector Search: the stream or a CONTINUOUS pipeline keeps
    the indexes fresh, and each sync is a billed pipeline update) the background loop only
    reloads the users; :meth:`refresh` still syncs on demand.

    No exception stops the loop: a failed refresh is kept in :attr:`last_error` (``/health`` then
    says ``degraded``) and tried again at the next interval.
    """

    # While the users table is missing or empty, it is read again after 2x, 4x, ... the interval, up to this:
    # on Databricks each read is a SQL statement, and a warehouse polled every second never idles.
    EMPTY_USERS_MAX_BACKOFF_S = 300.0

    def __init__(self, store, users: UserDirectory, interval_s: float, sync_index: bool = True,
                 clock=time.monotonic, signal: ChangeSignal | None = None):
        self.store, self.users, self.interval_s = store, users, interval_s
        # What ends the wait between syncs early: a commit to the followed table (indexes/watch.py).
        self.signal: ChangeSignal = signal or Interval()
        self._clock = clock
        self._empty_backoff_s = 0.0
        self._empty_retry_at = 0.0
        self.sync_index = sync_index
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.failures = 0
        self._users_version: object = None
        self._users_loaded = False
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self, sync_index: bool = True) -> None:
        """One sync of the index, and of the users when the index moved since they were last loaded."""
        try:
            if sync_index:
                self.store.sync()
            version = self.store.synced_version
            empty_due = not len(self.users) and self._clock() >= self._empty_retry_at
            if not self._users_loaded or version != self._users_version or empty_due:
                self.users.reload(self.store)
                self._users_version, self._users_loaded = version, True
                self._back_off_while_empty()
        except IndexNotReadyError as exc:
            log.debug("index not ready: %s", exc)
            self.last_error = None
            return
        except Exception as exc:  # noqa: BLE001 - the service keeps serving the last synced state
            log.exception("index sync failed")
            self.failures += 1
            self.last_error, self.last_error_at = f"{type(exc).__name__}: {exc}", time.time()
            return
        self.last_error = None

    def _back_off_while_empty(self) -> None:
        if len(self.users):
            self._empty_backoff_s = 0.0
            return
        self._empty_backoff_s = min(max(2 * self._empty_backoff_s, 2 * self.interval_s),
                                    self.EMPTY_USERS_MAX_BACKOFF_S)
        self._empty_retry_at = self._clock() + self._empty_backoff_s

    @property
    def running(self) -> bool:
        """The background loop is alive."""
        return self._thread is not None and self._thread.is_alive()

    def problem(self) -> str | None:
        """Why the index may be stale: the last refresh failed, or the background loop is gone."""
        if self.last_error:
            return self.last_error
        if self._started and not self._stop.is_set() and not self.running:
            return "the background index sync has stopped"
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh(self.sync_index)
            except BaseException as exc:  # noqa: BLE001 - refresh catches Exception; this keeps the thread alive
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.signal.wait(self.interval_s, self._stop)

    def start(self) -> None:
        """Sync in a daemon thread until :meth:`stop`."""
        self._stop.clear()
        self._started = True
        self._thread = threading.Thread(target=self._run, daemon=True, name="index-sync")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
