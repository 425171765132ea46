"""One batch's context: who it is (metrics, write ids), the rules it applies, and its phase timer.

Every step of the write path (:mod:`fashion_catalog.streaming.roads`) takes this one object
instead of a list of settings, counters and ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pyspark.sql import SparkSession

from fashion_catalog.conf import Config
from fashion_catalog.streaming.metrics import BatchMetrics
from fashion_catalog.streaming.writer import MergeRequest


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
