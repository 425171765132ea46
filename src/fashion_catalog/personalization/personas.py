"""Personas and user style features: a style embedding per user from the products matching their tastes."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from fashion_catalog.encoders.vectors import l2_normalize

PERSONAS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "personas.json")
MIN_MATCHES = 3


def load_personas(path: str = PERSONAS_FILE) -> list[dict]:
    """The personas of ``path`` (default: the shipped ``personalization/data/personas.json``)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def persona_matches(persona: dict, meta: pd.DataFrame) -> np.ndarray:
    """Products matching a persona: preferred category and colour within the price range,
    relaxed to category only, then colour only, when too few match."""
    price = pd.to_numeric(meta["price"], errors="coerce")
    in_price = ((price >= persona["min_price"]) & (price <= persona["max_price"])).to_numpy()
    cat = meta["article_type"].isin(persona["category_prefs"]).to_numpy()
    col = meta["base_color"].isin(persona["color_prefs"]).to_numpy()
    for mask in (cat & col & in_price, cat & in_price, cat & col, cat, col & in_price):
        if mask.sum() >= MIN_MATCHES:
            return mask
    return cat | col


def compute_user_features(personas: list[dict], meta: pd.DataFrame, hybrid: np.ndarray,
                          has_vector: np.ndarray) -> pd.DataFrame:
    """One row per persona: user_id, segment, user_embedding (unit centroid), prefs, price range, n matched."""
    rows = []
    for p in personas:
        mask = persona_matches(p, meta) & has_vector
        if mask.any():
            embedding = l2_normalize(hybrid[mask].astype(np.float64).mean(axis=0)).tolist()
        else:
            embedding = None
        rows.append({
            "user_id": p["user_id"], "segment": p["segment"], "user_embedding": embedding,
            "color_prefs": list(p["color_prefs"]), "category_prefs": list(p["category_prefs"]),
            "min_price": float(p["min_price"]), "max_price": float(p["max_price"]),
            "matched_products": int(mask.sum()),
        })
    return pd.DataFrame(rows)


def recommendation_filters(user: dict) -> dict:
    """The user's price range and category preferences as filters in the Databricks dialect."""
    return {"price >=": float(user["min_price"]), "price <=": float(user["max_price"]),
            "article_type": list(user["category_prefs"])}


def recommendation_reasons(user: dict, count: int = 3) -> list[str]:
    """The two or three preferences behind a user's recommendations, in words (for the page and the API)."""
    # The filters first (two favourite categories, the price range), then the favourite colour the style
    # embedding leans to.
    reasons = [str(c).lower() for c in user.get("category_prefs", [])[:2]]
    reasons.append(f"${float(user['min_price']):g} to ${float(user['max_price']):g}")
    if user.get("color_prefs"):
        reasons.append(f"{str(user['color_prefs'][0]).lower()} colours")
    return reasons[:count]
