"""Validation scores a training run is steered by: article-type text->image P@10 and image same-type@10."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fashion_catalog.encoders.clip import ClipEncoder
from fashion_catalog.encoders.pixels import encode_pixel_array
from fashion_catalog.encoders.prompts import zero_shot_prompt
from fashion_catalog.evaluation.metrics import precision_at_k, same_label_at_k, top_k


def validation_scores(model_dir: str, frame: pd.DataFrame, pixels: np.ndarray) -> dict:
    """Article-type text->image P@10 and image->image same-type@10 on the rows given (validation)."""
    enc = ClipEncoder(model_dir, precision="fp32")
    img = encode_pixel_array(enc, pixels)
    types = frame["article_type"].astype(str).to_numpy()
    counts = pd.Series(types).value_counts()
    queries = counts[counts >= 5].index.tolist()
    if not queries:
        return {}
    qv = enc.encode_texts([zero_shot_prompt(t) for t in queries])
    idx = top_k(qv @ img.T, 10)
    p10 = float(np.mean([precision_at_k(types[row] == t) for t, row in zip(queries, idx, strict=True)]))
    return {"type_p_at_10": round(p10, 4), "image_same_type_at_10": round(same_label_at_k(img, types), 4)}
