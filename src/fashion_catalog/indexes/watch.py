"""What wakes the index sync: a fixed interval, or a commit to the followed table as soon as it lands.

A Delta commit adds a file to the table's ``_delta_log`` folder (written aside, then renamed in), which
changes the folder's modification time. :class:`DeltaLogWatch` stats that folder every ``poll_s`` (a
``stat`` is microseconds; no table is opened until something changed), so the service learns of a new
version within ``poll_s`` instead of up to a whole sync interval later. It needs the table on this
machine's file system; elsewhere (object stores, Unity Catalog) the interval stays the only signal, and
on Databricks the Vector Search Delta Sync indexes follow the table at their own cadence.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Protocol


class ChangeSignal(Protocol):
    """Waits until the followed table may have a new version."""

    def wait(self, timeout_s: float, stop: threading.Event) -> bool:
        """Return True as soon as the table may have changed, False after ``timeout_s`` or once ``stop`` is set."""


class Interval:
    """No signal: wake after every interval."""

    def wait(self, timeout_s: float, stop: threading.Event) -> bool:
        stop.wait(timeout_s)
        return False


class DeltaLogWatch:
    """Wakes when the table's ``_delta_log`` folder changes (a commit), checked every ``poll_s``."""

    def __init__(self, table_dir: str, poll_s: float):
        self.log_dir = os.path.join(table_dir, "_delta_log")
        self.poll_s = poll_s
        self._last = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.log_dir)
        except OSError:
            return None  # no table yet: its creation is a change too
        return st.st_mtime_ns, st.st_ino

    def wait(self, timeout_s: float, stop: threading.Event) -> bool:
        deadline = time.monotonic() + timeout_s
        while not stop.is_set():
            stamp = self._stamp()
            if stamp != self._last:
                self._last = stamp  # taken before the sync runs: a commit landing during it wakes the next wait
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            stop.wait(min(self.poll_s, remaining))
        return False
