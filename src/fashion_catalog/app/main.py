"""The search service: FastAPI app, its background index sync, the web page and product images.

Run: ``python -m fashion_catalog.app.main --port 8000`` (the configured profile; ``--set key=value`` as every
job), or as FastAPI services are started: ``uvicorn fashion_catalog.app.main:app`` (the module-level ``app``,
configured from ``$FASHION_CONF_PROFILE``, or the default profile, when uvicorn starts it).
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from fashion_catalog.app.errors import install_error_handlers
from fashion_catalog.app.limits import BodySizeLimit
from fashion_catalog.app.openapi import install_openapi
from fashion_catalog.app.routes import site
from fashion_catalog.app.routes.v1 import catalog, search
from fashion_catalog.app.services import build_services
from fashion_catalog.conf import ActionableError, Config, load_config
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


class ServiceFromEnvironment:
    """The module-level ASGI ``app`` for ``uvicorn fashion_catalog.app.main:app`` (or any ASGI server).

    Importing the module builds nothing (tests and tools import ``create_app``): the service is built on
    the first event uvicorn sends, the lifespan start-up, from the environment's profile
    (``$FASHION_CONF_PROFILE``, else ``local``) and, as a Databricks App, its serving endpoint. A known
    mistake (a missing model or table, a bad setting) fails the start-up with its one-line message, which
    uvicorn prints before it exits; anything else keeps its traceback.
    """

    def __init__(self) -> None:
        self._app: FastAPI | None = None
        self._lock = threading.Lock()

    def build(self) -> FastAPI:
        """The service, built once."""
        with self._lock:
            if self._app is None:
                self._app = create_app(with_app_resources(load_config()))
            return self._app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            app = self.build()
        except ActionableError as exc:
            if scope["type"] != "lifespan":
                raise
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.failed", "message": f"error: {exc}"})
            return
        await app(scope, receive, send)


app = ServiceFromEnvironment()


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.app.server import serve
    from fashion_catalog.conf.cli import parser, run, setup

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--host", help="the interface to listen on (default: search.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="the port (default: search.port; 0 picks a free one and prints it)")
    args = p.parse_args(argv)
    # The flags are settings like any other: validated with the rest (a bad port is one line).
    args.set += [f"search.{key}={value}" for key, value in (("host", args.host), ("port", args.port))
                 if value is not None]
    config = with_app_resources(setup(args))

    def start() -> None:
        host, port = bind_address(config)
        serve(create_app(config), config, host, port)

    run(start, args)


if __name__ == "__main__":
    main()
