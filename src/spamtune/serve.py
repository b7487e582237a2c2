"""HTTP service: FastAPI app with request validation, a body-size limit, micro-batching and a small web page.

Concurrent requests are queued and classified together in one forward pass (up to `max_batch` texts, waiting at
most `batch_window_ms` for company), on one worker thread: the model is never run twice at once, and throughput
under load is that of batched inference rather than one pass per request.
"""


import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, StringConstraints

from spamtune.predict import SpamClassifier, predict_ids

log = logging.getLogger(__name__)

DRAIN_LIMIT = 32 * 2**20  # over-limit bodies up to this size are read and discarded before the 413


@dataclass
class ServeLimits:
    max_texts: int = 64  # texts per request
    max_chars: int = 20_000  # characters per text (longer messages would be truncated to max_length tokens anyway)
    max_body_bytes: int = 2_000_000
    max_batch: int = 64  # texts per forward pass across requests
    batch_window_ms: float = 5.0


class MicroBatcher:
    """Collect texts from concurrent requests and classify them in shared batches on one worker thread."""

    def __init__(self, clf: SpamClassifier, max_batch: int, window_ms: float) -> None:
        self.clf, self.max_batch, self.window = clf, max_batch, window_ms / 1000
        self.queue: asyncio.Queue[tuple[list[str], asyncio.Future]] = asyncio.Queue()
        self.batches_run = 0  # observable in /health: proof that requests share passes
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._worker())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def classify(self, texts: list[str]) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            n = len(jobs[0][0])
            deadline = loop.time() + self.window
            while n < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), timeout)
                except TimeoutError:
                    break
                jobs.append(job)
                n += len(job[0])
            texts = [t for job_texts, _ in jobs for t in job_texts]
            try:
                probs = await asyncio.to_thread(self.clf.predict_proba, texts)
            except Exception as e:  # never leave a request hanging; the handler turns this into a 500 JSON
                log.exception("classification failed")
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches_run += 1
            start = 0
            for job_texts, fut in jobs:
                if not fut.done():  # the client may have gone away
                    fut.set_result(probs[start : start + len(job_texts)])
                start += len(job_texts)


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


def create_app(clf: SpamClassifier, limits: ServeLimits | None = None) -> FastAPI:
    """The app for one loaded classifier. Routes: GET / (page), GET /health, POST /classify, /docs (OpenAPI)."""
    clf.require_single_label("serve")
    limits = limits or ServeLimits()
    Text = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_chars)]

    class ClassifyRequest(BaseModel):
        texts: list[Text] = Field(min_length=1, max_length=limits.max_texts,
                                  description=f"1 to {limits.max_texts} messages, each at most "
                                              f"{limits.max_chars} characters")
        threshold: float | None = Field(None, ge=0.0, le=1.0, description="spam if P(spam) >= threshold")

    class Prediction(BaseModel):
        label: str
        probability: float
        probabilities: dict[str, float]

    class ClassifyResponse(BaseModel):
        results: list[Prediction]

    batcher = MicroBatcher(clf, limits.max_batch, limits.batch_window_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="spamtune", description="Classify messages with a fine-tuned LLM.", lifespan=lifespan)
    app.state.batcher = batcher

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's default echoes each bad input back as UTF-8, which fails (-> 500) on a lone surrogate and
        # returns a whole 1 MB text; echo short inputs only, and escape to ASCII so any string can be rendered
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")
                   or (k == "input" and not (isinstance(v, str) and len(v) > 100))} for e in exc.errors()]
        body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True, default=str)
        return Response(body, status_code=422, media_type="application/json")

    page = files("spamtune").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": clf.run.config["model"], "labels": clf.labels,
                "max_length": clf.max_length, "batches_run": batcher.batches_run}

    @app.post("/classify", response_model=ClassifyResponse)
    async def classify(req: ClassifyRequest) -> ClassifyResponse:
        probs = await batcher.classify(req.texts)
        preds = predict_ids(probs, req.threshold)
        return ClassifyResponse(results=[
            Prediction(label=clf.labels[p], probability=float(row[p]),
                       probabilities={lab: float(v) for lab, v in zip(clf.labels, row)})
            for row, p in zip(probs, preds)])

    return app


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None,
          dtype: str = "fp32", quantize: str | None = None) -> None:
    import uvicorn

    app = create_app(SpamClassifier.load(run_dir, dtype, quantize), limits)
    print(f"spamtune serving {run_dir} on http://{host}:{port}/ (API docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
