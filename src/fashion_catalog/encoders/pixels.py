"""Offline batches of images: preprocess once into a compact pixel array, then encode it (training, evaluation)."""

from __future__ import annotations

import logging

import numpy as np

from fashion_catalog.encoders.images import ImageError, load_image
from fashion_catalog.encoders.vectors import l2_normalize

log = logging.getLogger(__name__)


def load_pixels(encoder, paths: list[str], limits, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed pixels (float16, the encoder's own resize/crop/normalise) and a readable mask."""
    size = encoder.image_size
    out = np.zeros((len(paths), 3, size[0], size[1]), dtype=np.float16)
    ok = np.zeros(len(paths), dtype=bool)
    for start in range(0, len(paths), batch):
        imgs, slots = [], []
        for i in range(start, min(start + batch, len(paths))):
            try:
                imgs.append(load_image(paths[i], limits))
                slots.append(i)
            except ImageError as exc:
                log.warning("skipping %s: %s", paths[i], exc)
        if imgs:
            out[slots] = encoder.preprocess_images(imgs).numpy().astype(np.float16)
            ok[slots] = True
    return out, ok


def encode_pixel_array(encoder, pixels: np.ndarray, batch: int = 256) -> np.ndarray:
    """Unit image vectors (float64) for a float16 pixel array from :func:`load_pixels`."""
    import torch

    if not len(pixels):
        return np.zeros((0, encoder.dimension))
    with torch.inference_mode():
        vectors = [encoder.encode_pixels(torch.from_numpy(pixels[s : s + batch].astype(np.float32)))
                   for s in range(0, len(pixels), batch)]
    return l2_normalize(np.concatenate(vectors).astype(np.float64))
