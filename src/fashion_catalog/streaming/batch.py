"""One batch's context: who it is (metrics, write ids), the rules it applies, and its phase timer.

Every step of the write path (:mod:`fashion_catalog.streaming.roads`) takes this one object
instead of a list of settings, counters and ids.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pyspark.sql import SparkSession

from fashion_catalog.conf import Config, ConfigError
from fashion_catalog.streaming.metrics import BatchMetrics
from fashion_catalog.streaming.writer import MergeRequest

log = logging.getLogger(__name__)
T = TypeVar("T")
_WRITERS_LOCK = threading.Lock()
_WRITERS: dict[str, threading.Lock] = {}  # embeddings table -> the lock its batches in this process take
_APPLIED: dict[str, Applied] = {}  # embeddings table -> what its two writers in this process applied


def writer_lock(table: str) -> threading.Lock:
    """The lock every batch of this process into ``table`` holds while it runs (the stream's and the fast lane's)."""
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(table, threading.Lock())


@dataclass
class Applied:
    """What this process's two writers into one table (the stream, the fast lane) applied, so neither undoes the other.

    Each plans against the stored rows, which order states by their products commit version; a delete
    leaves no row to compare with. So: the lane skips a commit the stream already applied (``stream_through``:
    a later delete may be among what the stream applied), and a stream batch treats a state older than a
    delete the lane applied as stale (``lane_deletes``, kept until the stream's batches pass them). Read and
    written under :func:`writer_lock`.
    """

    stream_through: int = -1
    lane_deletes: dict[int, int] = field(default_factory=dict)  # product_id -> the delete's products version

    def before(self, ctx: BatchContext) -> bool:
        """Whether a batch should run: a lane batch of a commit the stream already applied should not; a stream
        batch gets the lane's deletes ahead of it (``ctx.deletes_ahead``)."""
        if ctx.metrics.lane == "fast":
            if ctx.source_through is not None and ctx.source_through <= self.stream_through:
                log.info("fast lane: products version %s already applied by the stream", ctx.source_through)
                return False
        else:
            ctx.deletes_ahead = dict(self.lane_deletes)
        return True

    def after(self, ctx: BatchContext) -> None:
        """Record what a batch that ran applied."""
        if ctx.metrics.lane == "fast":
            self.lane_deletes.update(ctx.planned_deletes)
        elif ctx.source_through is not None:
            self.stream_through = max(self.stream_through, ctx.source_through)
            self.lane_deletes = {p: v for p, v in self.lane_deletes.items() if v > self.stream_through}


def applied_in(table: str) -> Applied:
    """The :class:`Applied` record of ``table`` in this process."""
    with _WRITERS_LOCK:
        return _APPLIED.setdefault(table, Applied())


@dataclass(frozen=True)
class Rules:
    """The settings the plan and the assembly read, taken from the configuration once per batch."""

    model_id: str
    dimension: int
    text_weight: float
    # A failed row is re-planned while it failed fewer times than this; None: always (reembed --failed).
    max_attempts: int | None

    @classmethod
    def of(cls, config: Config, retry_failed: bool = False) -> Rules:
        """The rules of ``config``; ``retry_failed`` re-plans failed encodes whatever their attempts."""
        return cls(config.model.id, config.model.dimension, config.hybrid_text_weight,
                   None if retry_failed else config.stream.max_encode_attempts)


class BatchContext:
    """One batch: its session, configuration, rules, write ids (``txn``), metrics and phase timer."""

    def __init__(self, spark: SparkSession, config: Config, metrics: BatchMetrics,
                 txn: tuple[str, int] | None, retry_failed: bool = False):
        self.spark, self.config, self.metrics, self.txn = spark, config, metrics, txn
        self.rules = Rules.of(config, retry_failed)
        self.started = self._mark = time.perf_counter()
        # The highest products version among a stream batch's change rows (None: not a stream batch, or unknown).
        self.source_through: int | None = None
        self.deletes_ahead: dict[int, int] = {}  # the lane's deletes a stream batch's older states must not undo
        self.planned_deletes: dict[int, int] = {}  # product_id -> version of each delete this batch planned

    def lap(self, phase: str) -> None:
        """Record the seconds since the last lap (or the start) as ``phase``."""
        now = time.perf_counter()
        self.metrics.phases_s[phase] = round(now - self._mark, 3)
        self._mark = now

    def finish(self) -> BatchMetrics:
        """The batch's metrics with its latency so far."""
        self.metrics.latency_s = round(time.perf_counter() - self.started, 3)
        return self.metrics

    def merge_request(self, target_ids: list[int] | None = None,
                      max_rows_per_file: int | None = None) -> MergeRequest:
        """The MERGE of this batch's rows: its clauses, write ids and metrics (everything known before the write)."""
        metrics = self.finish()
        return MergeRequest(inserts_only=metrics.inserts == metrics.to_write, target_ids=target_ids, txn=self.txn,
                            commit_metadata=metrics.commit_metadata(), max_rows_per_file=max_rows_per_file)


def with_retries(attempt: Callable[[int], T], config: Config, what: str) -> T:
    """``attempt(n)`` for n = 0, 1, ...: a failure is tried again ``stream.batch_retries`` times, with backoff.

    A batch that fails as a whole, not because of a row (rows are guarded where they are worked on), failed
    for a reason outside it: a concurrent writer's commit (delta-rs ``CommitFailedError``, Delta's
    ``Concurrent*Exception``), a lost executor, an object store that timed out. Running it again plans it
    against the table as it is now, and the write ids (``txn``) keep a replay from committing twice, so a
    retry is always safe. A configuration error is not retried.
    """
    retries, backoff = config.stream.batch_retries, config.stream.retry_backoff_s
    for n in range(retries + 1):
        try:
            return attempt(n)
        except ConfigError:
            raise
        except Exception as exc:
            if _interrupted(exc):  # the query is being stopped: let it stop
                raise
            if n == retries:
                log.error("%s failed %d times; giving up: %s: %s", what, n + 1, type(exc).__name__, exc)
                raise
            delay = backoff * 2**n
            log.warning("%s failed (%s: %s); retry %d of %d in %.1f s", what, type(exc).__name__,
                        " ".join(str(exc).split())[:400], n + 1, retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _interrupted(exc: BaseException) -> bool:
    """Whether the batch's thread was interrupted (the stream stopping), as the JVM or Spark Connect report it."""
    text = str(exc)
    return "InterruptedException" in text or "OPERATION_CANCELED" in text or "QUERY_CANCELED" in text
