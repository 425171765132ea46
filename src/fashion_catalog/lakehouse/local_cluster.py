"""Local stand-ins for where the platform team runs the embedder, started from the pip-installed pyspark:

* :class:`ConnectServer` — a Spark Connect server with Delta (what Databricks Standard access mode,
  serverless and Databricks Connect clients talk to);
* :class:`StandaloneCluster` — a Spark standalone master and workers, whose executors run in their
  own JVMs and Python workers (what any Spark cluster does).

Everything binds to 127.0.0.1 (``SPARK_LOCAL_IP``; by default Spark picks the machine's network
address) and is torn down by :meth:`stop` or the context manager, also on failure.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def spark_home() -> str:
    """The pip-installed pyspark's SPARK_HOME (bin/spark-submit, bin/spark-class, jars/)."""
    from pyspark.find_spark_home import _find_spark_home

    return _find_spark_home()


def loopback_env(**extra: str) -> dict[str, str]:
    """The environment every process here runs with: loopback only, this interpreter for Python workers."""
    return dict(os.environ, SPARK_LOCAL_IP=LOOPBACK, SPARK_PUBLIC_DNS=LOOPBACK, PYSPARK_PYTHON=sys.executable,
                PYSPARK_DRIVER_PYTHON=sys.executable, **extra)


def _wait_for_line(pattern: str, proc: subprocess.Popen, log_path: str, timeout_s: float) -> re.Match:
    """The first match of ``pattern`` in the process's log: the server binds a free port itself (port 0) and
    says which, so no port is picked here and taken by another process before the server binds it."""
    found = re.compile(pattern)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        match = found.search(Path(log_path).read_text(encoding="utf-8", errors="replace"))
        if match:
            return match
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before logging {pattern!r}; see {log_path}")
        time.sleep(0.25)
    raise TimeoutError(f"no {pattern!r} in {log_path} after {timeout_s}s")


def _stop(proc: subprocess.Popen | None) -> None:
    """Stop a process group started with start_new_session (the JVM and any children)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _conf_args(confs: dict[str, str]) -> list[str]:
    return [arg for key, value in confs.items() for arg in ("--conf", f"{key}={value}")]


class ConnectServer:
    """A local Spark Connect server with Delta on 127.0.0.1 (``sc://127.0.0.1:<port>``)."""

    def __init__(self, work_dir: str | None = None, delta_package: str | None = "io.delta:delta-spark_2.13:4.0.1",
                 master: str = "local[2]", confs: dict[str, str] | None = None, timeout_s: float = 180):
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="spark-connect-")
        os.makedirs(self.work_dir, exist_ok=True)
        self.log_path = os.path.join(self.work_dir, "connect-server.log")
        all_confs = {
            **DELTA_CONFS,
            "spark.connect.grpc.binding.address": LOOPBACK,
            "spark.connect.grpc.binding.port": "0",
            "spark.driver.host": LOOPBACK,
            "spark.driver.bindAddress": LOOPBACK,
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.sql.session.timeZone": "UTC",
            "spark.databricks.delta.snapshotPartitions": "2",
            **(confs or {}),
        }
        args = [os.path.join(spark_home(), "bin", "spark-submit"), "--class", CONNECT_SERVER_CLASS,
                "--master", master, "--name", "fashion-connect-server", *_conf_args(all_confs)]
        if delta_package:
            args += ["--packages", delta_package]
        args.append("spark-internal")
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc: subprocess.Popen | None = subprocess.Popen(
            args, cwd=self.work_dir, env=loopback_env(), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            started = _wait_for_line(rf"Spark Connect server started at: {re.escape(LOOPBACK)}:(\d+)", self.proc,
                                     self.log_path, timeout_s)
        except Exception:
            self.stop()
            raise
        self.port = int(started.group(1))
        self.url = f"sc://{LOOPBACK}:{self.port}"
        log.info("Spark Connect server at %s (log %s)", self.url, self.log_path)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
        self._log.close()

    def __enter__(self) -> ConnectServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class StandaloneCluster:
    """A Spark standalone master and ``workers`` workers on 127.0.0.1 (``spark://127.0.0.1:<port>``)."""

    def __init__(self, workers: int = 2, cores_per_worker: int = 1, memory_per_worker: str = "2g",
                 work_dir: str | None = None, timeout_s: float = 120, gpus_per_worker: int = 0):
        """``gpus_per_worker``: GPU addresses each worker offers Spark's resource scheduling (announced by a
        discovery script; no device is behind them: what is checked is which tasks Spark lets run together)."""
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="spark-standalone-")
        os.makedirs(self.work_dir, exist_ok=True)
        worker_opts = self._gpu_properties(gpus_per_worker) if gpus_per_worker else []
        self.procs: list[subprocess.Popen] = []
        self._logs = []
        self.log_paths: list[str] = []
        spark_class = os.path.join(spark_home(), "bin", "spark-class")
        try:
            self._start("master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", LOOPBACK,
                                   "--port", "0", "--webui-port", "0"])
            started = _wait_for_line(rf"Starting Spark master at (spark://{re.escape(LOOPBACK)}:(\d+))",
                                     self.procs[0], self.log_paths[0], timeout_s)
            self.url, self.port = started.group(1), int(started.group(2))
            for i in range(workers):
                worker_dir = os.path.join(self.work_dir, f"worker-{i}")
                os.makedirs(worker_dir, exist_ok=True)
                self._start(f"worker-{i}", [
                    spark_class, "org.apache.spark.deploy.worker.Worker", "--host", LOOPBACK,
                    "--port", "0", "--webui-port", "0", "--cores", str(cores_per_worker),
                    "--memory", memory_per_worker, "--work-dir", worker_dir, *worker_opts, self.url])
            self._wait_for_workers(workers, timeout_s)
        except Exception:
            self.stop()
            raise
        log.info("standalone cluster at %s with %d workers (logs in %s)", self.url, workers, self.work_dir)

    def _gpu_properties(self, gpus: int) -> list[str]:
        """Worker options announcing ``gpus`` GPU addresses (spark.worker.resource.gpu.*, a discovery script)."""
        script = os.path.join(self.work_dir, "gpus.sh")
        addresses = ", ".join(f'"{i}"' for i in range(gpus))
        Path(script).write_text(f"#!/bin/sh\necho '{{\"name\": \"gpu\", \"addresses\": [{addresses}]}}'\n",
                                encoding="utf-8")
        os.chmod(script, 0o755)
        props = os.path.join(self.work_dir, "worker.properties")
        Path(props).write_text(f"spark.worker.resource.gpu.amount={gpus}\n"
                               f"spark.worker.resource.gpu.discoveryScript={script}\n", encoding="utf-8")
        return ["--properties-file", props]

    def _start(self, name: str, args: list[str]) -> None:
        path = os.path.join(self.work_dir, f"{name}.log")
        handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self._logs.append(handle)
        self.log_paths.append(path)
        self.procs.append(subprocess.Popen(args, cwd=self.work_dir, env=loopback_env(), stdout=handle,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def _wait_for_workers(self, workers: int, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        master_log = Path(self.log_paths[0])
        while time.time() < deadline:
            registered = master_log.read_text(encoding="utf-8", errors="replace").count("Registering worker")
            if registered >= workers:
                return
            for proc, path in zip(self.procs, self.log_paths, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"{path} process exited with {proc.returncode}")
            time.sleep(0.25)
        raise TimeoutError(f"{workers} workers did not register with {self.url} in {timeout_s}s; see {master_log}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)
        self.procs = []
        for handle in self._logs:
            handle.close()
        self._logs = []

    def __enter__(self) -> StandaloneCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
