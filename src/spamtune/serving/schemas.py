"""The service's request and response shapes, at module level so every router and test reads the same ones.

Sizes that depend on how the server was started (`ServeLimits`: texts per request, characters per text) and the
run's label names are checked per request by the service (`ClassifierService.check_texts`, the feedback route) and
written into the OpenAPI document by `openapi_with_limits`, so a client reads the real bounds.

`/predict` is Text Embeddings Inference's shape exactly (its published docs/openapi.json, v1.9): `inputs` is a
string, a pair `[a, b]`, or a batch `[[a], [b], ...]`; the answer is every label `[{"label", "score"}]`, best first,
or one such list per batch item; errors are `{"error", "error_type"}`.

No `from __future__ import annotations`: pydantic and FastAPI read these annotations at runtime.
"""

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
)

from spamtune.calibration.decisions import Band
from spamtune.inference.lists import MAX_SENDER, MAX_VALUE
from spamtune.monitoring.lists import WHO


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("the message is empty or only whitespace")
    return text


# strict types: false is not 0.0, 1 is not "1"; a blank message is refused like an empty one, and the schema says
# so with a pattern a client's validator can check: a character that is not whitespace to Python's str.strip()
# (ECMAScript's \s, plus the separators \x1c-\x1f and NEL)
NON_BLANK = {"type": "string", "minLength": 1, "pattern": "[^\\s\\x1c-\\x1f\\x85]"}
Text = Annotated[StrictStr, StringConstraints(min_length=1), AfterValidator(_not_blank), WithJsonSchema(NON_BLANK)]
Threshold = Annotated[StrictFloat | None, Field(ge=0.0, le=1.0)]


class Thresholds(BaseModel):
    threshold: Threshold = Field(None, description="block if P(positive label) >= this (default: the server's)")
    review_threshold: Threshold = Field(None, description="review if P(positive label) >= this (default: the "
                                                          "server's); above `threshold` means no review band")


class ClassifyRequest(Thresholds):
    texts: list[Text] = Field(min_length=1, description="the messages (at most the server's max_texts, each at "
                                                        "most max_chars characters, not blank)")
    explain: StrictBool = Field(False, description="fill in each check's evidence: the words that pushed the "
                                                   "model, the n-grams that weighed most (costs time; bounded)")
    sender: Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_SENDER)] | None = Field(
        None, description="who sent the messages (a phone number, an address): the operator lists' sender "
                          "entries apply, and it is recorded")


class VerdictOut(BaseModel):
    check: str = Field(description="the check's name: lists, model, ngrams")
    label: str | None = Field(description="the label this check votes for (null: no opinion)")
    score: float | None = Field(description="the check's own score (the model's P(positive), the n-gram margin)")
    reason: str
    evidence: dict[str, Any] = Field(description="with explain: {\"words\": [[word, weight], ...]} or "
                                                 "{\"ngrams\": ...}; {\"missing\": why} when it could not be made")
    final: bool = Field(description="this check decided the message; later checks did not run on it")


class Result(BaseModel):
    label: str = Field(description="the decided label")
    score: float = Field(description="calibrated probability of `label`")
    scores: dict[str, float] = Field(description="calibrated probability of every label")
    decision: Band | None = Field(description="allow / review / block (binary runs)")
    threshold: float | None = Field(description="P(positive) at or above it is blocked")
    review_threshold: float | None = Field(description="P(positive) at or above it goes to review")
    truncated: bool = Field(description="the message was cut to the model's max_length tokens")
    checks: list[VerdictOut] = Field(description="every check's verdict, in pipeline order")
    run_id: str
    id: str = Field(description="this decision's id in the prediction store: send it to /feedback")
    feedback_token: str = Field(description="lets whoever received this decision correct it: send it to /feedback "
                                            "with the id (no key needed)")


class ClassifyResponse(BaseModel):
    results: list[Result]


# -- Text Embeddings Inference's /predict ----------------------------------------------------------------------

# What TEI's router admits (a string, [string], a pair, a batch of singles and pairs); the handler answers what
# spamtune cannot do (a pair, a blank input) with TEI's own errors. The schema says what it accepts and is a subset
# of TEI's published one, so every request valid here is valid for TEI ([string], which TEI's router reads as one
# input but its schema does not list, is accepted and not listed either).
PredictInput = Annotated[StrictStr | list[StrictStr] | list[list[StrictStr]], WithJsonSchema({
    "description": "one message, or a batch [[message], ...] (TEI's pairs [a, b] are refused: spamtune classifies "
                   "single messages)",
    "oneOf": [{**NON_BLANK, "description": "a single string"},
              {"type": "array", "minItems": 1, "description": "a batch",
               "items": {"type": "array", "items": NON_BLANK, "minItems": 1, "maxItems": 1}}],
    "example": "What is Deep Learning?"})]


class PredictRequest(BaseModel):
    inputs: PredictInput
    raw_scores: StrictBool = Field(False, description="scores before the softmax (the model's logits)")
    truncate: StrictBool | None = Field(None, description="false: an input longer than the model reads is refused "
                                                          "(default: the server's, which truncates)")
    truncation_direction: Annotated[Literal["Left", "Right", "left", "right"], WithJsonSchema(
        {"type": "string", "enum": ["Right", "right"]})] = Field(
        "Right", description="only Right (TEI's Left is refused): spamtune reads a message's beginning")


class Prediction(BaseModel):
    score: float
    label: str


class ErrorResponse(BaseModel):
    error: str
    error_type: Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]


TEI_STATUS = {"Unhealthy": 503, "Backend": 424, "Overloaded": 429, "Validation": 422, "Tokenizer": 422,
              "Empty": 400}
TEI_PATHS = ("/predict",)  # routes whose every error is TEI's {"error", "error_type"}


def error_body(path: str, message: str, error_type: str = "Validation") -> dict[str, Any]:
    """An error's JSON body: TEI's shape on its routes, spamtune's {"detail"} elsewhere."""
    if path in TEI_PATHS:
        return {"error": message, "error_type": error_type}
    return {"detail": message}


class FeedbackRequest(BaseModel):
    id: Annotated[StrictStr, StringConstraints(pattern=r"^[0-9a-f]{32}$")] = Field(
        description="the `id` of a result from /classify or /predict")
    label: StrictStr = Field(description="the right label (one of the run's labels)")
    learn: StrictBool = Field(True, description="false: act on it but keep it out of training data")
    replace: StrictBool = Field(False, description="change an earlier correction of this prediction (never an "
                                                   "operator's)")
    token: Annotated[StrictStr, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = Field(
        None, description="the result's feedback_token: corrects that one decision without a key")


class RelabelRequest(BaseModel):
    """An operator's correction from /admin (source "admin": trusted, and it confirms an end user's)."""

    id: Annotated[StrictStr, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    label: StrictStr
    learn: StrictBool = True
    replace: StrictBool = True


class ListEntryRequest(BaseModel):
    """An operator's allow or deny entry (inference/lists.py says how each kind matches)."""

    action: Literal["allow", "deny"]
    kind: Literal["sender", "domain", "pattern"]
    value: Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_VALUE)] = Field(
        description="a sender (phone number, address), a domain or URL, or an RE2 pattern (case-insensitive)")
    reason: Annotated[StrictStr, StringConstraints(max_length=MAX_VALUE)] = Field("", description="why, for the "
                                                                                               "record")
    by: Annotated[StrictStr, StringConstraints(pattern=WHO)] = Field("admin", description="who adds it (recorded)")


class FeedbackResponse(BaseModel):
    status: str = Field(description="recorded / unchanged / replaced / confirmed")
    id: str
    label: str
    previous: str | None = Field(description="the earlier correction this one replaced")
    type: str = Field(description="false_positive / false_negative / confirmation / relabel")


def openapi_with_limits(schema: dict[str, Any], max_texts: int, max_chars: int, labels: list[str]) -> dict[str, Any]:
    """The generated OpenAPI document with this server's bounds and labels filled in."""
    parts = schema.get("components", {}).get("schemas", {})
    if texts := parts.get("ClassifyRequest", {}).get("properties", {}).get("texts"):
        texts["maxItems"] = max_texts
        texts.setdefault("items", {})["maxLength"] = max_chars
    if inputs := parts.get("PredictRequest", {}).get("properties", {}).get("inputs"):
        single, batch = inputs["oneOf"]
        for string in (single, batch["items"]["items"]):
            string["maxLength"] = max_chars
        batch["maxItems"] = max_texts
    for request in ("FeedbackRequest", "RelabelRequest"):
        if label := parts.get(request, {}).get("properties", {}).get("label"):
            label["enum"] = labels
    return schema
