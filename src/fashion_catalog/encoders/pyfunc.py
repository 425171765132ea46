"""The multimodal CLIP encoder as an MLflow pyfunc model.

Input: a DataFrame whose rows carry ``text`` and/or ``image`` (base64 bytes);
either column may be absent, and a row may have either, both or neither.
Output: one row per input with ``embedding`` (L2-normalised, CLIP space),
``modality`` ("text", "image" or "hybrid") and ``error`` (null, or a code with a
message for that row only). A row with both gets the hybrid vector
normalize(w*text + (1-w)*image), with ``w`` from the ``text_weight`` parameter.
The CLIP weights travel as the model's own artifact: nothing is fetched at load.
"""

from __future__ import annotations

import base64
import binascii
import os

import numpy as np
import pandas as pd

try:
    import mlflow.pyfunc

    _Base = mlflow.pyfunc.PythonModel
except ImportError:  # pragma: no cover - mlflow is a pinned requirement
    _Base = object

ARTIFACT_KEY = "clip_model"
DEFAULT_TEXT_WEIGHT = 0.5

EMPTY_INPUT = "EMPTY_INPUT"
INVALID_BASE64 = "INVALID_BASE64"


def signature():
    """Text-only, image-only and mixed requests are all valid: both columns are optional."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    inputs = Schema([ColSpec(DataType.string, "text", required=False),
                     ColSpec(DataType.string, "image", required=False)])
    outputs = Schema([ColSpec(Array(DataType.double), "embedding", required=False),
                      ColSpec(DataType.string, "modality", required=False),
                      ColSpec(DataType.string, "error", required=False)])
    params = ParamSchema([ParamSpec("text_weight", DataType.double, DEFAULT_TEXT_WEIGHT)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _present(value) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and np.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


class CLIPMultimodalEncoder(_Base):
    """mlflow.pyfunc model wrapping :class:`encoders.clip.ClipEncoder`."""

    def load_context(self, context) -> None:
        from fashion_catalog.encoders.clip import ClipEncoder
        from fashion_catalog.encoders.images import ImageLimits

        cfg = dict(getattr(context, "model_config", None) or {})
        self.encoder = ClipEncoder(
            context.artifacts[ARTIFACT_KEY],
            precision=cfg.get("precision", "fp32"),
            torch_threads=cfg.get("torch_threads") or None,
        )
        self.limits = ImageLimits(int(cfg.get("max_bytes", 20_000_000)), int(cfg.get("max_pixels", 40_000_000)))
        self.batch_size = int(cfg.get("batch_size", 32))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from fashion_catalog.encoders.images import ImageError, decode_image
        from fashion_catalog.encoders.vectors import hybrid_vector

        weight = float((params or {}).get("text_weight", DEFAULT_TEXT_WEIGHT))
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"text_weight must be in [0, 1], got {weight}")
        n = len(model_input)
        texts = model_input["text"].tolist() if "text" in model_input.columns else [None] * n
        images = model_input["image"].tolist() if "image" in model_input.columns else [None] * n
        errors: list[str | None] = [None] * n
        decoded: dict[int, object] = {}
        for i, raw in enumerate(images):
            if not _present(raw):
                continue
            try:
                data = base64.b64decode(str(raw), validate=True)
            except (binascii.Error, ValueError) as exc:
                errors[i] = f"{INVALID_BASE64}: image is not valid base64 ({exc})"
                continue
            if len(data) > self.limits.max_bytes:
                errors[i] = f"IMAGE_TOO_LARGE: {len(data)} bytes > {self.limits.max_bytes}"
                continue
            try:
                decoded[i] = decode_image(data, self.limits, name=f"row {i}")
            except ImageError as exc:
                errors[i] = str(exc)
        text_rows = [i for i in range(n) if _present(texts[i]) and errors[i] is None]
        text_vecs = dict(zip(text_rows, self.encoder.encode_texts([str(texts[i]) for i in text_rows],
                                                                    self.batch_size), strict=True))
        image_rows = sorted(decoded)
        image_vecs = dict(zip(image_rows, self.encoder.encode_images([decoded[i] for i in image_rows],
                                                                      self.batch_size), strict=True))
        embeddings, modalities = [], []
        for i in range(n):
            t, im = text_vecs.get(i), image_vecs.get(i)
            if errors[i] is None and t is None and im is None:
                errors[i] = f"{EMPTY_INPUT}: row {i} has neither 'text' nor 'image'"
            if errors[i] is not None:
                embeddings.append(None)
                modalities.append(None)
            elif t is not None and im is not None:
                embeddings.append(hybrid_vector(t, im, weight).tolist())
                modalities.append("hybrid")
            else:
                embeddings.append((t if t is not None else im).tolist())
                modalities.append("text" if t is not None else "image")
        return pd.DataFrame({"embedding": embeddings, "modality": modalities, "error": errors})


# The packages the pyfunc imports at load time: the encoders, and conf for the precision registry (both
# Spark-free; conf needs only pydantic and pyyaml, which mlflow itself requires).
MODEL_CODE_PACKAGES = ("encoders", "conf")


def model_code_paths(staging: str) -> list[str]:
    """The code the pyfunc needs at load time, shipped inside the model (:data:`MODEL_CODE_PACKAGES`).

    MLflow copies each path into the model's ``code/`` folder and puts that folder on ``sys.path`` at
    load time, so the import root must travel with it: ``<staging>/fashion_catalog`` holds the root's
    ``__init__.py`` and those packages only (no Spark code), and is what gets logged.
    """
    import shutil

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.path.join(staging, os.path.basename(root))
    os.makedirs(target, exist_ok=True)
    shutil.copy2(os.path.join(root, "__init__.py"), target)
    for package in MODEL_CODE_PACKAGES:
        shutil.copytree(os.path.join(root, package), os.path.join(target, package),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return [target]
