"""Integration tests: catalog loading, description expression, backfill, reembed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from fashion_catalog.catalog.loader import load_catalog
from fashion_catalog.lakehouse.tables import read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.spark import IMAGE_EMBEDDINGS_SCHEMA, PRODUCTS_SCHEMA
from fashion_catalog.streaming.backfill import backfill, reembed
from fashion_catalog.streaming.runner import Embedder
from fashion_catalog.udfs.description import description_expr, price_tier, price_tier_expr
from tests.helpers import append_products, calls, draw_image, embedding_rows, product, stream_once

FIXTURE = Path(__file__).parent / "fixtures" / "dirty_styles.csv"


def test_dirty_catalog_loads_every_row_and_quarantines_the_rest(any_spark, workspace):
    spark = any_spark  # classic and Spark Connect
    config = workspace.config()
    src = Path(workspace.path) / "catalog"
    (src / "images").mkdir(parents=True)
    shutil.copy(FIXTURE, src / "styles.csv")
    counts = load_catalog(spark, config, str(src))
    assert counts["parsed"] == 9 and counts["quarantined"] == 4
    expected = spark.createDataFrame(
        [
            (44065, "Boss Men Perfume, After Shave Balm and Shower Gel Set", "Personal Care", 2017, "Casual"),
            (3413, "Myntra Men's Yes, its all about me White T-shirt", "Apparel", 2011, "Casual"),
            (23124, "Converse Unisex Navy Blue Liv,Laugh,Love Flip-flops", "Footwear", 2013, "Casual"),
            (53781, "Puma Men Blue Sless Round Neck T-shirt", "Apparel", None, "Sports"),
            (28319, "RTV_LoadTest", "Footwear", 2018, None),
        ],
        "product_id int, product_display_name string, master_category string, year int, usage string",
    )
    got = read_table(spark, config.tables.products).select(*expected.columns).filter(
        F.col("product_id").isin(44065, 3413, 23124, 53781, 28319))
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    quarantine = read_table(spark, config.tables.quarantine).select("line_number", "reason")
    assert sorted(tuple(r) for r in quarantine.collect()) == [
        (11, "id 'abc' is not an integer"), (12, "expected 10 fields, found 4"),
        (13, "year 'twenty' is not a number"), (14, "duplicate product_id 15970 (first at line 2)")]
    # Reloading the same file changes nothing (no CDF churn, nothing to re-embed).
    again = load_catalog(spark, config, str(src))
    assert again["num_affected_rows"] == 0


def test_description_and_price_tiers(spark):
    rows = [product(i, None, price=p) for i, p in enumerate([29.99, 30.0, 69.99, 70.0, 119.99, 120.0, None])]
    rows.append(product(99, None, season=None, usage="  ", gender=None, price=10.0))
    df = spark.createDataFrame([tuple(r[c] for c in PRODUCT_COLUMNS) for r in rows], PRODUCTS_SCHEMA)
    got = df.select("product_id", "price", price_tier_expr().alias("tier"), description_expr().alias("d")).collect()
    by_id = {r.product_id: r for r in got}
    assert [by_id[i].tier for i in range(7)] == ["affordable", "mid-range", "mid-range", "premium", "premium",
                                                 "luxury", None]
    assert all(by_id[i].tier == price_tier(by_id[i].price) for i in range(7))
    assert by_id[1].d == ("Test Brand Men Navy Blue Shirt 1, navy blue shirts, apparel for men, casual wear, "
                          "fall season, mid-range price")
    assert by_id[6].d.endswith("fall season")
    assert by_id[99].d == "Test Brand Men Navy Blue Shirt 99, navy blue shirts, apparel, affordable price"


HOSTILE_TEXTS = ["\t Tab first", "  spaced   out  ", "new\nline\r\nand\x0bvt\x0cff", "\u00a0nbsp\u00a0kept\u00a0",
                 "em\u2003space", "ÜBER Straße", "İstanbul ΟΔΟΣ", "", "   ", "emoji 👗 dress", "Mixed CASE", None]


def test_the_python_description_and_hash_are_sparks_on_hostile_rows(spark):
    """schemas.description.description / text_hash (the delta-rs road's) equal Spark's description_expr and sha2
    on whitespace, Unicode, empty and null fields, and NaN, negative, huge and null prices."""
    from fashion_catalog.schemas.description import description, text_hash

    prices = [float("nan"), -0.0, -5.0, 1e308, None, 29.999999, 30.0]
    rows = []
    for i in range(2 * len(HOSTILE_TEXTS)):
        fields = {c: HOSTILE_TEXTS[(i + k) % len(HOSTILE_TEXTS)] for k, c in enumerate(
            ("product_display_name", "master_category", "article_type", "base_color", "gender", "season", "usage"))}
        rows.append(product(i, None, **fields, price=prices[i % len(prices)]))
    df = spark.createDataFrame([tuple(r[c] for c in PRODUCT_COLUMNS) for r in rows], PRODUCTS_SCHEMA)
    got = df.select("product_id", description_expr().alias("d"), F.sha2(description_expr(), 256).alias("h")).collect()
    spark_side = {r.product_id: (r.d, r.h) for r in got}
    python_side = {r["product_id"]: (description(r), text_hash(description(r))) for r in rows}
    assert python_side == spark_side
    # Written out by hand: Spark's trim() removes spaces only, so a leading tab becomes a leading space.
    assert description({"product_display_name": "\t Tab first", "price": None}) == " Tab first"
    assert description({"product_display_name": "  Red \t Shirt ", "base_color": "Red", "article_type": "Shirts",
                        "gender": "Women", "price": 10.0}) == "Red Shirt, red shirts, for women, affordable price"


@pytest.mark.slow
def test_backfill_embeds_everything_and_resumes_without_redoing_work(spark, workspace):
    config = workspace.config(backfill__chunk_rows=2)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(5)]
    append_products(spark, config, [product(i + 1, imgs[i]) for i in range(5)])
    embedder = Embedder(spark, config)
    totals = backfill(spark, config, embedder=embedder)
    assert (totals["products"], totals["texts_encoded"], totals["images_encoded"]) == (5, 5, 5)
    assert_df_equality(read_table(spark, config.tables.products).select(*PRODUCT_COLUMNS),
                       read_table(spark, config.tables.embeddings).select(*PRODUCT_COLUMNS),
                       ignore_row_order=True, ignore_nullable=True)
    again = backfill(spark, config, embedder=embedder)
    assert (again["texts_encoded"], again["images_encoded"], again["unchanged"]) == (0, 0, 5)
    assert calls(embedder) == (5, 5)


def test_backfill_reuses_stored_image_vectors_of_the_same_model(spark, workspace):
    img_table = f"{workspace.path}/delta/image_embeddings"
    config = workspace.config(tables__image_embeddings={"path": img_table})
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(i + 1, imgs[i]) for i in range(3)])
    stored = [2.0] + [0.0] * 511  # not normalised on purpose
    spark.createDataFrame(
        [(1, stored, "tiny-clip-test"), (2, [0.0, 3.0] + [0.0] * 510, "some-other-model")], IMAGE_EMBEDDINGS_SCHEMA
    ).write.format("delta").save(img_table)
    embedder = Embedder(spark, config)
    totals = backfill(spark, config, embedder=embedder)
    assert totals["seeded_image_vectors"] == 1
    assert calls(embedder) == (3, 2), "product 1's image is reused, products 2 and 3 are encoded"
    rows = embedding_rows(spark, config)
    assert rows[1].image_embedding == [1.0] + [0.0] * 511
    assert rows[2].image_embedding[1] != 1.0
    assert abs(np.linalg.norm(rows[1].hybrid_embedding) - 1) < 1e-9 and rows[1].hybrid_source == "text+image"


def test_reembed_reencodes_rows_of_another_model(spark, workspace):
    config = workspace.config()
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(i + 1, imgs[i]) for i in range(3)])
    stream_once(Embedder(spark, config))
    new_config = workspace.config(model__id="tiny-clip-v2")
    embedder = Embedder(spark, new_config)
    totals = reembed(spark, new_config, embedder=embedder)
    assert (totals["products"], totals["texts_encoded"], totals["images_encoded"]) == (3, 3, 3)
    assert {r.embedding_model for r in embedding_rows(spark, config).values()} == {"tiny-clip-v2"}
    assert reembed(spark, new_config, embedder=embedder)["products"] == 0
    # What went through the model, counted from the reembed's own batches: the first run only.
    assert calls(embedder) == (3, 3)


@pytest.mark.slow
def test_backfill_then_reembed_on_spark_connect(connect_spark, workspace, monkeypatch):
    """The two tests above on Spark Connect, chained on one table (the reembed starts from the backfill's rows):
    every assertion of both, one table and one session's warm-up instead of two."""
    from tests.conftest import CONNECT_MODE_ENV

    monkeypatch.setenv(CONNECT_MODE_ENV, "1")
    spark = connect_spark
    config = workspace.config(backfill__chunk_rows=2)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(5)]
    append_products(spark, config, [product(i + 1, imgs[i]) for i in range(5)])
    embedder = Embedder(spark, config)
    totals = backfill(spark, config, embedder=embedder)
    assert (totals["products"], totals["texts_encoded"], totals["images_encoded"]) == (5, 5, 5)
    assert_df_equality(read_table(spark, config.tables.products).select(*PRODUCT_COLUMNS),
                       read_table(spark, config.tables.embeddings).select(*PRODUCT_COLUMNS),
                       ignore_row_order=True, ignore_nullable=True)
    again = backfill(spark, config, embedder=embedder)
    assert (again["texts_encoded"], again["images_encoded"], again["unchanged"]) == (0, 0, 5)
    assert calls(embedder) == (5, 5)
    new_config = workspace.config(backfill__chunk_rows=2, model__id="tiny-clip-v2")
    reembedder = Embedder(spark, new_config)
    totals = reembed(spark, new_config, embedder=reembedder)
    assert (totals["products"], totals["texts_encoded"], totals["images_encoded"]) == (5, 5, 5)
    assert {r.embedding_model for r in embedding_rows(spark, config).values()} == {"tiny-clip-v2"}
    assert reembed(spark, new_config, embedder=reembedder)["products"] == 0
    assert calls(reembedder) == (5, 5)
