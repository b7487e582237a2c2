"""The decision cache: a message seen recently is not scored again (the lecture's caching; SMS traffic repeats
itself: campaigns, templates, the same forwarded chain).

What is kept is the pipeline's threshold-free pass for one message (every check's verdict, the combined logits,
truncation), so a cached message is decided at each request's own thresholds like a fresh one. The key is the
message as the checks read it (the run's normalization: the model, the n-grams and the list patterns all read
that) with its sender; a message longer than the model reads is never cached (a list entry may match its tail).
Bounded (least recently used goes first) and timed (`ttl_s`). One cache per pipeline, so per run and per loaded
model: a hot swap starts with an empty one. Any change to the operator lists or the memory of corrections clears
it (the checks' refreshers call `clear`), and a pass that began before a clear never writes into the cache after
it (`generation`).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class CacheConfig:
    """`size` messages at most (0: no cache), each for `ttl_s` seconds."""

    size: int = 10_000
    ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        from spamtune.errors import ConfigError

        if self.size < 0 or self.size > 10_000_000:
            raise ConfigError(f"--decision-cache must be between 0 and 10,000,000 messages, not {self.size}")
        if not self.ttl_s > 0:
            raise ConfigError(f"--decision-cache-ttl must be positive, not {self.ttl_s}")


class DecisionCache:
    """A bounded, timed, thread-safe map from a message's key to its scored row (see the module docstring)."""

    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.clock = config, clock
        self._rows: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = 0  # moves on every clear
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            found = self._rows.get(key)
            if found is not None and self.clock() - found[0] < self.config.ttl_s:
                self._rows.move_to_end(key)
                self.hits += 1
                return found[1]
            if found is not None:  # expired
                del self._rows[key]
            self.misses += 1
            return None

    def put(self, key: Hashable, row: Any, generation: int) -> None:
        """Keep `row`, unless the cache was cleared since `generation` (the row may be stale)."""
        with self._lock:
            if generation != self.generation:
                return
            self._rows[key] = (self.clock(), row)
            self._rows.move_to_end(key)
            while len(self._rows) > self.config.size:
                self._rows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self.generation += 1

    @property
    def hit_rate(self) -> float | None:
        seen = self.hits + self.misses
        return self.hits / seen if seen else None
