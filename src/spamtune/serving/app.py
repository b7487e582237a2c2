"""The HTTP service: a FastAPI app with request validation, the body-size limit, micro-batching and a small web
page (static/index.html). `serve` runs it with uvicorn.

No `from __future__ import annotations` here: FastAPI reads the request models defined inside `create_app` from
the handlers' annotations at runtime.
"""

import contextlib
import json
import logging
from importlib.resources import files
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, StringConstraints

from spamtune.inference import TextClassifier
from spamtune.serving.batcher import MicroBatcher
from spamtune.serving.limits import BodyLimit, ServeLimits
from spamtune.tasks import SingleLabel

log = logging.getLogger(__name__)


def create_app(clf: TextClassifier, limits: ServeLimits | None = None) -> FastAPI:
    """The app for one loaded classifier. Routes: GET / (page), GET /health, POST /classify, /docs (OpenAPI)."""
    clf.require_single_label("serve")
    lim = limits or ServeLimits()
    names = clf.label_names
    Text = Annotated[str, StringConstraints(min_length=1, max_length=lim.max_chars)]

    class ClassifyRequest(BaseModel):
        texts: list[Text] = Field(min_length=1, max_length=lim.max_texts,
                                  description=f"1 to {lim.max_texts} messages, each at most "
                                              f"{lim.max_chars} characters")
        threshold: float | None = Field(None, ge=0.0, le=1.0, description="spam if P(spam) >= threshold")

    class Prediction(BaseModel):
        label: str
        probability: float
        probabilities: dict[str, float]

    class ClassifyResponse(BaseModel):
        results: list[Prediction]

    batcher = MicroBatcher(clf, lim.max_batch, lim.batch_window_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="spamtune", description="Classify messages with a fine-tuned LLM.", lifespan=lifespan)
    app.state.batcher = batcher

    app.add_middleware(BodyLimit, max_bytes=lim.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's default echoes each bad input back as UTF-8, which fails (-> 500) on a lone surrogate and
        # returns a whole 1 MB text; echo short inputs only, and escape to ASCII so any string can be rendered
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")
                   or (k == "input" and not (isinstance(v, str) and len(v) > 100))} for e in exc.errors()]
        body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True, default=str)
        return Response(body, status_code=422, media_type="application/json")

    page = files("spamtune").joinpath("static/index.html").read_text(encoding="utf-8")  # package data

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "run_id": clf.run_id, "model": clf.run.run_config.model, "labels": clf.label_names,
                "max_length": clf.max_length, "batches_run": batcher.batches_run}

    @app.post("/classify", response_model=ClassifyResponse)
    async def classify(req: ClassifyRequest) -> ClassifyResponse:
        probs = await batcher.classify(req.texts)
        preds = SingleLabel.predict_ids(probs, req.threshold)
        return ClassifyResponse(results=[
            Prediction(label=names[p], probability=float(row[p]),
                       probabilities={lab: float(v) for lab, v in zip(names, row)})
            for row, p in zip(probs, preds)])

    return app


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None,
          dtype: str = "fp32", quantize: str | None = None) -> None:
    import uvicorn

    app = create_app(TextClassifier.load(run_dir, dtype, quantize), limits)
    print(f"spamtune serving {run_dir} on http://{host}:{port}/ (API docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
