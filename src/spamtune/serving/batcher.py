"""The micro-batcher: texts from concurrent requests are queued and classified together in one forward pass (up
to `max_batch` texts, waiting at most `window_ms` for company), on one worker thread, so the model never runs
twice at once and throughput under load is that of batched inference rather than one pass per request. Each pass
runs the run's decision pipeline (inference/pipeline.py) up to its threshold-free `Scored`; work that needs the
model alone (an explanation's gradients) is queued with `exclusive` and runs between two passes.

The model can be swapped while requests flow (`swap`): each forward pass reads the model once, and every request
gets back the model that scored it, so an answer is always wholly one model's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spamtune.inference import TextClassifier
from spamtune.inference.pipeline import Scored as PipelineScored

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue holds `max_queue` texts already: the caller answers 503 with Retry-After."""


@dataclass
class Scored:
    """One request's share of a pass."""

    scored: PipelineScored  # the checks' verdicts and the combined logits of this request's messages
    clf: TextClassifier  # the model that computed them: decide with its pipeline (temperature, operating point)


@dataclass
class _Job:
    """One request's messages (and their senders) waiting for a pass, and where the result goes."""

    texts: list[str]
    senders: list[str | None]
    future: asyncio.Future[Scored]


@dataclass
class _Exclusive:
    """A callable that needs the model to itself, and where its result goes."""

    fn: Callable[[], Any]
    future: asyncio.Future


class MicroBatcher:
    """Collect texts from concurrent requests and classify them in shared batches on one worker thread.

    Args:
        max_queue: texts allowed to wait; `classify` raises `Overloaded` beyond it.
        on_batch: called with each forward pass's size (the batch-size histogram).
    """

    def __init__(self, clf: TextClassifier, max_batch: int, window_ms: float, max_queue: int = 2_048,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.clf, self.max_batch, self.window, self.max_queue = clf, max_batch, window_ms / 1000, max_queue
        self.queue: asyncio.Queue[_Job | _Exclusive] = asyncio.Queue()
        self.waiting = 0  # texts queued or in the forward pass now (the queue-depth gauge)
        self._on_batch = on_batch
        self.batches_run = 0  # observable in /health: proof that requests share passes
        self.last_error: str | None = None  # the last batch's failure; cleared by the next success (/health)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._worker())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def swap(self, clf: TextClassifier) -> TextClassifier:
        """Answer with `clf` from the next forward pass on; returns the model it replaces. The labels must be the
        same (clients, the store and feedback rely on them)."""
        if clf.label_names != self.clf.label_names:
            raise ValueError(f"the new model's labels {clf.label_names} differ from {self.clf.label_names}")
        old, self.clf = self.clf, clf
        return old

    async def exclusive(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` on the worker thread between two passes: work on a model this batcher runs (an explanation's
        gradients) never overlaps a forward pass."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Exclusive(fn, future))
        return await future

    async def classify(self, texts: list[str], senders: list[str | None] | None = None) -> Scored:
        """The pipeline's pass over `texts` (verdicts, combined logits, truncation) and the model that made it; in
        a shared forward pass. `senders`: who sent each message (the operator lists)."""
        if self.waiting + len(texts) > self.max_queue:
            raise Overloaded(f"{self.waiting} messages are waiting already")
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        self.waiting += len(texts)
        try:
            await self.queue.put(_Job(texts, senders or [None] * len(texts), future))
            return await future
        finally:
            self.waiting -= len(texts)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            if isinstance(first, _Exclusive):
                await self._run_exclusive(first)
                continue
            jobs, later = [first], []
            n = len(first.texts)
            deadline = loop.time() + self.window
            while n < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), timeout)
                except TimeoutError:  # not the builtin TimeoutError before Python 3.11
                    break
                if isinstance(job, _Exclusive):
                    later.append(job)  # after this pass: requests already waiting go first
                    continue
                jobs.append(job)
                n += len(job.texts)
            await self._run_pass(jobs)
            for job in later:
                await self._run_exclusive(job)

    async def _run_pass(self, jobs: list[_Job]) -> None:
        texts = [t for job in jobs for t in job.texts]
        senders = [s for job in jobs for s in job.senders]
        if self._on_batch:
            self._on_batch(len(texts))
        clf = self.clf  # one model per pass, whatever `swap` does meanwhile
        try:
            scored = await asyncio.to_thread(clf.score, texts, senders=senders)
        except Exception as e:  # never leave a request hanging; the handler turns this into a 500 JSON
            log.exception("classification failed")
            self.last_error = f"{type(e).__name__}: {e}"
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        self.batches_run += 1
        self.last_error = None
        start = 0
        for job in jobs:
            if not job.future.done():  # the client may have gone away
                job.future.set_result(Scored(scored[start : start + len(job.texts)], clf))
            start += len(job.texts)

    async def _run_exclusive(self, job: _Exclusive) -> None:
        try:
            result = await asyncio.to_thread(job.fn)
        except Exception as e:
            if not job.future.done():
                job.future.set_exception(e)
            return
        if not job.future.done():
            job.future.set_result(result)
