"""The HTTP service (`spamtune serve`).

    app.py       create_app: the service, the routers, the middleware and error handlers; `serve` runs it
    service.py   the service object: decide (through the model's decision pipeline), record, shadow
    schemas.py   request and response shapes (spamtune's /classify; Text Embeddings Inference's /predict)
    routes.py    the page, /health, /metrics, /classify, /predict
    admin.py     /feedback, /admin and its API; the API-key guard
    models.py    the models it answers with: a registry's current version (swapped live), shadow, canary
    batcher.py   the micro-batcher: concurrent requests share passes, a bounded queue
    limits.py    request limits and the body-size middleware
    metrics.py   Prometheus metrics; observe.py: the access log and request metrics middleware
    loadtest.py  a bounded loopback load generator (tests, benchmarks/load.py)
"""

from spamtune.config import ServeLimits
from spamtune.serving.app import ServeOptions, create_app, serve
from spamtune.serving.models import ModelSource

__all__ = ["ModelSource", "ServeLimits", "ServeOptions", "create_app", "serve"]
