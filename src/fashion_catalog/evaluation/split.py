"""Deterministic product-level train / validation / test split: the held-out test split evaluation scores,
and the train split training may see.

A product's split comes from a seeded hash, so it never changes between runs or
machines. Products that share an image file (same path, or the same bytes under
another name) form one group and land in the same split together: otherwise the
test split would hold images the model was trained on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import pandas as pd

SPLITS = ("train", "validation", "test")


def image_key(path: str | None) -> str | None:
    """Identity of an image file: its content hash, or its real path when it cannot be read."""
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            return "sha1:" + hashlib.sha1(fh.read()).hexdigest()
    except OSError:
        return "path:" + os.path.realpath(path)


def _bucket(seed: int, key: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(product_ids: Sequence[int], image_keys: Sequence[str | None], seed: int = 17,
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> pd.Series:
    """Split name per product (a Series indexed by product_id).

    Each group of products sharing an image key takes the split of its smallest
    product_id's hash bucket; products without an image form groups of one.
    """
    if len(product_ids) != len(image_keys):
        raise ValueError("product_ids and image_keys must have the same length")
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions}")
    frame = pd.DataFrame({"product_id": list(product_ids), "key": list(image_keys)})
    if frame["product_id"].duplicated().any():
        raise ValueError("product_ids must be unique")
    frame["group"] = frame["key"].where(frame["key"].notna(), "pid:" + frame["product_id"].astype(str))
    anchor = frame.groupby("group")["product_id"].transform("min")
    bucket = anchor.map(lambda pid: _bucket(seed, int(pid)))
    edges = (fractions[0], fractions[0] + fractions[1])
    split = bucket.map(lambda b: SPLITS[0] if b < edges[0] else SPLITS[1] if b < edges[1] else SPLITS[2])
    return pd.Series(split.to_numpy(), index=frame["product_id"].to_numpy(), name="split")


def with_splits(frame: pd.DataFrame, seed: int, fractions) -> pd.DataFrame:
    """Add ``image_key`` and ``split`` columns to a catalog frame (product_id, image_path, ...)."""
    frame = frame.copy()
    frame["image_key"] = [image_key(p) for p in frame["image_path"]]
    frame["split"] = assign_splits(frame["product_id"].tolist(), frame["image_key"].tolist(), seed,
                                   tuple(fractions)).loc[frame["product_id"]].to_numpy()
    return frame
