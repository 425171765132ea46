"""Shopper text search: how a query is read, which retrievers run, and how their rankings combine.

1. **Reading** (``understand``): :func:`search.understanding.interpret` turns price, gender and
   age phrases into filters, and brands (from the display names), known colours and article types
   and the query rules (``conf/query_rules.txt``: occasions, seasons, needs) into boosts; the
   shopper synonyms (``conf/synonyms.txt``) add the catalogue's words for the shopper's
   ("trainers" -> "sports shoes"). The keyword index matches the expansions as phrases; the vector
   query is the rest of the text followed by the expansions.
2. **Retrieving** (``mode``): ``vector`` runs CLIP's text vector in one index (``index``: image by
   default; a request naming only an index is served as before modes existed: that index, the
   query as typed unless it asks ``understand``); ``keyword`` runs BM25 over name and description; ``fused`` runs every
   retriever with a weight in ``search.fusion_weights`` (keyword, text, image, hybrid, and
   ``boosted``: the text index with the boosts as filters too, so the products that have every
   reading are candidates even when no other retriever ranks them high). Filters, the request's
   and the query's, apply inside each retriever; a brand said "only" keeps its products after.
3. **Combining**: reciprocal rank fusion (:mod:`search.fusion`); each boost a result matches
   adds ``boost_weight / (k + 1)``, as if one more retriever had ranked it first. In a single
   mode the boosts reorder the candidates the same way and ``score`` stays the retriever's own.

On a store with a native hybrid query (Databricks Vector Search, ``query_type="HYBRID"``) the
fused mode asks each vector index for its hybrid ranking (vector + keyword, fused by the
service) and fuses those. Pure Python: the service imports no Spark.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from fashion_catalog.conf import CONF_DIR, Config, ConfigError
from fashion_catalog.indexes.brands import has_brand
from fashion_catalog.indexes.filters import FilterError, Filters, validated
from fashion_catalog.indexes.store import HybridQueries
from fashion_catalog.schemas import FILTER_COLUMNS
from fashion_catalog.search.fusion import reciprocal_rank_fusion
from fashion_catalog.search.queries import is_blank
from fashion_catalog.search.rules import Rules, words_of
from fashion_catalog.search.service import SearchService
from fashion_catalog.search.synonyms import Synonyms
from fashion_catalog.search.understanding import BRAND, Interpretation, Vocabulary, interpret, type_key

log = logging.getLogger(__name__)

MODES = ("vector", "keyword", "fused")
RETRIEVERS = ("keyword", "text", "image", "hybrid", "boosted")
NAME_COLUMN = "product_display_name"
BOOSTED_INDEX = "text"  # the index the boosted retriever searches (CLIP text vectors of the descriptions)
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
    boosted_candidates: int = 30  # the boosted retriever's results (each has every boost)

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
    only: dict = field(default_factory=dict)  # {"brand": [...]}: results kept after retrieval


def merge_filters(request: dict | None, understood: dict) -> dict | None:
    """The request's filters plus the ones read from the query; on the same key the request's win."""
    if not understood:
        return request
    return {**understood, **(request or {})}


def matches(row: dict, column: str, values: list) -> bool:
    """Whether the row has one of ``values`` in ``column`` (``brand``: its display name starts with one)."""
    if column == BRAND:
        return any(has_brand(row.get("product_display_name"), brand) for brand in values)
    return row.get(column) in values


def boost_matches(row: dict, boosts: dict) -> int:
    """How many boosted columns the row's value is among (``{"base_color": ["Black"]}`` -> 0 or 1)."""
    return sum(1 for column, values in boosts.items() if matches(row, column, values))


def keep_only(rows: list[dict], only: dict) -> list[dict]:
    """The rows that have every "only" reading (a brand said "only")."""
    return [row for row in rows if all(matches(row, column, values) for column, values in only.items())]


def boost_filters(filters: dict | Filters | None, boosts: dict) -> dict | None:
    """The query's filters with its column boosts as filters too (None when there is no column boost).

    Brands are no column; a filter the query already sets on a column stays as it is."""
    columns = {column: values for column, values in boosts.items() if column != BRAND}
    if not columns:
        return None
    base = dict(filters.raw) if isinstance(filters, Filters) else dict(filters or {})
    return {**columns, **base}


def _conf_file(name: str, setting: str) -> str:
    path = name if os.path.isabs(name) else os.path.join(CONF_DIR, name)
    if not os.path.isfile(path):
        raise ConfigError(f"search.{setting}: no file at {path}; fix the path or set it to null")
    return path


def load_synonyms(config: Config) -> Synonyms:
    """The shopper synonyms of ``search.synonyms_file`` (relative to conf/), or none."""
    name = config.search.synonyms_file
    return Synonyms() if name is None else Synonyms.load(_conf_file(name, "synonyms_file"))


def load_rules(config: Config) -> Rules:
    """The query rules of ``search.rules_file`` (relative to conf/), or none."""
    name = config.search.rules_file
    return Rules() if name is None else Rules.load(_conf_file(name, "rules_file"))


# Words no shopper means as a brand on their own, though a catalogue may have one so named ("AND", "Being").
FUNCTION_WORDS = frozenset("a an and or the of for to in on at by with without my me i you your it its is are be "
                           "being was this that these those some any all only just not no".split())


def brand_vocabulary(counts: dict[str, int], min_products: int, taken: set[tuple[str, ...]]) -> tuple[str, ...]:
    """The brands a query may name: at least ``min_products`` products, two letters or more, not a function word
    ("and") or a number ("24 inch") alone, and not words the query already reads otherwise (``taken``: a colour,
    type or rule phrase, as stemmed words), so a single "red" stays a colour while "red tape" is the brand."""
    out = []
    for brand, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        key = tuple(w for w, _, _ in words_of(brand))
        if n >= min_products and len("".join(key)) >= 2 and key not in taken and \
                not (len(key) == 1 and (key[0] in FUNCTION_WORDS or key[0].isdigit())):
            out.append(brand)
    return tuple(out)


class TextSearch:
    """Text search over a :class:`SearchService`'s store, with understanding, synonyms and fusion."""

    @classmethod
    def from_config(cls, config: Config, search: SearchService, queries) -> TextSearch:
        """Text search (modes, understanding, synonyms, fusion) as ``config.search`` sets it."""
        se = config.search
        fusion = FusionSettings(dict(se.fusion_weights), se.fusion_k, se.fusion_candidates, se.boost_weight,
                                se.nothing_close_below, se.boosted_candidates)
        return cls(search, queries, fusion, load_synonyms(config), se.default_mode, se.understand,
                   load_rules(config), se.brand_min_products)

    def __init__(self, search: SearchService, queries, fusion: FusionSettings | None = None,
                 synonyms: Synonyms | None = None, default_mode: str = "fused", understand: bool = True,
                 rules: Rules | None = None, brand_min_products: int = 3):
        if default_mode not in MODES:
            raise ValueError(f"default_mode must be one of {MODES}, got {default_mode!r}")
        self.search = search
        self.queries = queries
        self.fusion = fusion or FusionSettings()
        self.synonyms = synonyms or Synonyms()
        self.rules = rules or Rules()
        self.brand_min_products = brand_min_products
        self.default_mode = default_mode
        self.understand = understand
        self._vocabulary: tuple[float, object, Vocabulary] | None = None
        self._lock = threading.Lock()
        self._refreshing = False
        self._first_read = threading.Lock()

    # -- reading -----------------------------------------------------------------------------------
    def vocabulary(self) -> Vocabulary:
        """The catalogue's colours, article types, genders, brands and rule columns' values, re-read when the index
        moved or a minute passed. The first read waits; later ones use the last vocabulary while a thread reads
        the next (counting brands over 44k names takes a fraction of a second a query should not wait for)."""
        version = self.search.store.synced_version
        with self._lock:
            cached = self._vocabulary
            fresh = cached and cached[1] == version and time.monotonic() - cached[0] < VOCABULARY_TTL_S
            if cached and not fresh and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh_vocabulary, args=(version,), daemon=True,
                                 name="vocabulary").start()
        if cached:
            return cached[2]
        with self._first_read:  # the first read happens once, however many requests arrive together
            cached = self._vocabulary
            return cached[2] if cached else self._read_vocabulary(version)

    def _refresh_vocabulary(self, version: object) -> None:
        try:
            self._read_vocabulary(version)
        except Exception as exc:  # noqa: BLE001 - the last vocabulary stays in use for another minute
            log.warning("could not re-read the query vocabulary (the last one is used a minute more): %s", exc)
            with self._lock:
                if self._vocabulary is not None:
                    self._vocabulary = (time.monotonic(), self._vocabulary[1], self._vocabulary[2])
        finally:
            with self._lock:
                self._refreshing = False
        self._first_read = threading.Lock()

    def _read_vocabulary(self, version: object) -> Vocabulary:
        facets = self.search.facets()
        for column in self.rules.columns() - set(facets):
            facets[column] = self.search.distinct_values(column)
        taken = {tuple(w for w, _, _ in words_of(value)) for column in ("base_color", "article_type", "gender")
                 for value in facets.get(column, ())}
        taken |= {tuple(phrase.split()) for phrase in self.rules.phrases()}
        brands = brand_vocabulary(self.search.store.brand_counts(), self.brand_min_products, taken)
        vocabulary = Vocabulary.from_facets(facets, brands)
        with self._lock:
            self._vocabulary = (time.monotonic(), version, vocabulary)
        return vocabulary

    def read(self, query: str, filters: dict | None, understand: bool, ignore: tuple[str, ...] = ()) -> Reading:
        """How the retrievers will see ``query``; without understanding, exactly as typed."""
        text = query.strip()
        if not understand:
            return Reading(text, text, [], filters, {}, None)
        vocabulary = self.vocabulary()
        meaning: Interpretation = interpret(text, vocabulary, ignore, self.rules)
        skip = {p.strip().lower() for p in ignore}
        expansions = [p for p in self.synonyms.expand(meaning.text) if p not in skip]
        vector_text = " ".join([meaning.text, *expansions])
        boosts = dict(meaning.boosts)
        # An expansion that is one of the catalogue's article types boosts it as if typed ("hoodie" -> Sweatshirts).
        for phrase in expansions:
            article_type = vocabulary.types_by_key.get(type_key(phrase))
            if article_type is not None and article_type not in boosts.get("article_type", []):
                boosts.setdefault("article_type", []).append(article_type)
        interpreted = dict(meaning.as_dict(), synonyms=expansions, vector_text=vector_text)
        understood = dict(meaning.filters)
        if len(meaning.only.get(BRAND, ())) == 1:
            # One brand said "only": a token filter inside every retriever, so each hands over that brand's best;
            # the exact prefix is checked after (keep_only). One word, its longest: Vector Search's dict LIKE
            # matches a token (https://docs.databricks.com/aws/en/vector-search/query-vector-search#filters).
            understood.setdefault(f"{NAME_COLUMN} LIKE", max(re.findall(r"[^\W_]+", meaning.only[BRAND][0]), key=len))
        interpreted["boosts"] = boosts
        interpreted["filters"] = understood
        return Reading(meaning.text, vector_text, expansions, merge_filters(filters, understood),
                       boosts, interpreted, meaning.only)

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
        self._check_limit(limit)
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
            rows = keep_only(rows, reading.only)
            results = self._boosted(rows, boosts)[:limit] if boosts else rows
        exact = sum(boost_matches(r, boosts) == len(boosts) for r in results) if boosts else None
        return TextSearchResult(mode, kind, [self.search.public(r) for r in results], reading.interpreted, exact,
                                closeness.nothing_close(self.fusion.nothing_close_below) if closeness else None,
                                closeness)

    def _check_limit(self, limit: int) -> None:
        if limit < 1 or limit > self.search.max_limit:
            raise FilterError(f"limit must be between 1 and {self.search.max_limit}")

    def _read_checked(self, query: str, filters: dict | None, ignore, understand: bool) -> Reading:
        reading = self.read(self.queries.check_text(query), filters, understand, tuple(ignore))
        return replace(reading, filters=validated(reading.filters, FILTER_COLUMNS))

    def hybrid(self, query: str | None, image: bytes | None, text_weight: float, limit: int,
               filters: dict | None = None, ignore: tuple[str, ...] | list[str] = (),
               understand: bool | None = None) -> TextSearchResult:
        """Words and a photo (either may be missing): the words read as in :meth:`run` (their filters apply), the
        hybrid index searched with ``normalize(w*text + (1-w)*image)`` of the vector text and the photo, fused
        with the keyword and boosted rankings and the boosts, which weigh ``w`` times their text-search weight
        (``w`` 0: the photo ranks alone, within the words' filters). Without words, or ``understand`` false: the
        hybrid index alone, the words as typed."""
        self._check_limit(limit)
        if is_blank(query) or not (self.understand if understand is None else understand):
            vector = self.queries.hybrid_embedding(query, image, text_weight)
            rows = self.search.store.search("hybrid", vector, limit, validated(filters, FILTER_COLUMNS))
            return TextSearchResult("vector", "hybrid", [self.search.public(r) for r in rows], None)
        reading = self._read_checked(query, filters, ignore, True)
        vector = self.queries.hybrid_embedding(reading.vector_text, image, text_weight)
        if text_weight == 0:  # the photo alone ranks, within the words' filters (no store mixes words in)
            rows = keep_only(self.search.store.search("hybrid", vector, max(limit, self.fusion.candidates)
                                                      if reading.only else limit, reading.filters), reading.only)
            return TextSearchResult("vector", "hybrid", [self.search.public(r) for r in rows[:limit]],
                                    reading.interpreted)
        weights = {"hybrid": 1.0, **{name: self.fusion.weights.get(name, 0.0) * text_weight
                                     for name in ("keyword", "boosted")}}
        weights = {name: w for name, w in weights.items() if w > 0}
        lists = self.rankings(reading, max(limit, self.fusion.candidates), vector, weights, boosted_index="hybrid")
        fused = [dict(row, score=score, ranks=ranks) for row, score, ranks
                 in self._fuse(lists, weights, reading.boosts, text_weight)[:limit]]
        boosts = reading.boosts
        exact = sum(boost_matches(r, boosts) == len(boosts) for r in fused) if boosts else None
        return TextSearchResult("fused", "hybrid", [self.search.public(r) for r in fused], reading.interpreted, exact)

    def image(self, vector: np.ndarray, query: str | None, limit: int, filters: dict | None = None,
              ignore: tuple[str, ...] | list[str] = ()) -> TextSearchResult:
        """A photo's vector in the image index, within the filters the words say ("under 50", "for men", "only
        puma"); the words' boosts and text are not used (``interpreted`` lists the filters read)."""
        self._check_limit(limit)
        if is_blank(query):
            rows = self.search.store.search("image", vector, limit, validated(filters, FILTER_COLUMNS))
            return TextSearchResult("vector", "image", [self.search.public(r) for r in rows], None)
        reading = self._read_checked(query, filters, ignore, True)  # the words' filters, whatever search.understand
        k = max(limit, self.fusion.candidates) if reading.only else limit
        rows = keep_only(self.search.store.search("image", vector, k, reading.filters), reading.only)[:limit]
        meaning = dict(reading.interpreted, boosts={}, synonyms=[],
                       phrases=[p for p in reading.interpreted["phrases"] if p["mode"] == "filter"])
        return TextSearchResult("vector", "image", [self.search.public(r) for r in rows], meaning)

    def _vector(self, reading: Reading) -> np.ndarray:
        return self.queries.text_embedding(reading.vector_text)

    def _boosted(self, rows: list[dict], boosts: dict) -> list[dict]:
        """One retriever's rows reordered by the fusion's rank score plus boosts (their own ``score`` kept)."""
        return [row for row, _score, _ranks in self._fuse({"single": rows}, {"single": 1.0}, boosts)]

    def rankings(self, reading: Reading, k: int, vector: np.ndarray | None = None,
                 active: dict[str, float] | None = None, boosted_index: str = BOOSTED_INDEX) -> dict[str, list[dict]]:
        """Each active retriever's rows, best first (the store's native hybrid query where it has one).

        ``vector``: the query vector of the vector retrievers (default: the reading's text vector); ``boosted``
        searches ``boosted_index`` with the boosts as filters too, and runs only when the query has a column boost.
        """
        active = self.fusion.active() if active is None else active
        store = self.search.store
        boosted = boost_filters(reading.filters, reading.boosts)
        if boosted is None:
            active = {name: w for name, w in active.items() if name != "boosted"}
        vector_kinds = [name for name in active if name != "keyword"]
        if vector is None and vector_kinds:
            vector = self._vector(reading)
        out = {}
        for name in active:
            index = boosted_index if name == "boosted" else name
            filters = boosted if name == "boosted" else reading.filters
            size = min(k, self.fusion.boosted_candidates) if name == "boosted" else k
            if isinstance(store, HybridQueries) and name != "keyword":
                # Vector Search fuses its keyword and vector rankings itself, per index.
                out[name] = store.hybrid_search(index, vector, reading.keyword_text, size, filters, reading.phrases)
            elif name == "keyword":
                if not isinstance(store, HybridQueries):
                    out[name] = store.keyword_search(reading.keyword_text, k, filters, reading.phrases)
            else:
                out[name] = store.search(index, vector, size, filters)
        return {name: keep_only(rows, reading.only) for name, rows in out.items()}

    def _fuse(self, lists: dict[str, list[dict]], weights: dict[str, float],
              boosts: dict, boost_scale: float = 1.0) -> list[tuple[dict, float, dict[str, int]]]:
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
        bonus = boost_scale * self.fusion.boost_weight / (self.fusion.k + 1)
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
        # How close the query came as typed: the boosted retriever's filters pick products whatever their cosine.
        cosines = [row["score"] for name, rows in lists.items() if name not in ("keyword", "boosted")
                   for row in rows]
        if not cosines:  # nothing passes the filters at all: an empty answer, not a far one
            return fused, None
        return fused, Closeness(len(lists["keyword"]), float(max(cosines)))
