"""Serve the app with uvicorn, bounded: a client that sends its headers or its body too slowly is closed, and
the connections and tasks taken at once are capped (503 above).

uvicorn has a keep-alive timeout but none for a request in progress: a client that sends one header line, or
one body byte, every few seconds holds its connection (and a slot) forever. :func:`bounded_protocol` is
uvicorn's own h11 protocol with two deadlines: the headers must be in within ``search.header_timeout_s`` of
the first byte (or of the connection), the body within ``search.body_timeout_s`` of the headers.
"""

from __future__ import annotations

import logging
import socket

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from fashion_catalog.conf import Config

log = logging.getLogger(__name__)


def bounded_protocol(header_timeout_s: float, body_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a request whose headers or body do not arrive in time."""

    class BoundedH11Protocol(H11Protocol):
        _deadline = None
        _phase: str | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm("headers", header_timeout_s)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _follow(self) -> None:
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                if self._phase != "body":
                    self._arm("body", body_timeout_s)
            elif state is h11.IDLE:
                if self._phase is None and self.conn.trailing_data[0]:  # part of the next request's headers
                    self._arm("headers", header_timeout_s)
            else:  # the request is in (DONE) or the connection is ending
                self._disarm()

        def _arm(self, phase: str, seconds: float) -> None:
            self._disarm()
            self._phase = phase
            self._deadline = self.loop.call_later(seconds, self._too_slow, phase, seconds)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline, self._phase = None, None

        def _too_slow(self, phase: str, seconds: float) -> None:
            self._deadline = None
            log.warning("closing a connection from %s: its request %s took longer than %.0f s", self.client, phase,
                        seconds)
            self.transport.close()

    return BoundedH11Protocol


def serve(app, config: Config, host: str, port: int) -> None:
    """Run ``app`` on ``host:port`` (port 0: a free one, bound here and logged) until interrupted."""
    import uvicorn

    se = config.search
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(
        app, http=bounded_protocol(se.header_timeout_s, se.body_timeout_s), limit_concurrency=se.limit_concurrency,
        timeout_keep_alive=5, log_level="info"))
    # A caller that asked for port 0 reads the port from this line (bench.service.ServiceProcess does).
    print(f"fashion search service listening on http://{host}:{bound}", flush=True)
    server.run(sockets=[sock])
