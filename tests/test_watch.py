"""The service learns of a commit to the embeddings table at once, not at its next sync interval."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
from deltalake import write_deltalake

from fashion_catalog.indexes.watch import DeltaLogWatch, Interval
from fashion_catalog.search.syncer import IndexSyncer


class _Store:
    """Counts syncs; the version is the number of syncs (what the syncer reads after each)."""

    def __init__(self) -> None:
        self.synced_at: list[float] = []

    def sync(self) -> None:
        self.synced_at.append(time.monotonic())

    @property
    def synced_version(self) -> int:
        return len(self.synced_at)


class _Users:
    def __len__(self) -> int:
        return 1

    def reload(self, store) -> None:
        pass


def _commit(path: str, n: int) -> None:
    write_deltalake(path, pa.table({"product_id": [n]}), mode="append")


def _syncs_after_a_commit(path: str, signal) -> tuple[int, float | None]:
    store = _Store()
    syncer = IndexSyncer(store, _Users(), interval_s=60.0, signal=signal)
    syncer.start()
    try:
        deadline = time.monotonic() + 5
        while not store.synced_at and time.monotonic() < deadline:  # the first sync runs at start
            time.sleep(0.01)
        time.sleep(0.2)
        committed = time.monotonic()
        _commit(path, 2)
        time.sleep(1.0)
        later = [t for t in store.synced_at if t >= committed]
        return len(later), (later[0] - committed) if later else None
    finally:
        syncer.stop()


def test_a_commit_wakes_the_sync_within_the_poll_and_only_a_commit_does(tmp_path):
    path = str(tmp_path / "embeddings")
    _commit(path, 1)
    syncs, after_s = _syncs_after_a_commit(path, DeltaLogWatch(path, poll_s=0.02))
    # One commit, one sync, well inside the 60 s interval (the commit itself takes some of the time measured).
    assert syncs == 1 and after_s is not None and after_s < 0.5, (syncs, after_s)
    # Without the watch the next sync is an interval away.
    assert _syncs_after_a_commit(path, Interval()) == (0, None)


def test_the_watch_sees_a_table_created_after_it_started_and_stops_waiting_when_told(tmp_path):
    path = str(tmp_path / "later")
    watch = DeltaLogWatch(path, poll_s=0.01)
    stop = threading.Event()
    assert watch.wait(0.05, stop) is False
    _commit(path, 1)
    assert watch.wait(1.0, stop) is True
    assert watch.wait(0.05, stop) is False  # nothing new since
    stop.set()
    t0 = time.monotonic()
    assert watch.wait(30.0, stop) is False and time.monotonic() - t0 < 0.5
