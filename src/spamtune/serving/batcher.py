"""The micro-batcher: texts from concurrent requests are queued and classified together in one forward pass (up
to `max_batch` texts, waiting at most `window_ms` for company), on one worker thread, so the model never runs
twice at once and throughput under load is that of batched inference rather than one pass per request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import numpy as np

from spamtune.inference import TextClassifier

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue holds `max_queue` texts already: the caller answers 503 with Retry-After."""


class MicroBatcher:
    """Collect texts from concurrent requests and classify them in shared batches on one worker thread.

    Args:
        max_queue: texts allowed to wait; `classify` raises `Overloaded` beyond it.
        on_batch: called with each forward pass's size (the batch-size histogram).
    """

    def __init__(self, clf: TextClassifier, max_batch: int, window_ms: float, max_queue: int = 2_048,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.clf, self.max_batch, self.window, self.max_queue = clf, max_batch, window_ms / 1000, max_queue
        self.queue: asyncio.Queue[tuple[list[str], asyncio.Future]] = asyncio.Queue()
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

    async def classify(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        """(N, C) logits of `texts`, and whether each was truncated; computed in a shared forward pass."""
        if self.waiting + len(texts) > self.max_queue:
            raise Overloaded(f"{self.waiting} messages are waiting already")
        future = asyncio.get_running_loop().create_future()
        self.waiting += len(texts)
        try:
            await self.queue.put((texts, future))
            return await future
        finally:
            self.waiting -= len(texts)

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
                except TimeoutError:  # not the builtin TimeoutError before Python 3.11
                    break
                jobs.append(job)
                n += len(job[0])
            texts = [t for job_texts, _ in jobs for t in job_texts]
            if self._on_batch:
                self._on_batch(len(texts))
            try:
                logits, truncated = await asyncio.to_thread(self.clf.logits, texts)
            except Exception as e:  # never leave a request hanging; the handler turns this into a 500 JSON
                log.exception("classification failed")
                self.last_error = f"{type(e).__name__}: {e}"
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches_run += 1
            self.last_error = None
            start = 0
            for job_texts, fut in jobs:
                if not fut.done():  # the client may have gone away
                    end = start + len(job_texts)
                    fut.set_result((logits[start:end], truncated[start:end]))
                start += len(job_texts)
