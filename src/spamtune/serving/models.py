"""The models a service answers with, and how they change while it runs.

- primary: answers every request (but the canary's share). With a registry it follows REG/current.json: a new
  version is loaded and self-tested in the background, then swapped in between two forward passes, so no request
  is dropped or fails and every answer is wholly one version's.
- canary: answers a fixed share of requests, chosen by the first message's sha256 (the same message always goes
  to the same model).
- shadow: scores every answered request too, after the answer is sent; its decisions are recorded beside the
  answers (source "shadow"), never returned. `spamtune monitor` compares the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spamtune.config import CANARY_SHARE, REGISTRY_POLL_S
from spamtune.inference import TextClassifier
from spamtune.lifecycle.registry import Registry
from spamtune.serving.batcher import MicroBatcher

log = logging.getLogger(__name__)

SELF_TEST = "Are we still meeting at six?"  # classified once before a model serves: one that cannot predict never does


@dataclass
class ModelSource:
    """Where the service's models come from (`serve RUN` or `serve --registry REG`, plus --shadow / --canary)."""

    run: str | None = None  # a run directory; or
    registry: str | None = None  # a registry whose current version answers, followed while serving
    shadow: str | None = None  # a run directory, or a version of the registry
    canary: str | None = None
    canary_share: float = CANARY_SHARE  # of requests answered by the canary (when there is one)
    poll_s: float = REGISTRY_POLL_S  # how often the registry's pointer is read
    dtype: str = "fp32"
    quantize: str | None = None
    device: str = "cpu"
    runtime: str = "torch"  # onnx: the run directories are ONNX exports
    cascade: bool = True  # False: every message through the model in a --cascade run

    def resolve(self, ref: str) -> Path:
        """A --shadow / --canary reference: a version number (or "current") of the registry, else a run dir."""
        if self.registry is not None and not os.path.isdir(ref):
            return Registry(self.registry).resolve(ref)
        return Path(ref)

    def primary_dir(self) -> tuple[Path, int | None]:
        if self.registry is not None:
            reg = Registry(self.registry)
            return reg.current_dir(), reg.current()
        assert self.run is not None
        return Path(self.run), None

    def load(self, run_dir: str | os.PathLike) -> TextClassifier:
        clf = TextClassifier.load(run_dir, self.dtype, self.quantize, self.device, self.runtime, self.cascade)
        clf.predict_proba([SELF_TEST])
        return clf


def in_canary(text: str, share: float) -> bool:
    return share > 0 and int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8],
                                        "big") / 2**64 < share


@dataclass
class Deployment:
    """The running models, each behind its own micro-batcher (see the module docstring)."""

    primary: MicroBatcher
    source: ModelSource = field(default_factory=ModelSource)
    shadow: MicroBatcher | None = None
    canary: MicroBatcher | None = None
    version: int | None = None  # the registry version the primary is
    swaps: int = 0
    last_swap_error: str | None = None
    on_swap: Callable[[TextClassifier], None] | None = None
    prepare: Callable[[TextClassifier], None] | None = None  # readies a loaded version before it answers
    _failed_version: int | None = None
    _task: asyncio.Task | None = None

    @property
    def batchers(self) -> list[MicroBatcher]:
        return [b for b in (self.primary, self.canary, self.shadow) if b is not None]

    def route(self, texts: list[str]) -> tuple[MicroBatcher, str]:
        """The batcher that answers this request, and its role ("primary" or "canary")."""
        if self.canary is not None and in_canary(texts[0], self.source.canary_share):
            return self.canary, "canary"
        return self.primary, "primary"

    def start(self) -> None:
        for b in self.batchers:
            b.start()
        if self.source.registry is not None:
            self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for b in self.batchers:
            await b.stop()

    async def check_registry(self) -> bool:
        """Swap in the registry's current version if it changed; True when it did. A version that fails to load
        or self-test is logged and skipped (the old one keeps answering) until the pointer changes again."""
        reg = Registry(self.source.registry or "")
        try:
            number = await asyncio.to_thread(reg.current)
        except Exception as e:  # a pointer being rewritten, a damaged file: keep serving, say so
            self.last_swap_error = f"{type(e).__name__}: {e}"
            return False
        if number is None or number == self.version or number == self._failed_version:
            return False
        try:
            clf = await asyncio.to_thread(self.source.load, reg.version_dir(number))
            if self.prepare is not None:
                self.prepare(clf)
            old = self.primary.swap(clf)
        except Exception as e:
            log.error("registry version %s not swapped in: %s: %s", number, type(e).__name__, e)
            self._failed_version, self.last_swap_error = number, f"version {number}: {type(e).__name__}: {e}"
            return False
        self.version, self.swaps, self.last_swap_error, self._failed_version = number, self.swaps + 1, None, None
        log.warning("now serving registry version %s (run %s; was %s)", number, clf.run_id, old.run_id)
        if self.on_swap is not None:
            self.on_swap(clf)
        return True

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.source.poll_s)
            await self.check_registry()
