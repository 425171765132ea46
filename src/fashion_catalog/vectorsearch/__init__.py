"""Databricks Vector Search, Spark-free: the client, the endpoint and Delta Sync indexes' lifecycle
(create if missing, wait with the client's own helpers), and the stream's sync trigger."""
