"""Operations and the page: /health, product images and the web page."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

from fashion_catalog.app.deps import ServicesDep
from fashion_catalog.app.models import errors
from fashion_catalog.encoders.images import ImageError

router = APIRouter()
STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")


@router.get("/health", tags=["ops"])
def health(services: ServicesDep) -> dict[str, Any]:
    """Index synced version, lag behind the table, rows, the last sync error, and the query model.

    ``status`` is ``ok``, ``index_not_ready`` (nothing synced yet) or ``degraded`` (the last
    background sync failed, or the sync loop stopped: results may be stale; see ``index.last_sync_error``).
    """
    status = dict(services.store.health(), last_sync_error=services.syncer.problem())
    age = None if status.get("last_sync_at") is None else round(time.time() - status["last_sync_at"], 3)
    config = services.config
    state = "index_not_ready" if not status["ready"] else "degraded" if status["last_sync_error"] else "ok"
    return {"status": state,
            "index": status, "seconds_since_sync": age, "model": config.model.id,
            "model_source": config.model.name_or_path, "users": len(services.users)}


@router.get("/images/{product_id}", tags=["catalog"], response_class=Response,
            responses={200: {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                                         for t in ("image/jpeg", "image/png")},
                             "description": "The photo"}, **errors(404)})
def image(product_id: int, services: ServicesDep) -> Response:
    """The product's photo."""
    row = services.store.get(product_id)  # the stored path, never shown: only read through the allowed roots
    if row is None:
        raise HTTPException(404, f"product {product_id} not found")
    try:
        data = services.images.read(row.get("image_path"))
    except ImageError as exc:
        raise HTTPException(404, f"product {product_id} has no readable image ({exc.code})") from None
    kind = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return Response(data, media_type=kind, headers={"Cache-Control": "max-age=300"})


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(os.path.join(STATIC, "index.html"))
