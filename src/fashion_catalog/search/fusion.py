"""Reciprocal rank fusion (RRF): one ranking from several retrievers' rankings.

``score(d) = sum_r weight_r / (k + rank_r(d))`` over the retrievers that returned ``d``
(rank from 1), as in Cormack, Clarke & Büttcher (SIGIR 2009) and Elasticsearch/OpenSearch's
hybrid search. Only ranks count, so a BM25 score and a cosine never need a common scale.
Ties break by the best single rank, then by id, so the order is deterministic.
"""

from __future__ import annotations

from typing import Hashable, Iterable

DEFAULT_K = 60  # the constant of the original paper; larger flattens the head of each list


def reciprocal_rank_fusion(rankings: dict[str, Iterable[Hashable]], weights: dict[str, float] | None = None,
                           k: int = DEFAULT_K, limit: int | None = None) -> list[tuple[Hashable, float]]:
    """Fused (id, score) pairs, best first; ``weights`` per retriever (default 1.0; 0 leaves it out)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    weights = weights or {}
    scores: dict[Hashable, float] = {}
    best: dict[Hashable, int] = {}
    for name, ranking in rankings.items():
        weight = float(weights.get(name, 1.0))
        if weight < 0:
            raise ValueError(f"weight of {name!r} must be >= 0, got {weight}")
        if weight == 0:
            continue
        # A retriever listing a document twice counts it once, at its best rank; ranks are over distinct ids.
        for rank, doc in enumerate(dict.fromkeys(ranking), 1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
            best[doc] = min(best.get(doc, rank), rank)
    ordered = sorted(scores.items(), key=lambda item: (-item[1], best[item[0]], str(item[0])))
    return ordered[:limit] if limit is not None else ordered
