"""The Spark session: local with Delta from Maven Central, or the cluster's own."""

from __future__ import annotations

import logging
import os
import sys

from pyspark.sql import SparkSession

from conf import Config

log = logging.getLogger(__name__)


def get_spark(config: Config) -> SparkSession:
    """Return a Delta-enabled Spark session for this configuration.

    With ``spark.master`` null (Databricks) the active session is reused. Locally,
    Delta's jars come from ``spark.delta_package`` through Spark's resolver (Maven
    Central on first start, the local Ivy cache afterwards).
    """
    active = SparkSession.getActiveSession()
    if config.spark.master is None:
        if active is None:
            return SparkSession.builder.getOrCreate()
        return active
    # Python workers must run this interpreter (the project's virtualenv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(config.spark.master)
        .appName(config.spark.app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.stream.arrow_batch_size))
        .config("spark.sql.session.timeZone", "UTC")
    )
    if config.spark.delta_package:
        builder = builder.config("spark.jars.packages", config.spark.delta_package)
    for key, value in config.spark.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("Spark %s session %s (master %s)", spark.version, config.spark.app_name, config.spark.master)
    return spark
