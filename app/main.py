"""The search service: FastAPI app, its background index sync, the web page and product images.

Run: ``python -m app.main`` (uses the configured profile; ``--set search.port=8080`` etc.).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response

from app.index.ann import AnnParams
from app.index.local_index import IndexNotReadyError, LocalIndexStore, status_dict
from app.routes.v1.search import router
from app.services.clip_service import ClipService
from app.services.personas import compute_user_features, load_personas
from app.services.vector_search_service import VectorSearchService
from conf import Config
from udfs.images import ImageError, ImageLimits, read_image_bytes

log = logging.getLogger(__name__)
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def _read_user_features(config: Config) -> dict[str, dict] | None:
    ref = config.tables.user_features
    if ref is None or ref.path is None or not os.path.isdir(os.path.join(ref.path, "_delta_log")):
        return None
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    table = pa.table(QueryBuilder().register("u", DeltaTable(ref.path)).execute("SELECT * FROM u").read_all())
    return {r["user_id"]: r for r in table.to_pylist()}


class IndexSyncer(threading.Thread):
    """Pulls the multimodal table's Change Data Feed into the local index every few seconds."""

    def __init__(self, app: FastAPI, interval_s: float):
        super().__init__(daemon=True, name="index-sync")
        self.app, self.interval_s = app, interval_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            refresh(self.app)
            self.stop_event.wait(self.interval_s)


def refresh(app: FastAPI) -> None:
    """One sync of the index, and of the user features when the index changed."""
    store: LocalIndexStore = app.state.store
    before = store.synced_version
    try:
        store.sync()
    except IndexNotReadyError as exc:
        log.debug("index not ready: %s", exc)
        return
    except Exception:  # noqa: BLE001 - the service keeps serving the last synced state
        log.exception("index sync failed")
        return
    if before != store.synced_version or not app.state.users:
        app.state.users = _read_user_features(app.state.config) or _users_from_index(store)


def _users_from_index(store: LocalIndexStore) -> dict[str, dict]:
    """Persona features computed from the index when the user_style_features table is absent."""
    meta, hybrid, has = store.live_rows("hybrid")
    frame = compute_user_features(load_personas(), meta, hybrid, has)
    return {r["user_id"]: r for r in frame.to_dict("records")}


def ann_params(config: Config) -> AnnParams:
    """The local index's approximate-search settings from ``config.search``."""
    se = config.search
    return AnnParams(kind=se.approximate_index, nprobe=se.ivf_nprobe, ef_search=se.ef_search)


def create_app(config: Config, encoder: Any = None, store: LocalIndexStore | None = None,
               background_sync: bool = True) -> FastAPI:
    """Build the service. ``encoder`` defaults to the configured one (CLIP folder, models:/ URI or endpoint)."""
    if config.search.backend != "local":
        raise NotImplementedError("search.backend 'databricks' is not available in this build; use 'local'")
    if encoder is None:
        from udfs.encoders import EncoderSpec

        encoder = EncoderSpec.from_config(config).encoder()
    store = store or LocalIndexStore(config.tables.embeddings.path, config.model.dimension,
                                     config.search.approximate_threshold, ann=ann_params(config),
                                     exact_max_candidates=config.search.exact_max_candidates)
    syncer: IndexSyncer | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if syncer:
            syncer.start()
        yield
        if syncer:
            syncer.stop_event.set()

    app = FastAPI(title="Fashion multimodal search", version="1.0", lifespan=lifespan,
                  description="Text, photo and hybrid search, recommendations and zero-shot classification "
                              "over the product_embeddings_multimodal table.")
    limits = ImageLimits(config.images.max_bytes, config.images.max_pixels, config.images.base_dir)
    app.state.config = config
    app.state.store = store
    app.state.clip = ClipService(encoder, limits, config.search.max_upload_bytes, config.model.id)
    app.state.search = VectorSearchService(store, config.search.max_limit)
    app.state.users = {}
    app.include_router(router)
    refresh(app)
    if background_sync:
        syncer = IndexSyncer(app, config.search.sync_interval_s)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, Any]:
        """Index synced version, lag behind the table, rows, and the query model."""
        status = status_dict(store.status())
        age = None if status["last_sync_at"] is None else round(time.time() - status["last_sync_at"], 3)
        return {"status": "ok" if status["synced_version"] is not None else "index_not_ready",
                "index": status, "seconds_since_sync": age, "model": config.model.id,
                "model_source": config.model.name_or_path, "users": len(app.state.users)}

    @app.get("/images/{product_id}", tags=["catalog"], response_class=Response)
    def image(product_id: int) -> Response:
        row = store.get(product_id)
        if row is None:
            raise HTTPException(404, f"product {product_id} not found")
        try:
            data = read_image_bytes(row.get("image_path"), limits)
        except ImageError as exc:
            raise HTTPException(404, f"product {product_id} has no readable image ({exc.code})") from None
        kind = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
        return Response(data, media_type=kind, headers={"Cache-Control": "max-age=300"})

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(os.path.join(STATIC, "index.html"))

    @app.get("/api/v1/facets", tags=["search"])
    def facets(request: Request) -> dict[str, list[str]]:
        """Values for the page's filter pickers."""
        svc = request.app.state.search
        return {c: svc.distinct_values(c) for c in ("gender", "base_color", "master_category", "article_type")}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from jobs.cli import parser, setup

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    config = setup(args)
    uvicorn.run(create_app(config), host=config.search.host, port=config.search.port, log_level="info")


if __name__ == "__main__":
    main()
