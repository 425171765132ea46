"""What the routes work with, built once per app: the search service, the query encoder, the users, the syncer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fashion_catalog.conf import Config, ConfigError
from fashion_catalog.encoders.batching import BatchingEncoder
from fashion_catalog.encoders.images import ImageLimits
from fashion_catalog.indexes.ann import AnnParams
from fashion_catalog.indexes.images import ImageReader
from fashion_catalog.indexes.local import LocalIndexStore
from fashion_catalog.indexes.store import IndexStore
from fashion_catalog.indexes.watch import DeltaLogWatch
from fashion_catalog.search.queries import QueryEncoder
from fashion_catalog.search.service import SearchService
from fashion_catalog.search.syncer import IndexSyncer
from fashion_catalog.search.text_search import TextSearch
from fashion_catalog.search.users import UserDirectory


@dataclass
class Services:
    """The service's collaborators; routes receive them through FastAPI dependencies (``app.deps``)."""

    config: Config
    store: IndexStore
    search: SearchService
    queries: QueryEncoder
    text: TextSearch
    users: UserDirectory
    syncer: IndexSyncer
    limits: ImageLimits
    images: ImageReader


def ann_params(config: Config) -> AnnParams:
    """The local index's approximate-search settings from ``config.search``."""
    se = config.search
    return AnnParams(kind=se.approximate_index, nprobe=se.ivf_nprobe, ef_search=se.ef_search)


def _local_backend(config: Config) -> tuple[IndexStore, UserDirectory, ImageReader]:
    se = config.search
    if config.tables.embeddings.path is None:
        raise ConfigError("search.backend 'local' follows a path-based embeddings table (tables.embeddings.path); "
                          "for a Unity Catalog table use search.backend: databricks")
    store = LocalIndexStore(config.tables.embeddings.path, config.model.dimension, se.approximate_threshold,
                            ann=ann_params(config), exact_max_candidates=se.exact_max_candidates)
    users_table = config.tables.user_features.path if config.tables.user_features else None
    return store, UserDirectory(users_table), ImageReader(ImageLimits.from_config(config))


def _table_watch(config: Config) -> DeltaLogWatch | None:
    """The local backend follows a table on this machine: its commits wake the sync (search.watch_poll_s)."""
    from fashion_catalog.lakehouse.direct import local_path

    path = local_path(config.tables.embeddings.path)
    if config.search.backend != "local" or not config.search.watch_poll_s or path is None:
        return None
    return DeltaLogWatch(path, config.search.watch_poll_s)


def _databricks_backend(config: Config) -> tuple[IndexStore, UserDirectory, ImageReader]:
    from fashion_catalog.indexes.databricks import DatabricksStore
    from fashion_catalog.indexes.workspace import SqlWarehouse, VolumeFiles, require_reachable, workspace_client
    from fashion_catalog.vectorsearch.client import make_client

    vs = config.vector_search
    require_reachable(vs.workspace_url)
    workspace = workspace_client(vs.workspace_url)
    warehouse = SqlWarehouse(workspace, vs.warehouse_id)
    table = config.tables.embeddings.name or config.tables.embeddings.sql
    store = DatabricksStore(vs.endpoint_name, vs.indexes, client=make_client(vs.workspace_url),
                            dimension=config.model.dimension, table_name=table, warehouse=warehouse,
                            endpoint_type=vs.endpoint_type)
    users_ref = config.tables.user_features
    users = UserDirectory(warehouse=warehouse, table_name=users_ref.name or users_ref.sql) if users_ref \
        else UserDirectory()
    return store, users, ImageReader(ImageLimits.from_config(config), volumes=VolumeFiles(workspace))


def build_services(config: Config, encoder: Any = None, store: IndexStore | None = None) -> Services:
    """Wire the collaborators for ``search.backend``; ``encoder`` defaults to the configured one."""
    if encoder is None:
        from fashion_catalog.encoders.factory import EncoderSpec

        encoder = EncoderSpec.from_config(config).encoder()
    se = config.search
    if se.batch_queries:
        encoder = BatchingEncoder(encoder, se.max_query_batch)
    built_store, users, images = (_databricks_backend if se.backend == "databricks" else _local_backend)(config)
    store = store or built_store
    limits = ImageLimits.from_config(config)
    search = SearchService(store, se.max_limit, limits)
    queries = QueryEncoder(encoder, limits, se.max_upload_bytes, config.model.id,
                           max_upload_pixels=se.max_upload_pixels, max_concurrent=se.max_concurrent_decodes)
    return Services(
        config=config, store=store, search=search, queries=queries,
        text=TextSearch.from_config(config, search, queries), users=users,
        # Databricks indexes are synced by the stream (or run CONTINUOUS); the service only reads them.
        syncer=IndexSyncer(store, users, se.sync_interval_s, sync_index=se.backend == "local",
                           signal=_table_watch(config)),
        limits=limits, images=images,
    )
