"""Corrections and the admin page: `POST /feedback` (a user's "this was wrong"), and `/admin` with its JSON API —
recent decisions with filters, relabelling in place, the corrections as CSV in `spamtune prepare`'s format, the
current run and thresholds, and the monitoring charts. Everything here sits behind the API key when one is set.

No `from __future__ import annotations`: FastAPI reads the request models from the handlers' annotations.
"""

import asyncio
import csv
import hmac
import io
from collections.abc import Callable
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, StrictBool, StrictStr, StringConstraints

from spamtune.inference import TextClassifier
from spamtune.monitoring.store import FeedbackConflict, PredictionStore, StoreError, UnknownPrediction
from spamtune.monitoring.writer import StoreWriter
from spamtune.serving.metrics import ServiceMetrics

PredictionId = Annotated[StrictStr, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


def key_guard(api_key: str | None, exempt: tuple[str, ...] = ()) -> Callable[[Request], None]:
    """A dependency that lets a request through only with the API key (X-API-Key: KEY or Authorization: Bearer
    KEY); a no-op when no key is set, and for the `exempt` paths."""

    def check(request: Request) -> None:
        if api_key is None or request.url.path in exempt:
            return
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "an API key is required (X-API-Key or Authorization: Bearer)",
                                headers={"WWW-Authenticate": "Bearer"})

    return check


class FeedbackBase(BaseModel):
    id: PredictionId = Field(description="the `id` of a result from /classify or /predict")
    learn: StrictBool = Field(True, description="false: act on it but keep it out of training data")
    replace: StrictBool = Field(False, description="change an earlier correction of this prediction")


class FeedbackResponse(BaseModel):
    status: str = Field(description="recorded / unchanged / replaced")
    id: str
    label: str
    previous: str | None = Field(description="the earlier correction this one replaced")
    type: str = Field(description="false_positive / false_negative / confirmation / relabel")


def feedback_type(predicted: str, corrected: str, positive: str | None) -> str:
    if predicted == corrected:
        return "confirmation"
    if positive is None:
        return "relabel"
    return "false_positive" if predicted == positive else "false_negative"


def build_router(current: Callable[[], TextClassifier], store: PredictionStore | None, writer: StoreWriter | None,
                 metrics: ServiceMetrics, api_key: str | None, settings: Callable[[], dict[str, Any]]) -> APIRouter:
    """`current()`: the model answering now (its labels never change; its run id does with a registry swap)."""
    guard = [Depends(key_guard(api_key))]
    clf = current()
    positive = clf.label_names[-1] if clf.binary else None
    names = list(clf.label_names)
    enum: list[Any] = list(names)

    class FeedbackRequest(FeedbackBase):
        # the run's labels as an enum in the schema: a client (and a fuzzer) knows what a valid correction is
        label: StrictStr = Field(description="the right label", json_schema_extra={"enum": enum})
    router = APIRouter()
    errors: dict[int | str, dict[str, Any]] = {400: {"description": "a body that is not JSON, or malformed framing"},
                                               401: {"description": "API key missing or wrong"},
                                               503: {"description": "no prediction store, or it is unavailable"}}

    def need_store() -> PredictionStore:
        if store is None:
            raise HTTPException(503, "this server records no predictions (started with --no-store)")
        return store

    @router.post("/feedback", response_model=FeedbackResponse, dependencies=guard,
                 responses={**errors, 404: {"description": "unknown prediction id"},
                            409: {"description": "already corrected to another label"}})
    async def post_feedback(req: FeedbackRequest) -> FeedbackResponse:
        """Correct a decision. The same correction twice changes nothing; a different label for a corrected
        prediction is a 409 unless `replace` is true."""
        s = need_store()
        if req.label not in names:
            raise RequestValidationError([{"type": "enum", "loc": ("body", "label"),
                                           "msg": f"Input should be one of {', '.join(names)}"}])
        try:
            try:
                out = await asyncio.to_thread(s.add_feedback, req.id, req.label, req.learn, "api", req.replace)
            except UnknownPrediction:
                if writer is None or not await asyncio.to_thread(writer.flush, 5.0):
                    raise
                out = await asyncio.to_thread(s.add_feedback, req.id, req.label, req.learn, "api", req.replace)
        except UnknownPrediction as e:
            raise HTTPException(404, str(e)) from None
        except FeedbackConflict as e:
            raise HTTPException(409, str(e)) from None
        except StoreError as e:
            raise HTTPException(503, str(e)) from None
        except Exception as e:  # the database is down: say so, as the writer does
            raise HTTPException(503, f"the prediction store is unavailable ({type(e).__name__})") from None
        kind = feedback_type(out["prediction_label"], req.label, positive)
        if out["status"] != "unchanged":
            metrics.feedback.labels(kind).inc()
        return FeedbackResponse(status=out["status"], id=req.id, label=req.label, previous=out["previous"],
                                type=kind)

    page = files("spamtune").joinpath("static/admin.html").read_text(encoding="utf-8")  # package data

    @router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    async def admin_page() -> str:
        return page  # static: the data comes from /admin/api/*, behind the key

    @router.get("/admin/api/summary", dependencies=guard, responses=errors)
    async def summary() -> dict[str, Any]:
        """The run that answers, its thresholds, and what the store holds."""
        out: dict[str, Any] = {**settings(), "store": None}
        if store is not None:
            try:
                total = await asyncio.to_thread(store.count)
                out["store"] = {"url": store.url, "predictions": total,
                                "written": writer.written if writer else None,
                                "not_recorded": (writer.failed + writer.dropped) if writer else None}
            except Exception as e:
                out["store"] = {"url": store.url, "error": type(e).__name__}
        return out

    @router.get("/admin/api/predictions", dependencies=guard, responses=errors)
    async def recent(decision: str | None = None, label: str | None = None, corrected: bool | None = None,
                     min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                     max_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                     q: Annotated[str | None, Query(max_length=200)] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[dict[str, Any]]:
        """Recent decisions, newest first, with their correction if any."""
        from spamtune.monitoring.store import Query as StoreQuery

        s = need_store()
        rows = await asyncio.to_thread(s.query, StoreQuery(decision=decision, label=label, corrected=corrected,
                                                           min_score=min_score, max_score=max_score, text=q,
                                                           limit=limit, offset=offset))
        return [{**r, "created_at": r["created_at"].isoformat()} for r in rows]

    @router.get("/admin/api/corrections.csv", dependencies=guard, responses=errors,
                response_class=Response)
    async def corrections(learnable: bool = True) -> Response:
        """The corrections with their text as `text,label` CSV: `spamtune prepare --data corrections.csv
        --text-col text --label-col label` reads it (predictions stored without text are left out)."""
        rows = await asyncio.to_thread(need_store().corrections, learnable)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["text", "label", "prediction_id", "predicted", "learn"])
        w.writerows([r["text"], r["label"], r["id"], r["predicted"], int(r["learn"])] for r in rows if r["text"])
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="corrections.csv"'})

    @router.get("/admin/api/charts/{name}.png", dependencies=guard, response_class=Response,
                responses={**errors, 404: {"description": "no such chart"}})
    async def chart(name: str, hours: Annotated[int, Query(ge=1, le=24 * 366)] = 24) -> Response:
        """A monitoring chart over the last `hours`: volume, decisions, scores or latency."""
        from spamtune.monitoring.charts import CHARTS, render_chart

        if name not in CHARTS:
            raise HTTPException(404, f"no chart {name!r} (charts: {', '.join(CHARTS)})")
        png = await asyncio.to_thread(render_chart, need_store(), name, hours, current().run_id)
        return Response(png, media_type="image/png")

    return router
