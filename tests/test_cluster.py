"""The embedder where the platform team runs it: a real multi-process standalone cluster, a file: checkpoint URI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from urllib.parse import urlparse

import pytest
from chispa import assert_df_equality

from fashion_catalog.lakehouse.local_cluster import loopback_env
from fashion_catalog.lakehouse.tables import read_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.streaming.metrics import history
from fashion_catalog.streaming.runner import Embedder, checkpoint_query_id
from tests.helpers import append_products, draw_image, embedding_rows, product, stream_once


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """A Spark standalone master and one worker of two cores on 127.0.0.1, for the whole test run (its executor
    is a JVM of its own, its Python workers processes of their own: what a cluster's are)."""
    from fashion_catalog.lakehouse.local_cluster import StandaloneCluster

    cluster = StandaloneCluster(workers=1, cores_per_worker=2, memory_per_worker="2g",
                                work_dir=str(tmp_path_factory.mktemp("standalone")))
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_stream_runs_on_a_standalone_cluster_with_encoding_in_executor_processes(spark, workspace, tiny_model_dir,
                                                                                  standalone_cluster):
    config = workspace.config()
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(6)]
    append_products(spark, config, [product(i + 1, imgs[i], product_display_name=f"Cluster product {i}")
                                    for i in range(6)])
    # The job as the platform runs it: its own driver process, the cluster's executors, the model at a
    # path every executor reads (never shipped from the driver's memory).
    args = [sys.executable, "-m", "fashion_catalog.jobs.stream", "--trigger", "availableNow",
            "--set", f"storage.root={workspace.path}/data", "--set", f"images.allowed_roots=[{workspace.path}]",
            "--set", f"model.name_or_path={tiny_model_dir}",
            "--set", "model.id=tiny-clip-test", "--set", "model.torch_threads=1", "--set", "model.encode_partitions=2",
            # Spark tasks encode (a batch this small would otherwise be encoded in the driver: the tiny-batch path).
            "--set", "stream.small_batch_max_rows=0",
            "--set", f"spark.master={standalone_cluster.url}",
            "--set", "spark.conf.spark.executor.memory=1g", "--set", "spark.conf.spark.driver.memory=1g",
            "--set", "spark.conf.spark.driver.host=127.0.0.1", "--set", "spark.conf.spark.driver.bindAddress=127.0.0.1"]
    done = subprocess.run(args, env=loopback_env(), capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-4000:]
    assert_df_equality(read_table(spark, config.tables.products).select(*PRODUCT_COLUMNS),
                       read_table(spark, config.tables.embeddings).select(*PRODUCT_COLUMNS),
                       ignore_row_order=True, ignore_nullable=True)
    [batch] = [m for m in history(spark, config.tables.embeddings, _run_id(spark, config))]
    assert (batch.inserts, batch.texts_encoded, batch.images_encoded) == (6, 6, 6)
    driver_pid = int(batch.driver.rsplit(":", 1)[1])
    workers = [w.split(":") for w in batch.encoder_workers]
    assert workers, "no encoder process recorded"
    for _host, pid, role, jvm in workers:
        assert int(pid) != driver_pid and role.startswith("executor-"), batch.encoder_workers
        assert jvm.startswith("jvm")
    print("cluster batch:", batch)


def _run_id(spark, config) -> str:
    """The run id of the only embedder run recorded in the table's commits."""
    rows = spark.sql(f"DESCRIBE HISTORY {config.tables.embeddings.sql}").filter("userMetadata IS NOT NULL").collect()
    import json

    run_ids = {json.loads(r.userMetadata)["run_id"] for r in rows}
    assert len(run_ids) == 1, run_ids
    return run_ids.pop()


def test_a_reset_file_uri_checkpoint_loses_nothing(spark, workspace):
    """The checkpoint's query id is read through Spark, so file:/ dbfs:/ s3:// checkpoints all key the txn ids."""
    checkpoint = f"file://{workspace.path}/checkpoints/embedder"
    config = workspace.config(stream__checkpoint=checkpoint)
    imgs = [draw_image(f"{workspace.path}/img/{i}.jpg", i) for i in range(3)]
    append_products(spark, config, [product(1, imgs[0]), product(2, imgs[1])])
    first = Embedder(spark, config)
    stream_once(first)
    first_query = checkpoint_query_id(spark, checkpoint)
    assert first_query and first.history[0].app_id.endswith(first_query)
    # Reset: the checkpoint is deleted; meanwhile product 1 changes and product 3 arrives.
    shutil.rmtree(urlparse(checkpoint).path)
    spark.sql(f"UPDATE {config.tables.products.sql} SET price = 500.0 WHERE product_id = 1")
    append_products(spark, config, [product(3, imgs[2])])
    second = Embedder(spark, config)
    batches = stream_once(second)
    # The new checkpoint starts at batch 0 again, under a new query id: Delta must not take it for a replay.
    assert checkpoint_query_id(spark, checkpoint) != first_query
    assert [(b.batch_id, b.inserts, b.updates) for b in batches] == [(0, 1, 1)]
    rows = embedding_rows(spark, config)
    assert sorted(rows) == [1, 2, 3] and rows[1].price == 500.0 and "luxury" in rows[1].description
