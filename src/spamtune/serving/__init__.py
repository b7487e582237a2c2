"""The HTTP service (`spamtune serve`).

    app.py       the FastAPI app: routes, validation errors, the web page; `serve` runs it
    batcher.py   the micro-batcher: concurrent requests share forward passes
    limits.py    request limits and the body-size middleware
    loadtest.py  a bounded loopback load generator (tests, benchmarks/load.py)
"""

from spamtune.serving.app import create_app, serve
from spamtune.serving.limits import ServeLimits

__all__ = ["ServeLimits", "create_app", "serve"]
