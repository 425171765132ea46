"""What the routes work with, built once per app: the search service, the query encoder, the users, the syncer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conf import Config, ConfigError
from encoders.images import ImageLimits
from search.ann import AnnParams
from search.local_index import LocalIndexStore
from search.queries import QueryEncoder
from search.service import SearchService
from search.syncer import IndexSyncer
from search.users import UserDirectory


@dataclass
class Services:
    """The service's collaborators; routes receive them through FastAPI dependencies (``app.deps``)."""

    config: Config
    store: LocalIndexStore
    search: SearchService
    queries: QueryEncoder
    users: UserDirectory
    syncer: IndexSyncer
    limits: ImageLimits


def ann_params(config: Config) -> AnnParams:
    """The local index's approximate-search settings from ``config.search``."""
    se = config.search
    return AnnParams(kind=se.approximate_index, nprobe=se.ivf_nprobe, ef_search=se.ef_search)


def build_services(config: Config, encoder: Any = None, store: LocalIndexStore | None = None) -> Services:
    """Wire the collaborators; ``encoder`` defaults to the configured one (CLIP folder, models:/ URI or endpoint)."""
    if config.search.backend != "local":
        raise ConfigError("search.backend 'databricks' is not served by this build yet; use 'local'")
    if encoder is None:
        from encoders.factory import EncoderSpec

        encoder = EncoderSpec.from_config(config).encoder()
    se = config.search
    store = store or LocalIndexStore(config.tables.embeddings.path, config.model.dimension, se.approximate_threshold,
                                     ann=ann_params(config), exact_max_candidates=se.exact_max_candidates)
    limits = ImageLimits.from_config(config)
    users_table = config.tables.user_features.path if config.tables.user_features else None
    users = UserDirectory(users_table)
    return Services(
        config=config, store=store, search=SearchService(store, se.max_limit),
        queries=QueryEncoder(encoder, limits, se.max_upload_bytes, config.model.id), users=users,
        syncer=IndexSyncer(store, users, se.sync_interval_s), limits=limits,
    )
