"""Query embeddings for the search API: text, image (uploaded bytes) and hybrid, in the catalog's CLIP space."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from fashion_catalog.encoders.images import (
    IMAGE_TOO_MANY_PIXELS,
    WEB_FORMATS,
    ImageError,
    ImageLimits,
    decode_image,
)
from fashion_catalog.encoders.prompts import zero_shot_prompt
from fashion_catalog.encoders.vectors import hybrid_vector

# CLIP's initial temperature (exp of ln 100); used when the encoder cannot say (a serving endpoint).
DEFAULT_LOGIT_SCALE = 100.0
LABEL_SETS_KEPT = 32  # classify: label sets whose prompt vectors are kept (each at most search.max_labels)
UPLOAD_FORMATS = frozenset(WEB_FORMATS)  # what the API says it takes (app.models.IMAGE_MEDIA_TYPES)
MAX_QUERY_CHARS = 1000  # a shopper's query; CLIP reads 77 tokens of it anyway
# Blank text: Python's whitespace plus the zero-width no-break space (U+FEFF, whitespace to JSON
# Schema's ECMA regex). app.models.NON_BLANK says the same in the OpenAPI schema.
BLANK_EXTRA = "\ufeff"


def is_blank(text: str | None) -> bool:
    """True for None or text made only of whitespace (nothing to embed)."""
    return text is None or not text.replace(BLANK_EXTRA, "").strip()



class BadQueryError(ValueError):
    """The query cannot be embedded (empty text, not an image, too large); maps to HTTP 4xx."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class QueryEncoder:
    """Wraps an encoder (in-process CLIP, registered MLflow model or endpoint) for queries."""

    def __init__(self, encoder, limits: ImageLimits | None, max_upload_bytes: int, model_id: str,
                 max_upload_pixels: int | None = None, max_concurrent: int = 2):
        """``limits``: the catalogue's image limits (None: text queries only)."""
        self.encoder = encoder
        # An upload is bounded apart from the catalogue's images, and read from bytes, never from a path.
        self.limits = None if limits is None else replace(
            limits, max_pixels=min(limits.max_pixels, max_upload_pixels or limits.max_pixels), allowed_roots=())
        self.max_upload_bytes = max_upload_bytes
        self.model_id = model_id
        # At most this many uploads are decoded and encoded at once (each costs memory and cores); more wait.
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._label_vectors: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self._labels_lock = threading.Lock()

    @staticmethod
    def check_text(text: str | None) -> str:
        """The query text stripped, or :class:`BadQueryError` for an empty or oversized one."""
        if is_blank(text):
            raise BadQueryError("query text is empty")
        if len(text) > MAX_QUERY_CHARS:
            raise BadQueryError(f"query text is longer than {MAX_QUERY_CHARS} characters")
        return text.strip(BLANK_EXTRA).strip()

    def text_embedding(self, text: str | None) -> np.ndarray:
        return self.encoder.encode_texts([self.check_text(text)])[0]

    def decode_upload(self, data: bytes | None):
        if not data:
            raise BadQueryError("the uploaded image is empty")
        if len(data) > self.max_upload_bytes:
            raise BadQueryError(f"the upload has {len(data)} bytes; the limit is {self.max_upload_bytes}", status=413)
        try:
            return decode_image(data, self.limits, name="upload", formats=UPLOAD_FORMATS)
        except ImageError as exc:
            if exc.code == IMAGE_TOO_MANY_PIXELS:
                raise BadQueryError(f"the upload is not a usable image ({exc.code}): more than "
                                    f"{self.limits.max_pixels} pixels", status=415) from None
            raise BadQueryError(f"the upload is not a usable image ({exc.code}); send one of "
                                f"{', '.join(WEB_FORMATS.values())}", status=415) from None

    def image_embedding(self, data: bytes | None) -> np.ndarray:
        with self._slots:
            return self.encoder.encode_images([self.decode_upload(data)])[0]

    def hybrid_embedding(self, text: str | None, image: bytes | None, text_weight: float) -> np.ndarray:
        if not 0.0 <= text_weight <= 1.0:
            raise BadQueryError("text_weight must be between 0 and 1", status=422)
        has_text = not is_blank(text)
        if not has_text and not image:
            raise BadQueryError("give a text query, an image, or both")
        t = self.text_embedding(text) if has_text else None
        i = self.image_embedding(image) if image else None
        if t is None:
            return i
        return hybrid_vector(t, i, text_weight)

    def logit_scale(self) -> float:
        """The encoder's temperature; CLIP's usual 100 when it cannot say (a serving endpoint)."""
        scale = self.encoder.logit_scale
        return DEFAULT_LOGIT_SCALE if scale is None else float(scale)

    def label_vectors(self, labels: list[str]) -> np.ndarray:
        """The prompt vectors of a label set, encoded once and kept (the most recent label sets)."""
        key = tuple(labels)
        with self._labels_lock:
            cached = self._label_vectors.get(key)
            if cached is not None:
                self._label_vectors.move_to_end(key)
                return cached
        vectors = self.encoder.encode_texts([zero_shot_prompt(label) for label in labels])
        with self._labels_lock:
            self._label_vectors[key] = vectors
            while len(self._label_vectors) > LABEL_SETS_KEPT:
                self._label_vectors.popitem(last=False)
        return vectors

    def classify(self, image_vector: np.ndarray, labels: list[str]) -> list[dict]:
        """Zero-shot: softmax over cosine(image, label prompt) * logit scale.

        Labels are worded by :func:`encoders.prompts.zero_shot_prompt`, the wording the
        catalog CLIP is trained and evaluated with.
        """
        if not labels:
            raise BadQueryError("no candidate labels")
        prompts = self.label_vectors(labels)
        logits = self.logit_scale() * (prompts @ np.asarray(image_vector, dtype=np.float64))
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        return [{"label": labels[i], "probability": float(probs[i])} for i in order]
