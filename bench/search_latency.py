"""Benchmark: local index query latency and recall, API text-search latency, and freshness.

Prints one JSON object:
* index: for each size (default 44,000 and 1,000,000 synthetic 512-d unit vectors; real
  sample metadata distribution is not needed for latency), p50/p99 of exact and of
  approximate queries (IVF-Flat by default, ``--ann hnsw`` to compare) without and with a
  5 % filter, and recall@10 of approximate vs exact; and the text-search modes over the same rows
  (``modes``: keyword BM25, and fused = keyword + text + image retrievers with RRF, query reading
  included, query encoding left out, with the service's settings: ``fused_understanding`` reads
  price, gender, brand, colour and type, ``fused_understanding_needs`` needs, occasions, seasons,
  ages and brands through the query rules) beside one vector search, as ratios;
* api: POST /api/v1/search/text latency through the service (``python -m fashion_catalog.app.main``, its own
  process) on loopback, query encoding included (ViT-B/32-shaped CLIP by default), per mode
  (vector in the image index, keyword, fused with understanding);
* freshness: product inserted into `products` while the stream runs (processingTime
  trigger) -> visible through the service's search; p50/p95 over --edits edits.
Usage: python -m bench.search_latency [--sizes 44000,1000000] [--ann ivf_flat|hnsw] [--skip-api] [--skip-freshness]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd

from fashion_catalog.indexes.ann import ANN_KINDS, AnnParams


def _pct(values, q) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000.0, q)), 3)


def index_latency(n: int, queries: int, threshold: int, ann: AnnParams, exact_max: int, seed: int = 0) -> dict:
    from fashion_catalog.indexes.local import LocalIndexStore

    rng = np.random.default_rng(seed)
    dim = 512
    # Clustered data (like real embeddings), unit length.
    centers = rng.normal(size=(256, dim)).astype(np.float32)
    vecs = centers[rng.integers(0, 256, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    colours = np.where(rng.random(n) < 0.05, "Red", rng.choice(["Black", "Blue", "White", "Grey"], n))
    types = rng.choice(TYPES, n)
    brands = rng.choice(BRANDS, n)
    genders = rng.choice(["Men", "Women"], n)
    # Display names as the catalogue writes them (brand, gender, colour, type), so brands are read from them.
    meta = pd.DataFrame({"product_id": np.arange(n), "price": rng.uniform(5, 300, n), "base_color": colours,
                         "gender": genders, "article_type": types,
                         "usage": rng.choice(["Casual", "Sports", "Formal", "Ethnic"], n),
                         "master_category": np.where(np.isin(types, ["Casual Shoes", "Heels"]), "Footwear",
                                                     np.where(np.isin(types, ["Watches", "Handbags", "Sunglasses"]),
                                                              "Accessories", "Apparel")),
                         "product_display_name": [f"{b} {g} {c} {t} {i}" for i, (b, g, c, t) in
                                                  enumerate(zip(brands, genders, colours, types, strict=True))]})
    meta["description"] = meta["product_display_name"] + ", " + meta["base_color"].str.lower() + " " + \
        meta["article_type"].str.lower() + ", apparel for " + meta["gender"].str.lower()
    t0 = time.perf_counter()
    store = LocalIndexStore.from_arrays(meta, {"image": vecs, "text": vecs}, approximate_threshold=min(threshold, n),
                                        ann=ann, exact_max_candidates=exact_max)
    build_s = time.perf_counter() - t0
    qs = vecs[rng.choice(n, queries, replace=False)] + 0.1 * rng.normal(size=(queries, dim)).astype(np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    out: dict = {"rows": n, "build_seconds": round(build_s, 2), "approximate": store.status().approximate["image"],
                 "ann": {"kind": ann.kind, "nprobe": ann.nprobe, "ef_search": ann.ef_search},
                 "filtered_5pct_path": "exact" if 0.05 * n <= exact_max else "approximate"}
    for label, filters in (("unfiltered", None), ("filtered_5pct", {"base_color": "Red"})):
        for mode, exact in (("exact", True), ("approx", False)):
            times, results = [], []
            for q in qs:
                t = time.perf_counter()
                results.append([r["product_id"] for r in store.search("image", q, 10, filters, exact=exact)])
                times.append(time.perf_counter() - t)
            out[f"{label}_{mode}"] = {"p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99), "_ids": results}
        ex, ap = out[f"{label}_exact"].pop("_ids"), out[f"{label}_approx"].pop("_ids")
        out[f"{label}_recall_at_10"] = round(float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ap, ex,
                                                                                               strict=True)])), 4)
    out["modes"] = mode_latency(store, qs, rng)
    return out


TYPES = ["Tshirts", "Shirts", "Casual Shoes", "Watches", "Handbags", "Jeans", "Heels", "Sunglasses"]
BRANDS = ["Puma", "Nike", "Adidas", "Wrangler", "Baggit", "Catwalk", "Fastrack", "Arrow"]
# Needs, occasions, seasons, ages and brands in shoppers' words (the query rules and the brand vocabulary read them).
NEEDS = ["gym wear for men", "something to carry my laptop", "woolen winter wear", "office shoes for women",
         "puma tshirts for kids", "only nike watches under 100", "wedding wear for women", "arrow shirts"]


def mode_latency(store, qs: np.ndarray, rng) -> dict:
    """Keyword and fused text search vs one vector search over the same rows, measured side by side."""
    from fashion_catalog.conf import load_config
    from fashion_catalog.search.queries import QueryEncoder
    from fashion_catalog.search.service import SearchService
    from fashion_catalog.search.text_search import TextSearch

    class Vectors:  # query encoding is the API benchmark's part; here every text gets a prepared vector
        def __init__(self):
            self.i = 0

        def encode_texts(self, texts):
            self.i += 1
            return qs[self.i % len(qs)][None]

    # The service's own settings (fusion weights, synonyms, query rules, brands), as it runs by default.
    text = TextSearch.from_config(load_config(), SearchService(store, 100), QueryEncoder(Vectors(), None, 1000,
                                                                                         "bench"))
    words = [f"{rng.choice(BRANDS).lower()} {rng.choice(TYPES).lower()}" for _ in qs]
    cases = {"vector": lambda i: text.run(words[i], 10, mode="vector", understand=False),
             "keyword": lambda i: text.run(words[i], 10, mode="keyword", understand=False),
             "fused": lambda i: text.run(words[i], 10, mode="fused", understand=False),
             "fused_understanding": lambda i: text.run(f"{words[i]} for women under 50", 10, mode="fused"),
             "fused_understanding_needs": lambda i: text.run(NEEDS[i % len(NEEDS)], 10, mode="fused")}
    out = {}
    for name, run in cases.items():
        run(0)  # warm (vocabulary, caches)
        times = []
        for i in range(len(qs)):
            t = time.perf_counter()
            run(i)
            times.append(time.perf_counter() - t)
        out[name] = {"p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99)}
    out["fused_vs_vector_p50"] = round(out["fused"]["p50_ms"] / out["vector"]["p50_ms"], 2)
    return out


def api_and_freshness(model_dir: str, precision: str, edits: int, api_queries: int, skip_fresh: bool) -> dict:
    import requests
    from delta.tables import DeltaTable  # noqa: F401

    from bench.service import ServiceProcess
    from fashion_catalog.catalog.demo import generate_demo_catalog
    from fashion_catalog.catalog.loader import load_catalog
    from fashion_catalog.conf import load_config
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.lakehouse.tables import read_table, write_table
    from fashion_catalog.schemas import PRODUCT_COLUMNS
    from fashion_catalog.schemas.spark import PRODUCTS_SCHEMA
    from fashion_catalog.streaming.runner import Embedder

    work = os.path.abspath("data/bench-search")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    overrides = {
        "storage.root": work, "model.name_or_path": model_dir, "model.id": "bench-clip", "model.precision": precision,
        "stream.processing_time": "1 second", "search.sync_interval_s": 0.25, "catalog.source_dir": "catalog"}
    config = load_config("local", base_dir=work, overrides=overrides)
    generate_demo_catalog(config.catalog_source_dir, n_products=200)
    spark = get_spark(config)
    load_catalog(spark, config)
    embedder = Embedder(spark, config)
    embedder.start_stream("availableNow").awaitTermination()
    server = ServiceProcess(overrides, os.path.join(work, "service.log"))
    base = server.url
    session = requests.Session()
    words = ["red dress", "black leather shoes", "blue jeans", "gold watch", "white tshirt", "brown handbag"]
    for w in words:
        session.post(f"{base}/api/v1/search/text", json={"query": w, "limit": 10})
    result: dict = {"api_text_search": {"queries": api_queries, "model": model_dir, "precision": precision}}
    modes = {"vector_image": {"index": "image"}, "keyword": {"mode": "keyword"}, "fused_understanding": {}}
    for name in modes:  # interleaved per query below, so noise hits every mode alike
        result["api_text_search"][name] = []
    for i in range(api_queries):
        for name, extra in modes.items():
            t = time.perf_counter()
            r = session.post(f"{base}/api/v1/search/text", json={
                "query": f"{words[i % len(words)]} for women under 150 {i}", "limit": 10,
                "filters": {"price <=": 200}, **extra})
            result["api_text_search"][name].append(time.perf_counter() - t)
            r.raise_for_status()
    for name in modes:
        times = result["api_text_search"][name]
        result["api_text_search"][name] = {"p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99)}
    if skip_fresh:
        server.stop()
        return result
    query = embedder.start_stream("processingTime")
    template = read_table(spark, config.tables.products).limit(1).collect()[0].asDict()
    lags, batch_latency, phases = [], [], {}
    try:
        for i in range(edits):
            pid = 900000 + i
            row = dict(template, product_id=pid, product_display_name=f"Fresh edit {i}")
            df = spark.createDataFrame([tuple(row[c] for c in PRODUCT_COLUMNS)], PRODUCTS_SCHEMA)
            write_table(df, config.tables.products)
            committed = time.perf_counter()
            while True:
                r = session.post(f"{base}/api/v1/search/text", json={
                    "query": "fresh", "limit": 1, "filters": {"product_id": pid}})
                if r.ok and r.json()["count"] == 1:
                    lags.append(time.perf_counter() - committed)
                    break
                if time.perf_counter() - committed > 120:
                    raise TimeoutError(f"edit {i} not visible after 120 s")
                time.sleep(0.1)
            time.sleep(0.5)
        batch_latency = [m.latency_s for m in embedder.history[-edits:]]
        phases = pd.DataFrame([m.phases_s for m in embedder.history[-edits:]]).median().round(3).to_dict()
    finally:
        query.stop()
        server.stop()
    result["freshness"] = {"edits": edits, "p50_s": round(float(np.percentile(lags, 50)), 2),
                           "p95_s": round(float(np.percentile(lags, 95)), 2), "max_s": round(max(lags), 2),
                           "stream_batch_latency_p50_s": round(float(np.median(batch_latency)), 2) if batch_latency
                           else None, "stream_phases_p50_s": phases, "trigger": "processingTime 1 second",
                           "index_sync_interval_s": 0.25}
    spark.stop()
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="44000,1000000")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--ann-threshold", type=int, default=20000,
                   help="rows above which the approximate index is built (lower than the service default, "
                        "to measure it at 44k)")
    p.add_argument("--ann", default="ivf_flat", choices=ANN_KINDS)
    p.add_argument("--nprobe", type=int, default=32, help="ivf_flat: cells scanned per query")
    p.add_argument("--ef-search", type=int, default=128, help="hnsw: search breadth")
    p.add_argument("--exact-max-candidates", type=int, default=20000,
                   help="filtered queries matching at most this many rows are ranked exactly")
    p.add_argument("--model-dir", default="data/bench/models/clip-vit-b-32-random-catalog-tokenizer")
    p.add_argument("--precision", default="int8", choices=["fp32", "bf16", "int8"])
    p.add_argument("--edits", type=int, default=10)
    p.add_argument("--api-queries", type=int, default=100)
    p.add_argument("--skip-index", action="store_true")
    p.add_argument("--skip-api", action="store_true")
    p.add_argument("--skip-freshness", action="store_true")
    args = p.parse_args(argv)
    out: dict = {"benchmark": "search_latency", "cpu_count": os.cpu_count()}
    if not args.skip_index:
        ann = AnnParams(kind=args.ann, nprobe=args.nprobe, ef_search=args.ef_search)
        out["index"] = [index_latency(int(n), args.queries, args.ann_threshold, ann, args.exact_max_candidates)
                        for n in args.sizes.split(",")]
    if not args.skip_api:
        if not os.path.isfile(os.path.join(args.model_dir, "config.json")):
            from fashion_catalog.encoders.random_clip import build_random_clip

            build_random_clip(args.model_dir, shape="vit-b-32")
        out.update(api_and_freshness(os.path.abspath(args.model_dir), args.precision, args.edits,
                                     args.api_queries, args.skip_freshness))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
