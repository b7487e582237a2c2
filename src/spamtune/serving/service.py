"""The service object behind the routes: it decides (through the answering model's decision pipeline), records
what it decided, and lets the shadow model decide the same messages after the answer. One per app, created by
`create_app` and handed to every route through the `service` dependency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError

from spamtune.config import ServeLimits
from spamtune.inference import Decision, TextClassifier
from spamtune.inference.cache import CacheConfig
from spamtune.inference.memory import MemoryCheck
from spamtune.monitoring.lists import list_check
from spamtune.monitoring.memory import memory_check
from spamtune.monitoring.store import PredictionRecord, PredictionStore
from spamtune.monitoring.writer import StoreWriter
from spamtune.serving.access import Keys, RateLimiter
from spamtune.serving.batcher import MicroBatcher, Overloaded
from spamtune.serving.metrics import ServiceMetrics
from spamtune.serving.models import Deployment, ModelSource

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ServeOptions:
    """How the service decides and what it keeps (limits are in `ServeLimits`)."""

    threshold: float | None = None  # the default block threshold (else the run's stored operating point)
    review_threshold: float | None = None
    store: PredictionStore | None = None  # where decisions are recorded; None: nowhere
    store_text: bool = True  # False: keep only each message's sha256
    api_key: str | None = None  # the admin key: /admin/api/*, and /feedback (access.py)
    feedback_key: str | None = None  # /feedback only
    feedback_secret: str | None = None  # signs each answer's feedback_token (default: from the admin key)
    api_key_all: bool = False  # every route but /health needs a key (admin or feedback)
    allowed_hosts: list[str] | None = None  # Host names answered to (None: any; `serve` sets loopback's)
    access_log: bool = True
    source: ModelSource = field(default_factory=ModelSource)  # a registry to follow, the canary's share
    registry_version: int | None = None  # the registry version the primary model is
    shadow: TextClassifier | None = None  # scores every answered request too; recorded, never returned
    canary: TextClassifier | None = None  # answers source.canary_share of the requests
    lists: bool = True  # the store's operator lists decide first (binary runs with a store)
    memory: bool = True  # the store's corrections decide messages like them (runs with a memory calibration)
    decision_cache: CacheConfig = field(default_factory=CacheConfig)  # each model's recent decisions (size 0: none)


def memory_of(model: TextClassifier) -> MemoryCheck | None:
    check = model.pipeline.check("memory") if model.pipeline is not None else None
    return check if isinstance(check, MemoryCheck) else None


@dataclass
class Answer:
    """One message's decision as the service answers it: the decision, the run that made it, its store id."""

    decision: Decision
    run_id: str
    id: str
    feedback_token: str  # lets whoever received this decision correct it (access.py)
    logits: list[float]  # the raw (combined, uncalibrated) logits: TEI's raw_scores

    def to_json(self) -> dict[str, Any]:
        return {**self.decision.to_json(), "run_id": self.run_id, "id": self.id,
                "feedback_token": self.feedback_token}


class ClassifierService:
    """Decide, record, shadow (see the module docstring)."""

    def __init__(self, clf: TextClassifier, limits: ServeLimits, opts: ServeOptions, metrics: ServiceMetrics) -> None:
        self.limits, self.opts, self.metrics = limits, opts, metrics
        self.positive = clf.positive_label
        self.keys = Keys.of(opts.api_key, opts.feedback_key, opts.feedback_secret)
        self.feedback_limits = {"client": RateLimiter(limits.feedback_per_minute_client),
                                "credential": RateLimiter(limits.feedback_per_minute_key)}
        # the store's own threads: a slow or locked database never holds the threads the model and the event
        # loop's other work use, and every call waits a bounded time (store_call)
        self.store_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="spamtune-store")
        self.writer = (StoreWriter(opts.store, on_written=metrics.store_written.inc,
                                   on_failed=metrics.store_failures.inc) if opts.store is not None else None)
        # the operator lists, read from the store's database by every model this service runs (the first check)
        self.lists = list_check(opts.store, clf) if opts.store is not None and opts.lists else None
        for model in (clf, opts.shadow, opts.canary):
            self.prepare(model)
        batcher = self._batcher(clf)
        assert batcher is not None
        self.batcher = batcher
        self.deployment = Deployment(batcher, opts.source, shadow=self._batcher(opts.shadow),
                                     canary=self._batcher(opts.canary), version=opts.registry_version)
        self.deployment.on_swap, self.deployment.prepare = self._swapped, self.prepare
        self._shadow_tasks: set[asyncio.Task] = set()
        self._model_info(clf)
        metrics.queue_depth.set_function(lambda: sum(b.waiting for b in self.deployment.batchers))
        if self.lists is not None:
            metrics.list_entries.set_function(lambda: self.lists.compiled.size if self.lists else 0)
        metrics.memory_entries.set_function(lambda: len(m.active) if (m := self.memory) is not None else 0)
        metrics.cache_entries.set_function(lambda: len(c) if (c := self.clf.pipeline and self.clf.pipeline.cache)
                                           else 0)

    def prepare(self, model: TextClassifier | None) -> None:
        """A model this service will run: the operator lists go first in its pipeline, its memory of the store's
        corrections right after its model (read now, so the first request does not wait for their vectors)."""
        if model is None or model.pipeline is None:
            return
        if self.lists is not None:
            model.pipeline.put_first(self.lists)
        if self.opts.store is not None and self.opts.memory and (check := memory_check(self.opts.store, model)):
            model.pipeline.put_after_model(check)
            check.refresh()
        model.pipeline.use_cache(self.opts.decision_cache)

    @property
    def memory(self) -> MemoryCheck | None:
        """The answering model's memory of corrections, if it has one."""
        return memory_of(self.clf)

    def corrected(self) -> None:
        """A correction was recorded here: every model's memory looks at the store on its next message."""
        for b in self.deployment.batchers:
            if (m := memory_of(b.clf)) is not None:
                m.invalidate()

    def _batcher(self, model: TextClassifier | None) -> MicroBatcher | None:
        if model is None:
            return None
        lim = self.limits
        return MicroBatcher(model, lim.max_batch, lim.batch_window_ms, lim.max_queue,
                            on_batch=self.metrics.batch_size.observe)

    def _model_info(self, primary: TextClassifier) -> None:
        opts = self.opts
        self.metrics.model.info({"run_id": primary.run_id, "model": primary.run.run_config.model,
                                 "registry_version": str(self.deployment.version or ""),
                                 "shadow_run_id": opts.shadow.run_id if opts.shadow else "",
                                 "canary_run_id": opts.canary.run_id if opts.canary else ""})

    def _swapped(self, new: TextClassifier) -> None:
        self.metrics.swaps.inc()
        self._model_info(new)

    @property
    def clf(self) -> TextClassifier:
        """The model answering now (a registry swap changes it; its labels never change)."""
        return self.batcher.clf

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        from spamtune.serving.models import SELF_TEST

        for model in (self.clf, self.opts.shadow, self.opts.canary):  # fails start-up rather than every request
            if model is not None:
                await asyncio.to_thread(model.predict_proba, [SELF_TEST])
        self.deployment.start()

    async def stop(self) -> None:
        await self.deployment.stop()
        for task in list(self._shadow_tasks):
            task.cancel()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)  # what is queued is written before the process ends
        self.store_pool.shutdown(wait=False, cancel_futures=True)

    async def store_call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """`fn(*args)` on the store's threads, waiting at most `timeout` (default: the limits'): a busy or locked
        store is a 503, never a stalled answer."""
        future = asyncio.get_running_loop().run_in_executor(self.store_pool, functools.partial(fn, *args))
        try:
            return await asyncio.wait_for(future, self.limits.store_timeout_s if timeout is None else timeout)
        except TimeoutError:
            raise HTTPException(503, "the prediction store is busy; retry shortly",
                                headers={"Retry-After": "2"}) from None

    # -- deciding --------------------------------------------------------------------------------------------------

    def check_texts(self, texts: list[str], where: str = "texts") -> None:
        """This server's bounds (`ServeLimits`), as a 422 in pydantic's words: where, and what."""
        lim, errors = self.limits, list[dict[str, Any]]()
        if len(texts) > lim.max_texts:
            errors.append({"type": "too_long", "loc": ("body", where),
                           "msg": f"List should have at most {lim.max_texts} items after validation, not "
                                  f"{len(texts)}"})
        errors += [{"type": "string_too_long", "loc": ("body", where, i),
                    "msg": f"String should have at most {lim.max_chars} characters"}
                   for i, t in enumerate(texts) if len(t) > lim.max_chars][:20]
        if errors:
            raise RequestValidationError(errors)

    def thresholds(self, threshold: float | None, review: float | None) -> tuple[float | None, float | None]:
        """A request's thresholds, else the server's defaults (else the run's operating point, in the pipeline)."""
        return (self.opts.threshold if threshold is None else threshold,
                self.opts.review_threshold if review is None else review)

    async def decide(self, texts: list[str], threshold: float | None = None, review: float | None = None,
                     explain: bool = False, sender: str | None = None) -> list[Answer]:
        """Decide `texts` (all from `sender`, when given) in a shared pass (the canary's or the primary's), explain
        on request within the budget, record, count, and let the shadow decide them after the answer."""
        senders: list[str | None] = [sender] * len(texts)
        start = time.perf_counter()
        threshold, review = self.thresholds(threshold, review)
        answering, role = self.deployment.route(texts)
        part = await asyncio.wait_for(answering.classify(texts, senders), self.limits.request_timeout_s)
        model = part.clf  # the model that scored this request decides it and is recorded as the answer's
        assert model.pipeline is not None
        decided = model.pipeline.decide(part.scored, threshold, review)
        if explain:
            await self._explain(answering, model, texts, decided)
        ms = (time.perf_counter() - start) * 1000
        ids = [self.record(d, text, model, "serve", ms, sender=sender).id for text, d in zip(texts, decided)]
        answers = [Answer(d, model.run_id, rid, self.keys.token(rid), row.tolist())
                   for d, rid, row in zip(decided, ids, part.scored.logits)]
        for d in decided:
            self.metrics.predictions.labels(d.label, d.band or "none").inc()
            if final := next((v for v in d.checks if v.final), None):
                self.metrics.decided_by.labels(final.check, final.label or "").inc()
            if self.positive is not None:
                self.metrics.positive_score.observe(d.scores[self.positive])
        self.metrics.answers.labels(role).inc(len(texts))
        for hit in part.scored.cached or ():
            self.metrics.cache_lookups.labels("hit" if hit else "miss").inc()
        if self.deployment.shadow is not None:  # after the answer: the client never waits for the shadow
            task = asyncio.create_task(self.shadow(texts, answers, threshold, review, sender))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return answers

    async def _explain(self, batcher: MicroBatcher, model: TextClassifier, texts: list[str],
                       decided: list[Decision]) -> None:
        """The pipeline's explanations on the model's worker thread, within the explanation budget; a failure or
        a timeout leaves the decisions as they are and says so in the reasons."""
        from spamtune.inference.pipeline import missing

        assert model.pipeline is not None
        pipeline, budget = model.pipeline, self.limits.explain_budget_s
        try:
            await asyncio.wait_for(batcher.exclusive(lambda: pipeline.explain(texts, decided, budget)),
                                   budget + self.limits.request_timeout_s)
        except Exception as e:  # a timeout, a full queue, a bug: never fail an answer for its explanation
            log.warning("explanation skipped: %s", type(e).__name__)
            for d in decided:
                for v in d.checks:
                    if not v.evidence:
                        missing(v, "the explanation did not finish in time" if isinstance(e, TimeoutError)
                                else type(e).__name__)

    def record(self, d: Decision, text: str, model: TextClassifier, source: str, ms: float,
               shadow_of: str | None = None, sender: str | None = None) -> PredictionRecord:
        """The store's record of a decision, queued for the background writer (never waits for the database)."""
        record = PredictionRecord.of(d, text, model.run_id, source, ms, self.opts.store_text, model.positive_label,
                                     shadow_of=shadow_of, sender=sender)
        if self.writer is not None:
            self.writer.submit(record)
        return record

    async def shadow(self, texts: list[str], answers: list[Answer], threshold: float | None,
                     review: float | None, sender: str | None = None) -> None:
        """The shadow model's decisions on an answered request: recorded beside the answers, compared, never
        returned; its failure never touches answers."""
        assert self.deployment.shadow is not None
        start = time.perf_counter()
        try:
            part = await self.deployment.shadow.classify(texts, [sender] * len(texts))
        except Overloaded:
            self.metrics.shadow_skipped.inc(len(texts))
            return
        except Exception:
            log.exception("the shadow model failed")
            self.metrics.shadow_skipped.inc(len(texts))
            return
        model = part.clf
        assert model.pipeline is not None
        decided = model.pipeline.decide(part.scored, threshold, review)
        ms = (time.perf_counter() - start) * 1000
        for text, d, answer in zip(texts, decided, answers):
            agree = "agree" if d.label == answer.decision.label else "disagree"
            self.metrics.shadow_agreement.labels(agree).inc()
            self.record(d, text, model, "shadow", ms, shadow_of=answer.id, sender=sender)

    # -- what it says about itself ---------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        now, opts, lim = self.clf, self.opts, self.limits
        return {"run_id": now.run_id, "model": now.run.run_config.model, "labels": now.label_names,
                "checks": now.pipeline.names if now.pipeline else [],
                "list_entries": self.lists.compiled.size if self.lists else None,
                "memory_entries": len(m.active) if (m := self.memory) is not None else None,
                "max_length": now.max_length, "max_chars": lim.max_chars, "max_texts": lim.max_texts,
                "positive_label": self.positive,
                "threshold": now.block_threshold(opts.threshold),
                "review_threshold": now.review_threshold(opts.review_threshold, opts.threshold),
                "temperature": now.temperature, "recording": opts.store is not None,
                "api_key_required": self.keys.required,
                "registry": opts.source.registry, "registry_version": self.deployment.version,
                "shadow_run_id": opts.shadow.run_id if opts.shadow else None,
                "canary_run_id": opts.canary.run_id if opts.canary else None,
                "canary_share": opts.source.canary_share if opts.canary else 0.0}


def service(request: Request) -> ClassifierService:
    """The FastAPI dependency every route receives the service through."""
    return request.app.state.service
