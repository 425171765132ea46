"""Arrow-batched Spark functions: the image content hash (a pandas UDF), CLIP text and image encoding
(``mapInPandas`` functions, which can carry the encoding stages' own GPU resource profile).

Each encoding function gets its model from :meth:`encoders.factory.EncoderSpec.encoder`, so a
Python worker loads the model once and keeps it for every later batch and task
(Spark reuses Python workers). A failing image becomes an error code on its row;
a failing model call becomes an error code on the rows of that batch. Neither
ever fails the Spark task.

Every result row also names the process that encoded it (``worker``: host, pid and
whether that Python worker belongs to an executor or to the driver's JVM), so a
batch can report from its data where the model ran: no driver-side counters, nothing that
needs the driver's SparkContext (Spark Connect has none).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from typing import Iterator

import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from fashion_catalog.encoders.factory import EncoderSpec
from fashion_catalog.encoders.images import (
    ERROR_HASH_PREFIX,
    IMAGE_UNEXPECTED_ERROR,
    ImageError,
    ImageLimits,
    image_content_hash,
    load_image,
)
from fashion_catalog.encoders.protocols import RowEncoder
from fashion_catalog.schemas.spark import VECTOR_TYPE

log = logging.getLogger(__name__)

TEXT_ENCODE_FAILED = "TEXT_ENCODE_FAILED"
IMAGE_ENCODE_FAILED = "IMAGE_ENCODE_FAILED"
# A serving endpoint refused that row (the rest of its batch keeps its vectors).
TEXT_REJECTED = "TEXT_REJECTED"
IMAGE_REJECTED = "IMAGE_REJECTED"
# Codes of a model call that failed (not of the input): the row is re-planned, up to stream.max_encode_attempts.
RETRYABLE_TEXT_ERRORS = (TEXT_ENCODE_FAILED, TEXT_REJECTED)
RETRYABLE_IMAGE_ERRORS = (IMAGE_ENCODE_FAILED, IMAGE_REJECTED)

# What an encoding step yields for each row, after the row's key.
RESULT_FIELDS = (StructField("embedding", VECTOR_TYPE), StructField("error", StringType()),
                 StructField("worker", StringType()))


def _jvm_role(pid: int) -> str:
    """Walk up from a Python worker to the JVM that launched it: an executor (with its id) or a driver."""
    for _ in range(6):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                args = fh.read().decode(errors="replace").split("\0")
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return "unknown"
        if any(a.endswith("CoarseGrainedExecutorBackend") for a in args):
            executor = args[args.index("--executor-id") + 1] if "--executor-id" in args else "?"
            return f"executor-{executor}:jvm{pid}"
        if any(a.endswith("java") for a in args[:1]):
            return f"driver:jvm{pid}"
        pid = parent
    return "unknown"


@functools.lru_cache(maxsize=1)
def worker_identity() -> str:
    """host:pid:role of this Python worker (role: executor-<id>:jvm<pid> or driver:jvm<pid>)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_jvm_role(os.getppid())}"


def _row_error(kind: str, message: str) -> str:
    """An endpoint's per-row error as our code: its own image code when it sent one, else <KIND>_REJECTED."""
    code = message.split(":", 1)[0].strip()
    if kind == "image" and code.startswith("IMAGE_") and code != IMAGE_ENCODE_FAILED:
        return code
    return TEXT_REJECTED if kind == "text" else IMAGE_REJECTED


def encode_rows(encoder, kind: str, items: list, batch_size: int) -> tuple[list, list]:
    """(vectors, errors) per item: never raises (a model failure must not kill the stream).

    An encoder with per-row results (a serving endpoint) keeps the good rows' vectors when some
    are rejected; an in-process model either encodes the whole batch or fails it as a whole.
    """
    n = len(items)
    failed_code = TEXT_ENCODE_FAILED if kind == "text" else IMAGE_ENCODE_FAILED
    try:
        if isinstance(encoder, RowEncoder):
            vectors, messages = encoder.embed_rows(kind, items, batch_size)
            for message in {m for m in messages if m}:
                log.warning("%s encoder rejected a row: %s", kind, message)
            return vectors, [None if m is None else _row_error(kind, m) for m in messages]
        encode = encoder.encode_texts if kind == "text" else encoder.encode_images
        return list(encode(items, batch_size)), [None] * n
    except Exception:  # noqa: BLE001 - recorded on the rows, the batch goes on
        log.exception("%s encoder failed on a batch of %d", kind, n)
        return [None] * n, [failed_code] * n


def _guarded_hash(path, limits: ImageLimits) -> str:
    """One row's image hash; anything unexpected becomes that row's code, never the batch's failure."""
    try:
        return image_content_hash(path, limits)
    except Exception:  # noqa: BLE001 - the row guard: recorded on the row, the batch goes on
        log.exception("hashing one row's image failed unexpectedly")
        return ERROR_HASH_PREFIX + IMAGE_UNEXPECTED_ERROR


def image_hashes(paths: pd.Series, limits: ImageLimits) -> pd.Series:
    """sha256 of each image file's bytes, or ``error:<CODE>`` (the image-hash UDF's body)."""
    return pd.Series([_guarded_hash(p, limits) for p in paths], index=paths.index, dtype=object)


def encode_text_frame(encoder, texts: pd.Series, batch_size: int) -> pd.DataFrame:
    """Descriptions -> (embedding, error, worker) rows: the text UDF's body, also run in-process on tiny batches."""
    values = [t if isinstance(t, str) else "" for t in texts]
    vectors, errors = encode_rows(encoder, "text", values, batch_size)
    return pd.DataFrame({"embedding": vectors, "error": errors, "worker": worker_identity()})


def encode_image_frame(encoder, paths: pd.Series, limits: ImageLimits, batch_size: int) -> pd.DataFrame:
    """Image paths -> (embedding, error, worker) rows; unreadable images give an error code, not an exception."""
    n = len(paths)
    vectors: list = [None] * n
    errors: list = [None] * n
    images, positions = [], []
    for i, path in enumerate(paths):
        try:
            images.append(load_image(path, limits))
            positions.append(i)
        except ImageError as exc:
            errors[i] = exc.code
        except Exception:  # noqa: BLE001 - the row guard: recorded on the row, the batch goes on
            log.exception("decoding one row's image failed unexpectedly")
            errors[i] = IMAGE_UNEXPECTED_ERROR
    if images:
        encoded, failed = encode_rows(encoder, "image", images, batch_size)
        for j, i in enumerate(positions):
            vectors[i], errors[i] = encoded[j], failed[j]
    return pd.DataFrame({"embedding": vectors, "error": errors, "worker": worker_identity()})


def make_image_hash_udf(limits: ImageLimits):
    """UDF: image_path -> sha256 of the file's bytes, or ``error:<CODE>``."""

    @F.pandas_udf(StringType())
    def image_hash(paths: pd.Series) -> pd.Series:
        return image_hashes(paths, limits)

    return image_hash


def make_encoder(kind: str, spec: EncoderSpec, limits: ImageLimits, key: str, value: str):
    """``mapInPandas`` function: frames of (key, value) -> frames of (key, embedding, error, worker).

    A map rather than a column UDF because only ``mapInPandas``/``mapInArrow`` carry a stage-level
    :class:`~pyspark.resource.ResourceProfile` (Spark 4.0): the encoding stages alone can ask for a whole GPU
    (:func:`encode_task_profile`). The model is loaded once per Python worker and kept across batches and tasks.
    """
    if kind not in ("text", "image"):
        raise ValueError(f"kind must be 'text' or 'image', got {kind!r}")

    def encode(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        encoder = spec.encoder()
        for frame in frames:
            if kind == "text":
                out = encode_text_frame(encoder, frame[value], spec.text_batch_size)
            else:
                out = encode_image_frame(encoder, frame[value], limits, spec.image_batch_size)
            out.insert(0, key, frame[key].to_numpy())
            yield out

    return encode


def encoded_schema(key_field: StructField) -> StructType:
    """What :func:`make_encoder`'s function yields: the key as the input has it, then the result's fields."""
    return StructType([key_field, *RESULT_FIELDS])


def encode_task_profile(gpus: float):
    """The encoding stages' task resources (``model.encode_task_gpus`` GPUs per task); None for 0.

    Without dynamic allocation Spark runs a task-only profile on the executors it has (SPARK-39853: standalone,
    Databricks included, from 3.4; YARN and K8s from 3.5.1), so the other stages keep the cluster's fractional
    ``spark.task.resource.gpu.amount`` and run one task per core.
    """
    if not gpus:
        return None
    from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

    return ResourceProfileBuilder().require(TaskResourceRequests().resource("gpu", float(gpus))).build
