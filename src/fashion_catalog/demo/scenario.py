"""The local end-to-end demo -- catalog -> stream -> editor edits -> incremental re-embedding.

1. builds the synthetic demo catalog if missing and loads it into the products table;
2. with no model configured, trains a small CLIP from scratch on that catalog
   (training.trainer, ``training.demo_max_minutes``): no pretrained weights exist
   offline, and the output says which model is used and how it was made;
3. runs the CDF stream once (availableNow): every product gets image, text and hybrid vectors;
4. plays a catalog editor: a price change inside its tier, a tier crossing, a new
   image, a new product and a delete; runs the stream again and shows that only
   the changed modalities were encoded;
5. prints the table's state and a nearest-neighbour lookup;
6. ends with a summary in words, the command that opens the page on these tables, and what to do next.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil

import numpy as np

from fashion_catalog.catalog.demo import generate_demo_catalog
from fashion_catalog.catalog.loader import load_catalog
from fashion_catalog.conf import Config
from fashion_catalog.demo.console import progress, quiet_console
from fashion_catalog.encoders.model_card import read_model_card
from fashion_catalog.lakehouse.session import get_spark
from fashion_catalog.lakehouse.tables import read_table, write_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.description import price_tier
from fashion_catalog.schemas.spark import PRODUCTS_SCHEMA
from fashion_catalog.streaming.runner import Embedder
from fashion_catalog.training.trainer import train_clip

log = logging.getLogger(__name__)


DEMO_PRODUCTS = 240  # enough drawn products for a few minutes of meaningful training
# Below this article-type text->image P@10 on the validation split the demo calls its model rough: with the
# demo's 8 types, chance is 1/8, and a model that finds the right type in fewer than half of its top 10
# answers most searches with the wrong kind of product.
ROUGH_BELOW_TYPE_P_AT_10 = 0.5
PAGE_PORT = 8000
# Log lines the demo expects (not problems): a pattern of the line, and what it means in words.
EXPECTED_NOTICES = (
    (r"RANDOM WEIGHTS", "the model has random weights (no pretrained CLIP offline): the plumbing is real, "
                        "the neighbours are not"),
    (r"IMAGE_MISSING", "one demo product has no photo on purpose: it is embedded from its text alone"),
    (r"quarantined .*styles\.csv", "a malformed catalogue line is set aside in the quarantine table"),
)


def ensure_demo_catalog(config) -> None:
    """Create the synthetic demo catalog if the configured source folder has none."""
    if not os.path.isfile(os.path.join(config.catalog_source_dir, "styles.csv")):
        log.info("generating synthetic demo catalog in %s", config.catalog_source_dir)
        generate_demo_catalog(config.catalog_source_dir, n_products=DEMO_PRODUCTS)


def ensure_demo_model(spark, config) -> None:
    """With no pretrained weights configured (the default model folder is missing), train a catalog CLIP.

    No pretrained CLIP can be downloaded here, so the demo trains the small CLIP of
    ``training.trainer`` from scratch on the products table for ``training.demo_max_minutes``
    and saves it where ``model.name_or_path`` points. A configured folder or hub id is used as is.
    """
    model_dir = config.model.name_or_path
    default_dir = os.path.join(config.root, "models", "demo-clip")
    if os.path.isdir(model_dir) or os.path.abspath(model_dir) != os.path.abspath(default_dir):
        return
    minutes = config.training.demo_max_minutes
    print(f"   no model at {model_dir} and no pretrained weights configured: training a catalog CLIP from "
          f"scratch on the products table for {minutes:g} min (training.trainer; not pretrained)")
    with progress("training"):
        result = train_clip(spark, config, output_dir=model_dir, max_minutes=minutes, progress=False)
    p10 = result.validation.get("type_p_at_10")
    print(f"   trained {result.steps} steps ({result.epochs_done} epochs, {result.seconds}s) on "
          f"{result.products['train']} products; it finds the right type in "
          f"{'?' if p10 is None else f'{p10 * 10:.1f}'} of its top 10 answers (validation)")
    if p10 is None or p10 < ROUGH_BELOW_TYPE_P_AT_10:
        print(f"   a rough model: searches will often show the wrong kind of product. Train longer with "
              f"--fresh --set training.demo_max_minutes={max(10, 5 * minutes):g} (the model folder is reused "
              f"until you delete {model_dir})")


def _run_stream(embedder) -> list:
    before = len(embedder.history)
    embedder.start_stream("availableNow").awaitTermination()
    return embedder.history[before:]


def reset(config: Config) -> None:
    """Delete the demo's tables and checkpoint (``--fresh``)."""
    for path in (config.tables.products.path, config.tables.embeddings.path,
                 config.tables.quarantine.path, config.stream.checkpoint):
        if path and os.path.isdir(path):
            shutil.rmtree(path)


def describe_model(config: Config) -> dict:
    """Say which model the demo uses and how its weights were made; returns its model card."""
    card = read_model_card(config.model.name_or_path)
    weights = card.get("weights", "unknown")
    how = {"trained": f"catalog-trained CLIP ({card.get('base', 'training.trainer')}, "
                      f"{card.get('train_seconds', '?')}s on {card.get('trained_on', 'the catalog')})",
           "random": "RANDOM weights"}.get(weights, weights)
    print(f"model: {config.model.name_or_path} (id {config.model.id}; {how})")
    return card


def play_editor(spark, config: Config) -> None:
    """A catalog editor's edits: price inside its tier, tier crossing, new image, delete, new product."""
    table = config.tables.products.sql
    rows = {r.product_id: r for r in read_table(spark, config.tables.products).collect()}
    ids = sorted(rows)
    same_tier = next(i for i in ids if price_tier(rows[i].price) == price_tier(rows[i].price + 0.5))
    crossing = next(i for i in ids if i != same_tier and price_tier(rows[i].price) != "luxury")
    image_change, deleted = ids[5], ids[6]
    spark.sql(f"UPDATE {table} SET price = price + 0.5 WHERE product_id = {int(same_tier)}")
    spark.sql(f"UPDATE {table} SET price = 500.0 WHERE product_id = {int(crossing)}")
    spark.sql(f"UPDATE {table} SET image_path = :path WHERE product_id = {int(image_change)}",
              args={"path": rows[ids[7]].image_path})
    spark.sql(f"DELETE FROM {table} WHERE product_id = {int(deleted)}")
    new = rows[ids[0]].asDict()
    new.update(product_id=max(ids) + 1, product_display_name="Demo Women Red Party Dress (new)")
    write_table(spark.createDataFrame([tuple(new[c] for c in PRODUCT_COLUMNS)], PRODUCTS_SCHEMA),
                config.tables.products)
    print(f"   price +0.5 within tier: {same_tier}; tier crossing: {crossing}; new image: {image_change}; "
          f"deleted: {deleted}; new product: {new['product_id']}")


def show_table(spark, config: Config, card: dict) -> int:
    """The table's state and the nearest neighbours of its first product; returns its rows."""
    emb = read_table(spark, config.tables.embeddings)
    kinds = emb.groupBy("hybrid_source", "embedding_error").count().orderBy("hybrid_source").collect()
    print("   " + "; ".join(f"{r['count']} from {r.hybrid_source.replace('+', ' and ').replace('_only', ' alone')}"
                            + (f" ({r.embedding_error})" if r.embedding_error else "") for r in kinds))
    data = emb.select("product_id", "product_display_name", "hybrid_embedding").orderBy("product_id").collect()
    matrix = np.array([r.hybrid_embedding for r in data])
    print(f"   {len(data)} rows, hybrid norms in [{np.linalg.norm(matrix, axis=1).min():.6f}, "
          f"{np.linalg.norm(matrix, axis=1).max():.6f}]")
    scores = matrix @ matrix[0]
    print(f"   nearest to {data[0].product_display_name!r} (hybrid):")
    for j in np.argsort(-scores)[1:4]:
        print(f"     {scores[j]:.3f}  {data[j].product_display_name}")
    if card.get("weights") == "random":
        print("   (the model has random weights: the plumbing is real, the neighbours are not meaningful)")
    return len(data)


def run_demo(config: Config, fresh: bool = False, log_path: str | None = None,
             page_args: list[str] | None = None) -> None:
    """The whole demo (see module docstring); Spark's and the libraries' logs go to ``log_path``."""
    with quiet_console(log_path or os.path.join(config.root, "logs", "demo.log"), EXPECTED_NOTICES):
        ending = _run_demo(config, fresh, page_args or [])
    print(ending)  # last, after the notes and warnings: what to do next is what stays on screen


def _run_demo(config: Config, fresh: bool, page_args: list[str]) -> str:
    if fresh:
        reset(config)
    ensure_demo_catalog(config)
    with progress("starting Spark"):
        spark = get_spark(config)

    print("\n== 1. load catalog")
    loaded = load_catalog(spark, config)
    print(f"   {loaded['parsed']} products read from {config.catalog_source_dir}/styles.csv, "
          f"{loaded['quarantined']} malformed lines set aside; "
          f"{loaded.get('num_inserted_rows', 0)} new and {loaded.get('num_updated_rows', 0)} changed in products")
    ensure_demo_model(spark, config)
    card = describe_model(config)
    embedder = Embedder(spark, config)

    print("\n== 2. stream (availableNow): initial snapshot")
    with progress("embedding"):
        initial = batches = _run_stream(embedder)
    for m in batches:
        print(f"   batch {m.batch_id}: {m.products} products, {m.texts_encoded} texts + "
              f"{m.images_encoded} images encoded, {m.image_errors} image errors, {m.latency_s}s")

    print("\n== 3. catalog editor edits")
    play_editor(spark, config)

    print("\n== 4. stream again: only what changed is encoded")
    with progress("embedding the changes"):
        batches = _run_stream(embedder)
    for m in batches:
        print(f"   batch {m.batch_id}: {m.products} products changed ({m.inserts} new, {m.updates} updated, "
              f"{m.metadata_only} in metadata only, {m.deletes} deleted); encoded {m.texts_encoded} texts and "
              f"{m.images_encoded} images, {m.latency_s}s")

    print("\n== 5. product_embeddings_multimodal")
    rows = show_table(spark, config, card)
    spark.stop()
    return ending(config, rows, initial, batches, page_args)


def ending(config: Config, rows: int, initial: list, edits: list, page_args: list[str]) -> str:
    """What happened, in words; how to see it on the page (``page_args``: the demo's own settings); what next."""
    texts, images = sum(m.texts_encoded for m in edits), sum(m.images_encoded for m in edits)
    changed = sum(m.products for m in edits)
    overrides = "".join(f" {shlex.quote(a)}" for a in page_args)
    return "\n".join([
        "\n== Done",
        f"   {sum(m.products for m in initial)} products embedded (photo, description and both blended); the "
        f"editor's {changed} changes re-encoded only what changed: {texts} descriptions and {images} photos; "
        f"{rows} rows in {config.tables.embeddings}.",
        "   See it on the page, on these tables:",
        f"     .venv/bin/python -m fashion_catalog.app.main --port {PAGE_PORT}{overrides}",
        f"     then open http://127.0.0.1:{PAGE_PORT}",
        "   Next: the real sample catalogue (docs/operations.md) or a Databricks deploy (docs/deploy.md)."])
