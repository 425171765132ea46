"""Arrow-batched iterator pandas UDFs: image content hash, CLIP text and CLIP image encoding.

Each encoding UDF gets its model from :meth:`encoders.factory.EncoderSpec.encoder`, so a
Python worker loads the model once and keeps it for every later batch and task
(Spark reuses Python workers). A failing image becomes an error code on its row;
a failing model call becomes an error code on the rows of that batch. Neither
ever fails the Spark task.
"""

from __future__ import annotations

import logging
from typing import Iterator

import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from encoders.factory import EncoderSpec
from encoders.images import ImageError, ImageLimits, image_content_hash, load_image
from schemas.spark import VECTOR_TYPE

log = logging.getLogger(__name__)

TEXT_ENCODE_FAILED = "TEXT_ENCODE_FAILED"
IMAGE_ENCODE_FAILED = "IMAGE_ENCODE_FAILED"

TEXT_RESULT_TYPE = StructType([StructField("embedding", VECTOR_TYPE), StructField("error", StringType())])
IMAGE_RESULT_TYPE = TEXT_RESULT_TYPE


def make_image_hash_udf(limits: ImageLimits):
    """UDF: image_path -> sha256 of the file's bytes, or ``error:<CODE>``."""

    @F.pandas_udf(StringType())
    def image_hash(paths: pd.Series) -> pd.Series:
        return pd.Series([image_content_hash(p, limits) for p in paths], index=paths.index)

    return image_hash


def make_text_udf(spec: EncoderSpec, counter=None):
    """UDF: description -> struct<embedding, error>; ``counter`` (an Accumulator) counts texts encoded."""

    @F.pandas_udf(TEXT_RESULT_TYPE)
    def encode_text(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        encoder = spec.encoder()
        for texts in batches:
            values = [t if isinstance(t, str) else "" for t in texts]
            try:
                vectors = list(encoder.encode_texts(values, spec.text_batch_size))
                errors = [None] * len(values)
            except Exception:  # noqa: BLE001 - a model failure must not kill the stream
                log.exception("text encoder failed on a batch of %d", len(values))
                vectors, errors = [None] * len(values), [TEXT_ENCODE_FAILED] * len(values)
            if counter is not None:
                counter.add(len(values))
            yield pd.DataFrame({"embedding": vectors, "error": errors})

    return encode_text


def make_image_udf(spec: EncoderSpec, limits: ImageLimits, counter=None):
    """UDF: image_path -> struct<embedding, error>; unreadable images give an error code."""

    @F.pandas_udf(IMAGE_RESULT_TYPE)
    def encode_image(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        encoder = spec.encoder()
        for paths in batches:
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
            if images:
                try:
                    encoded = encoder.encode_images(images, spec.image_batch_size)
                    for j, i in enumerate(positions):
                        vectors[i] = encoded[j]
                except Exception:  # noqa: BLE001 - recorded on the rows, the batch goes on
                    log.exception("image encoder failed on a batch of %d", len(images))
                    for i in positions:
                        errors[i] = IMAGE_ENCODE_FAILED
            if counter is not None:
                counter.add(len(images))
            yield pd.DataFrame({"embedding": vectors, "error": errors})

    return encode_image
