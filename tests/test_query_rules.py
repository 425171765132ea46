"""Tests: needs, occasions, seasons and ages (search/rules.py, conf/query_rules.txt) and brands read from the
catalogue's display names (indexes/brands.py), through interpretation and fused text search.

Every expected reading and ranking below is worked out by hand from the rows written here.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest

from fashion_catalog.conf import CONF_DIR
from fashion_catalog.indexes.brands import brand_counts, brand_counts_sql, brand_of, has_brand, merge_spellings
from fashion_catalog.indexes.local import LocalIndexStore
from fashion_catalog.search.queries import QueryEncoder
from fashion_catalog.search.rules import Rules, RulesError
from fashion_catalog.search.service import SearchService
from fashion_catalog.search.synonyms import Synonyms
from fashion_catalog.search.text_search import FusionSettings, TextSearch, brand_vocabulary
from fashion_catalog.search.understanding import Vocabulary, interpret

SHIPPED = os.path.join(CONF_DIR, "query_rules.txt")
FULL_CATALOGUE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "fashion-catalog-full",
                              "styles.csv")


# -- brands ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, brand", [
    ("Puma Men Grey T-shirt", "Puma"),
    ("Red Tape Men Brown Casual Shoes", "Red Tape"),
    ("United Colors of Benetton Women Blue Top", "United Colors of Benetton"),
    ("Gini and Jony Boy's Kaleb Kidswear", "Gini and Jony"),
    ("Lotto Men's Mauritius Black Sports Shoe", "Lotto"),
    ("Arrow Woman Olive Top", "Arrow"),
    ("Fabindia Beige Mull Printed Saree", None),  # no gender word: no brand read (has_brand still matches it)
    ("A B C D E Men Shirt", None),  # five words before the gender word: not a brand
    ("Men", None),
    (None, None),
])
def test_a_brand_is_the_words_before_the_gender_word(name, brand):
    assert brand_of(name) == brand


def test_brands_are_counted_under_their_most_common_spelling_and_matched_by_prefix():
    names = ["ADIDAS Men Shoe", "Adidas Women Tee", "Adidas Men Cap", "Red Tape Men Shoe", "Plain Shirt"]
    assert brand_counts(names) == {"Adidas": 3, "Red Tape": 1}
    assert merge_spellings([("Nike", 2), ("NIKE", 5), (" ", 9)]) == {"NIKE": 7}
    assert has_brand("Red Tape Men Brown Shoes", "red tape") and not has_brand("Red Men Shoes", "red tape")
    assert not has_brand(None, "puma")


def test_the_brand_rule_in_sql_counts_what_python_counts(tmp_path):
    """The SQL a warehouse runs (here DataFusion, through deltalake, an engine the product never uses for it) and
    the Python rule give the same counts."""
    deltalake = pytest.importorskip("deltalake")
    names = ["Puma Men Grey T-shirt", "puma Women Top", "Red Tape Men Brown Casual Shoes", "Gini and Jony Boy's Tee",
             "United Colors of Benetton Women Blue Top", "Lakme Lipstick", "Men", "It's Girl's Day Women Kurta",
             "A B C D E Men Shirt", "Puma  Men Cap"]
    path = str(tmp_path / "products")
    deltalake.write_deltalake(path, pd.DataFrame({"product_display_name": names}))
    qb = deltalake.QueryBuilder().register("t", deltalake.DeltaTable(path))
    import pyarrow as pa

    rows = pa.table(qb.execute(brand_counts_sql("t")).read_all()).to_pylist()
    assert merge_spellings((r["brand"], r["n"]) for r in rows) == brand_counts(names) == {
        "Puma": 3, "Red Tape": 1, "Gini and Jony": 1, "United Colors of Benetton": 1, "It's": 1}


def test_the_brand_vocabulary_keeps_recurring_brands_that_no_other_reading_takes():
    counts = {"Puma": 5, "Red Tape": 4, "Red": 9, "W": 50, "Rare": 2, "Sports": 7, "AND": 30, "Being Human": 4}
    taken = {("red",), ("sport",)}  # a colour, and a rule phrase (stemmed)
    # "AND" is a real brand, but "keep my money and cards" means no brand: a function word alone is never one.
    assert brand_vocabulary(counts, 3, taken) == ("Puma", "Being Human", "Red Tape")  # most products first


# -- rules file --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("gym => Sports", "rules.txt:1: a rule before any section"),
    ("[occasion] colour boost\n", "rules.txt:1: 'colour' is not a text column"),
    ("[occasion] usage prefer\n", "rules.txt:1: a section applies as 'boost' or 'filter'"),
    ("[occasion usage boost\n", "rules.txt:1: a section header is"),
    ("[occasion] usage boost\n\ngym, => Sports", "rules.txt:3: empty phrase or value"),
    ("[occasion] usage boost\ngym => Sports => Formal", "rules.txt:2: expected 'phrase, phrase => Value"),
    ("[occasion] usage boost\ngym Sports", "rules.txt:2: expected 'phrase, phrase => Value"),
])
def test_a_malformed_rules_line_names_its_file_and_line(text, message):
    with pytest.raises(RulesError) as err:
        Rules.parse(text, "rules.txt")
    assert message in str(err.value)


def test_the_shipped_rules_parse_and_read_every_kind_the_issue_names():
    rules = Rules.load(SHIPPED)
    assert {s.kind for s in rules.sections} >= {"occasion", "season", "age", "need"}
    known = {"usage": frozenset({"Sports", "Formal", "Ethnic", "Party"}), "gender": frozenset({"Boys", "Girls"}),
             "article_type": frozenset({"Laptop Bag", "Backpacks", "Messenger Bag", "Sweaters", "Jackets"}),
             "master_category": frozenset({"Apparel"})}
    read = {(r.phrase, r.column, r.values) for r in rules.read("gym wear for kids to carry my laptops", known)}
    assert read == {("gym", "usage", ("Sports",)), ("wear", "master_category", ("Apparel",)),
                    ("for kids", "gender", ("Boys", "Girls")),
                    ("laptops", "article_type", ("Laptop Bag", "Backpacks", "Messenger Bag"))}
    assert {r.phrase for r in rules.read("office party in winter", known)} == {"office", "party", "winter"}
    # A value the index does not hold is never applied: no Party products, no Party reading.
    assert [r.phrase for r in rules.read("party", {"usage": frozenset({"Sports"})})] == []


@pytest.mark.skipif(not os.path.isfile(FULL_CATALOGUE), reason="the full catalogue (../shared) is not here")
def test_every_count_in_the_shipped_rules_is_the_catalogues():
    """Each `Value: n` comment of conf/query_rules.txt against the full styles.csv (44,446 rows)."""
    frame = pd.read_csv(FULL_CATALOGUE, on_bad_lines="skip")
    column = {"usage": "usage", "gender": "gender", "article_type": "articleType", "master_category": "masterCategory"}
    rules, checked = Rules.load(SHIPPED), 0
    section_column = None
    for line in open(SHIPPED, encoding="utf-8"):
        header = re.match(r"^\[(\w+)\]\s+(\w+)", line)
        if header:
            section_column = column[header.group(2)]
            continue
        if "=>" not in line or line.startswith("#"):
            continue
        values = [v.strip() for v in line.split("#")[0].split("=>")[1].split(",")]
        counts = dict(re.findall(r"([A-Za-z][\w ]*?): ([\d,]+)", line.split("#", 1)[1]))
        assert sorted(counts) == sorted(values), line
        for value, n in counts.items():
            assert int(n.replace(",", "")) == int((frame[section_column] == value).sum()), f"{value} in {line}"
            checked += 1
    assert checked > 40 and rules.sections


# -- interpretation ----------------------------------------------------------------------------------------------------
FACETS = {"base_color": ["Red", "Black", "Blue", "White"], "article_type": ["Tshirts", "Casual Shoes", "Dresses",
                                                                            "Backpacks", "Laptop Bag", "Sweaters",
                                                                            "Belts", "Trousers", "Handbags"],
          "gender": ["Men", "Women", "Unisex", "Boys", "Girls"], "usage": ["Sports", "Formal", "Casual"],
          "master_category": ["Apparel", "Footwear"]}
RULES = Rules.load(SHIPPED)
VOCAB = Vocabulary.from_facets(FACETS, ("Puma", "Red Tape", "Nike"))


def _read(query, **kwargs):
    got = interpret(query, VOCAB, rules=RULES, **kwargs)
    return got, [(p["phrase"], p["kind"], p["mode"]) for p in got.phrases]


def test_a_brand_whose_words_are_a_colour_is_the_brand_when_the_whole_phrase_is_one():
    got, phrases = _read("red tape shoes")
    assert got.boosts == {"brand": ["Red Tape"], "master_category": ["Footwear"]}  # no colour "Red"
    assert phrases == [("red tape", "brand", "boost"), ("shoes", "category", "boost")]
    assert got.text == "red tape shoes"
    got, _ = _read("red shoes")
    assert got.boosts == {"base_color": ["Red"], "master_category": ["Footwear"]}


def test_only_makes_a_brand_a_filter_and_leaves_the_text():
    got, phrases = _read("only puma tshirts under 30")
    assert got.only == {"brand": ["Puma"]} and got.boosts["brand"] == ["Puma"]
    assert ("only puma", "brand", "filter") in phrases and got.text == "puma tshirts"
    assert _read("nike only")[0].only == {"brand": ["Nike"]}
    assert _read("nike shoes")[0].only == {}
    # Exactly the "only" next to the brand leaves the text, even when a brand's own words include "just".
    vocab = Vocabulary.from_facets(FACETS, ("Puma", "Just Natural", "Cat"))
    assert interpret("puma only just shoes", vocab).text == "puma just shoes"
    assert interpret("only just natural soap", vocab).text == "just natural soap"
    # A short one-word brand may be an ordinary word ("cat eye"): a boost, never a filter.
    cat = interpret("only cat eye sunglasses", vocab)
    assert cat.only == {} and cat.boosts == {"brand": ["Cat"]} and cat.text == "only cat eye sunglasses"


def test_the_only_chip_can_be_removed():
    got, phrases = _read("only puma tshirts", ignore=["only puma"])
    assert got.only == {} and "brand" not in got.boosts and got.text == "only puma tshirts"
    assert phrases == [("tshirts", "type", "boost")]


def test_two_rule_filters_on_one_column_add_up():
    rules = Rules.parse("[age] gender filter\nboys => Boys\ngirls => Girls\n")
    got = interpret("shoes for boys and girls", VOCAB, rules=rules)
    assert got.filters == {"gender": ["Boys", "Girls"]}
    # An explicit gender phrase read first keeps its column.
    assert interpret("men's shoes for boys", VOCAB, rules=rules).filters == {"gender": ["Men", "Unisex"]}


def test_needs_occasions_and_ages_are_boosts_with_their_phrases():
    got, phrases = _read("gym wear for men")
    assert got.filters == {"gender": ["Men", "Unisex"]}
    assert got.boosts == {"usage": ["Sports"], "master_category": ["Apparel"]}
    assert ("gym", "occasion", "boost") in phrases and ("wear", "category", "boost") in phrases
    got, phrases = _read("something to carry my laptop")
    assert got.boosts == {"article_type": ["Laptop Bag", "Backpacks"]} and phrases == [("laptop", "need", "boost")]
    got, phrases = _read("tshirts for kids")
    assert got.boosts == {"gender": ["Boys", "Girls"], "article_type": ["Tshirts"]} and got.filters == {}
    assert got.text == "tshirts for kids"  # the words stay: most kids' names say "Kids"
    got, phrases = _read("woolen winter wear")
    assert got.boosts["article_type"][0] == "Sweaters" and ("winter", "season", "boost") in phrases
    # A type the shopper names beats the ones a season infers: summer dresses are dresses.
    got, phrases = _read("summer dresses")
    assert got.boosts == {"article_type": ["Dresses"]} and phrases == [("dresses", "type", "boost")]


def test_a_phrase_of_several_words_keeps_its_words_from_other_readings():
    got, phrases = _read("something to hold my trousers up")
    assert got.boosts == {"article_type": ["Belts"]} and phrases == [("hold my trousers up", "need", "boost")]
    got, _ = _read("ladies' black handbags")  # the apostrophe of a plural possessive
    assert got.filters == {"gender": ["Women", "Unisex"]}


def test_a_removed_chip_is_read_as_words_again():
    got, phrases = _read("gym wear for men", ignore=["gym"])
    assert "usage" not in got.boosts and ("gym", "occasion", "boost") not in phrases
    got, _ = _read("red tape shoes", ignore=["red tape"])
    assert "brand" not in got.boosts and got.boosts["base_color"] == ["Red"]


# -- fused search ------------------------------------------------------------------------------------------------------
ROWS = [
    # id, name, article type, colour, gender, usage, master category
    (1, "Puma Men Black Running Tshirt", "Tshirts", "Black", "Men", "Sports", "Apparel"),
    (2, "Roadster Men Black Gym Bag", "Backpacks", "Black", "Men", "Sports", "Accessories"),
    (3, "Roadster Men Black Casual Tshirt", "Tshirts", "Black", "Men", "Casual", "Apparel"),
    (4, "Red Tape Men Brown Casual Shoes", "Casual Shoes", "Brown", "Men", "Casual", "Footwear"),
    (5, "Nike Men Red Casual Shoes", "Casual Shoes", "Red", "Men", "Casual", "Footwear"),
    (6, "Wildcraft Unisex Blue Laptop Bag", "Laptop Bag", "Blue", "Unisex", "Casual", "Accessories"),
    (7, "Skybags Unisex Black Backpack", "Backpacks", "Black", "Unisex", "Casual", "Accessories"),
    (8, "Puma Men Grey Track Pants", "Track Pants", "Grey", "Men", "Sports", "Apparel"),
    (9, "Red Tape Men Black Formal Shoes", "Formal Shoes", "Black", "Men", "Formal", "Footwear"),
    (10, "Nike Women Red Sports Tshirt", "Tshirts", "Red", "Women", "Sports", "Apparel"),
    (11, "Red Tape Men Tan Casual Shoes", "Casual Shoes", "Tan", "Men", "Casual", "Footwear"),
    (12, "Puma Women Pink Tshirt", "Tshirts", "Pink", "Women", "Casual", "Apparel"),
]
BASIS = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))[0]
VECTORS = BASIS[: len(ROWS)]


class FarEncoder:
    """CLIP stand-in: every text encodes to a vector orthogonal to every product (the vectors rank by id only)."""

    def encode_texts(self, texts):
        return np.asarray([BASIS[len(ROWS)]] * len(texts), np.float32)


@pytest.fixture
def fused():
    frame = pd.DataFrame(ROWS, columns=["product_id", "product_display_name", "article_type", "base_color", "gender",
                                        "usage", "master_category"])
    frame["price"] = 10.0
    frame["description"] = [f"{n}, {t.lower()}, {u.lower()} wear" for n, t, u in
                            zip(frame["product_display_name"], frame["article_type"], frame["usage"], strict=True)]
    frame["hybrid_source"] = "text+image"
    store = LocalIndexStore.from_arrays(frame, {k: VECTORS for k in ("image", "text", "hybrid")})
    queries = QueryEncoder(FarEncoder(), None, 1000, "stand-in")
    weights = {"keyword": 1.0, "text": 1.0, "boosted": 1.0}
    return TextSearch(SearchService(store, 50), queries, FusionSettings(weights), rules=RULES, brand_min_products=2)


def _ids(found):
    return [r["product_id"] for r in found.results]


def test_a_synonym_that_names_an_article_type_boosts_it(fused):
    fused.synonyms = Synonyms.parse("kitbag, satchel => backpacks\n")
    found = fused.run("kitbag", 2, mode="fused")
    assert found.interpreted["synonyms"] == ["backpacks"]
    assert found.interpreted["boosts"] == {"article_type": ["Backpacks"]} and sorted(_ids(found)) == [2, 7]


def test_the_brand_vocabulary_is_read_from_the_index(fused):
    # Puma 3, Red Tape 3, Nike 2, Roadster 2 products start with them; Wildcraft and Skybags only 1.
    assert set(fused.vocabulary().brands) == {"Puma", "Red Tape", "Nike", "Roadster"}


def test_a_brand_query_ranks_the_brands_products_first(fused):
    found = fused.run("red tape shoes", 3, mode="fused")
    assert sorted(_ids(found)) == [4, 9, 11]  # Nike's red casual shoes (5) are not the brand
    assert found.exact_matches == 3
    only = fused.run("only puma", 10, mode="fused")
    assert sorted(_ids(only)) == [1, 8, 12]


def test_a_need_ranks_the_types_that_answer_it_first(fused):
    found = fused.run("something to carry my laptop", 3, mode="fused")
    # The laptop bag (its name says "laptop", and its type answers) first, then the two backpacks by type; as
    # typed, the vectors (all equally far) rank the rest by row.
    assert _ids(found)[0] == 6 and sorted(_ids(found)) == [2, 6, 7]


def test_image_and_hybrid_searches_take_the_words_filters_whatever_the_default(fused):
    fused.understand = False  # search.understand false: text search reads nothing, a photo's words still filter
    photo = VECTORS[3]  # product 4's image vector
    found = fused.image(photo, "only red tape", 5)
    assert sorted(_ids(found)) == [4, 9, 11] and found.interpreted["only"] == {"brand": ["Red Tape"]}
    assert found.interpreted["filters"] == {"product_display_name LIKE": "Tape"}  # one token, its longest
    assert fused.hybrid("only red tape", None, 0.5, 5).interpreted is None  # the default: words as typed
    fused.understand = True
    fused.queries.hybrid_embedding = lambda text, image, weight: photo  # the photo alone ranks at weight 0
    found = fused.hybrid("only red tape", b"photo", 0.0, 5)
    assert found.mode == "vector" and _ids(found)[0] == 4 and sorted(_ids(found)) == [4, 9, 11]


def test_an_occasion_ranks_products_with_every_reading_first_within_the_filters(fused):
    found = fused.run("gym wear for men", 2, mode="fused")
    # Men or Unisex (filter), Sports and Apparel (boosts): 1 and 8; 10 is Women's.
    assert sorted(_ids(found)) == [1, 8] and found.exact_matches == 2
    assert found.interpreted["filters"] == {"gender": ["Men", "Unisex"]}
