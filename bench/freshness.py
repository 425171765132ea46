"""Freshness benchmark: a committed product edit until the search service finds it, old road vs new, one run.

What a catalog editor sees. On the real sample (9,583 products; the demo catalog when the sample is absent):

1. load the products table and embed it once (the stream, availableNow);
2. for each road, start the search service (``python -m fashion_catalog.app.main``) following the embeddings
   table and launch the continuous embedder as the platform team does (``python -m fashion_catalog.jobs.stream``,
   processing-time trigger, its own process); the first edit is committed right after the launch
   (``launch_to_first_edit_visible_s``: the gap a restart leaves), then ``--edits`` more, one at a time, at
   random moments: half update a product's name and price (the text is re-encoded), half insert a new
   product (text and image). An edit is visible when the service's index serves the product with its new
   name (polled every 50 ms) and a text search filtered to the edit's unique price returns it.

Roads (same kinds of edits on the same products, same service and model):

* ``old``: the waits as they were: a trigger every second, the service polling the table every second;
* ``stream``: the stream alone with its waits removed: a zero-delay trigger (an idle stream checks for a
  commit every ``spark.sql.streaming.pollingDelay``, 100 ms) and a service woken by the embeddings table's
  commits (``search.watch_poll_s``);
* ``new``: the defaults: ``stream`` plus the fast lane (``stream.fast_lane``, :mod:`fashion_catalog.streaming.
  fast_lane`): each small products commit is embedded as soon as it lands, with no Spark call, the
  stream still planning it after;
* ``spark-tasks`` (on request): every micro-batch in Spark tasks, the model loaded by the first batch.

For each edit, where the time went (``stages_s``, medians in ``median_stage_s``): the commit is picked up
(the batch that wrote it starts, the stream's or the fast lane's: ``lane``), the batch (plan, encode,
MERGE), the service sees the new embeddings version, applies it, and the search finds it. Also per road:
p50/p95/max, the stream's start-up phases (its own log line) and the median batch phases from the
embeddings table's commits. Prints one JSON object. The model is a random-weights CLIP of the
catalog-trained model's shape (``--shape small``): latency depends on the shape, not on the weights.

Usage: python -m bench.freshness [--sample-dir ../shared/datasets/fashion-sample] [--products 0]
       [--edits 20] [--paths old stream new]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time

from bench.load_test import DEFAULT_SAMPLE, _catalog
from bench.service import ServiceProcess

PATHS = {
    # Before the waits were removed: a trigger every second, the service polling the table every second.
    "old": {"stream.processing_time": "1 second", "search.sync_interval_s": 1.0, "search.watch_poll_s": 0,
            "stream.fast_lane": False},
    # The stream alone, its waits removed: a zero-delay trigger (idle checks every
    # spark.sql.streaming.pollingDelay), the service woken by the embeddings table's commits.
    "stream": {"stream.fast_lane": False},
    # The defaults: the above, plus the fast lane (streaming.fast_lane) applying each small commit at once.
    "new": {},
    # Every micro-batch in Spark tasks, the model loaded by the first batch (the road before tiny batches).
    "spark-tasks": {"stream.small_batch_max_rows": 0, "stream.warm_up": False, "stream.fast_lane": False},
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))], 3)


def _set_args(overrides: dict) -> list[str]:
    args: list[str] = []
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value) if isinstance(value, list | bool) else value}"]
    return args


class StreamProcess:
    """``python -m fashion_catalog.jobs.stream --trigger processingTime`` in its own process; running once it logs."""

    def __init__(self, overrides: dict, log_path: str):
        self.launched_at = time.time()
        self.started = time.perf_counter()
        self.log_path = log_path
        self.ready_s: float | None = None
        self.log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fashion_catalog.jobs.stream", "--trigger", "processingTime", *_set_args(overrides)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", SPARK_LOCAL_IP="127.0.0.1"))

    def wait_ready(self, timeout_s: float = 300) -> float:
        """Seconds from launch until the job logged that its query runs; then waits for its start-up to end
        (its first trigger done: the "start-up phases" line), so the timed edits measure a started job."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the stream exited with {self.proc.returncode}; see {self.log_path}")
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            if "stream running" in text:
                self.ready_s = self.ready_s or round(time.perf_counter() - self.started, 2)
            if self.ready_s and "start-up phases" in text:
                return self.ready_s
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"the stream did not start within {timeout_s}s; see {self.log_path}")

    def startup_phases(self) -> dict:
        """The job's own start-up breakdown (its "start-up" log line), if it wrote one."""
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if "start-up phases" in line and "{" in line:
                    try:
                        return json.loads(line[line.index("{"):])
                    except ValueError:
                        return {}
        return {}

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: the job stops its query (the checkpoint keeps the position), then exits
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _visible(session, url: str, pid: int, name: str, price: float) -> bool:
    body = {"query": name, "index": "text", "limit": 5, "filters": {"price >=": price, "price <=": price}}
    response = session.post(f"{url}/api/v1/search/text", json=body, timeout=10)
    if response.status_code != 200:
        return False
    return any(r.get("product_id") == pid and r.get("product_display_name") == name
               for r in response.json()["results"])


def _edit(spark, table: str, kind: str, pid: int, new_id: int, name: str, price: float) -> int:
    """Commit one edit; returns the product id that must become visible."""
    quoted = name.replace("'", "''")
    if kind == "update":
        spark.sql(f"UPDATE {table} SET product_display_name = '{quoted}', price = {price} WHERE product_id = {pid}")
        return pid
    columns = spark.sql(f"SELECT * FROM {table} LIMIT 0").columns
    values = ", ".join({"product_id": str(new_id), "product_display_name": f"'{quoted}'",
                        "price": str(price)}.get(c, c) for c in columns)
    spark.sql(f"INSERT INTO {table} SELECT {values} FROM {table} WHERE product_id = {pid}")
    return new_id


def _commit_time(path: str) -> float:
    """When the table's latest commit was made (epoch seconds, the commit's own timestamp).

    Edits are timed from their commit, not from the editor's write call returning: a Spark write
    returns after its post-commit work (a checkpoint every tenth commit: seconds on 2 vCPUs), during
    which the stream may already have picked the commit up.
    """
    from deltalake import DeltaTable

    return DeltaTable(path).history(1)[0]["timestamp"] / 1000.0


def _offsets_written(checkpoint: str, t0: float) -> float | None:
    """When the stream wrote the first offsets file after ``t0`` (its write-ahead log: the micro-batch is
    planned from the products table's new commit), from the checkpoint's file times."""
    folder = os.path.join(checkpoint, "offsets")
    try:
        times = [os.stat(os.path.join(folder, f)).st_mtime for f in os.listdir(folder) if f.isdigit()]
    except OSError:
        return None
    later = [t for t in times if t >= t0]
    return min(later) if later else None


def _stages(embeddings_path: str, checkpoint: str, t0: float, seen: float, health: dict) -> dict:
    """Where one edit's time went: commit -> the stream's write-ahead log names it -> the batch that wrote it starts
    (the stream's or the fast lane's: ``lane``) -> its commit -> the service sees the new version -> the version is
    searchable -> the search finds it (seconds, from the tables' commits, the checkpoint's files and /health)."""
    from deltalake import DeltaTable

    from fashion_catalog.streaming.metrics import BatchMetrics

    commits = [c for c in DeltaTable(embeddings_path).history(10)
               if c.get("userMetadata") and c["timestamp"] / 1000.0 >= t0 - 0.001]
    if not commits:
        return {}
    first = min(commits, key=lambda c: c["version"])
    batch = BatchMetrics.from_commit(first["userMetadata"], first["version"], first.get("operationMetrics"))
    done = first["timestamp"] / 1000.0
    index = health.get("index", {})
    seen_at, applied_at = index.get("version_seen_at"), index.get("version_applied_at")
    started = done - batch.latency_s
    out = {"picked_up_s": round(started - t0, 3), "batch_s": round(batch.latency_s, 3), "road": batch.road,
           "lane": batch.lane}
    offsets = _offsets_written(checkpoint, t0)
    if offsets is not None and offsets <= started:
        # Split the pick-up: seeing the commit (trigger and idle polling) vs Spark preparing the micro-batch.
        out.update(stream_sees_commit_s=round(offsets - t0, 3), spark_prepares_batch_s=round(started - offsets, 3))
    if seen_at and applied_at and (index.get("synced_version") or -1) >= first["version"]:
        out.update(service_sees_version_s=round(seen_at - done, 3), service_applies_s=round(applied_at - seen_at, 3),
                   search_finds_s=round(t0 + seen - applied_at, 3))
    return out


class VisibleWatch:
    """Polls /products/{id} every 50 ms from before the edit is committed, in a thread of its own, and records when
    the service first serves the edit (cheap, no query to encode, so the poller does not slow the stream down).

    Started before the edit because the editor's write call returns after its post-commit work (Spark writes
    the products table's checkpoint every tenth commit: seconds on 2 vCPUs); a poller started after the call
    would count that work, during which the edit may already be searchable.
    """

    def __init__(self, url: str, pid: int, name: str, timeout_s: float):
        import requests

        self.url, self.pid, self.name, self.timeout_s = url, pid, name, timeout_s
        self.session = requests.Session()  # one per thread: a Session is not thread-safe
        self.seen_at: float | None = None
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        deadline = time.time() + self.timeout_s
        while time.time() < deadline:
            response = self.session.get(f"{self.url}/api/v1/products/{self.pid}", timeout=10)
            if response.status_code == 200 and response.json().get("product_display_name") == self.name:
                self.seen_at = time.time()
                return
            time.sleep(0.05)

    def wait(self, session, price: float, t0: float) -> float:
        """Seconds from ``t0`` (epoch seconds: the edit's commit) until the service served the edit; the search
        must then find it too."""
        self._thread.join()
        if self.seen_at is None:
            raise TimeoutError(f"product {self.pid} ({self.name!r}) not searchable after {self.timeout_s}s")
        if not _visible(session, self.url, self.pid, self.name, price):
            raise AssertionError(f"product {self.pid} is in the index but a search does not find it")
        return round(self.seen_at - t0, 3)


def _phases(spark, table: str, after_version: int) -> dict:
    """Median batch phases (seconds) of the stream commits after ``after_version``."""
    from fashion_catalog.streaming.metrics import BatchMetrics

    rows = (spark.sql(f"DESCRIBE HISTORY {table}").filter(f"version > {after_version} AND userMetadata IS NOT NULL")
            .select("version", "userMetadata", "operationMetrics").collect())
    batches = [BatchMetrics.from_commit(r["userMetadata"], r["version"], r["operationMetrics"]) for r in rows]
    names = sorted({k for b in batches for k in (b.phases_s or {})})
    out = {n: round(statistics.median([b.phases_s[n] for b in batches if n in (b.phases_s or {})]), 3)
           for n in names}
    out["batch_latency_s"] = round(statistics.median([b.latency_s for b in batches]), 3) if batches else None
    out["batches"] = len(batches)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="freshness: a committed edit until it is searchable, old vs new path")
    p.add_argument("--sample-dir", default=os.path.abspath(DEFAULT_SAMPLE))
    p.add_argument("--work-dir", default="data/bench-freshness")
    p.add_argument("--products", type=int, default=0, help="catalog rows to load (0: all of the sample)")
    p.add_argument("--edits", type=int, default=20, help="timed edits per path (after the first one)")
    p.add_argument("--sync-interval", type=float, default=None,
                   help="the service's search.sync_interval_s, both paths (default: the configured one)")
    p.add_argument("--shape", choices=["tiny", "small", "vit-b-32"], default="small")
    p.add_argument("--paths", nargs="+", choices=list(PATHS), default=["old", "stream", "new"])
    p.add_argument("--timeout", type=float, default=120.0, help="seconds an edit may take before the run fails")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from fashion_catalog.catalog.loader import load_catalog
    from fashion_catalog.conf import load_config
    from fashion_catalog.encoders.random_clip import build_random_clip
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.lakehouse.tables import latest_version, read_table
    from fashion_catalog.streaming.runner import Embedder
    from fashion_catalog.udfs.description import description_expr

    work = os.path.abspath(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    products_n = args.products or 10_000_000
    catalog, source = _catalog(work, args.sample_dir, products_n)
    model_dir = os.path.join(work, "models", f"clip-{args.shape}-random")
    overrides = {
        "storage.root": work,
        "catalog.source_dir": catalog,
        "model.name_or_path": model_dir,
        "model.id": f"clip-{args.shape}-random",
        "images.allowed_roots": [catalog, os.path.realpath(os.path.join(catalog, "images"))],
        "search.batch_queries": False,
    }
    if args.sync_interval is not None:
        overrides["search.sync_interval_s"] = args.sync_interval
    config = load_config("local", overrides=overrides, base_dir=work)
    spark = get_spark(config)
    load_catalog(spark, config)
    products = read_table(spark, config.tables.products)
    texts = [r.d for r in products.select(description_expr().alias("d")).limit(5000).collect()]
    build_random_clip(model_dir, shape=args.shape, corpus=texts)
    # The first run of the stream embeds the snapshot; the timed runs restart from its checkpoint.
    Embedder(spark, config).start_stream("availableNow").awaitTermination()
    seeded = read_table(spark, config.tables.embeddings).count()
    table = config.tables.products.sql
    ids = [r.product_id for r in products.select("product_id").orderBy("product_id").collect()]
    chosen = random.Random(7).sample(ids, args.edits + 1)

    result: dict = {"benchmark": "freshness", "catalog": source, "products": len(ids),
                    "model_shape": f"clip-{args.shape} (random weights)",
                    "sync_interval_s": config.search.sync_interval_s, "edits_per_path": args.edits,
                    "seed_products": seeded, "cpu_count": os.cpu_count(),
                    "machine": platform.machine(), "processor": platform.processor() or None, "paths": {}}
    import requests

    session = requests.Session()
    for n, path in enumerate(args.paths):
        embeddings_version = latest_version(spark, config.tables.embeddings)
        settings = {**overrides, **PATHS[path]}
        service = ServiceProcess({k: json.dumps(v) if isinstance(v, list | bool) else v
                                  for k, v in settings.items() if not k.startswith("stream.")},
                                 os.path.join(work, f"service-{path}.log"))
        # The first edit is committed as the stream is launched: launch -> visible is the gap a restart
        # (a deploy, a crash) leaves.
        stream = StreamProcess(settings, os.path.join(work, f"stream-{path}.log"))
        latencies, kinds, stages = [], [], []
        try:
            for i, pid in enumerate(chosen):
                kind = "update" if i % 2 == 0 else "insert"
                price = 50_000 + 1_000 * n + i
                name = f"Freshness {path} edit {i} of product {pid}"
                if i:
                    time.sleep(random.Random(i).uniform(0.2, 1.2))  # edits land anywhere in a trigger period
                new_id = 900_000 + 1_000 * n + i
                watch = VisibleWatch(service.url, pid if kind == "update" else new_id, name, args.timeout)
                if _edit(spark, table, kind, pid, new_id, name, price) != watch.pid:
                    raise AssertionError("the edit and the watch name different products")
                t0 = _commit_time(config.tables.products.path)
                seen = watch.wait(session, price, t0)
                if i == 0:
                    launch_to_visible = round(t0 + seen - stream.launched_at, 3)
                    stream.wait_ready()
                    continue
                health = session.get(f"{service.url}/health", timeout=10).json()
                latencies.append(seen)
                kinds.append(kind)
                stages.append(_stages(config.tables.embeddings.path, config.stream.checkpoint, t0, seen, health))
        finally:
            stream.stop()
            service.stop()
        names = sorted({k for st in stages for k, v in st.items() if isinstance(v, float)})
        result["paths"][path] = {
            "settings": PATHS[path] or "defaults",
            "launch_to_running_s": stream.ready_s,
            "launch_to_first_edit_visible_s": launch_to_visible,
            "stream_startup_phases_s": stream.startup_phases(),
            "p50_s": _percentile(latencies, 0.5),
            "p95_s": _percentile(latencies, 0.95),
            "max_s": max(latencies),
            "latencies_s": latencies,
            "kinds": kinds,
            "median_stage_s": {k: round(statistics.median([st[k] for st in stages if k in st]), 3)
                               for k in names},
            "stages_s": stages,
            "median_batch_phases_s": _phases(spark, config.tables.embeddings.sql, embeddings_version),
        }
    for base in ("old", "stream"):
        if {base, "new"} <= set(result["paths"]):
            old, new = result["paths"][base], result["paths"]["new"]
            result[f"ratio_p50_new_over_{base}"] = round(new["p50_s"] / old["p50_s"], 3)
            result[f"ratio_p95_new_over_{base}"] = round(new["p95_s"] / old["p95_s"], 3)
            result[f"ratio_launch_to_visible_new_over_{base}"] = round(
                new["launch_to_first_edit_visible_s"] / old["launch_to_first_edit_visible_s"], 3)
    print(json.dumps(result, indent=2))
    spark.stop()


if __name__ == "__main__":
    main()
