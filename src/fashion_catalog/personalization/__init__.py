"""Shopper personas and their style embeddings: the Spark-free rules (``personas``, used by the search
service and evaluation) and the job that writes the user_style_features table (``features``, Spark)."""
