"""The embedder on a real multi-process Spark cluster, locally: a standalone master and workers on 127.0.0.1.

Starts the cluster, prepares the demo catalog and model like ``make demo``, runs the CDF
stream ``availableNow`` with this process as the driver and the workers' executors doing the
encoding, prints where each batch ran, checks the multimodal table, and tears it all down.
"""

from __future__ import annotations

from fashion_catalog.conf import Config
from fashion_catalog.lakehouse.local_cluster import LOOPBACK, StandaloneCluster


def run_cluster_demo(config: Config, workers: int = 2) -> dict:
    """Run the demo on a local standalone cluster; returns what the check found."""
    import os

    os.environ["SPARK_LOCAL_IP"] = LOOPBACK
    with StandaloneCluster(workers=workers) as cluster:
        print(f"== standalone cluster {cluster.url} with {workers} workers (logs in {cluster.work_dir})")
        cfg = config.model_copy(deep=True)
        cfg.spark.master = cluster.url
        cfg.spark.conf.update({"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK,
                               "spark.executor.memory": "1g", "spark.driver.memory": "2g"})
        cfg.model.encode_partitions = max(cfg.model.encode_partitions, workers)
        from fashion_catalog.catalog.loader import load_catalog
        from fashion_catalog.demo.scenario import describe_model, ensure_demo_catalog, ensure_demo_model
        from fashion_catalog.lakehouse.session import get_spark
        from fashion_catalog.lakehouse.tables import read_table
        from fashion_catalog.streaming.runner import Embedder

        ensure_demo_catalog(cfg)
        spark = get_spark(cfg)
        try:
            print(load_catalog(spark, cfg))
            ensure_demo_model(spark, cfg)
            describe_model(cfg)
            embedder = Embedder(spark, cfg)
            embedder.start_stream("availableNow").awaitTermination()
            batches = embedder.history
            for m in batches:
                print(f"   batch {m.batch_id}: {m.products} products, {m.texts_encoded} texts + {m.images_encoded} "
                      f"images encoded; driver {m.driver}; encoders {m.encoder_workers}")
            products = read_table(spark, cfg.tables.products).count()
            embedded = read_table(spark, cfg.tables.embeddings).count()
            on_executors = all(":executor-" in w for m in batches for w in m.encoder_workers)
            print(f"== check: {embedded} embedded rows for {products} products; "
                  f"encoding ran only in executor processes: {on_executors}")
            return {"products": products, "embedded": embedded, "encoding_on_executors": on_executors,
                    "batches": len(batches)}
        finally:
            spark.stop()
