"""Operations and the page: /health, product images and the web page."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

from app.deps import ServicesDep
from encoders.images import ImageError

router = APIRouter()
STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")


@router.get("/health", tags=["ops"])
def health(services: ServicesDep) -> dict[str, Any]:
    """Index synced version, lag behind the table, rows, and the query model."""
    status = services.store.health()
    age = None if status.get("last_sync_at") is None else round(time.time() - status["last_sync_at"], 3)
    config = services.config
    return {"status": "ok" if status["ready"] else "index_not_ready",
            "index": status, "seconds_since_sync": age, "model": config.model.id,
            "model_source": config.model.name_or_path, "users": len(services.users)}


@router.get("/images/{product_id}", tags=["catalog"], response_class=Response)
def image(product_id: int, services: ServicesDep) -> Response:
    """The product's photo."""
    row = services.store.get(product_id)
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
