"""The HTTP service: `create_app` assembles the FastAPI app from the service object (service.py: decide, record,
shadow), the routers (routes.py: the page, /health, /metrics, /classify, /predict; admin.py: /feedback and /admin),
the schemas (schemas.py), the body-size limit, the access log and the error handlers. `serve` runs it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from spamtune.calibration.decisions import check_thresholds
from spamtune.config import ServeLimits
from spamtune.errors import ConfigError
from spamtune.inference import TextClassifier
from spamtune.serving import admin, routes
from spamtune.serving.access import HostCheck
from spamtune.serving.batcher import Overloaded
from spamtune.serving.limits import BodyLimit
from spamtune.serving.metrics import ServiceMetrics
from spamtune.serving.models import ModelSource
from spamtune.serving.observe import Observe
from spamtune.serving.schemas import TEI_PATHS, error_body, openapi_with_limits
from spamtune.serving.service import ClassifierService, ServeOptions

log = logging.getLogger(__name__)

__all__ = ["ServeOptions", "create_app", "serve"]


def check_models(clf: TextClassifier, opts: ServeOptions) -> None:
    """Single-label models only, and a shadow or canary must decide between the primary's labels."""
    for model in (clf, opts.shadow, opts.canary):
        if model is not None:
            model.require_single_label("serve")
            if model.label_names != clf.label_names:
                raise ConfigError(f"run {model.run_id} has the labels {model.label_names}, the primary "
                                  f"{clf.label_names}: a shadow or canary must decide between the same labels")


def create_app(clf: TextClassifier, limits: ServeLimits | None = None, options: ServeOptions | None = None) -> FastAPI:
    """The app for a loaded classifier (and the shadow and canary in `options`). Routes: GET / (page),
    GET /health, GET /metrics, POST /classify, POST /predict, POST /feedback, GET /admin (+ /admin/api/*),
    /docs (OpenAPI)."""
    opts, lim = options or ServeOptions(), limits or ServeLimits()
    check_thresholds(opts.threshold, opts.review_threshold)
    check_models(clf, opts)
    svc = ClassifierService(clf, lim, opts, ServiceMetrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await svc.start()
        yield
        await svc.stop()

    app = FastAPI(title="spamtune", description="Classify messages with a fine-tuned LLM, through a pipeline of "
                  "named checks.", lifespan=lifespan, dependencies=[Depends(admin.require_key_all)])
    app.state.service = svc
    app.add_middleware(BodyLimit, max_bytes=lim.max_body_bytes)
    app.add_middleware(HostCheck, allowed=opts.allowed_hosts)  # before the body is read
    app.add_middleware(Observe, metrics=svc.metrics, log_requests=opts.access_log)  # outermost: sees every answer
    add_error_handlers(app, svc)
    app.include_router(routes.router)
    app.include_router(admin.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            app.openapi_schema = openapi_with_limits(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes),
                lim.max_texts, lim.max_chars, clf.label_names)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def add_error_handlers(app: FastAPI, svc: ClassifierService) -> None:
    """Validation errors that never echo the input, 503s for a full queue or a timeout, a JSON 500 for a bug;
    on /predict in Text Embeddings Inference's shape."""

    def tei(request: Request, error: str, error_type: str) -> Response | None:
        if request.url.path not in TEI_PATHS:
            return None
        return routes.tei_error(error, error_type)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # where and what, never the input itself: FastAPI's default echoes every bad value (a 1 MB text, or 64 of
        # them: the answer outgrows the request), and a lone surrogate in it made the echo fail with a 500
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()][:20]
        shown = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in errors)
        if answer := tei(request, shown or "invalid request", "Validation"):
            return answer
        body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True, default=str)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        body = error_body(request.url.path, str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> Response:
        svc.metrics.rejected.labels("queue_full").inc()
        if answer := tei(request, "Model is overloaded", "Overloaded"):
            return answer
        return JSONResponse({"detail": f"the server is busy ({exc}); retry shortly"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(asyncio.TimeoutError)
    async def timed_out(request: Request, exc: asyncio.TimeoutError) -> Response:
        svc.metrics.rejected.labels("timeout").inc()
        if answer := tei(request, "Model is overloaded", "Overloaded"):
            return answer
        return JSONResponse({"detail": f"no answer within {svc.limits.request_timeout_s:g} s; retry shortly"},
                            status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        if answer := tei(request, "Inference failed", "Backend"):
            return answer
        return JSONResponse({"detail": "internal error: the model could not classify this request"},
                            status_code=500)


def serve(source: ModelSource, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None,
          options: ServeOptions | None = None) -> None:
    """Load the models `source` names (a run, or a registry's current version; a shadow and a canary) and run
    the app with uvicorn."""
    import dataclasses

    import uvicorn

    opts = options or ServeOptions()
    check_thresholds(opts.threshold, opts.review_threshold)
    primary_dir, version = source.primary_dir()
    opts = dataclasses.replace(
        opts, source=source, registry_version=version,
        shadow=source.load(source.resolve(source.shadow)) if source.shadow else None,
        canary=source.load(source.resolve(source.canary)) if source.canary else None)
    app = create_app(source.load(primary_dir), limits, opts)
    if opts.access_log:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("spamtune.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    recording = f"recording to {opts.store.url}" if opts.store else "not recording predictions"
    what = (f"registry {source.registry} (version {version}, following current)" if source.registry
            else str(primary_dir))
    extra = "".join(f"; {role} {ref}" for role, ref in (("shadow", source.shadow), ("canary", source.canary)) if ref)
    print(f"spamtune serving {what}{extra} on http://{host}:{port}/ (API docs: /docs, admin: /admin; "
          f"{recording})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
