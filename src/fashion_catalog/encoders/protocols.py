"""The encoder interfaces the rest of the product calls, declared once.

Three implementations exist: :class:`fashion_catalog.encoders.clip.ClipEncoder` (a CLIP in this
process, any precision back-end), ``encoders.endpoint.EndpointEncoder`` (a Model Serving
endpoint) and ``encoders.batching.BatchingEncoder`` (one worker batching concurrent callers of
another encoder). The Spark UDFs, the tiny stream road and the search service take any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


class Encoder(Protocol):
    """A CLIP-space encoder: unit vectors for texts and for RGB images."""

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """An (n, dim) array of unit vectors, in input order."""

    def encode_images(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        """An (n, dim) array of unit vectors for RGB PIL images, in input order."""

    @property
    def logit_scale(self) -> float | None:
        """The model's temperature for zero-shot logits, or None when the encoder cannot say (an endpoint)."""


@runtime_checkable
class RowEncoder(Protocol):
    """An encoder that answers per row (a serving endpoint): a rejected row gets a message, the others their
    vectors, so one bad row does not fail its batch."""

    def embed_rows(self, kind: str, items: Sequence, batch_size: int | None = None) -> tuple[list, list]:
        """(vectors, messages) per item of ``kind`` ("text" or "image"): a vector or None, a message or None."""
