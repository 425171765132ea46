"""Where a stream's start goes: seconds per phase from the process's own start to its first trigger.

The stream job logs one line, ``start-up phases {...}``, once the query's first trigger has run: the
interpreter and imports (``process``), the Spark session (JVM, Delta's jars, the session), the tables'
checks, the embedder (tables created or checked), the change feed's read planned (the products table's log
loaded), the reconcile of a new checkpoint, the query's start and its first trigger. The warm-up (model load
and the tiny road's first run) runs beside the first trigger and logs its own time. ``bench.freshness``
reads the line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

log = logging.getLogger(__name__)


def process_age_s() -> float | None:
    """Seconds since this process started (/proc: its start time in clock ticks after boot), or None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


class StartupClock:
    """Marks phases as they end; the first mark also covers the process's start and imports."""

    def __init__(self) -> None:
        age = process_age_s()
        self._last = time.perf_counter()
        self.phases: dict[str, float] = {"process": round(age, 3)} if age is not None else {}

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = round(self.phases.get(phase, 0.0) + now - self._last, 3)
        self._last = now

    def total(self) -> float:
        return round(sum(self.phases.values()), 3)

    def report_after_first_trigger(self, query, poll_s: float = 0.05, timeout_s: float = 600.0) -> threading.Thread:
        """Log the phases once ``query`` reports its first progress (in a daemon thread; the job goes on)."""

        def wait() -> None:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    if query.lastProgress is not None or not query.isActive:
                        break
                except Exception:  # noqa: BLE001 - a stopping query: report what there is
                    break
                time.sleep(poll_s)
            self.mark("first_trigger")
            log.info("start-up phases %s", json.dumps(dict(self.phases, total=self.total())))

        thread = threading.Thread(target=wait, daemon=True, name="startup-report")
        thread.start()
        return thread


def run_beside(work, name: str) -> threading.Thread:
    """``work()`` in a daemon thread (a head start such as the warm-up: a failure is logged, the stream goes on)."""

    def run() -> None:
        try:
            work()
        except Exception:  # noqa: BLE001 - only a head start: the batches load what they need themselves
            log.exception("%s failed; the stream goes on without it", name)

    thread = threading.Thread(target=run, daemon=True, name=name)
    thread.start()
    return thread
