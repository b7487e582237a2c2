"""The HTTP service: a FastAPI app with request validation, the body-size limit, micro-batching, the prediction
store, Prometheus metrics, feedback and the admin page, and a small web page (static/index.html); the models it
answers with can follow a registry, be shadowed or canaried (models.py). `serve` runs it with uvicorn.

No `from __future__ import annotations` here: FastAPI reads the request models defined inside `create_app` from
the handlers' annotations at runtime.
"""

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AfterValidator, BaseModel, Field, StrictFloat, StrictStr, StringConstraints

from spamtune.decisions import Band, check_thresholds
from spamtune.errors import ConfigError
from spamtune.inference import TextClassifier
from spamtune.monitoring.store import PredictionRecord, PredictionStore
from spamtune.monitoring.writer import StoreWriter
from spamtune.serving.admin import build_router, key_guard
from spamtune.serving.batcher import MicroBatcher, Overloaded
from spamtune.serving.limits import BodyLimit, ServeLimits
from spamtune.serving.metrics import ServiceMetrics
from spamtune.serving.models import SELF_TEST, Deployment, ModelSource
from spamtune.serving.observe import Observe

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    """How the service decides and what it keeps (limits are in `ServeLimits`)."""

    threshold: float | None = None  # the default block threshold (else the run's stored operating point)
    review_threshold: float | None = None
    store: PredictionStore | None = None  # where decisions are recorded; None: nowhere
    store_text: bool = True  # False: keep only each message's sha256
    api_key: str | None = None  # required on /feedback and /admin/api/* (everything with api_key_all)
    api_key_all: bool = False
    access_log: bool = True
    source: ModelSource = field(default_factory=ModelSource)  # a registry to follow, the canary's share
    registry_version: int | None = None  # the registry version the primary model is
    shadow: TextClassifier | None = None  # scores every answered request too; recorded, never returned
    canary: TextClassifier | None = None  # answers source.canary_share of the requests


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("the message is empty or only whitespace")
    return text


def create_app(clf: TextClassifier, limits: ServeLimits | None = None, options: ServeOptions | None = None) -> FastAPI:
    """The app for a loaded classifier (and the shadow and canary in `options`). Routes: GET / (page),
    GET /health, GET /metrics, POST /classify, POST /predict, POST /feedback, GET /admin (+ /admin/api/*),
    /docs (OpenAPI)."""
    opts = options or ServeOptions()
    check_thresholds(opts.threshold, opts.review_threshold)
    for model in (clf, opts.shadow, opts.canary):
        if model is not None:
            model.require_single_label("serve")
            if model.label_names != clf.label_names:
                raise ConfigError(f"run {model.run_id} has the labels {model.label_names}, the primary "
                                  f"{clf.label_names}: a shadow or canary must decide between the same labels")
    lim = limits or ServeLimits()
    positive = clf.label_names[-1]
    default_threshold, default_review = opts.threshold, opts.review_threshold
    metrics = ServiceMetrics()

    def model_info(primary: TextClassifier) -> None:
        metrics.model.info({"run_id": primary.run_id, "model": primary.run.run_config.model,
                            "registry_version": str(deployment.version or ""),
                            "shadow_run_id": opts.shadow.run_id if opts.shadow else "",
                            "canary_run_id": opts.canary.run_id if opts.canary else ""})

    writer = (StoreWriter(opts.store, on_written=metrics.store_written.inc, on_failed=metrics.store_failures.inc)
              if opts.store is not None else None)
    # --api-key-all: every route but /health (a liveness probe carries no key)
    guard_all = [Depends(key_guard(opts.api_key, exempt=("/health",)))] if opts.api_key_all else []
    # strict types: false is not 0.0, 1 is not "1"; a blank message is refused like an empty one
    Text = Annotated[StrictStr, StringConstraints(min_length=1, max_length=lim.max_chars), AfterValidator(_not_blank)]

    Threshold = Annotated[StrictFloat | None, Field(ge=0.0, le=1.0)]

    class Thresholds(BaseModel):
        threshold: Threshold = Field(None, description=f"block if P({positive}) >= this (default: the server's)")
        review_threshold: Threshold = Field(None, description=f"review if P({positive}) >= this (default: the "
                                                              "server's); above `threshold` means no review band")

    class ClassifyRequest(Thresholds):
        texts: list[Text] = Field(min_length=1, max_length=lim.max_texts,
                                  description=f"1 to {lim.max_texts} messages, each at most "
                                              f"{lim.max_chars} characters and not blank")

    class PredictRequest(Thresholds):
        inputs: Text | list[Text] = Field(description="one message, or a list of up to "
                                                      f"{lim.max_texts} (Text Embeddings Inference's shape)")

    class Result(BaseModel):
        label: str = Field(description="the decided label")
        score: float = Field(description="calibrated probability of `label`")
        scores: dict[str, float] = Field(description="calibrated probability of every label")
        decision: Band | None = Field(description="allow / review / block (binary runs)")
        threshold: float | None = Field(description=f"P({positive}) at or above it is blocked")
        review_threshold: float | None = Field(description=f"P({positive}) at or above it goes to review")
        truncated: bool = Field(description=f"the message was cut to {clf.max_length} tokens")
        run_id: str
        id: str = Field(description="this decision's id in the prediction store: send it to /feedback")

    class ClassifyResponse(BaseModel):
        results: list[Result]

    def make_batcher(model: TextClassifier | None) -> MicroBatcher | None:
        if model is None:
            return None
        return MicroBatcher(model, lim.max_batch, lim.batch_window_ms, lim.max_queue,
                            on_batch=metrics.batch_size.observe)

    batcher = make_batcher(clf)
    assert batcher is not None
    deployment = Deployment(batcher, opts.source, shadow=make_batcher(opts.shadow), canary=make_batcher(opts.canary),
                            version=opts.registry_version)

    def swapped(new: TextClassifier) -> None:
        metrics.swaps.inc()
        model_info(new)

    deployment.on_swap = swapped
    model_info(clf)
    metrics.queue_depth.set_function(lambda: sum(b.waiting for b in deployment.batchers))
    shadow_tasks: set[asyncio.Task] = set()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for model in (clf, opts.shadow, opts.canary):  # fails start-up rather than every request
            if model is not None:
                await asyncio.to_thread(model.predict_proba, [SELF_TEST])
        deployment.start()
        yield
        await deployment.stop()
        for task in list(shadow_tasks):
            task.cancel()
        if writer is not None:
            await asyncio.to_thread(writer.close)  # what is queued is written before the process ends

    app = FastAPI(title="spamtune", description="Classify messages with a fine-tuned LLM.", lifespan=lifespan,
                  dependencies=guard_all)
    app.state.batcher, app.state.writer, app.state.metrics = batcher, writer, metrics
    app.state.deployment = deployment

    app.add_middleware(BodyLimit, max_bytes=lim.max_body_bytes)
    app.add_middleware(Observe, metrics=metrics, log_requests=opts.access_log)  # outermost: sees every answer

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # where and what, never the input itself: FastAPI's default echoes every bad value (a 1 MB text, or 64 of
        # them: the answer outgrows the request), and a lone surrogate in it made the echo fail with a 500
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()][:20]
        body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True, default=str)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> Response:
        metrics.rejected.labels("queue_full").inc()
        return JSONResponse({"detail": f"the server is busy ({exc}); retry shortly"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(asyncio.TimeoutError)
    async def timed_out(request: Request, exc: asyncio.TimeoutError) -> Response:
        metrics.rejected.labels("timeout").inc()
        return JSONResponse({"detail": f"no answer within {lim.request_timeout_s:g} s; retry shortly"},
                            status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"detail": "internal error: the model could not classify this request"},
                            status_code=500)

    page = files("spamtune").joinpath("static/index.html").read_text(encoding="utf-8")  # package data

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    def settings() -> dict[str, Any]:
        now = batcher.clf  # the model answering now (a registry swap changes it)
        return {"run_id": now.run_id, "model": now.run.run_config.model, "labels": now.label_names,
                "max_length": now.max_length, "max_chars": lim.max_chars, "max_texts": lim.max_texts,
                "positive_label": positive if now.binary else None,
                "threshold": now.block_threshold(default_threshold),
                "review_threshold": now.review_threshold(default_review, default_threshold),
                "temperature": now.temperature, "recording": opts.store is not None,
                "api_key_required": opts.api_key is not None,
                "registry": opts.source.registry, "registry_version": deployment.version,
                "shadow_run_id": opts.shadow.run_id if opts.shadow else None,
                "canary_run_id": opts.canary.run_id if opts.canary else None,
                "canary_share": opts.source.canary_share if opts.canary else 0.0}

    @app.head("/health", include_in_schema=False)
    @app.get("/health", responses={503: {"description": "the last forward pass failed"}})
    async def health() -> JSONResponse:
        """"ok", or "degraded" (503) while the last forward pass failed."""
        status = "ok" if batcher.last_error is None else "degraded"
        body = {"status": status, **settings(), "batches_run": batcher.batches_run,
                "last_error": batcher.last_error, "swaps": deployment.swaps,
                "last_swap_error": deployment.last_swap_error}
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus text format: requests, latency, batch sizes, queue depth, decisions, scores, feedback,
        store writes and failures, and the model's run id."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    errors: dict[int | str, dict[str, Any]] = {400: {"description": "malformed request framing"},
                                               413: {"description": "request body too large"},
                                               500: {"description": "the model failed on this request"}}

    async def decide(texts: list[str], req: Thresholds) -> list[Result]:
        start = time.perf_counter()
        threshold = req.threshold if req.threshold is not None else default_threshold
        review = req.review_threshold if req.review_threshold is not None else default_review
        answering, role = deployment.route(texts)
        scored = await asyncio.wait_for(answering.classify(texts), lim.request_timeout_s)
        model = scored.clf  # the model that scored this request decides it and is recorded as the answer's
        decided = model.decisions(model.scores_from_logits(scored.logits), scored.truncated, threshold, review)
        ms = (time.perf_counter() - start) * 1000
        results = []
        for text, d in zip(texts, decided):
            record = PredictionRecord.of(d, text, model.run_id, "serve", ms, opts.store_text,
                                         positive if model.binary else None)
            if writer is not None:
                writer.submit(record)  # a background write: never waits for the database
            metrics.predictions.labels(d.label, d.decision or "none").inc()
            if model.binary:
                metrics.positive_score.observe(d.scores[positive])
            results.append(Result(**d.to_json(), run_id=model.run_id, id=record.id))
        metrics.answers.labels(role).inc(len(texts))
        if deployment.shadow is not None:  # after the answer: the client never waits for the shadow
            task = asyncio.create_task(shadow(texts, [r.id for r in results], [r.label for r in results],
                                              threshold, review))
            shadow_tasks.add(task)
            task.add_done_callback(shadow_tasks.discard)
        return results

    async def shadow(texts: list[str], ids: list[str], answered: list[str], threshold: float | None,
                     review: float | None) -> None:
        assert deployment.shadow is not None
        start = time.perf_counter()
        try:
            scored = await deployment.shadow.classify(texts)
        except Overloaded:
            metrics.shadow_skipped.inc(len(texts))
            return
        except Exception:  # the shadow's failure must never touch answers
            log.exception("the shadow model failed")
            metrics.shadow_skipped.inc(len(texts))
            return
        model = scored.clf
        decided = model.decisions(model.scores_from_logits(scored.logits), scored.truncated, threshold, review)
        ms = (time.perf_counter() - start) * 1000
        for text, d, answer_id, label in zip(texts, decided, ids, answered):
            metrics.shadow_agreement.labels("agree" if d.label == label else "disagree").inc()
            if writer is not None:
                writer.submit(PredictionRecord.of(d, text, model.run_id, "shadow", ms, opts.store_text,
                                                  positive if model.binary else None, shadow_of=answer_id))

    @app.post("/classify", response_model=ClassifyResponse, responses=errors)
    async def classify(req: ClassifyRequest) -> ClassifyResponse:
        """spamtune's shape: {"texts": [...]} -> {"results": [...]}."""
        return ClassifyResponse(results=await decide(req.texts, req))

    @app.post("/predict", response_model=list[Result], responses=errors)
    async def predict(req: PredictRequest) -> list[Result]:
        """Text Embeddings Inference's shape: {"inputs": "text" | ["text", ...]} -> [{"label", "score", ...}],
        one result per input."""
        return await decide([req.inputs] if isinstance(req.inputs, str) else req.inputs, req)

    app.include_router(build_router(lambda: batcher.clf, opts.store, writer, metrics, opts.api_key, settings))
    return app


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
