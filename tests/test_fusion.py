"""Reciprocal rank fusion on hand-computed cases."""

from __future__ import annotations

import pytest

from fashion_catalog.search.fusion import reciprocal_rank_fusion


def test_scores_are_the_sum_of_weighted_reciprocal_ranks():
    fused = dict(reciprocal_rank_fusion({"keyword": [1, 2, 3], "image": [3, 1]}, k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)


def test_a_document_both_retrievers_like_beats_one_only_one_loves():
    order = [d for d, _ in reciprocal_rank_fusion({"a": ["x", "both"], "b": ["y", "both"]})]
    assert order[0] == "both"


def test_weights_tilt_the_ranking_and_zero_leaves_a_retriever_out():
    rankings = {"keyword": ["k1", "v1"], "vector": ["v1", "k1"]}
    assert reciprocal_rank_fusion(rankings, {"keyword": 2.0})[0][0] == "k1"
    assert reciprocal_rank_fusion(rankings, {"vector": 2.0})[0][0] == "v1"
    assert [d for d, _ in reciprocal_rank_fusion(rankings, {"vector": 0})] == ["k1", "v1"]


def test_ties_break_by_best_rank_then_id_and_limit_cuts():
    fused = reciprocal_rank_fusion({"a": ["p", "q"], "b": ["q", "p"], "c": ["r"]}, limit=2)
    assert [d for d, _ in fused] == ["p", "q"]  # p and q tie (1/61 + 1/62), both best at rank 1: by id
    assert reciprocal_rank_fusion({"a": [2, 1]}, k=0) == [(2, 1.0), (1, 0.5)]
    assert reciprocal_rank_fusion({"a": [5, 5, 6]}) == reciprocal_rank_fusion({"a": [5, 6]})


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion({"a": [1]}, k=-1)
    with pytest.raises(ValueError, match="weight of 'a'"):
        reciprocal_rank_fusion({"a": [1]}, {"a": -1})
