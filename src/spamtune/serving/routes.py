"""The public routes: the page, /health, /metrics, /classify (spamtune's answer, with every check's verdict) and
/predict (Text Embeddings Inference's shape exactly; see schemas.py). Each receives the service object through
the `service` dependency.

No `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime.
"""

from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response

from spamtune.serving.schemas import (
    TEI_STATUS,
    ClassifyRequest,
    ClassifyResponse,
    ErrorResponse,
    Prediction,
    PredictRequest,
    Result,
)
from spamtune.serving.service import ClassifierService, service

Service = Annotated[ClassifierService, Depends(service)]

ERRORS: dict[int | str, dict[str, Any]] = {400: {"description": "malformed request framing"},
                                           413: {"description": "request body too large"},
                                           500: {"description": "the model failed on this request"}}
TEI_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": what}
    for code, what in ((400, "Batch is empty"), (413, "Batch size error"), (422, "Tokenization error"),
                       (424, "Prediction Error"), (429, "Model is overloaded"))}

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
async def index() -> str:
    return files("spamtune").joinpath("static/index.html").read_text(encoding="utf-8")  # package data


@router.head("/health", include_in_schema=False)
@router.get("/health", responses={503: {"description": "the last forward pass failed"}})
async def health(svc: Service) -> JSONResponse:
    """"ok", or "degraded" (503) while the last forward pass failed."""
    batcher, deployment = svc.batcher, svc.deployment
    status = "ok" if batcher.last_error is None else "degraded"
    body = {"status": status, **svc.settings(), "batches_run": batcher.batches_run, "last_error": batcher.last_error,
            "swaps": deployment.swaps, "last_swap_error": deployment.last_swap_error}
    return JSONResponse(body, status_code=200 if status == "ok" else 503)


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(svc: Service) -> Response:
    """Prometheus text format: requests, latency, batch sizes, queue depth, decisions, scores, feedback, store
    writes and failures, and the model's run id."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post("/classify", response_model=ClassifyResponse, responses=ERRORS)
async def classify(req: ClassifyRequest, svc: Service) -> ClassifyResponse:
    """spamtune's shape: {"texts": [...]} -> {"results": [...]}: per message the decision, its band, its
    calibrated scores and every check's verdict (with "explain": true, their evidence)."""
    svc.check_texts(req.texts)
    answers = await svc.decide(req.texts, req.threshold, req.review_threshold, req.explain, req.sender)
    return ClassifyResponse(results=[Result(**a.to_json()) for a in answers])


def tei_error(error: str, error_type: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_type": error_type}, status_code=TEI_STATUS[error_type])


@router.post("/predict", response_model=list[Prediction] | list[list[Prediction]], responses=TEI_ERRORS)
async def predict(req: PredictRequest, svc: Service) -> Any:
    """Text Embeddings Inference's /predict: {"inputs": "text"} -> every label [{"label", "score"}], best first;
    {"inputs": [["a"], ["b"]]} -> one such list per input. `raw_scores`: the logits; `truncate: false`: an input
    longer than the model reads is refused. The decisions are recorded like /classify's; their ids (for
    /feedback) come in the X-Prediction-Ids header, comma-separated in input order, so the body stays TEI's."""
    inputs: Any = req.inputs
    batch = isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], list)
    # TEI's rule: a string or a list of strings is one input (a list of two: a pair); a list of lists, a batch
    items: list[list[str]] = [list(x) for x in inputs] if batch else [[inputs] if isinstance(inputs, str)
                                                                       else list(inputs)]
    if not items or any(len(x) == 0 for x in items) or any(len(x) > 2 for x in items):
        return tei_error("`inputs` must be a string, a pair of strings or a batch of them", "Validation")
    if any(len(x) == 2 for x in items):
        return tei_error("this model classifies single messages, not pairs of strings", "Validation")
    texts = [x[0] for x in items]
    if any(not t.strip() for t in texts):
        return tei_error("`inputs` cannot be empty", "Empty")
    lim = svc.limits
    if len(texts) > lim.max_texts:
        return tei_error(f"batch size {len(texts)} > maximum allowed batch size {lim.max_texts}", "Validation")
    if (longest := max(len(t) for t in texts)) > lim.max_chars:
        return tei_error(f"`inputs` must have less than {lim.max_chars} characters. Given: {longest}", "Validation")
    if req.truncation_direction.lower() != "right":
        return tei_error("only truncation_direction Right: spamtune reads a message's beginning", "Validation")
    if req.truncate is False:
        clf = svc.clf
        if (n := max(clf.token_counts(texts))) > clf.max_length:
            return tei_error(f"`inputs` must have less than {clf.max_length} tokens. Given: {n}", "Validation")
    answers = await svc.decide(texts)
    names = svc.clf.label_names
    out = []
    for a in answers:
        d = a.decision
        # raw scores: the logits the calibrated probabilities came from (TEI's raw_scores skips the softmax)
        values = a.logits if req.raw_scores else [d.scores[n] for n in names]
        ranked = sorted(zip(names, values), key=lambda nv: -nv[1])
        out.append([{"score": float(v), "label": n} for n, v in ranked])
    return JSONResponse(out if batch else out[0], headers={"X-Prediction-Ids": ",".join(a.id for a in answers)})
