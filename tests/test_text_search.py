"""Tests: shopper text search (search/text_search.py): modes, understanding, synonyms, fusion, boosts.

An in-memory local index (real BM25 in SQLite FTS5, real vector search) over a handful of
products; the query encoder is a stand-in that maps known texts to chosen products' vectors, so
every ranking below is worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fashion_catalog.indexes.filters import FilterError
from fashion_catalog.indexes.local import LocalIndexStore
from fashion_catalog.search.queries import BadQueryError, QueryEncoder
from fashion_catalog.search.service import SearchService
from fashion_catalog.search.synonyms import Synonyms
from fashion_catalog.search.text_search import FusionSettings, SearchModeError, TextSearch, merge_filters

ROWS = [
    # id, name, article type, colour, gender, price
    (1, "Puma Men Black Running Shoes", "Sports Shoes", "Black", "Men", 45.0),
    (2, "Nike Women White Sneakers", "Sports Shoes", "White", "Women", 80.0),
    (3, "Roadster Men Black Tshirt", "Tshirts", "Black", "Men", 20.0),
    (4, "Roadster Women Red Tshirt", "Tshirts", "Red", "Women", 25.0),
    (5, "Fastrack Unisex Black Sunglasses", "Sunglasses", "Black", "Unisex", 60.0),
    (6, "Kangaroo Pocket Tunic", "Tunics", "Blue", "Women", 35.0),
    (7, "Puma Men Blue Tshirt", "Tshirts", "Blue", "Men", 70.0),
    (8, "Titan Men Black Watch", "Watches", "Black", "Men", 120.0),
]


def _meta() -> pd.DataFrame:
    frame = pd.DataFrame(ROWS, columns=["product_id", "product_display_name", "article_type", "base_color",
                                        "gender", "price"])
    frame["description"] = [f"{n}, {c.lower()} {t.lower()}, for {g.lower()}"
                            for n, t, c, g in zip(frame["product_display_name"], frame["article_type"],
                                                  frame["base_color"], frame["gender"], strict=True)]
    frame["hybrid_source"] = "text+image"
    return frame


BASIS = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 16)))[0]
VECTORS = BASIS[: len(ROWS)]  # orthonormal rows
FAR = BASIS[len(ROWS)]  # orthogonal to every product: cosine 0 with all of them


class Encoder:
    """CLIP stand-in: a text naming ``#<id>`` encodes to that product's vector (``#0``: a vector far from every
    product), anything else to product 8's."""

    def __init__(self):
        self.seen: list[str] = []

    def encode_texts(self, texts):
        self.seen += texts
        out = []
        for text in texts:
            ids = [int(w[1:]) for w in text.split() if w.startswith("#") and w[1:].isdigit()]
            out.append(FAR if ids and ids[0] == 0 else VECTORS[(ids[0] if ids else 8) - 1])
        return np.asarray(out, np.float32)


@pytest.fixture
def searcher():
    store = LocalIndexStore.from_arrays(_meta(), {k: VECTORS for k in ("image", "text", "hybrid")})
    encoder = Encoder()
    queries = QueryEncoder(encoder, None, 1000, "stand-in")
    synonyms = Synonyms.parse("trainers, sneakers => sports shoes\nshades => sunglasses\n")
    text = TextSearch(SearchService(store, 50), queries, FusionSettings(), synonyms)
    text.encoder = encoder
    return text


def ids(found):
    return [r["product_id"] for r in found.results]


def test_an_index_alone_means_vector_search_in_it_and_modes_reject_an_index(searcher):
    assert searcher.resolve(None, "text") == ("vector", "text")
    assert searcher.resolve(None, "vs_hybrid_search") == ("vector", "hybrid")
    assert searcher.resolve(None, None) == ("fused", "fused")
    assert searcher.resolve("vector", None) == ("vector", "image")
    with pytest.raises(SearchModeError, match="does not take an index"):
        searcher.resolve("keyword", "image")
    with pytest.raises(SearchModeError, match="unknown mode"):
        searcher.resolve("semantic", None)
    found = searcher.run("#3 tee", 3, index="text")  # an index alone: the query as typed, as before modes
    assert found.mode == "vector" and found.index == "text" and ids(found)[0] == 3
    assert found.results[0]["score"] == pytest.approx(1.0, abs=1e-5) and found.interpreted is None
    assert searcher.run("#3 tee", 3, index="text", understand=True).interpreted["synonyms"] == []
    assert searcher.run("#3 tee", 3, mode="vector").interpreted is not None  # a mode: the service's default


def test_keyword_mode_finds_brands_and_product_names(searcher):
    assert ids(searcher.run("kangaroo pocket tunic", 5, mode="keyword", understand=False)) == [6]
    assert set(ids(searcher.run("puma", 5, mode="keyword", understand=False))) == {1, 7}
    assert searcher.run("zzz", 5, mode="keyword", understand=False).results == []


def test_fused_ranks_by_reciprocal_rank_fusion_and_says_each_retrievers_rank(searcher):
    # Keyword finds only 6; both vector retrievers rank 2 first (the "#2" vector) and list every
    # product after it (the orthonormal vectors tie at 0). RRF: 2 = 2/(60+1); 6 = 1/(60+1) from keyword
    # plus 2/(60+r) from the vector lists, more than 2's score for any r <= 8; the rest 2/(60+r).
    found = searcher.run("kangaroo pocket tunic #2", 8, mode="fused", understand=False)
    rank6 = [r["product_id"] for r in searcher.search.store.search("text", VECTORS[1], 8)].index(6) + 1
    assert ids(found)[:2] == [6, 2]
    assert found.results[0]["ranks"] == {"keyword": 1, "text": rank6, "image": rank6}
    assert found.results[0]["score"] == pytest.approx(1 / 61 + 2 / (60 + rank6))
    assert found.results[1]["ranks"] == {"text": 1, "image": 1} and found.results[1]["score"] == pytest.approx(2 / 61)
    # Weights: without the keyword retriever the vector lists decide alone.
    searcher.fusion = FusionSettings({"keyword": 0.0, "text": 1.0, "image": 1.0})
    assert ids(searcher.run("kangaroo pocket tunic #2", 8, mode="fused", understand=False))[0] == 2


def test_understanding_turns_price_and_gender_into_filters_inside_every_retriever(searcher):
    found = searcher.run("black tshirt for men under 50", 8, mode="fused")
    meaning = found.interpreted
    assert meaning["filters"] == {"price <": 50, "gender": ["Men", "Unisex"]}
    assert meaning["boosts"] == {"base_color": ["Black"], "article_type": ["Tshirts"]}
    assert meaning["text"] == "black tshirt" and meaning["vector_text"] == "black tshirt"
    assert ids(found) and all(r["price"] < 50 and r["gender"] in ("Men", "Unisex") for r in found.results)
    assert ids(found)[0] == 3  # the black Men's tshirt under 50 matches both boosts
    assert searcher.encoder.seen[-1] == "black tshirt"  # the constraint words never reach CLIP


def test_boosts_reorder_a_single_retrievers_candidates_and_keep_its_score(searcher):
    plain = searcher.run("#8", 8, mode="vector", understand=False)
    assert ids(plain)[0] == 8
    boosted = searcher.run("#8 red", 8, mode="vector")
    assert boosted.interpreted["boosts"] == {"base_color": ["Red"]}
    assert ids(boosted)[0] == 4  # the only red product: one boost (1/61) beats rank 1 over rank 2..8
    assert boosted.results[0]["score"] == pytest.approx(float(VECTORS[3] @ VECTORS[7]), abs=1e-5)


def test_synonyms_reach_the_keyword_index_as_phrases_and_the_vector_query_as_words(searcher):
    found = searcher.run("trainers", 5, mode="keyword")
    assert found.interpreted["synonyms"] == ["sports shoes"]
    assert set(ids(found)) == {1, 2}
    assert searcher.run("trainers", 5, mode="keyword", understand=False).results == []
    searcher.run("shades", 5, mode="vector")
    assert searcher.encoder.seen[-1] == "shades sunglasses"


def test_a_removed_chip_is_not_interpreted_again(searcher):
    found = searcher.run("tshirt under 50", 8, mode="keyword", ignore=["under 50"])
    assert "price <" not in found.interpreted["filters"] and found.interpreted["text"] == "tshirt under 50"
    assert 7 in ids(found)  # the 70.0 tshirt is back
    found = searcher.run("trainers", 5, mode="keyword", ignore=["sports shoes"])
    assert found.interpreted["synonyms"] == [] and found.results == []


def test_request_filters_win_over_the_ones_read_from_the_query(searcher):
    assert merge_filters({"price <": 100}, {"price <": 50, "gender": ["Men"]}) == {"price <": 100, "gender": ["Men"]}
    assert merge_filters(None, {}) is None
    found = searcher.run("tshirt under 50", 8, mode="keyword", filters={"price <": 100})
    assert found.interpreted["filters"] == {"price <": 50}  # what was read is still shown
    assert 7 in ids(found)


def test_bad_requests_are_refused_with_what_to_do(searcher):
    with pytest.raises(BadQueryError, match="empty"):
        searcher.run("   ", 5)
    with pytest.raises(FilterError, match="limit must be between 1 and 50"):
        searcher.run("tshirt", 51)
    with pytest.raises(FilterError, match="unknown column"):
        searcher.run("tshirt", 5, mode="keyword", filters={"colour": "Red"})
    with pytest.raises(ValueError, match="default_mode"):
        TextSearch(searcher.search, searcher.queries, default_mode="semantic")


def test_the_configuration_is_checked_and_builds_the_search(tmp_path):
    from fashion_catalog.conf import ConfigError, load_config
    from fashion_catalog.search.text_search import load_synonyms

    with pytest.raises(ConfigError, match="search.fusion_weights.keyword.*must be a number >= 0"):
        load_config("local", overrides={"search.fusion_weights": {"keyword": -1.0}})
    with pytest.raises(ConfigError, match="at least one retriever"):
        load_config("local", overrides={"search.fusion_weights": {"keyword": 0, "text": 0}})
    with pytest.raises(ConfigError, match="search.synonyms_file: no file at .*missing.txt"):
        load_synonyms(load_config("local", overrides={"search.synonyms_file": str(tmp_path / "missing.txt")}))
    assert load_synonyms(load_config("local", overrides={"search.synonyms_file": None})).rules == {}
    shipped = load_synonyms(load_config("local"))
    assert shipped.expand("trainers") == ["sports shoes"]
    config = load_config("local", overrides={"search.fusion_weights": {"keyword": 2.0, "image": 1.0},
                                             "search.default_mode": "keyword", "search.boost_weight": 0.5})
    store = LocalIndexStore.from_arrays(_meta(), {"image": VECTORS})
    text = TextSearch.from_config(config, SearchService(store, 50), QueryEncoder(Encoder(), None, 1000, "x"))
    assert text.default_mode == "keyword" and text.fusion.active() == {"keyword": 2.0, "image": 1.0}
    assert text.fusion.boost_weight == 0.5 and text.synonyms.expand("shades") == ["sunglasses"]


def test_exact_matches_count_results_with_every_colour_and_type_the_query_named(searcher):
    # ROWS by hand: under 50 for men (or unisex), the only black tshirt is 3; no red one (4 is for women).
    assert searcher.run("black tshirt for men under 50", 8, mode="fused").exact_matches == 1
    closest = searcher.run("red tshirt for men under 50", 8, mode="fused")
    assert closest.exact_matches == 0 and closest.results  # the closest are still shown
    assert searcher.run("for men under 50", 8, mode="fused").exact_matches is None  # no colour or type named


def test_nothing_close_needs_no_keyword_hit_and_every_vector_below_the_floor(searcher):
    assert searcher.run("xyzzy #0", 8, mode="fused").nothing_close is None  # no floor set: never judged
    searcher.fusion = FusionSettings(nothing_close_below=0.2)
    far = searcher.run("xyzzy #0", 8, mode="fused", understand=False)
    assert far.nothing_close is True
    assert far.closeness.keyword_hits == 0 and far.closeness.best_cosine == pytest.approx(0.0, abs=1e-5)
    assert searcher.run("tunic #0", 8, mode="fused", understand=False).nothing_close is False  # a keyword hit
    assert searcher.run("xyzzy #2", 8, mode="fused", understand=False).nothing_close is False  # cosine 1 to #2
    assert searcher.run("xyzzy #0", 8, mode="vector").nothing_close is None  # judged in fused mode only
    # Filters that leave no product at all: an empty answer, not "nothing close".
    assert searcher.run("xyzzy #0", 8, mode="fused", filters={"price <": 1}).nothing_close is None


def test_the_floor_is_the_lowest_that_costs_least():
    from fashion_catalog.evaluation.nl_queries import choose_floor

    # By hand: at 0.20 no answerable query is judged empty and 0.26 slips through (1 mistake); at 0.27 the
    # 0.25 answerable one is judged empty instead (1 mistake): the lower floor wins the tie.
    chosen = choose_floor([0.30, 0.25, 0.28], [0.10, 0.15, 0.26])
    assert chosen["floor"] == pytest.approx(0.20)
    assert chosen["answerable_judged_nothing_close"] == 0 and chosen["unanswerable_not_caught"] == 1
    assert choose_floor([0.3], [0.1])["floor"] == pytest.approx(0.2)  # separable: the midpoint
    # A real query judged empty costs two: at 0.40 one answerable (0.2) is judged empty (cost 2), at 0.15 two
    # unanswerable ones slip through (cost 2); the tie goes to the lower floor, though 0.40 makes fewer mistakes.
    weighted = choose_floor([0.5, 0.2], [0.1, 0.3, 0.35])
    assert weighted["floor"] == pytest.approx(0.15) and weighted["unanswerable_not_caught"] == 2
    assert choose_floor([], [0.1])["floor"] is None


def test_a_filter_is_evaluated_once_per_index_state_whatever_the_retrievers(searcher, monkeypatch):
    import fashion_catalog.indexes.local as local

    calls = []
    real = local.evaluate
    monkeypatch.setattr(local, "evaluate", lambda conditions, frame: calls.append(len(frame)) or real(conditions,
                                                                                                      frame))
    found = searcher.run("#3 shirt", 5, filters={"price <": 50}, mode="fused", understand=False)
    assert calls == [8] and {r["product_id"] for r in found.results} <= {1, 3, 4, 5, 6}  # three retrievers, one read
    # A new state (the table moved): the filter is read again, over the new rows (product 3 now costs 90).
    store = searcher.search.store
    moved = _meta()
    moved.loc[moved["product_id"] == 3, "price"] = 90.0
    store.follower.adopt(store.follower.builder.from_arrays(moved, {k: VECTORS for k in ("image", "text", "hybrid")}))
    found = searcher.run("#3 shirt", 5, filters={"price <": 50}, mode="fused", understand=False)
    assert calls == [8, 8] and 3 not in {r["product_id"] for r in found.results}
