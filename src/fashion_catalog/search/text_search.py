"""Shopper text search: how a query is read, which retrievers run, and how their rankings combine.

1. **Reading** (``understand``): :func:`search.understanding.interpret` turns price and gender
   phrases into filters and known colours and article types into boosts; the shopper synonyms
   (``conf/synonyms.txt``) add the catalogue's words for the shopper's ("trainers" -> "sports
   shoes"). The keyword index matches the expansions as phrases; the vector query is the rest of
   the text followed by the expansions.
2. **Retrieving** (``mode``): ``vector`` runs CLIP's text vector in one index (``index``: image by
   default; a request naming only an index is served as before modes existed: that index, the
   query as typed unless it asks ``understand``); ``keyword`` runs BM25 over name and description; ``fused`` runs every
   retriever with a weight in ``search.fusion_weights`` (keyword, text, image, hybrid). Filters,
   the request's and the query's, apply inside each retriever.
3. **Combining**: reciprocal rank fusion (:mod:`search.fusion`); each boost a result matches
   adds ``boost_weight / (k + 1)``, as if one more retriever had ranked it first. In a single
   mode the boosts reorder the candidates the same way and ``score`` stays the retriever's own.

On a store with a native hybrid query (Databricks Vector Search, ``query_type="HYBRID"``) the
fused mode asks each vector index for its hybrid ranking (vector + keyword, fused by the
service) and fuses those. Pure Python: the service imports no Spark.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from fashion_catalog.conf import CONF_DIR, Config, ConfigError
from fashion_catalog.indexes.filters import FilterError, Filters, validated
from fashion_catalog.indexes.store import HybridQueries
from fashion_catalog.schemas import FILTER_COLUMNS
from fashion_catalog.search.fusion import reciprocal_rank_fusion
from fashion_catalog.search.service import SearchService
from fashion_catalog.search.synonyms import Synonyms
from fashion_catalog.search.understanding import Interpretation, Vocabulary, interpret

MODES = ("vector", "keyword", "fused")
RETRIEVERS = ("keyword", "text", "image", "hybrid")
VOCABULARY_TTL_S = 60.0  # facets change with the catalogue; re-read them at most once a minute


class SearchModeError(ValueError):
    """A request combined a mode and an index that do not go together (maps to HTTP 400)."""


@dataclass(frozen=True)
class FusionSettings:
    """Retriever weights (missing ones weigh 0), the RRF constant, candidates per retriever, boost weight.

    The defaults weigh the retrievers equally; the service's come from ``search.fusion_*``.
    """

    weights: dict[str, float] = field(default_factory=lambda: {"keyword": 1.0, "text": 1.0, "image": 1.0})
    k: int = 60
    candidates: int = 100
    boost_weight: float = 1.0
    nothing_close_below: float | None = None  # a cosine: below it (and with no keyword hit) nothing came close

    def active(self) -> dict[str, float]:
        return {name: float(self.weights.get(name, 0.0)) for name in RETRIEVERS if self.weights.get(name, 0.0) > 0}


@dataclass
class TextSearchResult:
    """What a text search returns: the mode and index used, the results and how the query was read."""

    mode: str
    index: str
    results: list[dict]
    interpreted: dict | None
    # How many results have every colour and type read from the query (None: none was read).
    exact_matches: int | None = None
    # Fused mode: no keyword hit and no vector above search.nothing_close_below (None: not judged).
    nothing_close: bool | None = None
    # Fused mode on the local index: the keyword hits and the best vector cosine that judgement read.
    closeness: Closeness | None = None


@dataclass(frozen=True)
class Closeness:
    """How close a fused query came: keyword hits and the best cosine of any vector retriever (after filters)."""

    keyword_hits: int
    best_cosine: float

    def nothing_close(self, floor: float | None) -> bool | None:
        """No keyword hit and no vector at or above ``floor`` (None: no floor set, not judged)."""
        return None if floor is None else self.keyword_hits == 0 and self.best_cosine < floor


@dataclass(frozen=True)
class Reading:
    """A query as the retrievers get it: keyword text, vector text, phrases, filters and boosts."""

    keyword_text: str
    vector_text: str
    phrases: list[str]
    filters: dict | Filters | None
    boosts: dict
    interpreted: dict | None


def merge_filters(request: dict | None, understood: dict) -> dict | None:
    """The request's filters plus the ones read from the query; on the same key the request's win."""
    if not understood:
        return request
    return {**understood, **(request or {})}


def boost_matches(row: dict, boosts: dict) -> int:
    """How many boosted columns the row's value is among (``{"base_color": ["Black"]}`` -> 0 or 1)."""
    return sum(1 for column, values in boosts.items() if row.get(column) in values)


def load_synonyms(config: Config) -> Synonyms:
    """The shopper synonyms of ``search.synonyms_file`` (relative to conf/), or none."""
    name = config.search.synonyms_file
    if name is None:
        return Synonyms()
    path = name if os.path.isabs(name) else os.path.join(CONF_DIR, name)
    if not os.path.isfile(path):
        raise ConfigError(f"search.synonyms_file: no file at {path}; fix the path or set it to null")
    return Synonyms.load(path)


class TextSearch:
    """Text search over a :class:`SearchService`'s store, with understanding, synonyms and fusion."""

    @classmethod
    def from_config(cls, config: Config, search: SearchService, queries) -> TextSearch:
        """Text search (modes, understanding, synonyms, fusion) as ``config.search`` sets it."""
        se = config.search
        fusion = FusionSettings(dict(se.fusion_weights), se.fusion_k, se.fusion_candidates, se.boost_weight,
                                se.nothing_close_below)
        return cls(search, queries, fusion, load_synonyms(config), se.default_mode, se.understand)

    def __init__(self, search: SearchService, queries, fusion: FusionSettings | None = None,
                 synonyms: Synonyms | None = None, default_mode: str = "fused", understand: bool = True):
        if default_mode not in MODES:
            raise ValueError(f"default_mode must be one of {MODES}, got {default_mode!r}")
        self.search = search
        self.queries = queries
        self.fusion = fusion or FusionSettings()
        self.synonyms = synonyms or Synonyms()
        self.default_mode = default_mode
        self.understand = understand
        self._vocabulary: tuple[float, object, Vocabulary] | None = None
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------------------
    def vocabulary(self) -> Vocabulary:
        """The catalogue's colours, article types and genders (its facets), re-read when the index moved."""
        version = self.search.store.synced_version
        with self._lock:
            cached = self._vocabulary
            if cached and cached[1] == version and time.monotonic() - cached[0] < VOCABULARY_TTL_S:
                return cached[2]
        vocabulary = Vocabulary.from_facets(self.search.facets())
        with self._lock:
            self._vocabulary = (time.monotonic(), version, vocabulary)
        return vocabulary

    def read(self, query: str, filters: dict | None, understand: bool, ignore: tuple[str, ...] = ()) -> Reading:
        """How the retrievers will see ``query``; without understanding, exactly as typed."""
        text = query.strip()
        if not understand:
            return Reading(text, text, [], filters, {}, None)
        meaning: Interpretation = interpret(text, self.vocabulary(), ignore)
        skip = {p.strip().lower() for p in ignore}
        expansions = [p for p in self.synonyms.expand(meaning.text) if p not in skip]
        vector_text = " ".join([meaning.text, *expansions])
        interpreted = dict(meaning.as_dict(), synonyms=expansions, vector_text=vector_text)
        return Reading(meaning.text, vector_text, expansions, merge_filters(filters, meaning.filters),
                       meaning.boosts, interpreted)

    # -- searching ---------------------------------------------------------------------------------
    def resolve(self, mode: str | None, index: str | None) -> tuple[str, str]:
        """(mode, index) of a request: an index alone means that vector index, as before modes existed."""
        if mode is None:
            mode = "vector" if index is not None else self.default_mode
        if mode not in MODES:
            raise SearchModeError(f"unknown mode {mode!r}; use one of {list(MODES)}")
        if mode == "vector":
            return mode, self.search.kind(index or "image")
        if index is not None:
            raise SearchModeError(f"mode {mode!r} does not take an index (index {index!r} was given); "
                                  f"leave index out, or use mode 'vector' to search that index")
        return mode, mode

    def run(self, query: str, limit: int, filters: dict | None = None, mode: str | None = None,
            index: str | None = None, understand: bool | None = None,
            ignore: tuple[str, ...] | list[str] = ()) -> TextSearchResult:
        """Search ``query`` (raises :class:`search.queries.BadQueryError` for an empty or oversized query)."""
        if limit < 1 or limit > self.search.max_limit:
            raise FilterError(f"limit must be between 1 and {self.search.max_limit}")
        if understand is None:
            # An index alone is the request of before modes existed: that index, the query as typed.
            understand = self.understand and not (mode is None and index is not None)
        mode, kind = self.resolve(mode, index)
        query = self.queries.check_text(query)
        reading = self.read(query, filters, understand, tuple(ignore))
        # Validated once, whatever the number of retrievers that take them.
        reading = replace(reading, filters=validated(reading.filters, FILTER_COLUMNS))
        boosts = reading.boosts
        closeness = None
        if mode == "fused":
            results, closeness = self._fused(reading, limit)
        else:
            k = max(limit, self.fusion.candidates) if boosts else limit
            if mode == "keyword":
                rows = self.search.store.keyword_search(reading.keyword_text, k, reading.filters, reading.phrases)
            else:
                rows = self.search.store.search(kind, self._vector(reading), k, reading.filters)
            results = self._boosted(rows, boosts)[:limit] if boosts else rows
        exact = sum(boost_matches(r, boosts) == len(boosts) for r in results) if boosts else None
        return TextSearchResult(mode, kind, [self.search.public(r) for r in results], reading.interpreted, exact,
                                closeness.nothing_close(self.fusion.nothing_close_below) if closeness else None,
                                closeness)

    def _vector(self, reading: Reading) -> np.ndarray:
        return self.queries.text_embedding(reading.vector_text)

    def _boosted(self, rows: list[dict], boosts: dict) -> list[dict]:
        """One retriever's rows reordered by the fusion's rank score plus boosts (their own ``score`` kept)."""
        return [row for row, _score, _ranks in self._fuse({"single": rows}, {"single": 1.0}, boosts)]

    def rankings(self, reading: Reading, k: int) -> dict[str, list[dict]]:
        """Each active retriever's rows, best first (the store's native hybrid query where it has one)."""
        active = self.fusion.active()
        store = self.search.store
        vector_kinds = [name for name in active if name != "keyword"]
        vector = self._vector(reading) if vector_kinds else None
        if isinstance(store, HybridQueries):
            # Vector Search fuses its keyword and vector rankings itself, per index.
            return {name: store.hybrid_search(name, vector, reading.keyword_text, k, reading.filters,
                                              reading.phrases) for name in vector_kinds}
        out = {}
        for name in active:
            if name == "keyword":
                out[name] = store.keyword_search(reading.keyword_text, k, reading.filters, reading.phrases)
            else:
                out[name] = store.search(name, vector, k, reading.filters)
        return out

    def _fuse(self, lists: dict[str, list[dict]], weights: dict[str, float],
              boosts: dict) -> list[tuple[dict, float, dict[str, int]]]:
        """(row, RRF score plus boosts, each retriever's rank), best first; equal scores keep RRF's order.

        A product's row is the first retriever's that returned it."""
        rows: dict[int, dict] = {}
        ranks: dict[int, dict[str, int]] = {}
        for name, found in lists.items():
            for rank, row in enumerate(found, 1):
                pid = int(row["product_id"])
                rows.setdefault(pid, row)
                ranks.setdefault(pid, {}).setdefault(name, rank)
        fused = reciprocal_rank_fusion({n: [int(r["product_id"]) for r in found] for n, found in lists.items()},
                                       weights, k=self.fusion.k)
        bonus = self.fusion.boost_weight / (self.fusion.k + 1)
        scored = [(rows[pid], score + bonus * boost_matches(rows[pid], boosts), ranks[pid]) for pid, score in fused]
        order = sorted(range(len(scored)), key=lambda i: (-scored[i][1], i))
        return [scored[i] for i in order]

    def _fused(self, reading: Reading, limit: int) -> tuple[list[dict], Closeness | None]:
        """The fused results, and how close the query came (None where the backend fuses itself or no product
        passes the filters)."""
        lists = self.rankings(reading, max(limit, self.fusion.candidates))
        fused = [dict(row, score=score, ranks=ranks)
                 for row, score, ranks in self._fuse(lists, self.fusion.active(), reading.boosts)[:limit]]
        if isinstance(self.search.store, HybridQueries) or "keyword" not in lists:
            return fused, None
        cosines = [row["score"] for name, rows in lists.items() if name != "keyword" for row in rows]
        if not cosines:  # nothing passes the filters at all: an empty answer, not a far one
            return fused, None
        return fused, Closeness(len(lists["keyword"]), float(max(cosines)))
