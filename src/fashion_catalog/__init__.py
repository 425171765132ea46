"""Fashion multimodal search catalog: an incremental CLIP embedder on Spark + Delta, and its search service.

Every package of the product lives under this one import root, so the wheel installs a single
top-level name beside a Databricks ML runtime's own packages (which include a top-level
``streaming``, from mosaicml-streaming): ``fashion_catalog.streaming``, ``fashion_catalog.jobs``, ...
"""
