"""Tests: the natural-language query set and its evaluation (evaluation/nl_queries.py)."""

from __future__ import annotations

import pytest

from fashion_catalog.conf import load_config
from fashion_catalog.evaluation.nl_queries import (
    KINDS,
    MODES,
    JudgedQuery,
    QuerySetError,
    label_queries,
    load_query_set,
    natural_language_report,
)
from tests.test_text_search import VECTORS, Encoder, _meta


def test_the_shipped_query_set_is_large_varied_and_partly_held_out():
    queries = load_query_set()
    assert len(queries) >= 60
    assert {q.kind for q in queries} == set(KINDS)
    for kind in KINDS:  # every third query of each kind is held out
        of_kind = [q for q in queries if q.kind == kind]
        assert [q.held_out for q in of_kind] == [i % 3 == 2 for i in range(len(of_kind))], kind
    assert len({q.query for q in queries}) == len(queries)


@pytest.mark.parametrize(("text", "message"), [
    ("- {query: tee, kind: shopper}", "'relevant' must name"),
    ("- {query: tee, kind: slang, relevant: {article_type: [Tshirts]}}", "needs a query and a kind"),
    ("- {query: tee, kind: shopper, relevant: {colour: [Red]}}", "unknown column 'colour'"),
    ("- {query: tee, kind: shopper, relevant: {article_type: [Tshirts]}, weight: 2}", "optionally held_out"),
])
def test_a_malformed_query_set_entry_is_named(tmp_path, text, message):
    path = tmp_path / "q.yaml"
    path.write_text(text)
    with pytest.raises(QuerySetError, match=message) as err:
        load_query_set(path)
    assert "entry 1 ('tee')" in str(err.value)


def test_relevance_comes_from_labels_and_whole_words_of_the_name():
    frame = _meta()
    assert list(frame["product_id"][JudgedQuery("puma", "brand", {"name_has": ["puma"]}).relevance(frame)]) == [1, 7]
    q = JudgedQuery("puma tees under 50", "brand", {"name_has": ["PUMA"], "article_type": ["Tshirts"], "price <": 50})
    assert not q.relevance(frame).any()  # the Puma tshirt costs 70
    assert list(frame["product_id"][JudgedQuery("x", "brand", {"name_has": ["men"]}).relevance(frame)]) == [1, 3, 7, 8]
    labels = label_queries(frame, min_support=2)
    assert {q.query for q in labels} == {"sports shoes", "tshirts", "black", "blue"}


def test_every_mode_is_scored_side_by_side_on_held_out_and_tuning_queries(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text("""
- {query: kangaroo pocket tunic, kind: brand, relevant: {name_has: [kangaroo]}}
- {query: puma, kind: brand, relevant: {name_has: [puma]}}
- query: trainers for women
  kind: constraint
  held_out: true
  relevant: {article_type: [Sports Shoes], gender: [Women, Unisex]}
- {query: shades, kind: shopper, held_out: true, relevant: {article_type: [Sunglasses]}}
- {query: scarves, kind: catalogue, held_out: true, relevant: {article_type: [Scarves]}}
""")
    (tmp_path / "syn.txt").write_text("trainers => sports shoes\nshades => sunglasses\n")
    config = load_config("local", overrides={"search.synonyms_file": str(tmp_path / "syn.txt")})
    frame = _meta()
    frame["split"] = ["test"] * 6 + ["train"] * 2
    vectors = {k: VECTORS for k in ("image", "text", "hybrid")}
    report = natural_language_report(config, Encoder(), frame, vectors, (frame["split"] == "test").to_numpy(),
                                     None, min_support=2, path=path)
    assert report["query_set"] == {"file": str(path), "queries": 5, "held_out": 3,
                                   "by_kind": {"catalogue": 1, "shopper": 1, "constraint": 1, "brand": 2, "need": 0,
                                               "occasion": 0, "season": 0, "age": 0}}
    test = report["scopes"]["test"]
    assert test["products"] == 6 and test["queries_with_relevant"] == 4  # no scarves: skipped
    assert set(test["held_out"]) == set(MODES) and test["held_out"]["fused_understanding"]["queries"] == 2
    # Six products: every mode lists the one relevant product in its top 10 (P@10 0.1); the order differs.
    # Understanding puts the women's trainers (synonym + gender filter) and the shades first (nDCG 1.0);
    # the vector stand-in (product 8's vector, orthogonal to all six) ties them all.
    held = test["held_out"]
    assert held["fused_understanding"] == {"p_at_10": 0.1, "ndcg_at_10": 1.0, "queries": 2}
    assert held["image_index"]["p_at_10"] == 0.1 and held["image_index"]["ndcg_at_10"] < 0.9
    assert test["tuning"]["keyword"]["ndcg_at_10"] == 1.0  # brands by name
    assert test["target"]["best_single_index"] in ("image_index", "text_index", "hybrid_index", "keyword")
    assert report["scopes"]["catalogue"]["products"] == 8
    assert [e["query"] for e in report["examples"]][:2] == ["trainers for women", "shades"]
    assert report["examples"][0]["interpreted"]["filters"] == {"gender": ["Women", "Unisex"]}
    assert report["examples"][0]["interpreted"]["synonyms"] == ["sports shoes"]
    assert report["label_queries"]["queries"] >= 2 and "label_queries_check" in report
    rows = {r["query"]: r for r in report["per_query_p_at_10"]["test"]}
    assert rows["trainers for women"]["fused_understanding"] == 0.1 and rows["trainers for women"]["held_out"]
    assert set(rows) == {"kangaroo pocket tunic", "puma", "trainers for women", "shades"}
