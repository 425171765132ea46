"""Query understanding: price, gender and age phrases become filters; brands, known colours and types and the query
rules' occasions, seasons and needs become boosts."""

from __future__ import annotations

import pytest

from fashion_catalog.conf import CONF_DIR
from fashion_catalog.indexes.filters import parse_filters
from fashion_catalog.schemas import FILTER_COLUMNS
from fashion_catalog.search.rules import Rules
from fashion_catalog.search.understanding import Vocabulary, interpret

GENDERS = ("Men", "Women", "Unisex", "Boys", "Girls")
VOCAB = Vocabulary(colours=("Black", "Navy Blue", "White", "Red", "Off White"),
                   article_types=("Tshirts", "Casual Shoes", "Watches", "Handbags", "Jeans", "Dresses"),
                   genders=GENDERS, values={"gender": frozenset(GENDERS)})
RULES = Rules.load(f"{CONF_DIR}/query_rules.txt")  # the shipped rules (ages are read there)


@pytest.mark.parametrize("query, filters, text", [
    ("black tshirt for men under 50", {"price <": 50, "gender": ["Men", "Unisex"]}, "black tshirt"),
    ("red dress below $30", {"price <": 30}, "red dress"),
    ("women's watches between 20 and 40", {"price >=": 20, "price <=": 40, "gender": ["Women", "Unisex"]},
     "watches"),
    ("jeans from 40 to 20 rs", {"price >=": 20, "price <=": 40}, "jeans"),
    ("handbags over 100", {"price >": 100}, "handbags"),
    # Ages are boosts (conf/query_rules.txt): their words stay in the text.
    ("casual shoes up to 25.5 for boys", {"price <=": 25.5}, "casual shoes for boys"),
    ("ladies watch at least 60", {"price >=": 60, "gender": ["Women", "Unisex"]}, "watch"),
    ("vintage leather jacket", {}, "vintage leather jacket"),
    ("shoes for kids 10-20", {"price >=": 10, "price <=": 20}, "shoes for kids"),
])
def test_explicit_constraints_become_valid_filters_and_leave_the_text(query, filters, text):
    got = interpret(query, VOCAB, rules=RULES)
    assert got.filters == filters
    assert got.text == text
    parse_filters(got.filters, FILTER_COLUMNS)  # the service's own filter grammar accepts them


def test_women_is_never_read_as_men_and_unknown_genders_are_not_filtered():
    assert interpret("womens tshirts", VOCAB).filters == {"gender": ["Women", "Unisex"]}
    assert interpret("tshirts for men", Vocabulary(genders=("Women",))).filters == {}


def test_colours_and_types_the_catalogue_knows_boost_and_stay_in_the_text():
    got = interpret("navy blue t-shirts and casual shoe", VOCAB)
    assert got.boosts == {"base_color": ["Navy Blue"], "article_type": ["Casual Shoes", "Tshirts"]}  # longest first
    assert got.filters == {} and got.text == "navy blue t-shirts and casual shoe"
    assert [p["phrase"] for p in got.phrases] == ["navy blue", "casual shoe", "t-shirts"]
    assert interpret("purple gizmo", VOCAB).boosts == {}


def test_every_applied_phrase_is_reported_so_it_can_be_undone():
    got = interpret("off white dresses for women under 80", VOCAB)
    assert [(p["kind"], p["phrase"]) for p in got.phrases] == [
        ("price", "under 80"), ("gender", "for women"), ("colour", "off white"), ("type", "dresses")]
    assert got.as_dict()["filters"] == {"price <": 80, "gender": ["Women", "Unisex"]}


def test_a_query_of_only_constraints_keeps_its_words_as_text():
    got = interpret("under 50", VOCAB)
    assert got.filters == {"price <": 50} and got.text == "under 50"


def test_a_number_too_large_for_a_price_stays_a_word():
    read = interpret("tshirt under 99999999999999999999999", Vocabulary())
    assert read.filters == {} and read.text == "tshirt under 99999999999999999999999"
    assert interpret("tshirt under 999999999", Vocabulary()).filters == {"price <": 999999999}
