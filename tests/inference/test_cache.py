"""The decision cache: least recently used out first, expiry, a pass begun before a clear never written after it;
in the pipeline, repeats answered from it exactly as a fresh pass would, per sender and per threshold, long
messages never cached, and any list or memory change emptying it."""

from __future__ import annotations

import numpy as np
import pytest

from spamtune.calibration.decisions import MemoryCalibration
from spamtune.data import read_split
from spamtune.errors import ConfigError
from spamtune.inference import TextClassifier
from spamtune.inference.cache import CacheConfig, DecisionCache
from spamtune.inference.lists import ListCheck, entry
from spamtune.inference.memory import MemoryCheck
from spamtune.monitoring.lists import OperatorLists
from spamtune.monitoring.store import PredictionStore
from tests.monitoring.test_memory import Source
from tests.monitoring.test_memory import entry as memory_entry


def test_least_recently_used_goes_first_and_rows_expire():
    now = [0.0]
    cache = DecisionCache(CacheConfig(size=2, ttl_s=10.0), clock=lambda: now[0])
    g = cache.generation
    cache.put("a", 1, g)
    cache.put("b", 2, g)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3, g)  # b goes
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2
    now[0] = 9.9
    assert cache.get("a") == 1
    now[0] = 10.0  # stored at 0: expired
    assert cache.get("a") is None and len(cache) == 1
    assert (cache.hits, cache.misses) == (4, 2) and cache.hit_rate == pytest.approx(4 / 6)
    cache.clear()
    cache.put("d", 4, g)  # scored before the clear: maybe stale, not kept
    assert cache.get("d") is None and len(cache) == 0
    cache.put("d", 4, cache.generation)
    assert cache.get("d") == 4
    for bad in (dict(size=-1), dict(ttl_s=0.0)):
        with pytest.raises(ConfigError, match="--decision-cache"):
            CacheConfig(**bad)


def test_repeats_come_from_the_cache_as_a_fresh_pass_decides_them(tiny_run, data_dir):
    texts = list(read_split(data_dir / "test.csv")["Text"][:20])
    fresh = TextClassifier.load(tiny_run)
    cached = TextClassifier.load(tiny_run)
    cached.pipeline.use_cache(CacheConfig(size=100))
    first = cached.pipeline.score(texts)
    assert first.cached == [False] * 20 and len(cached.pipeline.cache) == len(set(texts))
    # the same messages, some twice, some new, and one from a named sender (another key)
    again = [*texts[:5], *texts[:5], "a message never seen", texts[6]]
    senders = [None] * 11 + ["+447700900123"]
    scored = cached.pipeline.score(again, senders=senders)
    assert scored.cached == [True] * 10 + [False, False]
    reference = fresh.pipeline.score(again, senders=senders)
    np.testing.assert_allclose(scored.logits, reference.logits, atol=1e-5)  # other batches: rounding only
    assert [[v.check for v in vs] for vs in scored.verdicts] == [[v.check for v in vs] for vs in reference.verdicts]
    # thresholds are applied after the cache: a cached row decides at each call's own
    p = float(cached.predict_proba(texts[:1])[0, 1])
    (low,) = cached.decide(texts[:1], threshold=max(p - 0.01, 0.0))
    (high,) = cached.decide(texts[:1], threshold=min(p + 0.01, 1.0), review_threshold=min(p + 0.01, 1.0))
    assert (low.band, high.band) == ("block", "allow")
    # what the model does not read entirely is never cached
    long = "FREE prize " * (cached.char_cap // 11 + 10)
    assert cached.pipeline.cache_key(long, None) is None
    cached.pipeline.score([long])
    assert cached.pipeline.score([long]).cached == [False]


def test_a_list_or_memory_change_empties_it(tiny_run, tmp_path):
    clf = TextClassifier.load(tiny_run)
    store = PredictionStore.open(f"sqlite:///{tmp_path / 'store.sqlite'}")
    lists = OperatorLists(store)
    check = ListCheck(lists, clf.label_names, refresh_s=0.0)
    clf.pipeline.put_first(check)
    cal = MemoryCalibration.load(tiny_run)
    assert cal is not None
    source = Source([])
    clf.pipeline.put_after_model(MemoryCheck(source, clf, cal, refresh_s=0.0))
    clf.pipeline.use_cache(CacheConfig())
    text = "Your parcel is held: pay the £1.99 fee at parcel-fee.example/pay"
    (d,) = clf.decide([text])
    assert [v.check for v in d.checks] == ["model"] and clf.pipeline.score([text]).cached == [True]
    lists.add([entry("deny", "domain", "parcel-fee.example", "wave", "alice")], by="alice")
    (d,) = clf.decide([text])
    assert d.checks[0].check == "lists" and d.label == "spam"
    assert clf.pipeline.score([text]).cached == [True]
    # a correction in the memory: the cache goes, and the next pass sees the memory
    other = "Are we still on for dinner tonight?"
    (before,) = clf.decide([other])
    corrected = "ham" if before.label == "spam" else "spam"
    source.list = [memory_entry("p1", other, corrected)]
    source.rev += 1
    assert clf.pipeline.score([other]).cached == [False]
    (after,) = clf.decide([other])
    assert after.checks[-1].check == "memory" and after.label == corrected
