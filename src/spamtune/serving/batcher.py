"""The micro-batcher: texts from concurrent requests are queued and classified together in one forward pass (up
to `max_batch` texts, waiting at most `window_ms` for company), on one worker thread, so the model never runs
twice at once and throughput under load is that of batched inference rather than one pass per request."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from spamtune.inference import TextClassifier

log = logging.getLogger(__name__)


class MicroBatcher:
    """Collect texts from concurrent requests and classify them in shared batches on one worker thread."""

    def __init__(self, clf: TextClassifier, max_batch: int, window_ms: float) -> None:
        self.clf, self.max_batch, self.window = clf, max_batch, window_ms / 1000
        self.queue: asyncio.Queue[tuple[list[str], asyncio.Future]] = asyncio.Queue()
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
                except TimeoutError:  # not the builtin TimeoutError before Python 3.11
                    break
                jobs.append(job)
                n += len(job[0])
            texts = [t for job_texts, _ in jobs for t in job_texts]
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
