"""Benchmark: backfill throughput through Spark vs. the same model in a tight loop.

Loads the real sample catalog (../shared/datasets/fashion-sample by default) into a
scratch products table, builds a ViT-B/32-shaped CLIP with random weights (same
compute as the real one), then in one run:

* raw:  the encoder outside Spark on the same distinct images and descriptions
        (decode + preprocess + model, same batch sizes, same torch threads);
* e2e:  the backfill job through Spark (CDF-free snapshot -> planner -> Arrow pandas
        UDFs -> MERGE), per-modality encode time measured around the UDF stages;

and prints one JSON object with images/s, texts/s and their e2e/raw ratios, the summed batch
phases (where the time goes), error rows by code, and the peak memory of the driver's Python
process, its JVM and the Spark Python workers.

``--styles`` backfills another styles.csv with the sample's images: the full 44,446-row catalogue
(``../shared/datasets/fashion-catalog-full/styles.csv``), where the 34,863 rows without a photo
become ``IMAGE_MISSING`` rows (the image is looked up once, by the planner's hash, never decoded).
Usage: python -m bench.backfill_throughput [--limit N] [--precision auto|int8|openvino-int8|...]
       [--device cpu|cuda] [--styles PATH --skip-raw]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import sys
import time

DEFAULT_SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "fashion-sample")


def _raw_throughput(encoder, paths: list[str], texts: list[str], limits, image_bs: int, text_bs: int) -> dict:
    from fashion_catalog.encoders.images import ImageError, load_image

    # Warm-up (the first calls pay allocator and kernel start-up).
    encoder.encode_images([load_image(p, limits) for p in paths[:image_bs]], image_bs)
    encoder.encode_texts(texts[:text_bs], text_bs)
    t0 = time.perf_counter()
    for start in range(0, len(paths), image_bs):
        batch = []
        for p in paths[start : start + image_bs]:
            try:
                batch.append(load_image(p, limits))
            except ImageError:
                pass
        if batch:
            encoder.encode_images(batch, image_bs)
    t1 = time.perf_counter()
    encoder.encode_texts(texts, text_bs)
    t2 = time.perf_counter()
    return {"images": len(paths), "image_seconds": round(t1 - t0, 2), "images_per_s": round(len(paths) / (t1 - t0), 2),
            "texts": len(texts), "text_seconds": round(t2 - t1, 2), "texts_per_s": round(len(texts) / (t2 - t1), 2)}


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def _peak_memory() -> dict:
    """Peak resident memory (VmHWM) of this driver process, its JVM, and the JVM's Python workers."""
    out: dict = {"driver_python": _vm_hwm_mb(os.getpid())}
    for child in _children(os.getpid()):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as fh:
                if b"java" not in fh.read().split(b"\0")[0]:
                    continue
        except OSError:
            continue
        out["driver_jvm"] = _vm_hwm_mb(child)
        workers = [w for c in _children(child) for w in [c, *_children(c)]]
        peaks = [m for m in (_vm_hwm_mb(w) for w in workers) if m]
        out["python_workers_max"] = max(peaks) if peaks else None
        out["python_workers"] = len(peaks)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="backfill throughput: Spark end-to-end vs raw model")
    p.add_argument("--sample-dir", default=os.path.abspath(DEFAULT_SAMPLE))
    p.add_argument("--work-dir", default="data/bench")
    p.add_argument("--limit", type=int, default=0, help="products to use (0 = all)")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8", "fp16", "openvino-bf16", "openvino-int8", "auto"],
                   default="int8")
    p.add_argument("--styles", default=None,
                   help="a styles.csv to backfill instead of the sample's (its images still come from --sample-dir)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--shape", choices=["vit-b-32", "tiny"], default="vit-b-32",
                   help="the random CLIP's shape (tiny: a quick check of the script itself)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--image-batch-size", type=int, default=32)
    p.add_argument("--text-batch-size", type=int, default=128)
    p.add_argument("--skip-raw", action="store_true")
    p.add_argument("--warm-products", type=int, default=8,
                   help="products backfilled (then deleted) before the timed run, to load the model in the "
                        "Spark Python worker; 0: none (a plumbing check, not a measurement)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not os.path.isfile(os.path.join(args.sample_dir, "styles.csv")):
        sys.exit(f"no catalog at {args.sample_dir}: pass --sample-dir (Kaggle layout: styles.csv + images/)")

    from pyspark.sql import functions as F

    from fashion_catalog.catalog.loader import load_catalog
    from fashion_catalog.catalog.parser import parse_styles_csv
    from fashion_catalog.conf import load_config
    from fashion_catalog.encoders.clip import ClipEncoder
    from fashion_catalog.encoders.images import ImageLimits, image_content_hash
    from fashion_catalog.encoders.random_clip import build_random_clip
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.lakehouse.tables import read_table
    from fashion_catalog.streaming.backfill import backfill
    from fashion_catalog.udfs.description import description_expr

    work = os.path.abspath(args.work_dir)
    model_dir = os.path.join(work, "models", f"clip-{args.shape}-random-catalog-tokenizer")
    for sub in ("delta", "checkpoints", "catalog"):
        shutil.rmtree(os.path.join(work, sub), ignore_errors=True)

    # A catalog folder holding only the first --limit rows (images are linked, not copied).
    catalog = os.path.join(work, "catalog")
    os.makedirs(catalog)
    os.symlink(os.path.join(args.sample_dir, "images"), os.path.join(catalog, "images"))
    styles = args.styles or os.path.join(args.sample_dir, "styles.csv")
    with open(styles, encoding="utf-8", errors="surrogateescape", newline="") as src, \
            open(os.path.join(catalog, "styles.csv"), "w", encoding="utf-8", errors="surrogateescape",
                 newline="") as dst:
        for i, line in enumerate(src):
            if args.limit and i > args.limit:
                break
            dst.write(line)

    overrides = {
        "storage.root": work,
        "catalog.source_dir": catalog,
        "model.name_or_path": model_dir,
        "model.id": "clip-vit-b-32-random",
        "model.precision": args.precision,
        "model.device": args.device,
        "model.torch_threads": args.threads,
        "model.encode_partitions": 1,
        "model.image_batch_size": args.image_batch_size,
        "model.text_batch_size": args.text_batch_size,
        "backfill.chunk_rows": 100000,
        # The catalog links the sample's images: allow the folder the link resolves to.
        "images.allowed_roots": [catalog, os.path.realpath(os.path.join(args.sample_dir, "images"))],
        "stream.arrow_batch_size": 256,
    }
    config = load_config("local", overrides=overrides, base_dir=work)
    spark = get_spark(config)
    t_load = time.perf_counter()
    loaded = load_catalog(spark, config)
    load_seconds = time.perf_counter() - t_load
    products = read_table(spark, config.tables.products)
    n_products = products.count()

    # The same distinct inputs the backfill will encode.
    limits = ImageLimits.from_config(config)
    rows = parse_styles_csv(os.path.join(catalog, "styles.csv"), os.path.join(catalog, "images")).rows
    by_hash: dict[str, str] = {}
    for r in rows:
        by_hash.setdefault(image_content_hash(r["image_path"], limits), r["image_path"])
    paths = [p for h, p in by_hash.items() if not h.startswith("error:")]
    texts = sorted({r.d for r in products.select(description_expr().alias("d")).collect()})
    random.Random(0).shuffle(texts)  # no help from alphabetical order: the stream sees them unordered
    if not os.path.isfile(os.path.join(model_dir, "model_card.json")):
        # Tokenizer merges from the catalog's own words: token counts like a real CLIP's (~30 per text).
        build_random_clip(model_dir, shape=args.shape, corpus=texts)

    result: dict = {
        "benchmark": "backfill_throughput",
        "model_shape": f"clip-{args.shape} (random weights)",
        "precision": args.precision,
        "device": args.device,
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "products": n_products,
        "catalog_load": {**{k: v for k, v in loaded.items() if isinstance(v, int | float)},
                         "seconds": round(load_seconds, 2)},
        "distinct_images": len(paths),
        "distinct_texts": len(texts),
    }
    if not args.skip_raw:
        encoder = ClipEncoder(model_dir, precision=args.precision, torch_threads=args.threads, device=args.device)
        result["raw"] = _raw_throughput(encoder, paths, texts, limits, args.image_batch_size, args.text_batch_size)
        result["precision_used"] = encoder.precision  # what `auto` chose (the Spark workers read the same cache)
        if encoder.calibration:
            result["calibration"] = encoder.calibration
        if args.precision != "fp32":
            # Fidelity of the fast path against fp32 on the same 64 images and texts.
            from fashion_catalog.encoders.images import load_image

            ref = ClipEncoder(model_dir, precision="fp32", torch_threads=args.threads, device=args.device)
            imgs = [load_image(p, limits) for p in paths[:64]]
            cos_i = (ref.encode_images(imgs) * encoder.encode_images(imgs)).sum(1)
            cos_t = (ref.encode_texts(texts[:64]) * encoder.encode_texts(texts[:64])).sum(1)
            result["fidelity_vs_fp32"] = {"image_cosine_min": round(float(cos_i.min()), 6),
                                          "text_cosine_min": round(float(cos_t.min()), 6)}
            del ref
        del encoder

    # Warm the Spark Python worker (model load) on a few products outside the timed run.
    if args.warm_products:
        warm_ids = products.select("product_id").orderBy("product_id").limit(args.warm_products)
        backfill(spark, config, product_ids=warm_ids)  # Spark reuses its Python workers, which keep the model
        spark.sql(f"DELETE FROM {config.tables.embeddings.sql}")
    result["warm_products"] = args.warm_products
    t0 = time.perf_counter()
    totals = backfill(spark, config)
    wall = time.perf_counter() - t0
    e2e = {
        "products": totals["products"],
        "images_encoded": totals["images_encoded"],
        "texts_encoded": totals["texts_encoded"],
        "image_errors": totals["image_errors"],
        "wall_seconds": round(wall, 2),
        "phases_s": totals["phases_s"],
        "products_per_s": round(totals["products"] / wall, 2),
        "image_seconds": round(totals["image_encode_seconds"], 2),
        "images_per_s": round(totals["images_encoded"] / max(totals["image_encode_seconds"], 1e-9), 2),
        "text_seconds": round(totals["text_encode_seconds"], 2),
        "texts_per_s": round(totals["texts_encoded"] / max(totals["text_encode_seconds"], 1e-9), 2),
    }
    result["e2e"] = e2e
    if "raw" in result:
        result["ratio_images"] = round(e2e["images_per_s"] / result["raw"]["images_per_s"], 3)
        result["ratio_texts"] = round(e2e["texts_per_s"] / result["raw"]["texts_per_s"], 3)
    stored = read_table(spark, config.tables.embeddings)
    result["rows_in_table"] = stored.count()
    result["rows_with_all_vectors"] = stored.filter(
        F.col("image_embedding").isNotNull() & F.col("text_embedding").isNotNull()).count()
    result["rows_with_text_vector"] = stored.filter(F.col("text_embedding").isNotNull()).count()
    result["error_rows"] = {r["embedding_error"]: r["count"] for r in
                            stored.filter(F.col("embedding_error").isNotNull()).groupBy("embedding_error").count()
                            .collect()}
    result["peak_memory_mb"] = _peak_memory()
    print(json.dumps(result, indent=2))
    spark.stop()


if __name__ == "__main__":
    main()
