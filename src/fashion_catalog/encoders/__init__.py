"""The CLIP model stack, Spark-free: loading and encoding (fp32 / bf16 / int8), image reading, vectors,
the MLflow pyfunc and registry, the serving-endpoint client, the encoder factory and the random test CLIP.

Nothing here imports pyspark (an import-linter contract): the served model ships this package alone.
"""
