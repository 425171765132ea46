"""Operations and the page: /health, product images and the web page."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

from app.deps import ServicesDep
from encoders.images import ImageError, read_image_bytes
from search.local_index import status_dict

router = APIRouter()
STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")


@router.get("/health", tags=["ops"])
def health(services: ServicesDep) -> dict[str, Any]:
    """Index synced version, lag behind the table, rows, and the query model."""
    status = status_dict(services.store.status())
    age = None if status["last_sync_at"] is None else round(time.time() - status["last_sync_at"], 3)
    config = services.config
    return {"status": "ok" if status["synced_version"] is not None else "index_not_ready",
            "index": status, "seconds_since_sync": age, "model": config.model.id,
            "model_source": config.model.name_or_path, "users": len(services.users)}


@router.get("/images/{product_id}", tags=["catalog"], response_class=Response)
def image(product_id: int, services: ServicesDep) -> Response:
    """The product's photo."""
    row = services.store.get(product_id)
    if row is None:
        raise HTTPException(404, f"product {product_id} not found")
    try:
        data = read_image_bytes(row.get("image_path"), services.limits)
    except ImageError as exc:
        raise HTTPException(404, f"product {product_id} has no readable image ({exc.code})") from None
    kind = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return Response(data, media_type=kind, headers={"Cache-Control": "max-age=300"})


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(os.path.join(STATIC, "index.html"))
