"""Corrections and the admin page: `POST /feedback` (a user's "this was wrong"), and `/admin` with its JSON API —
recent decisions with filters and every check's verdict, relabelling in place, the corrections as CSV in `spamtune
prepare`'s format, the current run and thresholds, the operator lists (add, remove), and the monitoring charts.
Everything here sits behind the API key when one is set. The routes receive the service object through the
`service` dependency.

No `from __future__ import annotations`: FastAPI reads the request models from the handlers' annotations.
"""

import contextlib
import csv
import io
from collections.abc import Iterator
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response

from spamtune.errors import DataError
from spamtune.inference.files import neutralize_formula
from spamtune.inference.lists import entry
from spamtune.monitoring.lists import WHO, ListConflict, OperatorLists
from spamtune.monitoring.store import FeedbackConflict, PredictionStore, StoreError, UnknownPrediction
from spamtune.serving.access import given_key, too_many
from spamtune.serving.schemas import FeedbackRequest, FeedbackResponse, ListEntryRequest, RelabelRequest
from spamtune.serving.service import ClassifierService, service

Service = Annotated[ClassifierService, Depends(service)]


def require_admin(request: Request, svc: Service) -> None:
    """The dependency of everything that reads stored messages: the admin key, when the server has keys."""
    svc.keys.require_admin(request)


def require_key_all(request: Request, svc: Service) -> None:
    """--api-key-all: every route but /health (a liveness probe carries no key) needs a key, admin or feedback."""
    if svc.opts.api_key_all and request.url.path != "/health":
        keys = svc.keys
        given = given_key(request)
        if given is None or not any(k is not None and given == k for k in (keys.admin, keys.feedback)):
            keys.require_admin(request)  # the 401 (or 403) with its message


def feedback_type(predicted: str, corrected: str, positive: str | None) -> str:
    if predicted == corrected:
        return "confirmation"
    if positive is None:
        return "relabel"
    return "false_positive" if predicted == positive else "false_negative"


def need_store(svc: ClassifierService) -> PredictionStore:
    if svc.opts.store is None:
        raise HTTPException(503, "this server records no predictions (started with --no-store)")
    return svc.opts.store


guard = [Depends(require_admin)]
ERRORS: dict[int | str, dict[str, Any]] = {400: {"description": "a body that is not JSON, or malformed framing"},
                                           401: {"description": "API key missing or wrong"},
                                           403: {"description": "the feedback key cannot read stored messages"},
                                           503: {"description": "no prediction store, or it is busy or down"}}
FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 404: {"description": "unknown prediction id"},
    409: {"description": "already corrected to another label, or by an operator"},
    429: {"description": "too many corrections from this client or credential"}}
router = APIRouter()


async def correct(svc: ClassifierService, prediction_id: str, label: str, learn: bool, source: str,
                  replace: bool) -> FeedbackResponse:
    """Record a correction through the store's threads (bounded waits), as `source`."""
    s = need_store(svc)
    names = svc.clf.label_names
    if label not in names:
        raise RequestValidationError([{"type": "enum", "loc": ("body", "label"),
                                       "msg": f"Input should be one of {', '.join(names)}"}])
    writer = svc.writer
    try:
        try:
            out = await svc.store_call(s.add_feedback, prediction_id, label, learn, source, replace)
        except UnknownPrediction:  # the answer's record may still be in the writer's queue
            if writer is None or not await svc.store_call(writer.flush, 1.5):
                raise
            out = await svc.store_call(s.add_feedback, prediction_id, label, learn, source, replace)
    except UnknownPrediction as e:
        raise HTTPException(404, str(e)) from None
    except FeedbackConflict as e:
        raise HTTPException(409, str(e)) from None
    except StoreError as e:
        raise HTTPException(503, str(e)) from None
    except HTTPException:
        raise
    except Exception as e:  # the database is down: say so, as the writer does
        raise HTTPException(503, f"the prediction store is unavailable ({type(e).__name__})") from None
    kind = feedback_type(out["prediction_label"], label, svc.positive)
    if out["status"] != "unchanged":
        svc.metrics.feedback.labels(kind).inc()
    svc.corrected()  # the memory of corrections acts on it from the next request
    return FeedbackResponse(status=out["status"], id=prediction_id, label=label, previous=out["previous"],
                            type=kind)


@router.post("/feedback", response_model=FeedbackResponse, responses=FEEDBACK_ERRORS)
async def post_feedback(req: FeedbackRequest, request: Request, svc: Service) -> FeedbackResponse:
    """Correct a decision: with the result's `feedback_token` (no key), the feedback key or the admin key. The
    same correction twice changes nothing; a different label for a corrected prediction is a 409 unless `replace`
    is true, and an operator's correction is never replaced from here. Rate-limited per client and credential."""
    who = svc.keys.feedback_credential(request, req.id, req.token)
    client = request.client.host if request.client else "unknown"
    for kind, name in (("client", client), ("credential", f"{who}:{req.id if who == 'token' else ''}")):
        if (wait := svc.feedback_limits[kind].wait_s(name)) > 0:
            svc.metrics.rejected.labels("feedback_rate").inc()
            raise too_many(wait)
    return await correct(svc, req.id, req.label, req.learn, "admin" if who == "admin" else "api", req.replace)


@router.post("/admin/api/relabel", response_model=FeedbackResponse, dependencies=guard,
             responses={**FEEDBACK_ERRORS})
async def relabel(req: RelabelRequest, svc: Service) -> FeedbackResponse:
    """An operator's correction (source "admin", trusted): it replaces an end user's and confirms an equal one."""
    return await correct(svc, req.id, req.label, req.learn, "admin", req.replace)


@router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
async def admin_page() -> str:
    # static: the data comes from /admin/api/*, behind the key
    return files("spamtune").joinpath("static/admin.html").read_text(encoding="utf-8")


@router.get("/admin/api/summary", dependencies=guard, responses=ERRORS)
async def summary(svc: Service) -> dict[str, Any]:
    """The run that answers, its thresholds and checks, and what the store holds."""
    out: dict[str, Any] = {**svc.settings(), "store": None}
    store, writer = svc.opts.store, svc.writer
    if store is not None:
        try:
            total = await svc.store_call(store.count)
            out["store"] = {"url": store.url, "predictions": total,
                            "written": writer.written if writer else None,
                            "not_recorded": (writer.failed + writer.dropped) if writer else None}
        except Exception as e:
            out["store"] = {"url": store.url, "error": type(e).__name__}
    return out


@router.get("/admin/api/predictions", dependencies=guard, responses=ERRORS)
async def recent(svc: Service, decision: str | None = None, label: str | None = None, corrected: bool | None = None,
                 min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                 max_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                 q: Annotated[str | None, Query(max_length=200)] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50,
                 offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[dict[str, Any]]:
    """Recent decisions, newest first, with every check's verdict and their correction if any."""
    from spamtune.monitoring.store import Query as StoreQuery

    s = need_store(svc)
    rows = await svc.store_call(s.query, StoreQuery(decision=decision, label=label, corrected=corrected,
                                                    min_score=min_score, max_score=max_score, text=q,
                                                    limit=limit, offset=offset))
    return [{**r, "created_at": r["created_at"].isoformat()} for r in rows]


@router.get("/admin/api/corrections.csv", dependencies=guard, responses=ERRORS, response_class=Response)
async def corrections(svc: Service, learnable: bool = True) -> Response:
    """The corrections with their text as `text,label` CSV: `spamtune prepare --data corrections.csv
    --text-col text --label-col label` reads it (predictions stored without text are left out). A cell a
    spreadsheet would run as a formula gets a leading ' (OWASP), as `classify --out` does."""
    rows = await svc.store_call(need_store(svc).corrections, learnable, timeout=30.0)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label", "prediction_id", "predicted", "learn", "source"])
    w.writerows([neutralize_formula(r["text"]), neutralize_formula(r["label"]), r["id"],
                 neutralize_formula(r["predicted"]), int(r["learn"]), r["source"]] for r in rows if r["text"])
    return Response(buf.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="corrections.csv"'})


@router.get("/admin/api/charts/{name}.png", dependencies=guard, response_class=Response,
            responses={**ERRORS, 404: {"description": "no such chart"}})
async def chart(svc: Service, name: str, hours: Annotated[int, Query(ge=1, le=24 * 366)] = 24) -> Response:
    """A monitoring chart over the last `hours`: volume, decisions, scores or latency."""
    from spamtune.monitoring.charts import CHARTS, render_chart

    if name not in CHARTS:
        raise HTTPException(404, f"no chart {name!r} (charts: {', '.join(CHARTS)})")
    png = await svc.store_call(render_chart, need_store(svc), name, hours, svc.clf.run_id, timeout=30.0)
    return Response(png, media_type="image/png")


# -- operator lists ------------------------------------------------------------------------------------------------

LIST_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 404: {"description": "no active entry has this id"},
    409: {"description": "the entry is on the lists already"},
    422: {"description": "not a valid entry (a domain that is not one, a pattern RE2 cannot compile)"}}


def need_lists(svc: ClassifierService) -> OperatorLists:
    return OperatorLists(need_store(svc))


@contextlib.contextmanager
def changing_lists(svc: ClassifierService, where: tuple[str, str], conflict: int) -> Iterator[None]:
    """A change to the lists as HTTP answers: a bad entry or name 422 (at `where`), a `ListConflict` `conflict`
    (409: already there; 404: no such active entry), a store that cannot be written 503. A change that went
    through is seen by this process's next request."""
    try:
        yield
    except DataError as e:
        raise RequestValidationError([{"type": "value_error", "loc": where, "msg": str(e)}]) from None
    except ListConflict as e:
        raise HTTPException(conflict, str(e)) from None
    except StoreError as e:
        raise HTTPException(503, str(e)) from None
    if svc.lists is not None:
        svc.lists.invalidate()


@router.get("/admin/api/lists", dependencies=guard, responses=ERRORS)
async def list_entries(svc: Service, removed: bool = False) -> list[dict[str, Any]]:
    """The operator lists' entries, oldest first (with `removed`, the retired ones too)."""
    rows = await svc.store_call(need_lists(svc).entries, removed)
    return [e.to_json() for e in rows]


@router.post("/admin/api/lists", status_code=201, dependencies=guard, responses=LIST_ERRORS)
async def add_list_entry(req: ListEntryRequest, svc: Service) -> dict[str, Any]:
    """Add an allow or deny entry: it decides from the next request on, in every process serving this store."""
    with changing_lists(svc, ("body", "value"), conflict=409):
        new = entry(req.action, req.kind, req.value, req.reason)
        (added,), _ = await svc.store_call(need_lists(svc).add, [new], req.by)
    return added.to_json()


@router.delete("/admin/api/lists/{entry_id}", dependencies=guard, responses=LIST_ERRORS)
async def remove_list_entry(entry_id: Annotated[int, Path(ge=1, le=2**31 - 1)], svc: Service,
                            by: Annotated[str, Query(pattern=WHO)] = "admin") -> dict[str, Any]:
    """Retire an entry (kept in the history with who and when): it stops deciding from the next request on."""
    with changing_lists(svc, ("query", "by"), conflict=404):
        (removed,) = await svc.store_call(need_lists(svc).remove, [entry_id], by)
    return removed.to_json()


@router.get("/admin/api/memory", dependencies=guard, responses=ERRORS)
async def memory_entries(svc: Service) -> dict[str, Any]:
    """The answering model's memory of corrections: its similarity threshold and every correction with its status
    ("active", or why it is not remembered: "needs review" and "would flip held-out messages" wait for an
    operator's confirmation), newest first. `threshold` null: this run has no memory."""
    memory = svc.memory
    if memory is None:
        return {"run_id": svc.clf.run_id, "threshold": None, "active": 0, "entries": []}
    await svc.store_call(memory.refresh)
    return {"run_id": svc.clf.run_id, "threshold": memory.threshold, "active": len(memory.active),
            "entries": [e.to_json() for e in reversed(memory.entries)]}


@router.get("/admin/api/audit", dependencies=guard, responses=ERRORS)
async def audit_findings(svc: Service, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:
    """The latest `spamtune audit --db`'s likely label errors, likeliest first (a correction's current label as
    `feedback_label`: relabel it from the page)."""
    rows = await svc.store_call(need_store(svc).audit, limit)
    return [{**r, "audited_at": r["audited_at"].isoformat()} for r in rows]
