"""Load benchmark: locust (headless, on 127.0.0.1) against the search service, idle vs. while the stream edits.

Mixed shopper traffic (``bench/locustfile.py``: text 40 %, image 20 %, hybrid 20 %, recommendations 20 %)
from 1 and from 8 concurrent clients (closed loop), in one run, side by side:

* ``idle``: the index follows a table nobody writes;
* ``streaming``: the continuous embedder runs (``python -m fashion_catalog.jobs.stream``) while an editor changes
  products every ``--edit-interval`` seconds, and the service syncs the index from the change feed;

each with query batching (``search.batch_queries``) off (the default) and on.
Per scenario: requests/s, p50/p99 per route, error rate, and the sync lag seen by polling
``/health`` (versions behind the table, seconds since the last sync). Prints one JSON object.

Usage: python -m bench.load_test [--sample-dir ../shared/datasets/fashion-sample] [--products 300]
       [--duration 20] [--users 1 8]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time

DEFAULT_SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "fashion-sample")
LOCUSTFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locustfile.py")
QUERIES = ["red dress", "black leather jacket", "blue jeans", "white sports shoes", "gold watch", "brown handbag",
           "navy blue shirt", "pink top for women", "casual tshirt", "formal trousers"]


def _catalog(work: str, sample_dir: str, products: int) -> tuple[str, str]:
    """A catalog folder of ``products`` rows: the real sample's first rows when present, else a drawn one."""
    from fashion_catalog.catalog.demo import generate_demo_catalog

    catalog = os.path.join(work, "catalog")
    if os.path.isfile(os.path.join(sample_dir, "styles.csv")):
        os.makedirs(catalog)
        os.symlink(os.path.join(os.path.abspath(sample_dir), "images"), os.path.join(catalog, "images"))
        with open(os.path.join(sample_dir, "styles.csv"), encoding="utf-8") as src, \
                open(os.path.join(catalog, "styles.csv"), "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i > products:
                    break
                dst.write(line)
        return catalog, "fashion-sample"
    generate_demo_catalog(catalog, n_products=products)
    return catalog, "synthetic"


def _query_photos(catalog: str, out: str, n: int = 16) -> str:
    os.makedirs(out, exist_ok=True)
    images = sorted(f for f in os.listdir(os.path.join(catalog, "images")) if f.endswith(".jpg"))
    for name in random.Random(0).sample(images, min(n, len(images))):
        shutil.copy(os.path.join(catalog, "images", name), os.path.join(out, name))
    return out


class HealthPoller:
    """Polls /health during a run: versions behind the table and seconds since the last sync."""

    def __init__(self, url: str, every_s: float = 0.5):
        import requests

        self.url, self.every_s, self.samples = f"{url}/health", every_s, []
        self._session, self._stop = requests.Session(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                body = self._session.get(self.url, timeout=5).json()
                self.samples.append((body["index"].get("lag_versions"), body.get("seconds_since_sync"),
                                     body["index"].get("synced_version"), body["status"]))
            except Exception as exc:  # noqa: BLE001 - an unanswered health probe is itself a result
                self.samples.append((None, None, None, f"error: {exc}"))
            self._stop.wait(self.every_s)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def summary(self) -> dict:
        lags = [s[0] for s in self.samples if s[0] is not None]
        ages = [s[1] for s in self.samples if s[1] is not None]
        versions = [s[2] for s in self.samples if s[2] is not None]
        return {"probes": len(self.samples), "lag_versions_max": max(lags, default=None),
                "lag_versions_mean": round(sum(lags) / len(lags), 2) if lags else None,
                "seconds_since_sync_max": round(max(ages), 2) if ages else None,
                "index_versions_applied": (max(versions) - min(versions)) if versions else 0,
                "not_ok": sum(1 for s in self.samples if s[3] != "ok")}


def _wait_for_new_version(url: str, timeout_s: float) -> float:
    """Seconds until the service's index applies a new table version (the stream wrote, the index synced)."""
    import requests

    started = time.monotonic()
    first = requests.get(f"{url}/health", timeout=10).json()["index"]["synced_version"]
    while time.monotonic() - started < timeout_s:
        if requests.get(f"{url}/health", timeout=10).json()["index"]["synced_version"] != first:
            return round(time.monotonic() - started, 1)
        time.sleep(1)
    raise RuntimeError(f"the stream wrote nothing the index saw within {timeout_s}s (see stream.log)")


def run_locust(url: str, users: int, duration_s: int, photos: str, out_prefix: str) -> dict:
    """One headless locust run; per-route and total requests/s, p50/p99 (ms) and failures from its CSV."""
    env = dict(os.environ, LOAD_IMAGES=photos, LOAD_QUERIES="|".join(QUERIES))
    cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--host", url, "-u", str(users),
           "-r", str(users), "-t", f"{duration_s}s", "--csv", out_prefix, "--only-summary", "--loglevel", "WARNING",
           "--stop-timeout", "10"]
    subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=duration_s + 120)
    routes = {}
    with open(f"{out_prefix}_stats.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "users":
                continue
            requests_ = int(row["Request Count"])
            routes[row["Name"]] = {
                "requests": requests_, "rps": round(float(row["Requests/s"]), 2),
                "p50_ms": float(row["50%"] or 0), "p99_ms": float(row["99%"] or 0),
                "errors": int(row["Failure Count"]),
                "error_rate": round(int(row["Failure Count"]) / requests_, 4) if requests_ else 0.0}
    return routes


class Editor:
    """Changes a few products every ``interval_s`` seconds (price and name), as a catalog editor would."""

    def __init__(self, spark, config, ids: list[int], interval_s: float):
        self.spark, self.config, self.ids, self.interval_s = spark, config, ids, interval_s
        self.edits, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rnd = random.Random(1)
        table = self.config.tables.products.sql
        while not self._stop.is_set():
            chosen = ", ".join(str(i) for i in rnd.sample(self.ids, min(3, len(self.ids))))
            self.spark.sql(f"UPDATE {table} SET price = price + 1, product_display_name = "
                           f"concat(product_display_name, ' v{self.edits}') WHERE product_id IN ({chosen})")
            self.edits += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Editor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="locust load test: idle vs. streaming, 1 vs. 8 clients")
    p.add_argument("--sample-dir", default=os.path.abspath(DEFAULT_SAMPLE))
    p.add_argument("--work-dir", default="data/bench-load")
    p.add_argument("--products", type=int, default=300)
    p.add_argument("--duration", type=int, default=20, help="seconds per locust run")
    p.add_argument("--users", type=int, nargs="+", default=[1, 8])
    p.add_argument("--edit-interval", type=float, default=2.0)
    p.add_argument("--skip-unbatched", action="store_true", help="do not measure search.batch_queries=false")
    p.add_argument("--skip-streaming", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from bench.service import ServiceProcess
    from fashion_catalog.catalog.loader import load_catalog
    from fashion_catalog.conf import load_config
    from fashion_catalog.encoders.random_clip import build_random_clip
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.lakehouse.tables import read_table
    from fashion_catalog.personalization.features import build_user_features
    from fashion_catalog.streaming.runner import Embedder

    work = os.path.abspath(args.work_dir)
    model_dir = os.path.join(work, "..", "bench-models", "clip-vit-b-32-random")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    catalog, source = _catalog(work, args.sample_dir, args.products)
    threads = os.cpu_count() or 2
    overrides = {"storage.root": work, "catalog.source_dir": catalog, "model.name_or_path": os.path.abspath(model_dir),
                 "model.id": "clip-vit-b-32-random", "model.torch_threads": threads, "model.encode_partitions": 1,
                 "stream.processing_time": "1 second", "search.sync_interval_s": 1.0,
                 # The catalog links the sample's images: allow the folder the link resolves to.
                 "images.allowed_roots": [catalog, os.path.realpath(os.path.join(catalog, "images"))]}
    config = load_config("local", overrides=overrides, base_dir=work)
    if not os.path.isfile(os.path.join(model_dir, "model_card.json")):
        build_random_clip(model_dir, shape="vit-b-32", corpus=QUERIES)
    spark = get_spark(config)
    load_catalog(spark, config)
    Embedder(spark, config).start_stream("availableNow").awaitTermination()
    build_user_features(spark, config)
    ids = [r.product_id for r in read_table(spark, config.tables.products).select("product_id").collect()]
    with_image = read_table(spark, config.tables.embeddings).filter("image_embedding IS NOT NULL").count()
    if with_image < len(ids) // 2:  # a load test over an empty image index measures nothing
        raise SystemExit(f"only {with_image} of {len(ids)} products have an image vector; check images.allowed_roots")
    photos = _query_photos(catalog, os.path.join(work, "query-photos"))

    result: dict = {"benchmark": "load_test", "tool": "locust (headless, closed loop, 127.0.0.1)",
                    "model_shape": "clip-vit-b-32 (random weights)", "catalog": source, "products": len(ids),
                    "products_with_image_vectors": with_image,
                    "cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
                    "duration_s": args.duration, "traffic": "text 40%, image 20%, hybrid 20%, recommend 20%",
                    "scenarios": []}
    modes = [True] if args.skip_unbatched else [False, True]
    phases = ["idle"] if args.skip_streaming else ["idle", "streaming"]
    for batch in modes:
        service = ServiceProcess(dict(overrides, **{"search.batch_queries": batch}),
                                 os.path.join(work, f"service-batch-{batch}.log"))
        try:
            for phase in phases:
                stream = editor = None
                if phase == "streaming":
                    stream = subprocess.Popen(
                        [sys.executable, "-m", "fashion_catalog.jobs.stream", "--trigger", "processingTime"]
                        + [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")],
                        stdout=open(os.path.join(work, "stream.log"), "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
                        start_new_session=True)
                    editor = Editor(spark, config, ids, args.edit_interval).__enter__()
                    # Traffic starts once the stream is up and its first edits are searchable.
                    result.setdefault("stream_warmup_s", []).append(_wait_for_new_version(service.url, 300))
                try:
                    for users in args.users:
                        prefix = os.path.join(work, f"locust-{phase}-batch{int(batch)}-u{users}")
                        with HealthPoller(service.url) as poller:
                            routes = run_locust(service.url, users, args.duration, photos, prefix)
                        total = routes.pop("Aggregated", {})
                        result["scenarios"].append({
                            "phase": phase, "batch_queries": batch, "users": users,
                            "rps": total.get("rps"), "p50_ms": total.get("p50_ms"), "p99_ms": total.get("p99_ms"),
                            "error_rate": total.get("error_rate"), "routes": routes, "sync": poller.summary()})
                        print(json.dumps(result["scenarios"][-1]), file=sys.stderr)
                finally:
                    if editor:
                        editor.__exit__()
                        result.setdefault("edits", 0)
                        result["edits"] += editor.edits
                    if stream:
                        stream.terminate()
                        stream.wait(60)
        finally:
            service.stop()
    by = {(s["phase"], s["batch_queries"], s["users"]): s["rps"] for s in result["scenarios"]}
    lo, hi = min(args.users), max(args.users)
    result["ratios"] = {f"{phase}_batch{int(b)}_rps_{hi}_over_{lo}_users":
                        round(by[(phase, b, hi)] / by[(phase, b, lo)], 3)
                        for phase in phases for b in modes if by.get((phase, b, lo))}
    print(json.dumps(result, indent=1))
    spark.stop()


if __name__ == "__main__":
    main()
