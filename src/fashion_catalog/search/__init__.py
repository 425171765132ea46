"""Search, the query side, Spark-free: reading a shopper's words (understanding, synonyms), query embeddings,
text search modes and their fusion, the search service over an index back-end (:mod:`fashion_catalog.indexes`),
users for recommendations, and the background refresh of both.

Used by the service (``app``) and by jobs and evaluation; never imports pyspark (an import-linter contract).
"""
