"""Keep the local index (and the users derived from it) in step with the multimodal table, in the background."""

from __future__ import annotations

import logging
import threading

from search.local_index import IndexNotReadyError
from search.users import UserDirectory

log = logging.getLogger(__name__)


class IndexSyncer:
    """Pulls the multimodal table's Change Data Feed into the index every ``interval_s`` seconds.

    With ``sync_index=False`` (Databricks Vector Search: the stream or a CONTINUOUS pipeline keeps
    the indexes fresh, and each sync is a billed pipeline update) the background loop only
    reloads the users; :meth:`refresh` still syncs on demand.
    """

    def __init__(self, store, users: UserDirectory, interval_s: float, sync_index: bool = True):
        self.store, self.users, self.interval_s = store, users, interval_s
        self.sync_index = sync_index
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self, sync_index: bool = True) -> None:
        """One sync of the index, and of the users when the index changed (or none are loaded yet)."""
        before = self.store.synced_version
        try:
            if sync_index:
                self.store.sync()
        except IndexNotReadyError as exc:
            log.debug("index not ready: %s", exc)
            return
        except Exception:  # noqa: BLE001 - the service keeps serving the last synced state
            log.exception("index sync failed")
            return
        if before != self.store.synced_version or not len(self.users):
            self.users.reload(self.store)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh(self.sync_index)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Sync in a daemon thread until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="index-sync")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
