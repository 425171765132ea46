"""Chaos: the stream SIGKILLed at random moments while an editor writes, restarted each time, ends with the
same embeddings table as one run from scratch over the final catalogue.

1. A drawn catalogue (``catalog.demo``) is loaded into ``products``; a tiny random CLIP is built.
2. ``--kills`` times: the stream job starts (processing-time trigger, its own process group); this process
   edits the catalogue through Spark while it runs (renames, reprices, new photos, deletes, new products);
   after a random delay the whole process group gets SIGKILL, mid-start, mid-batch or idle.
3. The stream runs once more with ``availableNow`` to catch up.
4. From scratch: the same job with a new checkpoint and a new embeddings table, ``availableNow``.
5. Both tables are read (through Spark) and compared row for row on every column but ``updated_at`` and
   ``source_commit_version`` (when a row was written, and which commit it reflects, differ by design: the
   scratch run reads one snapshot). Vectors are compared to 1e-5.

Output: one JSON object (kills, when each landed, edits, rows, ``equal``, the first differences).
Usage: ``.venv/bin/python -m bench.chaos --kills 5 --products 40 --seed 0``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

BATCH_LINE = "fashion_catalog.streaming.metrics: batch "  # one line per committed batch in the job's log
RUN_DEPENDENT = ("updated_at", "source_commit_version")
VECTORS = ("image_embedding", "text_embedding", "hybrid_embedding")


def _overrides(work: str, catalog: str, model: str) -> dict[str, object]:
    return {"storage.root": os.path.join(work, "data"), "catalog.source_dir": catalog,
            "model.name_or_path": model, "model.id": "tiny-chaos", "model.torch_threads": 1,
            "images.allowed_roots": [work], "stream.processing_time": "1 second"}


def _args(overrides: dict[str, object]) -> list[str]:
    out: list[str] = []
    for key, value in overrides.items():
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        out += ["--set", f"{key}={text}"]
    return out


def _job(module: str, overrides: dict, *extra: str, log: str) -> subprocess.Popen:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    with open(log, "a", encoding="utf-8") as fh:
        return subprocess.Popen([sys.executable, "-m", module, *_args(overrides), *extra], stdout=fh,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _finish(proc: subprocess.Popen, what: str, timeout_s: float = 600) -> None:
    if proc.wait(timeout=timeout_s) != 0:
        sys.exit(f"{what} failed with exit code {proc.returncode}")


def _edit(spark, table: str, rng: random.Random, next_id: list[int], images: list[str]) -> str:
    ids = [r.product_id for r in spark.sql(f"SELECT product_id FROM {table}").collect()]
    pid = rng.choice(ids)
    kind = rng.choice(["rename", "reprice", "photo", "delete", "insert"])
    if kind == "rename":
        spark.sql(f"UPDATE {table} SET product_display_name = concat(product_display_name, ' Edit') "
                  f"WHERE product_id = {pid}")
    elif kind == "reprice":
        spark.sql(f"UPDATE {table} SET price = price * 3 + 1 WHERE product_id = {pid}")
    elif kind == "photo":
        spark.sql(f"UPDATE {table} SET image_path = :path WHERE product_id = {pid}", {"path": rng.choice(images)})
    elif kind == "delete":
        spark.sql(f"DELETE FROM {table} WHERE product_id = {pid}")
    else:
        new = next_id[0]
        next_id[0] += 1
        spark.sql(f"INSERT INTO {table} SELECT {new} AS product_id, product_display_name, master_category, "
                  f"sub_category, article_type, base_color, price, image_path, gender, season, year, usage "
                  f"FROM {table} WHERE product_id = {pid}")
    return kind


def _table(spark, path: str):
    # Through Spark: the tables carry deletion vectors, which the deltalake reader does not read.
    return spark.read.format("delta").load(path).toPandas().sort_values("product_id").reset_index(drop=True)


def compare(chaos, scratch) -> list[str]:
    """The differences between two embeddings tables (pandas), run-dependent columns left out."""
    diffs = []
    if list(chaos["product_id"]) != list(scratch["product_id"]):
        only = set(chaos["product_id"]) ^ set(scratch["product_id"])
        return [f"product ids differ: {sorted(only)[:10]}"]
    for column in chaos.columns:
        if column in RUN_DEPENDENT:
            continue
        for pid, a, b in zip(chaos["product_id"], chaos[column], scratch[column], strict=True):
            if column in VECTORS:
                same = (a is None and b is None) or (a is not None and b is not None and
                                                     np.allclose(np.asarray(a), np.asarray(b), atol=1e-5))
            else:
                same = (a == b) or (a is None and b is None) or (a != a and b != b)  # NaN == NaN here
            if not same:
                diffs.append(f"product {pid}: {column} {str(a)[:60]!r} != {str(b)[:60]!r}")
    return diffs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--products", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-delay-s", type=float, default=5.0)
    p.add_argument("--max-delay-s", type=float, default=45.0,
                   help="a kill lands min-delay-s to this long after a start (a start takes 10-20 s here)")
    p.add_argument("--work-dir", default="data/bench-chaos")
    args = p.parse_args(argv)

    from fashion_catalog.catalog.demo import generate_demo_catalog
    from fashion_catalog.conf import load_config
    from fashion_catalog.encoders.random_clip import build_random_clip
    from fashion_catalog.lakehouse.session import get_spark

    rng = random.Random(args.seed)
    work = os.path.abspath(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log = os.path.join(work, "jobs.log")
    catalog = generate_demo_catalog(os.path.join(work, "catalog"), n_products=args.products)
    model = build_random_clip(os.path.join(work, "model"), shape="tiny")
    overrides = _overrides(work, catalog, model)
    _finish(_job("fashion_catalog.jobs.load_catalog", overrides, log=log), "load_catalog")

    config = load_config("local", overrides=overrides)
    spark = get_spark(config)
    table = config.tables.products.sql
    images = sorted(os.path.join(catalog, "images", f) for f in os.listdir(os.path.join(catalog, "images")))
    next_id = [10_000]
    kills, edits = [], []
    batches_before_kill = []
    for _ in range(args.kills):
        with open(log, encoding="utf-8") as fh:
            seen = fh.read().count(BATCH_LINE)
        stream = _job("fashion_catalog.jobs.stream", overrides, "--trigger", "processingTime", log=log)
        started = time.monotonic()
        delay = rng.uniform(args.min_delay_s, args.max_delay_s)
        while time.monotonic() - started < delay:
            edits.append(_edit(spark, table, rng, next_id, images))
        os.killpg(stream.pid, signal.SIGKILL)
        stream.wait(timeout=60)
        kills.append(round(time.monotonic() - started, 1))
        with open(log, encoding="utf-8") as fh:
            batches_before_kill.append(fh.read().count(BATCH_LINE) - seen)
    _finish(_job("fashion_catalog.jobs.stream", overrides, "--trigger", "availableNow", log=log), "catch-up")
    scratch = dict(overrides, **{"tables.embeddings.path": os.path.join(work, "scratch", "embeddings"),
                                 "stream.checkpoint": os.path.join(work, "scratch", "checkpoint")})
    _finish(_job("fashion_catalog.jobs.stream", scratch, "--trigger", "availableNow", log=log), "scratch run")
    chaos_rows = _table(spark, config.tables.embeddings.path)
    scratch_rows = _table(spark, os.path.join(work, "scratch", "embeddings"))
    products = _table(spark, config.tables.products.path)
    spark.stop()
    diffs = compare(chaos_rows, scratch_rows)
    print(json.dumps({
        "benchmark": "chaos", "seed": args.seed, "kills": len(kills), "kill_after_s": kills,
        "batches_committed_before_each_kill": batches_before_kill,
        "edits": len(edits), "edits_by_kind": {k: edits.count(k) for k in sorted(set(edits))},
        "products": len(products), "rows_chaos": len(chaos_rows), "rows_scratch": len(scratch_rows),
        "compared_columns": [c for c in chaos_rows.columns if c not in RUN_DEPENDENT],
        "equal": not diffs and len(chaos_rows) == len(products), "differences": diffs[:20],
    }, indent=2))


if __name__ == "__main__":
    main()
