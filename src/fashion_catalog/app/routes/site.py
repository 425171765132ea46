"""Operations and the page: /health, product images and the web page."""

from __future__ import annotations

import os
import re
import time
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

from fashion_catalog.app.deps import ServicesDep
from fashion_catalog.app.models import IMAGE_MEDIA_TYPES, errors
from fashion_catalog.encoders.images import (
    IMAGE_UNSUPPORTED_FORMAT,
    WEB_FORMATS,
    ImageError,
    file_error,
    image_format,
)
from fashion_catalog.lakehouse.stream_progress import stream_progress

router = APIRouter()
STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")


def public_error(message: str | None) -> str | None:
    """An error as /health shows it: its first line, without file system paths (a backtrace stays in the log)."""
    if not message:
        return None
    first = message.strip().splitlines()[0]
    return _PATH.sub("<path>", first)[:300]


_PATH = re.compile(r"(?:[A-Za-z]+://)?/[^\s'\"]+")


def _stream(services) -> dict[str, Any] | None:
    """How far the stream has read the products table (local backend), or None where the service cannot see it."""
    config = services.config
    products = config.tables.products.path
    if config.search.backend != "local" or products is None:
        return None
    progress = stream_progress(products, config.stream.checkpoint)
    if progress is None:
        return None
    stale = (progress.behind_versions or 0) > 0 and (
        progress.seconds_since_batch is None or progress.seconds_since_batch >= config.search.stream_stale_after_s)
    return {"products_version": progress.products_version, "behind_versions": progress.behind_versions,
            "seconds_since_batch": progress.seconds_since_batch, "stale": stale}


@router.get("/health", tags=["ops"])
def health(services: ServicesDep) -> dict[str, Any]:
    """Index synced version, lag behind the table, rows, the last sync error, the stream's lag, and the model.

    ``status`` is ``ok``, ``index_not_ready`` (nothing synced yet) or ``degraded``: the last background
    sync failed or the sync loop stopped (results may be stale; see ``index.last_sync_error``), or the
    products table is ahead of what the stream has read and no batch has landed for
    ``search.stream_stale_after_s`` (``stream``: the stream stopped). Errors show their first line, no paths.
    """
    status = dict(services.store.health(), last_sync_error=public_error(services.syncer.problem()))
    age = None if status.get("last_sync_at") is None else round(time.time() - status["last_sync_at"], 3)
    stream = _stream(services)
    degraded = status["last_sync_error"] or (stream is not None and stream["stale"])
    state = "index_not_ready" if not status["ready"] else "degraded" if degraded else "ok"
    return {"status": state, "index": status, "stream": stream, "seconds_since_sync": age,
            "model": services.config.model.id, "users": len(services.users)}


@router.get("/images/{product_id}", tags=["catalog"], response_class=Response,
            responses={200: {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                                         for t in IMAGE_MEDIA_TYPES},
                             "description": "The photo"}, **errors(404)})
def image(product_id: int, services: ServicesDep) -> Response:
    """The product's photo: only a file the stream decoded, in a format the service serves."""
    row = services.store.get(product_id)  # the stored path, never shown: only read through the allowed roots
    if row is None:
        raise HTTPException(404, f"product {product_id} not found")
    code = file_error(row.get("embedding_error"))
    if code is not None:
        raise HTTPException(404, f"product {product_id} has no readable image ({code})")
    try:
        data = services.images.read(row.get("image_path"))
    except ImageError as exc:
        raise HTTPException(404, f"product {product_id} has no readable image ({exc.code})") from None
    kind = WEB_FORMATS.get(image_format(data))
    if kind is None:  # the file changed since the stream read it, or was never an image
        raise HTTPException(404, f"product {product_id} has no readable image ({IMAGE_UNSUPPORTED_FORMAT})")
    return Response(data, media_type=kind, headers={"Cache-Control": "max-age=300",
                                                    "X-Content-Type-Options": "nosniff"})


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(os.path.join(STATIC, "index.html"))
