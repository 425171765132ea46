"""Texts built from catalog labels: training captions, evaluation queries, zero-shot prompts.

Shoppers type short queries ("red dresses", "black formal shoes"), not the long
product description the embedder encodes. Training on the description alone left
short queries far from everything (feasibility run: colour+type P@10 0.12), so each
training step pairs an image with one caption drawn from several forms: the full
description, the display name, or a random subset of its labels in a fixed order
(colour, usage, gender, article type). Queries and zero-shot prompts use the
same lower-case label wording.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fashion_catalog.encoders.prompts import colour_type_query, zero_shot_prompt
from fashion_catalog.encoders.prompts import label_text as _label

# Label fields in the order a caption lists them, and how often each is kept in a subset caption.
SUBSET_FIELDS: tuple[tuple[str, float], ...] = (
    ("base_color", 0.6),
    ("usage", 0.25),
    ("gender", 0.3),
    ("article_type", 0.85),
)
DESCRIPTION_SHARE = 0.25  # captions that are the embedder's full product description
NAME_SHARE = 0.15  # captions that are the display name


def label_caption(row: pd.Series | dict, fields: tuple[str, ...]) -> str:
    """The labels of ``fields`` that the row has, lower case, in SUBSET_FIELDS order."""
    order = [f for f, _ in SUBSET_FIELDS if f in fields] + [f for f in fields if f not in dict(SUBSET_FIELDS)]
    return " ".join(v for f in order if (v := _label(row.get(f))))


def training_pair(row: pd.Series | dict, rng: np.random.Generator) -> tuple[str, dict[str, str] | None]:
    """One caption for a training step and, for a label caption, the labels it states (else None)."""
    r = rng.random()
    if r < DESCRIPTION_SHARE and _label(row.get("description")):
        return str(row["description"]), None
    if r < DESCRIPTION_SHARE + NAME_SHARE and _label(row.get("product_display_name")):
        return str(row["product_display_name"]), None
    fields = tuple(f for f, p in SUBSET_FIELDS if rng.random() < p and _label(row.get(f)))
    if not fields:
        fields = ("article_type",) if _label(row.get("article_type")) else ()
    if not fields:
        return str(row.get("product_display_name") or ""), None
    return label_caption(row, fields), {f: _label(row.get(f)) for f in fields}


def training_caption(row: pd.Series | dict, rng: np.random.Generator) -> str:
    """One caption for a training step (see module docstring); never empty."""
    return training_pair(row, rng)[0]


def caption_targets(captions: list[str], stated: list[dict[str, str] | None], products: list[dict]) -> np.ndarray:
    """Which images of a batch each caption describes: (captions x images) booleans.

    Caption i always describes its own image i and any image whose caption is the same
    string; a label caption ("red dresses") also describes every image of the batch whose
    product has all the labels it states. These are the positives of the CLIP loss, so
    a red dress is never pushed away from "red dresses" because another product drew it.
    """
    n = len(captions)
    codes = {c: k for k, c in enumerate(dict.fromkeys(captions))}
    ids = np.array([codes[c] for c in captions])
    targets = ids[:, None] == ids[None, :]
    fields = {f for s in stated if s for f in s}
    values = {f: np.array([_label(p.get(f)) or "" for p in products], dtype=object) for f in fields}
    for i, labels in enumerate(stated):
        if labels:
            match = np.ones(n, dtype=bool)
            for f, v in labels.items():
                match &= values[f] == v
            targets[i] |= match
    return targets


__all__ = ["caption_targets", "colour_type_query", "label_caption", "training_caption", "training_pair",
           "zero_shot_prompt"]
