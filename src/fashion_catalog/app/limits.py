"""Request-size bounds enforced before the body is read: a multi-GB upload never reaches the temp folder.

Starlette spools a multipart body to disk while parsing it, before a route can look at the
file size. This ASGI middleware answers 413 from ``Content-Length`` alone, and, for bodies
sent without one (chunked), stops reading as soon as the bound is passed. Uploads (multipart,
form) get the upload bound; every other body is JSON to the routes and gets its own, much
smaller bound (``search.max_json_bytes``), so a JSON body is never parsed at megabytes.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestTooLargeError(HTTPException):
    """The body passed the bound while it was being read (an HTTPException, so FastAPI answers 413)."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` (413), without reading them."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int | None = None):
        self.app = app
        self.max_upload_bytes = max_bytes
        self.max_json_bytes = max_json_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        limit = self.max_upload_bytes if kind in _FORM_TYPES else self.max_json_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _answer(send, 400, "Content-Length is not a number")
                return
            if size > limit:
                await _answer(send, 413, f"the request body has {size} bytes; the limit is {limit}")
                return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLargeError(limit)
            return message

        await self.app(scope, bounded, send)


# Bodies that carry an upload; any other body is read as JSON.
_FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
