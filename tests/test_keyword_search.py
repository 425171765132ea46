"""The keyword index (SQLite FTS5, BM25) and the shopper synonyms file."""

from __future__ import annotations

import os

import pytest

from fashion_catalog.indexes.keyword import KeywordIndex, match_expression, query_terms
from fashion_catalog.search.synonyms import SynonymError, Synonyms

CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "fashion_catalog", "conf",
                    "synonyms.txt")


@pytest.fixture
def index():
    idx = KeywordIndex()
    idx.upsert([(1, "Puma Men Black Tshirt", "black tshirts, apparel for men"),
                (2, "Nike Men Running Sports Shoes", "white sports shoes, footwear for men"),
                (3, "Kangaroo Pocket Tunic", "navy blue tunics, apparel for women"),
                (4, "Fastrack Unisex Sunglasses", "black sunglasses, accessories")])
    return idx


def test_exact_words_rank_their_products_first(index):
    assert [pid for pid, _ in index.search("puma", 5)] == [1]
    assert index.search("kangaroo pocket tunic", 5)[0][0] == 3
    top = index.search("black tshirt", 5)
    assert top[0][0] == 1 and {pid for pid, _ in top} == {1, 4}  # stemmed: tshirt finds "tshirts"
    assert top[0][1] > top[1][1]


def test_upsert_replaces_delete_removes_and_candidates_restrict(index):
    index.upsert([(1, "Puma Men Red Tshirt", "red tshirts")])
    assert len(index) == 4 and [pid for pid, _ in index.search("black", 5)] == [4]
    index.delete([4])
    assert [pid for pid, _ in index.search("sunglasses", 5)] == []
    assert [pid for pid, _ in index.search("men", 5, candidates=[2, 3])] == [2]
    index.clear()
    assert len(index) == 0


def test_function_words_match_nothing_unless_the_query_has_nothing_else():
    idx = KeywordIndex()
    idx.upsert([(1, "Wrangler Men Fly The Wind Tshirt", "tshirts"), (2, "Baggit Men Brown Wallet", "wallets"),
                (3, "Lakme Perfume and Body Mist", "perfume and body mist")])
    # Before: "the" and "my" ranked the t-shirt whose name holds "The" first.
    assert [pid for pid, _ in idx.search("something to keep my money in the wallet", 5)] == [2]
    assert [pid for pid, _ in idx.search("the", 5)] == [1]  # nothing else to search by: the word itself
    assert [pid for pid, _ in idx.search("body", 5, phrases=["perfume and body mist"])] == [3]  # phrases keep theirs
    assert query_terms("the puma for me", drop_stopwords=True) == ["puma"]


def test_query_text_is_never_fts_syntax(index):
    """FTS5 operators in a query are plain words: each query finds what its words find, worked out by hand
    from the four rows (no sqlite3.OperationalError, and no operator takes effect)."""
    expected = {'"': [], "puma OR": [1], "NEAR(sunglasses men)": [1, 2, 4], "description:*": [],
                "tunic AND (women": [3], "-men": [1, 2], "*": [], "black NOT tshirt": [1, 4],
                "sunglasses OR puma": [1, 4]}
    for hostile, ids in expected.items():
        assert sorted(pid for pid, _ in index.search(hostile, 5)) == ids, hostile
    assert query_terms('Puma "OR" puma (tshirt)') == ["puma", "or", "tshirt"]
    assert match_expression(["puma"], ["sports shoes"]) == '"puma" OR "sports shoes"'
    assert index.search("   ", 5) == []


def test_synonym_lines_equivalent_and_one_way():
    syn = Synonyms.parse("trainers, sneakers => sports shoes\nhoodie, sweatshirt\n# comment\n\n")
    assert syn.expand("white trainers for men") == ["sports shoes"]
    assert syn.expand("sports shoes") == []  # one-way
    assert syn.expand("grey hoodie") == ["sweatshirt"] and syn.expand("sweatshirt") == ["hoodie"]


@pytest.mark.parametrize("line", ["a => b => c", "=> b", "a, => b", "lonely"])
def test_a_malformed_synonym_line_names_the_file_and_line(line):
    with pytest.raises(SynonymError, match=r"^f\.txt:2: "):
        Synonyms.parse(f"ok, fine\n{line}", "f.txt")


def test_the_shipped_synonyms_map_shopper_words_to_catalogue_types(index):
    syn = Synonyms.load(CONF)
    assert syn.expand("trainers") == ["sports shoes"]
    assert syn.expand("shades for the beach") == ["sunglasses"]
    assert index.search("trainers", 5) == []  # the catalogue never says "trainers"...
    assert index.search("trainers", 5, phrases=syn.expand("trainers"))[0][0] == 2  # ...the synonym finds them
