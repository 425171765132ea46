"""Catalog CLIP training, evaluation and latent analysis: split, metrics, captions, and the jobs end to end."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from fashion_catalog.evaluation.metrics import (
    mean_pairwise_overlap,
    ndcg_at_k,
    precision_at_k,
    same_label_at_k,
    top_k,
    zero_shot_accuracy,
)
from fashion_catalog.evaluation.split import SPLITS, assign_splits, image_key
from fashion_catalog.training.captions import (
    caption_targets,
    colour_type_query,
    label_caption,
    training_caption,
    training_pair,
    zero_shot_prompt,
)

# -- split -------------------------------------------------------------------------------------


def test_split_is_deterministic_complete_and_seeded():
    ids = list(range(1000, 3000))
    keys = [f"k{i}" for i in ids]
    a, b = assign_splits(ids, keys, seed=3), assign_splits(ids, keys, seed=3)
    assert a.equals(b) and a.index.is_unique and sorted(a.index) == ids
    assert set(a) == set(SPLITS)
    shares = a.value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.04 and abs(shares["test"] - 0.1) < 0.03
    assert not a.equals(assign_splits(ids, keys, seed=4))
    # Assignment of a product does not depend on which other products are present.
    assert assign_splits(ids[:500], keys[:500], seed=3).equals(a.iloc[:500])


def test_products_sharing_an_image_file_land_in_the_same_split(tmp_path):
    same = tmp_path / "a.jpg"
    same.write_bytes(b"jpeg-bytes-1")
    copy = tmp_path / "copy-of-a.jpg"  # same bytes under another name
    copy.write_bytes(b"jpeg-bytes-1")
    other = tmp_path / "b.jpg"
    other.write_bytes(b"jpeg-bytes-2")
    assert image_key(str(same)) == image_key(str(copy)) != image_key(str(other))
    assert image_key(str(tmp_path / "missing.jpg")).startswith("path:") and image_key(None) is None
    ids = list(range(400))
    # Groups of 4 products share one file each; half of the groups use the copy's name for some members.
    keys = [image_key(str(same)) if i % 100 < 4 else f"group-{i // 4}" for i in ids]
    split = assign_splits(ids, keys, seed=1)
    groups = pd.DataFrame({"key": keys, "split": split.loc[ids].to_numpy()}).groupby("key")["split"].nunique()
    assert (groups == 1).all()
    assert split.value_counts().size == 3  # groups still spread over the splits


def test_split_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        assign_splits([1, 2], ["a"])
    with pytest.raises(ValueError, match="unique"):
        assign_splits([1, 1], ["a", "b"])
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits([1], ["a"], fractions=(0.5, 0.2, 0.2))


# -- metrics on hand-computed cases -----------------------------------------------------------


def test_precision_and_ndcg_hand_computed():
    assert precision_at_k([True, False, True, False], k=4) == 0.5
    assert precision_at_k([True, True], k=10) == 0.2  # missing results are not relevant
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal with 2 relevant = 1 + 1/log2(3)
    assert ndcg_at_k([True, False, True], total_relevant=2, k=3) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k([True, True], total_relevant=2, k=10) == pytest.approx(1.0)
    assert ndcg_at_k([False, False], total_relevant=0) == 0.0
    with pytest.raises(ValueError):
        precision_at_k([True], k=0)


def test_top_k_same_label_zero_shot_and_overlap_hand_computed():
    assert top_k(np.array([[0.1, 0.9, 0.5, 0.7]]), 2).tolist() == [[1, 3]]
    assert top_k(np.array([[0.1, 0.9, 0.5]]), 2, exclude=np.array([[False, True, False]])).tolist() == [[2, 0]]
    # k past the candidates left never brings an excluded item back
    assert top_k(np.array([[0.1, 0.9, 0.5]]), 10, exclude=np.array([[False, True, False]])).tolist() == [[2, 0]]
    # Two tight pairs on orthogonal axes: each item's nearest other item shares its label.
    v = np.array([[1, 0.0], [0.99, 0.14], [0, 1.0], [0.14, 0.99]])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert same_label_at_k(v, ["a", "a", "b", "b"], k=1) == 1.0
    assert same_label_at_k(v, ["a", "b", "a", "b"], k=1) == 0.0
    # k=2: the second neighbour is from the other pair -> 0.5
    assert same_label_at_k(v, ["a", "a", "b", "b"], k=2) == 0.5
    prompts = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert zero_shot_accuracy(v, prompts, ["x", "y"], ["x", "x", "y", "x"]) == 0.75
    overlap = mean_pairwise_overlap({"u1": [1, 2, 3, 4], "u2": [3, 4, 5, 6], "u3": [7, 8, 9, 10]})
    assert overlap["pairs"] == {"u1|u2": 0.5, "u1|u3": 0.0, "u2|u3": 0.0}
    assert overlap["mean"] == pytest.approx(1 / 6)


# -- captions and the loss ----------------------------------------------------------------------


def test_captions_queries_and_prompts_share_one_wording():
    row = {"base_color": "Navy Blue", "usage": "Casual", "gender": "Men", "article_type": "Casual  Shoes",
           "product_display_name": "Kestrel Men Navy Shoes",
           "description": "Kestrel Men Navy Shoes, navy blue casual shoes"}
    assert colour_type_query("Navy Blue", "Casual  Shoes") == "navy blue casual shoes"
    assert label_caption(row, ("article_type", "base_color")) == "navy blue casual shoes"
    assert zero_shot_prompt("Casual Shoes") == "casual shoes"
    rng = np.random.default_rng(0)
    captions = [training_caption(row, rng) for _ in range(400)]
    assert all(captions)
    kinds = pd.Series(captions).value_counts()
    assert row["description"] in kinds and row["product_display_name"] in kinds and "casual shoes" in kinds
    assert "navy blue casual shoes" in kinds
    again = [training_caption(row, np.random.default_rng(0)) for _ in range(3)]
    assert again == [training_caption(row, np.random.default_rng(0))] * 3


def test_label_captions_are_positives_of_every_image_with_those_labels():
    products = [{"base_color": "Red", "article_type": "Dresses"}, {"base_color": "Red", "article_type": "Dresses"},
                {"base_color": "Black", "article_type": "Dresses"}, {"base_color": "Red", "article_type": "Watches"}]
    captions = ["red dresses", "Some Brand Red Dress", "dresses", "watches"]
    stated = [{"base_color": "red", "article_type": "dresses"}, None, {"article_type": "dresses"},
              {"article_type": "watches"}]
    targets = caption_targets(captions, stated, products)
    assert targets.tolist() == [
        [True, True, False, False],  # "red dresses": both red dresses
        [False, True, False, False],  # a display name: its own image only
        [True, True, True, False],  # "dresses": every dress
        [False, False, False, True],
    ]
    # Identical strings are positives of each other's images even without labels.
    assert caption_targets(["a b", "a b"], [None, None], [{}, {}]).all()
    # Both kinds of pair, over seeds: a label caption states labels the product has, in the caption's wording;
    # any other caption (the display name here: the row has no description) states none.
    row = {"base_color": "Red", "article_type": "Dresses", "usage": None, "gender": "Women",
           "product_display_name": "X"}
    pairs = [training_pair(row, np.random.default_rng(seed)) for seed in range(40)]
    labelled = [(c, labels) for c, labels in pairs if labels is not None]
    assert labelled and len(labelled) < len(pairs)
    for caption, labels in labelled:
        assert labels and set(labels) <= {"base_color", "article_type", "gender"}
        assert all(row[f].lower() == v.lower() for f, v in labels.items())
        assert caption == label_caption({k: v.title() for k, v in labels.items()}, tuple(labels))
    assert {c for c, labels in pairs if labels is None} == {"X"}


def test_same_label_image_loss_prefers_images_grouped_by_type():
    import torch

    from fashion_catalog.training.losses import same_label_image_loss

    labels = ["dress", "dress", "watch", "watch"]
    grouped = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    assert same_label_image_loss(torch, grouped, labels) < same_label_image_loss(torch, mixed, labels)
    assert same_label_image_loss(torch, grouped, ["a", "b", "c", "d"]).item() == 0.0  # no positives


def test_multi_positive_loss_treats_identical_captions_as_positives():
    import torch

    from fashion_catalog.training.losses import multi_positive_loss

    captions = ["red dresses", "red dresses", "black watches"]
    # Images 0 and 1 are equally close to both "red dresses" captions: ideal under multi-positive targets.
    good = torch.tensor([[5.0, 5.0, -5.0], [5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    # The plain CLIP view (diagonal only) would prefer this; it is worse here.
    diagonal = torch.tensor([[5.0, -5.0, -5.0], [-5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    assert multi_positive_loss(torch, good, captions) < multi_positive_loss(torch, diagonal, captions)
    assert multi_positive_loss(torch, good, captions).item() == pytest.approx(math.log(2) * 2 / 3, abs=1e-3)


# -- the jobs end to end on a small synthetic catalog ---------------------------------------------


@pytest.fixture(scope="module")
def trained(spark, tiny_model_dir, table_template, tmp_path_factory):
    """A small drawn catalog loaded into products, and a tiny CLIP trained on it for a few steps (once for the
    module: both tests read it, and what they write is the same whichever runs first)."""
    from tests.conftest import new_workspace

    workspace = new_workspace(tmp_path_factory.mktemp("trained"), tiny_model_dir, table_template)
    from fashion_catalog.catalog.demo import generate_demo_catalog
    from fashion_catalog.catalog.loader import load_catalog
    from fashion_catalog.training.trainer import train_clip

    config = workspace.config(catalog__source_dir="catalog", training__init_shape="tiny", training__batch_size=8,
                              training__warmup_steps=1, training__precision="auto", training__epochs=2)
    generate_demo_catalog(config.catalog_source_dir, n_products=40, missing_image_ids=1)
    load_catalog(spark, config)
    out = os.path.join(workspace.path, "trained-clip")
    result = train_clip(spark, config, output_dir=out, max_minutes=2, log_to_mlflow=True, progress=False)
    return spark, workspace, config, result


def test_trained_model_saves_logs_and_loads_through_the_embedder(trained):
    import mlflow

    from fashion_catalog.encoders.clip import ClipEncoder
    from fashion_catalog.encoders.model_card import read_model_card
    from fashion_catalog.streaming.runner import Embedder
    from tests.helpers import embedding_rows, stream_once

    spark, workspace, config, result = trained
    assert result.steps > 0 and result.products["total"] == 40
    assert result.products["train"] + result.products["validation"] + result.products["test"] == 40
    # The fixture's one missing image is skipped (and counted) if it falls in train or validation.
    assert 0 <= result.products["train"] - result.products["trained_pairs"] <= result.products["unreadable_images"]
    assert result.products["unreadable_images"] <= 1
    card = read_model_card(result.output_dir)
    assert card["weights"] == "trained" and card["split"]["seed"] == config.training.seed
    assert "from scratch" in card["base"]
    # Logged to MLflow: parameters, metrics and the model.
    run = mlflow.get_run(result.mlflow_run_id)
    assert run.data.params["train_products"] == str(result.products["trained_pairs"]) and "loss" in run.data.metrics
    assert run.outputs.model_outputs, "the trained model was not logged with the run"
    # The precision was chosen by measuring both on this machine, and the run says so.
    assert run.data.params["precision_requested"] == "auto" and run.data.params["precision"] == result.precision
    assert set(result.precision_steps_per_s) == {"fp32", "bf16"} and result.precision in ("fp32", "bf16")

    encoder = ClipEncoder(result.output_dir)
    assert encoder.weights == "trained" and encoder.dimension == 512
    # The embedder loads it through the same from_pretrained path and writes its vectors.
    cfg = workspace.config(catalog__source_dir="catalog", model__name_or_path=result.output_dir,
                           model__id="catalog-clip-test")
    stream_once(Embedder(spark, cfg))
    rows = embedding_rows(spark, cfg)
    assert len(rows) == 40
    some = next(r for r in rows.values() if r.image_embedding is not None)
    assert some.embedding_model == "catalog-clip-test"
    # The stored vectors are the trained model's own: CLIP's forward pass in numpy over its saved weights agrees.
    from tests.reference_clip import ReferenceClip

    reference = ReferenceClip(result.output_dir)
    np.testing.assert_allclose(some.text_embedding, reference.text([some.description])[0], atol=1e-5)
    # The loader stores image paths relative to the image root (here the catalogue folder).
    assert not os.path.isabs(some.image_path)
    photo = os.path.join(cfg.image_root, some.image_path)
    np.testing.assert_allclose(some.image_embedding, reference.images([photo])[0], atol=1e-5)


def test_training_refuses_an_empty_catalog(spark, workspace):
    from fashion_catalog.training.trainer import train_clip

    config = workspace.config(training__init_shape="tiny")
    from fashion_catalog.lakehouse.tables import ensure_all_tables

    ensure_all_tables(spark, config)
    with pytest.raises(ValueError, match="load a catalog first"):
        train_clip(spark, config, output_dir=os.path.join(workspace.path, "m"), log_to_mlflow=False, progress=False)


def test_evaluate_and_analyze_latents_write_their_reports(trained):
    from fashion_catalog.evaluation.latents import analyze
    from fashion_catalog.evaluation.retrieval import evaluate
    from fashion_catalog.streaming.runner import Embedder
    from tests.helpers import stream_once

    spark, workspace, config, result = trained
    cfg = workspace.config(catalog__source_dir="catalog", model__name_or_path=result.output_dir,
                           model__id="catalog-clip-test")
    out = os.path.join(workspace.path, "eval")
    report = evaluate(spark, cfg, out, min_support=1)
    assert report["weights"] == "trained" and report["test_products"] == result.products["test"]
    for side in ("trained", "random_floor"):
        r = report[side]
        assert r["text_to_image"]["colour_type"]["queries"] > 0
        assert 0 <= r["text_to_image"]["colour_type"]["p_at_10"] <= 1
        # The drawn catalog never repeats a (colour, type) pair, so there is no photo+text query here
        # (test_hybrid_comparison_leaves_the_query_photo_out covers it).
        assert r["hybrid_vs_single"] == {"queries": 0, "p_at_10": None}
        assert set(r["zero_shot"]) == {"article_type", "base_color", "usage"}
    assert set(report["targets"]) >= {"zero_shot.article_type.accuracy", "hybrid_beats_text_only"}
    for name in ("evaluation.json", "evaluation.html", "evaluation.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    assert json.load(open(os.path.join(out, "evaluation.json")))["test_products"] == report["test_products"]
    # Every text-search mode on the natural-language query set, on the test split and the whole catalogue.
    nl = report["natural_language"]
    assert nl["query_set"]["queries"] >= 60 and nl["scopes"]["catalogue"]["products"] == 39
    assert nl["scopes"]["test"]["products"] <= result.products["test"]
    assert set(nl["label_queries"]) >= {"queries", "image_index", "fused_understanding"}
    assert len(nl["examples"]) == 10 and all(e["interpreted"]["text"] for e in nl["examples"])
    assert "Natural-language queries" in open(os.path.join(out, "evaluation.html")).read()
    floor = nl["nothing_close"]
    assert floor["answerable"] == len(floor["answerable_cosines"]) and floor["unanswerable"] + floor[
        "unanswerable_with_a_keyword_hit"] == 18  # the lines of evaluation/unanswerable_queries.txt

    stream_once(Embedder(spark, cfg))
    lat_out = os.path.join(workspace.path, "latents")
    latents = analyze(cfg, lat_out, top=5, duplicate_threshold=0.999, k=3)
    assert latents["products"] == 39  # one product of the fixture has no image file
    worst = [r["alignment"] for r in latents["worst_aligned"]]
    assert len(worst) == 5 and worst == sorted(worst)
    assert set(latents["zero_shot_disagreements"]) == {"article_type", "base_color"}
    assert sum(c["size"] for c in latents["clusters"]) == 39
    for name in ("latents.json", "latents.html", "latents_projection.png"):
        assert os.path.getsize(os.path.join(lat_out, name)) > 0
    shutil.rmtree(out)


def test_alignment_and_near_duplicates_hand_built():
    from fashion_catalog.evaluation.latents import alignment_scores, near_duplicates, zero_shot_disagreements

    text = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    image = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    align = alignment_scores(text, image)
    assert align[0] == pytest.approx(1.0) and align[1] == pytest.approx(0.0) and np.isnan(align[2])
    meta = pd.DataFrame({"product_id": [1, 2, 3], "product_display_name": ["A", "B", "A"],
                         "article_type": ["Shirts", "Shirts", "Jeans"], "base_color": ["Red", "Red", "Blue"],
                         "master_category": ["Apparel"] * 3, "image_path": ["/x/1.jpg", "/x/1.jpg", "/x/3.jpg"]})
    vecs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    dups = near_duplicates(meta, vecs, 0.999)
    assert dups[["product_a", "product_b"]].values.tolist() == [[1, 2]]
    assert dups.iloc[0]["differs_in"] == ["product_display_name"] and bool(dups.iloc[0]["same_image_file"])
    prompts = np.array([[1.0, 0.0], [0.0, 1.0]])
    wrong = zero_shot_disagreements(meta, vecs, "article_type", prompts, ["Shirts", "Jeans"])
    assert wrong.empty
    wrong = zero_shot_disagreements(meta, vecs, "article_type", prompts, ["Jeans", "Shirts"])
    assert set(wrong["product_id"]) == {1, 2, 3}
    assert wrong.set_index("product_id")["predicted"].to_dict() == {1: "Jeans", 2: "Jeans", 3: "Shirts"}


def test_hybrid_comparison_leaves_the_query_photo_out():
    from fashion_catalog.evaluation.retrieval import _hybrid_comparison

    class FakeEncoder:  # "red dresses" points at the red dresses' corner of the space
        def encode_texts(self, texts):
            return np.array([[1.0, 0.0, 0.0] if t == "red dresses" else [0.0, 0.0, 1.0] for t in texts])

    test = pd.DataFrame({"base_color": ["Red", "Red", "Black", "Red"],
                         "article_type": ["Dresses", "Dresses", "Dresses", "Watches"]})
    img = np.array([[1.0, 0, 0], [0.9, 0.436, 0], [0, 1.0, 0], [0, 0, 1.0]])
    out = _hybrid_comparison(FakeEncoder(), test, img, img, 0.5, min_support=2)
    # One (colour, type) pair has 2 products: product 0's photo is the query, product 1 the one relevant
    # result left; were the photo not left out, image-only would count itself (2/10).
    assert out["queries"] == 1
    assert out["p_at_10"] == {"text_only": 0.1, "image_only": 0.1, "hybrid": 0.1}
    assert out["hybrid_beats_text_only"] is False


def test_a_metric_without_enough_support_is_not_judged():
    from fashion_catalog.evaluation.retrieval import TARGETS, judge_targets

    trained = {"text_to_image": {"colour_type": {"p_at_10": None}, "type": {"p_at_10": 0.9}},
               "image_to_image": {"same_type_at_10": 0.1}, "zero_shot": {"article_type": {"accuracy": 0.35}}}
    judged = judge_targets(trained)
    assert judged["text_to_image.colour_type.p_at_10"] == {
        "target": TARGETS["text_to_image.colour_type.p_at_10"], "value": None, "met": None}
    # By hand against the targets 0.45, 0.6 and 0.35: above, below, exactly at.
    assert [judged[k]["met"] for k in ("text_to_image.type.p_at_10", "image_to_image.same_type_at_10",
                                        "zero_shot.article_type.accuracy")] == [True, False, True]
