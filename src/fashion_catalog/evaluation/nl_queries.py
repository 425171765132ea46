"""Natural-language queries: every text-search mode side by side on the project's query set.

The query set (``evaluation/query_set.yaml``) holds what shoppers type — catalogue words,
shopper words the synonyms map, price and gender in words, brands, needs, occasions, seasons and
ages — each judged by
catalogue labels (filters in the service's dialect plus words of the display name), never by a
model. A third of it is held out from tuning (``held_out: true``).

Each mode runs through the service's own :class:`search.text_search.TextSearch` over an
in-memory local index of the embedded products (BM25 in SQLite FTS5 for keywords):

* ``image_index``, ``text_index``, ``hybrid_index``: CLIP's text vector in one index, the query as typed;
* ``keyword``: BM25 over name and description, as typed;
* ``fused``: reciprocal rank fusion of keyword, text and image indexes, as typed;
* ``fused_understanding``: the same after reading the query (price and gender filters; brand, colour,
  type and query-rule boosts and their boosted retriever; synonyms): what the service does by default.

P@10 and nDCG@10 per mode, on the held-out part, the tuning part and per kind, for the test split
and the whole catalogue; and on the label-only queries of the existing evaluation ("red dresses",
"tshirts", "black") against today's image-index default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from fashion_catalog.conf import ActionableError, Config
from fashion_catalog.encoders.prompts import colour_type_query, zero_shot_prompt
from fashion_catalog.evaluation.metrics import ndcg_at_k, precision_at_k
from fashion_catalog.indexes.filters import evaluate as evaluate_filters
from fashion_catalog.indexes.filters import parse_filters
from fashion_catalog.indexes.local import LocalIndexStore
from fashion_catalog.schemas import FILTER_COLUMNS
from fashion_catalog.search.queries import QueryEncoder
from fashion_catalog.search.service import SearchService
from fashion_catalog.search.text_search import TextSearch

QUERY_SET = Path(__file__).with_name("query_set.yaml")
# Queries a fashion catalogue has no answer to (gibberish, other domains): the negatives for the "nothing close" floor.
UNANSWERABLE = Path(__file__).with_name("unanswerable_queries.txt")
KINDS = ("catalogue", "shopper", "constraint", "brand", "need", "occasion", "season", "age")
MODES: dict[str, dict] = {
    "image_index": {"mode": "vector", "index": "image", "understand": False},
    "text_index": {"mode": "vector", "index": "text", "understand": False},
    "hybrid_index": {"mode": "vector", "index": "hybrid", "understand": False},
    "keyword": {"mode": "keyword", "understand": False},
    "fused": {"mode": "fused", "understand": False},
    "fused_understanding": {"mode": "fused", "understand": True},
}
SINGLE_INDEXES = ("image_index", "text_index", "hybrid_index", "keyword")
TARGET_MARGIN = 0.10  # fused + understanding over the best single index, P@10 on the held-out part
K = 10


class QuerySetError(ActionableError, ValueError):
    """The query set file is malformed; the message names the entry."""


@dataclass(frozen=True)
class JudgedQuery:
    """A query and the labels that make a product relevant to it."""

    query: str
    kind: str
    relevant: dict = field(default_factory=dict)
    held_out: bool = False

    def relevance(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` answer the query (labels and name words only)."""
        conditions = {k: v for k, v in self.relevant.items() if k != "name_has"}
        mask = evaluate_filters(parse_filters(conditions, FILTER_COLUMNS), frame) if conditions \
            else np.ones(len(frame), bool)
        names = frame["product_display_name"].fillna("").astype(str).str.lower()
        for word in self.relevant.get("name_has", []):
            mask &= names.str.contains(rf"\b{re.escape(word.lower())}\b", regex=True).to_numpy()
        return np.asarray(mask, dtype=bool)


def load_query_set(path: str | Path = QUERY_SET) -> list[JudgedQuery]:
    """The judged queries of ``path``; a malformed entry is a :class:`QuerySetError` naming it."""
    entries = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    out = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: entry {number} ({entry.get('query') if isinstance(entry, dict) else entry!r})"
        if not isinstance(entry, dict) or set(entry) - {"query", "kind", "relevant", "held_out"}:
            raise QuerySetError(f"{where}: expected query, kind, relevant and optionally held_out")
        if entry.get("kind") not in KINDS or not str(entry.get("query", "")).strip():
            raise QuerySetError(f"{where}: needs a query and a kind among {KINDS}")
        relevant = dict(entry.get("relevant") or {})
        if not relevant:
            raise QuerySetError(f"{where}: 'relevant' must name at least one label or name word")
        try:
            parse_filters({k: v for k, v in relevant.items() if k != "name_has"}, FILTER_COLUMNS)
        except ValueError as exc:
            raise QuerySetError(f"{where}: {exc}") from None
        out.append(JudgedQuery(str(entry["query"]), entry["kind"], relevant, bool(entry.get("held_out", False))))
    return out


def label_queries(frame: pd.DataFrame, min_support: int) -> list[JudgedQuery]:
    """The existing evaluation's label-only queries on ``frame``: (colour, type) pairs, types, colours."""
    out = []
    for columns, make in ((["base_color", "article_type"], colour_type_query), (["article_type"], zero_shot_prompt),
                          (["base_color"], zero_shot_prompt)):
        labels = frame[columns].fillna("").astype(str)
        counts = labels.value_counts()
        for key in counts[counts >= min_support].index:
            key = key if isinstance(key, tuple) else (key,)
            if all(v.strip() for v in key):
                out.append(JudgedQuery(make(*key), "label", {c: [v] for c, v in zip(columns, key, strict=True)}))
    return out


def build_search(config: Config, encoder, frame: pd.DataFrame, vectors: dict[str, np.ndarray], limits) -> TextSearch:
    """The service's text search over an in-memory index of ``frame`` (with its ``description``) and vectors."""
    store = LocalIndexStore.from_arrays(frame, vectors, approximate_threshold=10**9)
    queries = QueryEncoder(encoder, limits, config.search.max_upload_bytes, config.model.id)
    return TextSearch.from_config(config, SearchService(store, max(config.search.max_limit, K)), queries)


def _scores(search: TextSearch, frame: pd.DataFrame, queries: list[JudgedQuery]) -> pd.DataFrame:
    """One row per (query, mode): P@10 and nDCG@10 (queries with no relevant product are skipped)."""
    ids = frame["product_id"].to_numpy()
    position = {int(pid): i for i, pid in enumerate(ids)}
    rows = []
    for q in queries:
        mask = q.relevance(frame)
        if not mask.any():
            continue
        for name, kwargs in MODES.items():
            found = search.run(q.query, K, **kwargs).results
            rel = np.zeros(K, bool)
            for i, r in enumerate(found[:K]):
                rel[i] = mask[position[int(r["product_id"])]]
            rows.append({"query": q.query, "kind": q.kind, "held_out": q.held_out, "mode": name,
                         "relevant": int(mask.sum()), "p_at_10": precision_at_k(rel),
                         "ndcg_at_10": ndcg_at_k(rel, int(mask.sum()))})
    return pd.DataFrame(rows, columns=["query", "kind", "held_out", "mode", "relevant", "p_at_10", "ndcg_at_10"])


def _summary(scores: pd.DataFrame) -> dict:
    """Mean P@10 / nDCG@10 per mode: all, held_out, tuning and per kind."""
    def means(part: pd.DataFrame) -> dict:
        if part.empty:
            return {}
        grouped = part.groupby("mode")[["p_at_10", "ndcg_at_10"]].mean().round(4)
        return {mode: {"p_at_10": float(grouped.loc[mode, "p_at_10"]),
                       "ndcg_at_10": float(grouped.loc[mode, "ndcg_at_10"]),
                       "queries": int((part["mode"] == mode).sum())} for mode in MODES if mode in grouped.index}

    out = {"all": means(scores), "held_out": means(scores[scores["held_out"]]),
           "tuning": means(scores[~scores["held_out"]])}
    out["by_kind"] = {kind: means(scores[scores["kind"] == kind]) for kind in KINDS if (scores["kind"] == kind).any()}
    return out


def _target(summary: dict) -> dict:
    held = summary["held_out"]
    if not held:
        return {"met": False, "note": "no held-out query has a relevant product in this scope"}
    best_name = max(SINGLE_INDEXES, key=lambda m: held[m]["p_at_10"])
    best, fused = held[best_name]["p_at_10"], held["fused_understanding"]["p_at_10"]
    return {"best_single_index": best_name, "best_single_p_at_10": best, "fused_understanding_p_at_10": fused,
            "margin": round(fused - best, 4), "required_margin": TARGET_MARGIN,
            "met": bool(fused - best >= TARGET_MARGIN - 1e-9)}


EXAMPLE_KINDS = ("constraint", "shopper", "occasion", "brand", "need", "season", "age", "constraint", "catalogue",
                 "brand")


def examples(search: TextSearch, queries: list[JudgedQuery], n: int = 10) -> list[dict]:
    """How the service reads ``n`` queries of every kind (constraints most): the ``interpreted`` output."""
    pools = {kind: [q for q in queries if q.kind == kind] for kind in KINDS}
    chosen = []
    for kind in EXAMPLE_KINDS[:n]:
        if pools[kind]:
            chosen.append(pools[kind].pop(0))
    return [{"query": q.query, "interpreted": search.read(q.query, None, True).interpreted} for q in chosen]


def load_unanswerable(path: str | Path = UNANSWERABLE) -> list[str]:
    """The unanswerable queries of ``path``: one per line, ``#`` comments and blank lines skipped."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


# Telling a shopper "nothing close" about a real product costs this many gibberish queries shown weak results.
WRONGLY_EMPTY_COST = 2


def choose_floor(answerable: list[float], unanswerable: list[float]) -> dict:
    """The "nothing close" cosine floor that costs the least, and how it did.

    ``answerable``: each answerable query's best vector cosine; ``unanswerable``: the same for the
    unanswerable queries with no keyword hit (a keyword hit is never judged "nothing close"). A query is judged
    unanswerable below the floor. The candidates are the midpoints between neighbouring cosines. An answerable
    query judged empty costs :data:`WRONGLY_EMPTY_COST`, an unanswerable one not caught costs 1; of the floors
    that cost least the lowest is kept.
    """
    if not answerable or not unanswerable:
        return {"floor": None, "note": "needs answerable and unanswerable queries without a keyword hit"}
    cosines = sorted(set(answerable) | set(unanswerable))
    midpoints = [(a + b) / 2 for a, b in zip(cosines, cosines[1:], strict=False)]
    candidates = [cosines[0] - 1e-6, *midpoints, cosines[-1] + 1e-6]

    def mistakes(floor: float) -> tuple[int, int]:
        return sum(c < floor for c in answerable), sum(c >= floor for c in unanswerable)

    def cost(floor: float) -> int:
        wrongly_empty, missed = mistakes(floor)
        return WRONGLY_EMPTY_COST * wrongly_empty + missed

    floor = min(candidates, key=lambda f: (cost(f), f))
    wrongly_empty, missed = mistakes(floor)
    return {"floor": round(floor, 4), "answerable": len(answerable), "unanswerable": len(unanswerable),
            "answerable_judged_nothing_close": wrongly_empty, "unanswerable_not_caught": missed,
            "wrongly_empty_cost": WRONGLY_EMPTY_COST,
            "answerable_cosines": sorted(round(c, 4) for c in answerable),
            "unanswerable_cosines": sorted(round(c, 4) for c in unanswerable)}


def nothing_close_report(search: TextSearch, frame: pd.DataFrame, queries: list[JudgedQuery],
                         unanswerable: list[str]) -> dict:
    """The floor for ``search.nothing_close_below`` chosen on this catalogue and model (:func:`choose_floor`)."""
    def closeness(query: str):
        return search.run(query, K, mode="fused", understand=True).closeness

    # Every answerable query's best cosine, keyword hit or not: how close real needs come to this catalogue
    # is what the floor must stay under, and a catalogue whose words cover most queries would leave too few.
    judged = [(q.query, c) for q in queries if q.relevance(frame).any() if (c := closeness(q.query)) is not None]
    unanswered = [c for q in unanswerable if (c := closeness(q)) is not None]  # each query searched once
    negatives = [c.best_cosine for c in unanswered if c.keyword_hits == 0]
    keyword_hits = sum(1 for c in unanswered if c.keyword_hits > 0)
    chosen = choose_floor([c.best_cosine for _, c in judged], negatives)
    # The answerable queries under the floor, and whether a keyword hit keeps them from being judged.
    below = [{"query": q, "cosine": round(c.best_cosine, 4), "keyword_hits": c.keyword_hits}
             for q, c in judged if chosen["floor"] is not None and c.best_cosine < chosen["floor"]]
    return chosen | {"unanswerable_with_a_keyword_hit": keyword_hits, "answerable_below_floor": below}


def natural_language_report(config: Config, encoder, frame: pd.DataFrame, vectors: dict[str, np.ndarray],
                            test_mask: np.ndarray, limits, min_support: int, path: str | Path = QUERY_SET) -> dict:
    """Every mode on the query set (test split and whole catalogue) and on the label-only test queries."""
    queries = load_query_set(path)
    report = {"query_set": {"file": str(path), "queries": len(queries),
                            "held_out": sum(q.held_out for q in queries),
                            "by_kind": {k: sum(q.kind == k for q in queries) for k in KINDS}},
              "modes": MODES, "scopes": {}}
    per_query = {}
    for scope, mask in (("test", test_mask), ("catalogue", np.ones(len(frame), bool))):
        part = frame[mask].reset_index(drop=True)
        search = build_search(config, encoder, part, {k: v[mask] for k, v in vectors.items()}, limits)
        scores = _scores(search, part, queries)
        report["scopes"][scope] = _summary(scores) | {"products": int(len(part)),
                                                       "queries_with_relevant": int(scores["query"].nunique())}
        report["scopes"][scope]["target"] = _target(report["scopes"][scope])
        per_query[scope] = scores
        if scope == "test":
            labels = _scores(search, part, label_queries(part, min_support))
            report["label_queries"] = {"queries": int(labels["query"].nunique()), **_summary(labels)["all"]}
            label = report["label_queries"]
            if "image_index" in label:
                report["label_queries_check"] = {
                    "image_index_p_at_10": label["image_index"]["p_at_10"],
                    "fused_understanding_p_at_10": label["fused_understanding"]["p_at_10"],
                    "not_worse": label["fused_understanding"]["p_at_10"] >= label["image_index"]["p_at_10"]}
            report["examples"] = examples(search, queries)
            report["nothing_close"] = nothing_close_report(search, part, queries, load_unanswerable())
    report["per_query_p_at_10"] = {}
    for scope, scores in per_query.items():
        wide = scores.pivot_table(index=["query", "kind", "held_out"], columns="mode", values="p_at_10") \
            if not scores.empty else pd.DataFrame()
        report["per_query_p_at_10"][scope] = [
            {"query": q, "kind": kind, "held_out": bool(held), **{m: round(float(row[m]), 2) for m in MODES}}
            for (q, kind, held), row in wide.iterrows()]
    return report
