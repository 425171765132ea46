"""Search, Spark-free: the local vector index that follows the multimodal table's change feed, the
approximate indexes, filters, the Databricks Vector Search backend, query embeddings and the search service.

Used by the service (``app``) and by jobs and evaluation; never imports pyspark (an import-linter contract).
"""
