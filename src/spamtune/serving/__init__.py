"""The HTTP service (`spamtune serve`).

    app.py       the FastAPI app: routes, validation errors, the web page; `serve` runs it
    admin.py     /feedback, /admin and its API; the API-key guard
    models.py    the models it answers with: a registry's current version (swapped live), shadow, canary
    batcher.py   the micro-batcher: concurrent requests share forward passes, a bounded queue
    limits.py    request limits and the body-size middleware
    metrics.py   Prometheus metrics; observe.py: the access log and request metrics middleware
    loadtest.py  a bounded loopback load generator (tests, benchmarks/load.py)
"""

from spamtune.serving.app import ServeOptions, create_app, serve
from spamtune.serving.limits import ServeLimits
from spamtune.serving.models import ModelSource

__all__ = ["ModelSource", "ServeLimits", "ServeOptions", "create_app", "serve"]
