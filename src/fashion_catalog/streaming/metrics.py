"""Per-batch metrics: one JSON log line per batch, and the same JSON in the batch's MERGE commit.

The metrics ride in the commit itself (Delta's ``userMetadata``), so they are recorded
exactly when the batch's write commits — atomically, with no extra write, from
wherever the batch runs (the driver of a classic session, the server-side
foreachBatch worker of a Spark Connect session, a cluster's driver) — and a client
reads what its stream did with ``DESCRIBE HISTORY`` rather than from driver memory.
A batch that writes nothing (every change already applied) is only logged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import asdict, dataclass, field, fields

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from fashion_catalog.conf import TableRef

log = logging.getLogger(__name__)

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
KIND = "fashion-embedder-batch"


def process_identity() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class BatchMetrics:
    """What one batch did."""

    batch_id: int
    rows_in: int = 0
    products: int = 0
    inserts: int = 0
    updates: int = 0
    metadata_only: int = 0
    deletes: int = 0
    unchanged: int = 0
    stale: int = 0
    texts_encoded: int = 0
    images_encoded: int = 0
    image_errors: int = 0
    rows_written: int = 0
    latency_s: float = 0.0
    merge: dict = field(default_factory=dict)
    phases_s: dict = field(default_factory=dict)
    driver: str = field(default_factory=process_identity)
    encoder_workers: list[str] = field(default_factory=list)
    run_id: str | None = None
    app_id: str | None = None
    road: str | None = None
    lane: str = "stream"  # "stream": a micro-batch or a backfill chunk; "fast": streaming.fast_lane
    retries: int = 0
    commit_version: int | None = None

    def count(self, actions: dict[str, int]) -> None:
        """Record the plan's actions (``_action`` -> number of products)."""
        self.products = sum(actions.values())
        self.inserts = actions.get("insert", 0)
        self.updates = actions.get("update", 0)
        self.metadata_only = actions.get("metadata", 0)
        self.deletes = actions.get("delete", 0)
        self.unchanged = actions.get("unchanged", 0) + actions.get("absent_delete", 0)
        self.stale = actions.get("stale", 0)

    @property
    def to_write(self) -> int:
        """Products the batch writes (inserts, updates, metadata changes and deletes)."""
        return self.inserts + self.updates + self.metadata_only + self.deletes

    def log(self) -> None:
        log.info("batch %s", json.dumps(asdict(self), sort_keys=True))

    def commit_metadata(self) -> str:
        """The JSON the batch's MERGE commit carries (everything known before the write)."""
        return json.dumps({"kind": KIND, **{k: v for k, v in asdict(self).items()
                                            if k not in ("merge", "commit_version")}}, sort_keys=True)

    @classmethod
    def from_commit(cls, user_metadata: str, version: int, operation_metrics: dict | None) -> BatchMetrics:
        values = json.loads(user_metadata)
        known = {f.name for f in fields(cls)}  # a commit written by a newer version may carry more
        metrics = cls(**{k: v for k, v in values.items() if k in known})
        metrics.commit_version = int(version)
        metrics.merge = {k: int(v) for k, v in (operation_metrics or {}).items() if str(v).isdigit()}
        # The commit was written before its MERGE ran: add the MERGE's own time.
        # Spark names it executionTimeMs, delta-rs execution_time_ms.
        merge_s = metrics.merge.get("executionTimeMs", metrics.merge.get("execution_time_ms", 0)) / 1000.0
        metrics.phases_s = dict(metrics.phases_s, merge=round(merge_s, 3))
        metrics.latency_s = round(metrics.latency_s + merge_s, 3)
        return metrics


def history(spark: SparkSession, table: TableRef, run_id: str) -> list[BatchMetrics]:
    """The committed batches of one run, oldest first (from the table's commit history)."""
    rows = (spark.sql(f"DESCRIBE HISTORY {table.sql}")
            .filter(F.col("userMetadata").contains(f'"run_id": "{run_id}"'))
            .select("version", "userMetadata", "operationMetrics").orderBy("version").collect())
    return [BatchMetrics.from_commit(r["userMetadata"], r["version"], r["operationMetrics"]) for r in rows]
