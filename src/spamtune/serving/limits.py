"""Request limits of the service: sizes per request (`ServeLimits`) and the body-size limit as ASGI middleware
(`BodyLimit`), which counts bytes as they arrive so no client can make the server hold more than the limit."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.responses import JSONResponse

DRAIN_LIMIT = 32 * 2**20  # over-limit bodies up to this size are read and discarded before the 413


@dataclass
class ServeLimits:
    max_texts: int = 64  # texts per request
    max_chars: int = 20_000  # characters per text (longer messages would be truncated to max_length tokens anyway)
    max_body_bytes: int = 2_000_000
    max_batch: int = 64  # texts per forward pass across requests
    batch_window_ms: float = 5.0


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`. Content-Length is checked up front; a chunked POST
    (no Content-Length) is counted as it arrives and held only up to the limit, so an endless upload costs at most
    DRAIN_LIMIT bytes read and `max_bytes` held."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length")
        if size is not None:
            if size.isdigit() and int(size) <= self.max_bytes:
                return await self.app(scope, receive, send)
            if size.isdigit() and int(size) <= DRAIN_LIMIT:
                # read and discard it first: a client still uploading would otherwise see a broken pipe, not the 413
                await self._drain(receive, 0)
            return await self._too_large(scope, receive, send)
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        held: list[dict] = []
        seen = 0
        while True:
            message = await receive()
            held.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see it
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                if message.get("more_body"):
                    await self._drain(receive, seen)
                return await self._too_large(scope, receive, send)
            if not message.get("more_body"):
                break

        async def replay() -> dict:
            return held.pop(0) if held else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive, seen: int) -> None:
        while seen <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                return
            seen += len(message.get("body", b""))

    async def _too_large(self, scope, receive, send) -> None:
        response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)
