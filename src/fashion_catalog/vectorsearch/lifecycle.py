"""Create the Vector Search endpoint and the image, text and hybrid Delta Sync indexes, and wait for them,
with the client's own helpers (``endpoint_exists``, ``create_endpoint_and_wait``, ``index_exists``,
``wait_until_ready``)."""

from __future__ import annotations

import datetime
import logging

from fashion_catalog.conf import Config, ConfigError
from fashion_catalog.schemas import INDEX_KINDS, KEYWORD_EXTRA_COLUMNS, METADATA_COLUMNS
from fashion_catalog.vectorsearch.client import make_client

log = logging.getLogger(__name__)


def ensure_endpoint(client, name: str, endpoint_type: str, timeout_s: float) -> bool:
    """Create the endpoint if missing and wait until it is ONLINE; True when it was created."""
    if client.endpoint_exists(name):
        client.wait_for_endpoint(name, timeout=datetime.timedelta(seconds=timeout_s))
        return False
    log.info("creating Vector Search endpoint %s (%s)", name, endpoint_type)
    client.create_endpoint_and_wait(name=name, endpoint_type=endpoint_type,
                                    timeout=datetime.timedelta(seconds=timeout_s))
    return True


def create_indexes(client, endpoint_name: str, index_names: dict[str, str], source_table: str,
                   pipeline_type: str, dimension: int, timeout_s: float = 3600) -> dict:
    """Create (if missing) the image/text/hybrid Delta Sync indexes with self-managed embeddings; wait until ready.

    Every metadata column is synced with the vector, so queries return whole products and
    filters can use any of them (the vector column too, so a product's vector can be read back),
    and the description, which keyword and hybrid queries search with the name.
    """
    for kind, column in INDEX_KINDS.items():
        name = index_names[kind]
        if client.index_exists(endpoint_name=endpoint_name, index_name=name):
            log.info("index %s exists", name)
            continue
        log.info("creating Delta Sync index %s on %s (%s, %s)", name, source_table, column, pipeline_type)
        client.create_delta_sync_index(
            endpoint_name=endpoint_name, index_name=name, primary_key="product_id",
            source_table_name=source_table, pipeline_type=pipeline_type, embedding_dimension=dimension,
            embedding_vector_column=column, columns_to_sync=METADATA_COLUMNS + KEYWORD_EXTRA_COLUMNS + [column])
    states = {}
    for kind in INDEX_KINDS:
        index = client.get_index(endpoint_name=endpoint_name, index_name=index_names[kind])
        index.wait_until_ready(timeout=datetime.timedelta(seconds=timeout_s))
        states[index_names[kind]] = True
    return states


def create_configured_indexes(config: Config, client=None, timeout_s: float = 3600) -> dict:
    """The endpoint and the three indexes ``config.vector_search`` names over ``tables.embeddings``."""
    ref = config.tables.embeddings
    if not ref.name:
        raise ConfigError("Delta Sync indexes need a Unity Catalog table: use the databricks profile "
                          "(tables.embeddings.name), not a path-based table")
    vs = config.vector_search
    client = client or make_client(vs.workspace_url)
    ensure_endpoint(client, vs.endpoint_name, vs.endpoint_type, timeout_s)
    return create_indexes(client, vs.endpoint_name, vs.indexes, ref.name, vs.pipeline_type,
                          config.model.dimension, timeout_s)
