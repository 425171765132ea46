"""The stream's checkpoint, read through Spark: its query id keys the idempotent-write ids."""

from __future__ import annotations

import json
import os

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from fashion_catalog.conf import ActionableError
from fashion_catalog.lakehouse.direct import local_path


class CheckpointError(ActionableError, RuntimeError):
    """The stream's checkpoint exists but its metadata cannot be read."""


def checkpoint_query_id(spark: SparkSession, checkpoint: str) -> str | None:
    """The query id in ``<checkpoint>/metadata``, read through Spark (any URI Spark reads: file:, dbfs:, s3://...).

    None when no stream has written the checkpoint yet; a checkpoint whose metadata
    exists but cannot be parsed raises :class:`CheckpointError` (guessing would let
    Delta skip a new stream's batches as replays).
    """
    path = checkpoint.rstrip("/") + "/metadata"
    local = local_path(path)
    if local is not None:
        # On this file system: read it directly (a Spark job on a cold JVM costs seconds of a stream's start).
        try:
            with open(local, encoding="utf-8") as fh:
                line = fh.readline()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read the stream checkpoint's metadata at {path}: {exc}") from exc
        try:
            return json.loads(line)["id"]
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} does not hold a query id: {line!r}") from exc
    try:
        first = spark.read.text(path).first()
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            return None
        raise CheckpointError(f"cannot read the stream checkpoint's metadata at {path}: {exc}") from exc
    try:
        return json.loads(first["value"])["id"]
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} does not hold a query id: {first!r}") from exc


def committed_source_version(checkpoint: str) -> int | None:
    """The first products-table version the stream has not finished, from a checkpoint on this file system.

    Structured Streaming writes ``offsets/<batch>`` (the write-ahead log: the batch's end offset, the Delta
    source's ``reservoirVersion`` on its last line) before a batch and ``commits/<batch>`` after it. The
    last committed batch's offset names the version the stream reads next (all of it when ``index`` is -1,
    part of it otherwise: replaying that version is harmless, the plan skips what is already stored); while
    the first snapshot is read (``isStartingVersion``), the changes begin after that snapshot's version.
    None: no committed batch yet, or a checkpoint not on this file system.
    """
    root = local_path(checkpoint.rstrip("/"))
    if root is None:
        return None
    try:
        done = [int(n) for n in os.listdir(os.path.join(root, "commits")) if n.isdigit()]
        with open(os.path.join(root, "offsets", str(max(done))), encoding="utf-8") as fh:
            offset = json.loads(fh.read().strip().splitlines()[-1])
        version = int(offset["reservoirVersion"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return version + 1 if offset.get("isStartingVersion") else version
