"""Background writes for the service: records go into a bounded queue and a thread writes them in batches, so
the request path never waits for the database. When the database is down, slow or full, a batch is dropped,
counted and logged ("not recorded") and answers go on; a full queue drops new records the same way."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from spamtune.monitoring.store import PredictionRecord, PredictionStore

log = logging.getLogger(__name__)


class StoreWriter:
    """Batches of up to `batch` records, written at least every `interval` seconds.

    Args:
        on_written / on_failed: called with a count after each batch (the service's Prometheus counters).
    """

    def __init__(self, store: PredictionStore, max_queue: int = 20_000, batch: int = 500, interval: float = 0.2,
                 on_written: Callable[[int], None] | None = None,
                 on_failed: Callable[[int], None] | None = None) -> None:
        self.store, self.batch, self.interval = store, batch, interval
        self.queue: queue.Queue[PredictionRecord | None] = queue.Queue(max_queue)
        self.written = self.failed = self.dropped = 0
        self._on_written, self._on_failed = on_written, on_failed
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="spamtune-store-writer", daemon=True)
        self._thread.start()
        self._last_warning = 0.0

    def submit(self, record: PredictionRecord) -> bool:
        """Queue a record; False (and counted as not recorded) when the queue is full."""
        try:
            self._idle.clear()
            self.queue.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            self._failed(1, "the write queue is full")
            return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (or given up on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.empty() and self._idle.wait(0.05):
                return True
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        self.queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            records, stop = [first], False
            deadline = time.monotonic() + self.interval
            while len(records) < self.batch:
                try:
                    item = self.queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                records.append(item)
            try:
                self.store.insert(records)
                self.written += len(records)
                if self._on_written:
                    self._on_written(len(records))
            except Exception as e:  # the database, not a bug of ours: answers must go on
                self.failed += len(records)
                self._failed(len(records), f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
            if self.queue.empty():
                self._idle.set()
            if stop:
                return

    def _failed(self, n: int, reason: str) -> None:
        if self._on_failed:
            self._on_failed(n)
        if time.monotonic() - self._last_warning > 10:  # one line every 10 s at most, not one per request
            self._last_warning = time.monotonic()
            log.warning("prediction store: %d records not recorded (%s)", n, reason)
