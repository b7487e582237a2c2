"""What the service says about itself per request: one structured access-log line (JSON, logger
"spamtune.access") and the request counters and latency histogram, in one ASGI middleware that sees every answer,
the body limit's 413s included."""

from __future__ import annotations

import json
import logging
import time

from spamtune.serving.metrics import ServiceMetrics

access_log = logging.getLogger("spamtune.access")


class Observe:
    def __init__(self, app, metrics: ServiceMetrics, log_requests: bool = True) -> None:
        self.app, self.metrics, self.log_requests = app, metrics, log_requests

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_wrapper(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - start
            # the route template, not the raw path: a scanner's random paths must not add label values
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if self.log_requests:
                client = scope.get("client") or ("", 0)
                access_log.info(json.dumps({
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "client": client[0],
                    "method": scope["method"], "path": scope["path"], "status": status,
                    "ms": round(seconds * 1000, 2)}))
