"""The embedder where the platform team runs it: a real multi-process standalone cluster (with the GPU job's
scheduling settings), a file: checkpoint URI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from urllib.parse import urlparse

import pytest
import yaml
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

    cluster = StandaloneCluster(workers=1, cores_per_worker=2, memory_per_worker="2g", gpus_per_worker=1,
                                work_dir=str(tmp_path_factory.mktemp("standalone")))
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_stream_runs_on_a_standalone_cluster_with_encoding_in_executor_processes(spark, workspace, tiny_model_dir,
                                                                                  standalone_cluster):
    config = workspace.config()
    gpu_conf, encode_task_gpus = _gpu_job_scheduling()
    events_dir = f"{workspace.path}/spark-events"
    os.makedirs(events_dir)
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
            "--set", "spark.conf.spark.driver.host=127.0.0.1", "--set", "spark.conf.spark.driver.bindAddress=127.0.0.1",
            # The GPU backfill job's scheduling (Databricks gives each executor its node's GPUs; here the worker
            # announces one): its fractional task amount for every stage, a whole GPU for the encoding stages.
            "--set", "spark.conf.spark.executor.resource.gpu.amount=1",
            "--set", f"spark.conf.spark.task.resource.gpu.amount={gpu_conf}",
            "--set", f"model.encode_task_gpus={encode_task_gpus}",
            "--set", "spark.conf.spark.eventLog.enabled=true", "--set", "spark.conf.spark.eventLog.compress=false",
            "--set", "spark.conf.spark.eventLog.rolling.enabled=false",
            "--set", f"spark.conf.spark.eventLog.dir=file://{events_dir}"]
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
    _assert_encoding_stages_take_a_whole_gpu(events_dir, float(gpu_conf), float(encode_task_gpus))
    print("cluster batch:", batch)


def _gpu_job_scheduling() -> tuple[str, str]:
    """(spark.task.resource.gpu.amount, model.encode_task_gpus) as resources/backfill_gpu.job.yml sets them."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "resources", "backfill_gpu.job.yml"), encoding="utf-8") as fh:
        job = yaml.safe_load(fh)["resources"]["jobs"]["backfill_gpu"]
    conf = job["job_clusters"][0]["new_cluster"]["spark_conf"]
    params = job["tasks"][0]["python_wheel_task"]["parameters"]
    [gpus] = [p.split("=", 1)[1] for p in params if p.startswith("model.encode_task_gpus=")]
    return conf["spark.task.resource.gpu.amount"], gpus


def _assert_encoding_stages_take_a_whole_gpu(events_dir: str, task_gpus: float, encode_gpus: float) -> None:
    """From the driver's event log: the stages that ran under a profile asking ``encode_gpus`` GPUs per task
    are the two encoding stages, and their tasks never overlapped on the executor's one GPU; every other
    stage ran under the default profile with the fractional amount."""
    [log_file] = os.listdir(events_dir)
    with open(os.path.join(events_dir, log_file), encoding="utf-8") as fh:
        events = [json.loads(line) for line in fh]
    gpu_amount = {e["Resource Profile Id"]: e["Task Resource Requests"].get("gpu", {}).get("Amount")
                  for e in events if e["Event"] == "SparkListenerResourceProfileAdded"}
    assert gpu_amount[0] == task_gpus, gpu_amount
    stages = {e["Stage Info"]["Stage ID"]: e["Stage Info"] for e in events
              if e["Event"] == "SparkListenerStageCompleted"}
    encoding = {sid for sid, info in stages.items() if gpu_amount[info["Resource Profile Id"]] == encode_gpus}
    # The stages that ran the model read the rows to encode from the shuffle into encode_partitions: one per
    # modality. (The later jobs that broadcast the cached vectors inherit the profile through their lineage;
    # they read the cache, no shuffle, and run no model.)
    shuffled: dict[int, int] = {}
    for e in events:
        if e["Event"] == "SparkListenerTaskEnd" and e.get("Task Metrics"):
            read = e["Task Metrics"].get("Shuffle Read Metrics", {}).get("Total Records Read", 0)
            shuffled[e["Stage ID"]] = shuffled.get(e["Stage ID"], 0) + read
    model_stages = {sid for sid in encoding if shuffled.get(sid)}
    assert len(model_stages) == 2, {sid: (stages[sid]["Resource Profile Id"], shuffled.get(sid)) for sid in stages}
    assert len(stages) > len(encoding)  # hashing, planning and the MERGE share the GPU at the default amount
    # Each model task's time on the executor (launch + deserialising + running; the driver's finish time also
    # counts sending the result back, while the executor already runs the next task).
    runs: dict[str, list] = {}
    for e in events:
        if e["Event"] == "SparkListenerTaskEnd" and e["Stage ID"] in model_stages:
            info, metrics = e["Task Info"], e["Task Metrics"]
            busy = metrics["Executor Deserialize Time"] + metrics["Executor Run Time"]
            runs.setdefault(info["Executor ID"], []).append((info["Launch Time"], info["Launch Time"] + busy))
    assert sum(map(len, runs.values())) >= 4, runs  # encode_partitions (2) tasks per modality
    for spans in runs.values():
        spans.sort()
        overlapping = [(a, b) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]
        assert not overlapping, f"encoding tasks overlapped on one GPU: {spans}"


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
