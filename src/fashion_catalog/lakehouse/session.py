"""The Spark session: local with Delta from Maven Central, a Spark Connect server, or the cluster's own."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from fashion_catalog.conf import ActionableError, Config

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def runtime_confs(config: Config) -> dict[str, str]:
    """Session settings every session of this project runs with (settable at runtime, Connect included)."""
    return {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(config.stream.arrow_batch_size),
        "spark.sql.session.timeZone": "UTC",
    }


def set_confs(spark: SparkSession, values: dict[str, str], required: frozenset[str] = frozenset()) -> dict:
    """Set session confs; returns the previous values. A conf the session refuses (a static conf on
    a Connect session; serverless compute allows only some) is skipped unless it is ``required``."""
    previous: dict[str, str | None] = {}
    refused = []
    for key, value in values.items():
        try:
            previous[key] = spark.conf.get(key, None)
            spark.conf.set(key, value)
        except PySparkException:
            if key in required:
                raise
            refused.append(key)
    if refused:
        log.info("session kept its own value of %s (not settable at runtime here)", ", ".join(refused))
    return previous


@contextmanager
def session_confs(spark: SparkSession, values: dict[str, str], required: frozenset[str] = frozenset()
                  ) -> Iterator[None]:
    """Set session confs for the duration of a block and restore them after (see :func:`set_confs`)."""
    previous = set_confs(spark, values, required)
    try:
        yield
    finally:
        for key, value in previous.items():
            try:
                if value is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, value)
            except PySparkException:
                log.debug("could not restore %s", key)


class SessionError(ActionableError, RuntimeError):
    """No Spark session can be had where this process runs."""


def _cluster_session() -> SparkSession:
    """The Databricks cluster's session; off-cluster, Databricks Connect's, or one line saying what to do.

    ``spark.master: null`` means "the cluster's own session": ``SparkSession.builder.getOrCreate()`` off a
    cluster would start a local Spark that then fails on the first three-part table name, long after start.
    """
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return SparkSession.builder.getOrCreate()
    try:
        from databricks.connect import DatabricksSession
    except ImportError:
        raise SessionError(
            "spark.master is null (the Databricks profile) but this is not a Databricks cluster: run the job on "
            "Databricks (databricks bundle run), or pip install databricks-connect and configure a workspace "
            "profile to run it from here, or use --profile local") from None
    return DatabricksSession.builder.getOrCreate()  # the workspace of DATABRICKS_CONFIG_PROFILE / DATABRICKS_HOST


def get_spark(config: Config) -> SparkSession:
    """Return a Delta-enabled Spark session for this configuration.

    * ``spark.remote`` (``sc://host:port``): a Spark Connect session (the server brings Delta);
    * ``spark.master`` null (Databricks): the active session is reused;
    * otherwise a session on ``spark.master`` (``local[2]``, ``spark://host:7077``), with Delta's
      jars from ``spark.delta_package`` through Spark's resolver (Maven Central on first start,
      the local Ivy cache afterwards).
    """
    if config.spark.remote:
        # The Connect client's own builder: it also works in a process that already runs a classic
        # session (the generic builder refuses that).
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        spark = ConnectSession.builder.remote(config.spark.remote).getOrCreate()
        # pyspark.sql.functions builds Connect expressions only in a process marked as a Connect client.
        os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
        set_confs(spark, runtime_confs(config) | config.spark.conf)
        log.info("Spark Connect session on %s (Spark %s)", config.spark.remote, spark.version)
        return spark
    active = SparkSession.getActiveSession()
    if config.spark.master is None:
        spark = active or _cluster_session()
        set_confs(spark, runtime_confs(config))
        return spark
    # Python workers must run this interpreter (the project's virtualenv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(config.spark.master)
        .appName(config.spark.app_name)
        .config("spark.sql.extensions", DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    )
    for key, value in runtime_confs(config).items():
        builder = builder.config(key, value)
    if config.spark.delta_package:
        builder = builder.config("spark.jars.packages", config.spark.delta_package)
    for key, value in config.spark.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("Spark %s session %s (master %s)", spark.version, config.spark.app_name, config.spark.master)
    return spark
