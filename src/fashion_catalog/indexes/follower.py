"""Keep a local index's state in step with its Delta table, the way a Delta Sync index follows its source.

An initial load of a snapshot, then the table's Change Data Feed applied since the last synced
version, read with the ``deltalake`` package (no JVM). The table is reloaded from a snapshot when
its change feed cannot carry the index forward: first sync, a recreated table (new table id or a
lower version), or a feed that cannot be read from the synced version (vacuumed files, cleaned-up log).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from fashion_catalog.indexes.local_state import IndexState, StateBuilder, empty_state
from fashion_catalog.indexes.store import IndexNotReadyError
from fashion_catalog.schemas import INDEX_KINDS

log = logging.getLogger(__name__)


@dataclass
class SyncStatus:
    synced_version: int | None
    table_version: int | None
    lag_versions: int | None
    rows: int
    last_sync_at: float | None
    last_applied_changes: int
    approximate: dict
    reloads: int = 0
    last_reload_reason: str | None = None
    # When the sync that brought in the served version started (the table's new version seen) and ended (it
    # is searchable): where an edit's time went between the embeddings commit and the search.
    version_seen_at: float | None = None
    version_applied_at: float | None = None


class TableFollower:
    """Holds the current :class:`IndexState` of one table and moves it forward on :meth:`sync`.

    Syncs run one at a time and build the next state beside the current one (:class:`StateBuilder`);
    readers take :attr:`state`, swapped in one assignment, so a slow rebuild never holds a query.
    """

    def __init__(self, table_path: str, builder: StateBuilder):
        self.table_path = table_path
        self.builder = builder
        self.state: IndexState = empty_state(builder.dim)
        self.table_version: int | None = None
        self.last_sync_at: float | None = None
        self.last_applied = 0
        self.reloads = 0
        self.last_reload_reason: str | None = None
        self.version_seen_at: float | None = None
        self.version_applied_at: float | None = None
        self._lock = threading.Lock()

    def adopt(self, state: IndexState) -> None:
        """Serve ``state`` (rows from memory: no table to follow)."""
        self.state, self.table_version = state, state.version

    def _open(self):
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            table = DeltaTable(self.table_path)
        except TableNotFoundError:
            raise IndexNotReadyError(f"no Delta table at {self.table_path}: run the embedder first") from None
        return table, table.version(), table.metadata().id

    def sync(self) -> SyncStatus:
        """Bring the state up to the table's latest version (snapshot load, then the change feed)."""
        with self._lock:
            started = time.time()
            table, latest, table_id = self._open()
            self.table_version = latest
            state = self.state
            reason = None
            if state.version is None:
                reason = "initial load"
            elif table_id != state.table_id:
                reason = f"the table was recreated (table id {state.table_id} -> {table_id})"
            elif latest < state.version:
                reason = f"the table went back from version {state.version} to {latest}"
            if reason is None and latest > state.version:
                try:
                    new, self.last_applied = self.builder.apply_changes(state, table, state.version + 1, latest)
                except Exception as exc:  # noqa: BLE001 - any unreadable feed: reload from the snapshot
                    reason = f"the change feed from version {state.version + 1} is unreadable ({exc})"
            elif reason is None:
                new, self.last_applied = state, 0
            if reason is not None:
                new = self._reload(latest, table_id, reason)
            self.state = self.builder.with_ann(new)
            self.last_sync_at = time.time()
            if new.version != state.version:
                self.version_seen_at, self.version_applied_at = started, self.last_sync_at
            return self.status()

    def reload(self) -> SyncStatus:
        """Rebuild the state from the table's latest snapshot (readers go on with the current one)."""
        with self._lock:
            _table, latest, table_id = self._open()
            self.table_version = latest
            self.state = self.builder.with_ann(self._reload(latest, table_id, "reload requested"))
            self.last_sync_at = time.time()
            return self.status()

    def _reload(self, version: int, table_id: str, reason: str) -> IndexState:
        if reason != "initial load":
            log.warning("local index reloads from the snapshot at version %d: %s", version, reason)
            self.reloads += 1
            self.last_reload_reason = reason
        state = self.builder.snapshot(self.table_path, version, table_id)
        self.last_applied = state.n
        return state

    def status(self) -> SyncStatus:
        state = self.state
        lag = None if state.version is None or self.table_version is None else self.table_version - state.version
        return SyncStatus(state.version, self.table_version, lag, int(state.alive.sum()), self.last_sync_at,
                          self.last_applied, {k: k in state.ann for k in INDEX_KINDS}, self.reloads,
                          self.last_reload_reason, self.version_seen_at, self.version_applied_at)
