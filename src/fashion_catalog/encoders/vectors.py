"""Vector arithmetic shared by every Spark-free caller: L2 normalisation and the hybrid vector.

``udfs.vectors.with_hybrid`` is the Spark SQL twin of :func:`hybrid_vector` (a test holds them equal).
"""

from __future__ import annotations

import numpy as np

HYBRID_BOTH = "text+image"
HYBRID_TEXT_ONLY = "text_only"
HYBRID_IMAGE_ONLY = "image_only"


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float64 (zero rows stay zero); one vector or a matrix of rows."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def hybrid_vector(text: np.ndarray, image: np.ndarray | None, text_weight: float) -> np.ndarray:
    """normalize(w * text + (1 - w) * image), row-wise for matrices; without an image, the text vector normalised."""
    if image is None:
        return l2_normalize(text)
    return l2_normalize(text_weight * np.asarray(text, dtype=np.float64)
                        + (1 - text_weight) * np.asarray(image, dtype=np.float64))
