"""Retrieval-quality metrics on ranked result lists with label-based relevance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def precision_at_k(relevant: Sequence[bool], k: int = 10) -> float:
    """Share of the first k results that are relevant (missing results count as not relevant)."""
    if k <= 0:
        raise ValueError("k must be positive")
    return float(np.sum(np.asarray(relevant[:k], dtype=bool))) / k


def ndcg_at_k(relevant: Sequence[bool], total_relevant: int, k: int = 10) -> float:
    """Binary-relevance nDCG@k: DCG of the ranking over the DCG of an ideal one.

    ``total_relevant`` is how many relevant items exist in the searched set (it
    caps the ideal ranking); 0 relevant items gives 0.
    """
    rel = np.asarray(relevant[:k], dtype=float)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(np.sum(rel * discounts[: len(rel)]))
    ideal = float(np.sum(discounts[: min(total_relevant, k)]))
    return dcg / ideal if ideal > 0 else 0.0


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k highest scores per row (descending); ``exclude`` (same shape, bool) is skipped."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    k = min(k, scores.shape[-1])
    if exclude is not None:
        scores[exclude] = -np.inf
        # Never return an excluded item, even when k reaches past the rest.
        k = min(k, scores.shape[-1] - int(np.max(np.sum(exclude, axis=-1), initial=0)))
    part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    order = np.take_along_axis(scores, part, axis=-1).argsort(axis=-1)[..., ::-1]
    return np.take_along_axis(part, order, axis=-1)


def same_label_at_k(vectors: np.ndarray, labels: Sequence, k: int = 10) -> float:
    """Every item as a query against all others: mean share of its k nearest with the same label."""
    v = np.asarray(vectors, dtype=np.float64)
    labels = np.asarray(labels, dtype=object)
    sims = v @ v.T
    idx = top_k(sims, k, exclude=np.eye(len(v), dtype=bool))
    return float(np.mean(labels[idx] == labels[:, None]))


def zero_shot_accuracy(image_vectors: np.ndarray, prompt_vectors: np.ndarray, prompt_labels: Sequence,
                       true_labels: Sequence) -> float:
    """Share of items whose highest-scoring prompt carries their true label."""
    pred = np.asarray(prompt_labels, dtype=object)[np.argmax(image_vectors @ prompt_vectors.T, axis=1)]
    return float(np.mean(pred == np.asarray(true_labels, dtype=object)))


def mean_pairwise_overlap(lists: dict[str, Sequence]) -> dict:
    """Jaccard-free overlap |A ∩ B| / k for every pair of equally long result lists, and their mean."""
    names = sorted(lists)
    pairs = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            k = max(len(lists[a]), len(lists[b]), 1)
            pairs[f"{a}|{b}"] = len(set(lists[a]) & set(lists[b])) / k
    return {"pairs": pairs, "mean": float(np.mean(list(pairs.values()))) if pairs else 0.0}
