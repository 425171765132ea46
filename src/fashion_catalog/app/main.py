"""The search service: FastAPI app, its background index sync, the web page and product images.

Run: ``python -m fashion_catalog.app.main`` (uses the configured profile; ``--set search.port=8080`` etc.).
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from fashion_catalog.app.errors import install_error_handlers
from fashion_catalog.app.limits import BodySizeLimit
from fashion_catalog.app.openapi import install_openapi
from fashion_catalog.app.routes import site
from fashion_catalog.app.routes.v1 import catalog, search
from fashion_catalog.app.services import build_services
from fashion_catalog.conf import Config, ConfigError
from fashion_catalog.indexes.local import LocalIndexStore

log = logging.getLogger(__name__)


def create_app(config: Config, encoder: Any = None, store: LocalIndexStore | None = None,
               background_sync: bool = True) -> FastAPI:
    """Build the service. ``encoder`` defaults to the configured one (CLIP folder, models:/ URI or endpoint)."""
    services = build_services(config, encoder, store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if background_sync:
            services.syncer.start()
        yield
        services.syncer.stop()

    app = FastAPI(title="Fashion multimodal search", version="1.0", lifespan=lifespan,
                  description="Text, photo and hybrid search, recommendations and zero-shot classification "
                              "over the product_embeddings_multimodal table.")
    app.state.services = services
    install_error_handlers(app)
    se = config.search
    app.add_middleware(BodySizeLimit, max_bytes=se.max_upload_bytes + se.max_form_bytes,
                       max_json_bytes=se.max_json_bytes)
    for module in (search, catalog, site):
        app.include_router(module.router)
    install_openapi(app, config)
    services.syncer.refresh(services.syncer.sync_index)
    return app


def refresh(app: FastAPI) -> None:
    """One sync of the app's index (and users), now."""
    app.state.services.syncer.refresh()


APP_PORT_ENV = "DATABRICKS_APP_PORT"


def bind_address(config: Config) -> tuple[str, int]:
    """Where to listen: ``search.host``/``search.port``, or, as a Databricks App, every interface on the
    port the platform gives (``$DATABRICKS_APP_PORT``)."""
    if os.environ.get(APP_PORT_ENV):
        return "0.0.0.0", int(os.environ[APP_PORT_ENV])  # noqa: S104 - the App platform's proxy connects here
    return config.search.host, config.search.port


SERVING_ENDPOINT_ENV = "FASHION_SERVING_ENDPOINT"


def with_app_resources(config: Config) -> Config:
    """As a Databricks App, query embeddings come from the Model Serving endpoint the App was given
    (``$FASHION_SERVING_ENDPOINT``, an endpoint name, on ``$DATABRICKS_HOST``)."""
    endpoint, host = os.environ.get(SERVING_ENDPOINT_ENV), os.environ.get("DATABRICKS_HOST")
    if not (endpoint and host):
        return config
    host = host if host.startswith("http") else f"https://{host}"
    updated = config.model_copy(deep=True)
    updated.model.name_or_path = f"{host.rstrip('/')}/serving-endpoints/{endpoint}/invocations"
    return updated


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.app.server import serve
    from fashion_catalog.conf.cli import parser, setup

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    config = with_app_resources(setup(args))
    try:
        app = create_app(config)
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    host, port = bind_address(config)
    serve(app, config, host, port)


if __name__ == "__main__":
    main()
