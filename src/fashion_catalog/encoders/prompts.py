"""How a catalog label is worded for the CLIP text encoder: one template for the API, training and evaluation.

The catalog CLIP is trained on lower-case label captions ("red dresses", "black
formal shoes"), and ``jobs.evaluate`` scores zero-shot classification with exactly
this wording; the API classifies with it too, so its answers are the ones evaluated.
"""

from __future__ import annotations

import math


def label_text(value) -> str | None:
    """A label as caption text: whitespace collapsed, lower case; None for a missing or blank label."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = " ".join(str(value).split()).lower()
    return text or None


def zero_shot_prompt(label: str) -> str:
    """The text a label is scored with in zero-shot classification (the training captions' wording)."""
    return label_text(label) or ""


def colour_type_query(colour: str, article_type: str) -> str:
    """A shopper query for a (colour, article type) pair: "red dresses", "black formal shoes"."""
    return f"{label_text(colour)} {label_text(article_type)}"
