"""``model_card.json``: how a CLIP folder's weights were made (random, trained, pretrained), read and written once."""

from __future__ import annotations

import json
import os

MODEL_CARD = "model_card.json"


def read_model_card(name_or_path: str) -> dict:
    """Return the folder's model_card.json (empty for hub ids or folders without one)."""
    card = os.path.join(name_or_path, MODEL_CARD)
    if os.path.isfile(card):
        with open(card, encoding="utf-8") as fh:
            return json.load(fh)
    return {}


def write_model_card(folder: str | os.PathLike[str], card: dict) -> str:
    """Write ``card`` as the folder's model_card.json (replacing any); returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, MODEL_CARD)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(card, fh, indent=2)
    return path
