"""Request limits of the service: sizes per request (`ServeLimits`) and the body-size limit as ASGI middleware
(`BodyLimit`), which counts bytes as they arrive so no client can make the server hold more than the limit."""

from __future__ import annotations

from fastapi.responses import JSONResponse

DRAIN_LIMIT = 32 * 2**20  # over-limit bodies up to this size are read and discarded before the 413


class BodyLimit:
    """ASGI middleware: every request body is counted as it arrives and held only up to `max_bytes`; more is a 413,
    whatever the headers claim. A declared Content-Length over the limit is refused before reading (after draining
    up to DRAIN_LIMIT, so a client still uploading sees the 413, not a broken pipe); an endless upload costs at most
    DRAIN_LIMIT bytes read. A request carrying both Content-Length and Transfer-Encoding (a request-smuggling
    shape, RFC 9112 §6.1) or a malformed Content-Length is a 400."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        lengths = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
        chunked = any(k.lower() == b"transfer-encoding" for k, _ in scope["headers"])
        if lengths and chunked:  # refused before a byte of the body is read; the connection closes with it
            return await self._reply(scope, receive, send, 400, "a request may not carry both Content-Length and "
                                                                 "Transfer-Encoding")
        if lengths and (len(set(lengths)) > 1 or not lengths[0].isdigit()):
            return await self._reply(scope, receive, send, 400, "malformed Content-Length")
        if lengths and int(lengths[0]) > self.max_bytes:
            if int(lengths[0]) <= DRAIN_LIMIT:
                await self._drain(receive, 0)
            return await self._too_large(scope, receive, send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS") and not chunked and not lengths:
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
        await self._reply(scope, receive, send, 413, f"request body over {self.max_bytes} bytes")

    @staticmethod
    async def _reply(scope, receive, send, status: int, detail: str) -> None:
        from spamtune.serving.schemas import error_body

        # Connection: close, so the server drops what the client still sends instead of reading it to reuse the
        # connection (a 4xx here means the body is not wanted)
        await JSONResponse(error_body(scope["path"], detail), status_code=status,
                           headers={"Connection": "close"})(scope, receive, send)
