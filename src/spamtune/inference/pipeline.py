"""Decisions as a pipeline of named checks, each explaining itself (Rspamd's symbols, SpamAssassin's `tests=`,
tg-spam's per-check verdicts).

A check sees a batch of messages and gives each a `Verdict`: the label it votes for (or none), its own score, and a
short reason with its evidence. Checks run in order; a *final* verdict decides its message (a deny-list entry, say)
and the checks after it skip that message. The combiner turns what is left into the decision: the model's logits,
stacked with the n-gram model's margin when the run has one, then the run's temperature, the operating point and
the bands (decisions.py). Every path decides through here: `TextClassifier` (decide / predict / __call__ /
predict_proba), `classify` (arguments, stdin, files, Ray), the service (answers, shadow, canary), the ONNX runtime
and `evaluate`.

Two phases, so the service can share a forward pass between requests and still decide each at its own thresholds:

    scored = pipeline.score(texts)                      # threshold-free: verdicts, combined logits, truncation
    decided = pipeline.decide(scored, threshold, review)  # a Decision per message, its verdicts attached
    pipeline.explain(texts, decided, budget_s=5)          # on demand: the words / n-grams behind each verdict

Today's configuration is [ListCheck "lists" (where a store holds operator lists: inference/lists.py), CascadeCheck
"cascade" (--cascade runs: the n-gram model decides what it is sure of, inference/cascade.py), ModelCheck "model",
MemoryCheck "memory" (where a store holds corrections: inference/memory.py), NgramCheck "ngrams" (stacked runs)]
+ the operating point.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from spamtune.calibration.decisions import Band, bands
from spamtune.data.labels import POSITIVE_ID
from spamtune.inference.cache import CacheConfig, DecisionCache
from spamtune.inference.cascade import CascadeCheck
from spamtune.inference.memory import MemoryCheck
from spamtune.normalize import normalize_text
from spamtune.tasks import SingleLabel

if TYPE_CHECKING:
    from spamtune.calibration.stacking import NgramModel
    from spamtune.inference.api import TextClassifier

log = logging.getLogger(__name__)

TOP_EVIDENCE = 5  # words / n-grams listed per explained verdict


@dataclass
class Verdict:
    """One check's say on one message."""

    check: str  # the check's name ("lists", "cascade", "model", "memory", "ngrams")
    label: str | None  # the label it votes for; None: no opinion
    score: float | None  # the check's own score (the model's P(positive) alone; the n-gram SVM's margin)
    reason: str  # one line for people
    evidence: dict[str, Any] = field(default_factory=dict)  # filled by `explain`: {"words": [[w, weight], ...]}
    final: bool = False  # decides the message: the checks after it and the combiner's model score are skipped

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Decision:
    """One message's outcome in a form people and tools read: the label at the operating point, the band, the
    calibrated probabilities it came from, and every check's verdict."""

    label: str  # the decided label (binary runs: the positive label only in the "block" band)
    score: float  # calibrated probability of `label`
    scores: dict[str, float]  # calibrated probability of every label
    band: Band | None  # allow / review / block for binary runs; None for more classes ("decision" on the wire)
    threshold: float | None  # P(positive) at or above it: block
    review_threshold: float | None  # P(positive) at or above it: review
    truncated: bool  # the message was longer than the model reads (max_length tokens)
    checks: list[Verdict] = field(default_factory=list)  # in pipeline order

    def to_json(self) -> dict[str, Any]:
        """The shape of the HTTP results, `classify --format jsonl` and the Ray rows: the band is `decision`."""
        out = dataclasses.asdict(self)
        return {"label": out.pop("label"), "score": out.pop("score"), "scores": out.pop("scores"),
                "decision": out.pop("band"), **out}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Decision:
        fields = {k: v for k, v in d.items() if k != "decision"}
        return cls(**{**fields, "band": d["decision"], "checks": [Verdict(**v) for v in d.get("checks", [])]})


@dataclass
class Scored:
    """A batch through the checks, before any threshold: what `decide` needs."""

    logits: np.ndarray  # (N, C) the combined logits (the model's, stacked with the n-grams'): raw, uncalibrated
    truncated: list[bool]
    verdicts: list[list[Verdict]]  # per message, in check order
    cached: list[bool] | None = None  # per message, whether it came from the decision cache (None: no cache)

    def __getitem__(self, rows: slice) -> Scored:
        """The rows of one request in a shared pass (the micro-batcher)."""
        return Scored(self.logits[rows], self.truncated[rows], self.verdicts[rows],
                      None if self.cached is None else self.cached[rows])


@dataclass
class BatchOptions:
    """How a pass runs (not what it decides): the model's batch size and a progress bar."""

    batch_size: int = 16
    progress: bool = False


@dataclass
class CheckOutput:
    """What a check gives for the messages it was shown: a verdict each, and the signal the combiner reads."""

    verdicts: list[Verdict | None]
    signal: np.ndarray | None = None  # model: (n, C) logits; ngrams: (n,) margins
    truncated: list[bool] | None = None  # the model's: the message was cut to max_length tokens
    vectors: np.ndarray | None = None  # the model's, when a check reads them: (n, D) the pooled vectors


class Check(Protocol):
    """A named check: `run` scores messages (cheap or not), `explain` fills in the evidence on demand. A check
    with `reads_vectors = True` (the memory) is handed the pooled vectors an earlier check (the model) gave."""

    name: str

    def run(self, texts: Sequence[str], options: BatchOptions, senders: Sequence[str | None] | None = None,
            vectors: np.ndarray | None = None) -> CheckOutput: ...

    def explain(self, texts: Sequence[str], verdicts: Sequence[Verdict], deadline: float) -> None:
        """Fill `verdict.evidence` for each message, stopping at `deadline` (time.monotonic())."""
        ...


class Refresher:
    """What a check that reads a store (the lists, the memory) does before each batch: look at the store's cheap
    `revision()` no more than every `refresh_s` seconds (so another process's change counts within that), and when
    it moved, `read()` the new contents and hand them to `apply` (under a lock: one refresh at a time, in order).
    A store that cannot be read (or whose contents `read` cannot use) keeps the check deciding with what it had,
    said in the log at most once a minute; a bug in `apply` raises."""

    def __init__(self, revision: Callable[[], Any], read: Callable[[], Any], apply: Callable[[Any], None],
                 what: str, size: Callable[[], int], refresh_s: float = 1.0) -> None:
        self.revision, self.read, self.apply, self.what, self.size = revision, read, apply, what, size
        self.refresh_s = refresh_s
        self.seen: Any = None  # the revision last applied
        self._checked = float("-inf")
        self._warned = float("-inf")
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Look at the store on the next batch (this process changed it)."""
        self._checked = float("-inf")

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.refresh_s:
            return
        with self._lock:
            if now - self._checked < self.refresh_s:
                return
            try:
                revision = self.revision()
                fresh = self.read() if revision != self.seen else None
            except Exception as e:  # a database hiccup: keep deciding with the last contents
                if now - self._warned > 60:
                    log.warning("%s not refreshed (%s: %s); using the last %d entries", self.what,
                                type(e).__name__, e, self.size())
                    self._warned = now
                fresh = None
            if fresh is not None:  # outside the try: a bug here shows as one
                self.apply(fresh)
                self.seen = revision
            self._checked = time.monotonic()


def missing(verdict: Verdict, why: str) -> None:
    """The explanation is missing (failed, ran out of time, not possible here): the decision stands."""
    verdict.evidence = {"missing": why}
    if "explanation missing" not in verdict.reason:
        verdict.reason += f" (explanation missing: {why})"


# ---------------------------------------------------------------------------------------------------------------
# The fine-tuned model


class ModelCheck:
    """The fine-tuned LLM: its logits, and on demand the words that pushed a message towards its label (captum's
    word occlusion by default, or layer integrated gradients; inference/explain.py)."""

    name = "model"

    def __init__(self, clf: TextClassifier, stacked: bool, method: str = "occlusion", n_steps: int = 16) -> None:
        self.clf, self.method, self.n_steps = clf, method, n_steps
        # the run's temperature was fitted on the logits the combiner decides with: the model's own only when
        # nothing is stacked on them
        self.calibrated = not stacked
        self.temperature = clf.temperature if self.calibrated else 1.0
        self.what = f"fine-tuned {clf.run.run_config.model}"
        self.pooled = False  # also give the pooled vectors (a memory of corrections reads them)

    def run(self, texts: Sequence[str], options: BatchOptions, senders: Sequence[str | None] | None = None,
            vectors: np.ndarray | None = None) -> CheckOutput:
        pooled = None
        if self.pooled:
            logits, pooled, truncated = self.clf.model_logits_pooled(texts, options.batch_size, options.progress)
        else:
            logits, truncated = self.clf.model_logits(texts, options.batch_size, options.progress)
        probs = self.clf.scores_from_logits(logits, calibrated=self.calibrated)
        names, positive = self.clf.label_names, self.clf.positive_id
        verdicts: list[Verdict | None] = []
        for p in probs:
            k = int(p.argmax())
            shown = positive if positive is not None else k  # binary: always P(positive), as the bands read it
            verdicts.append(Verdict(self.name, names[k], float(p[shown]),
                                    f"{self.what}: P({names[shown]}) {p[shown]:.3f}"))
        return CheckOutput(verdicts, logits, truncated, pooled)

    def explain(self, texts: Sequence[str], verdicts: Sequence[Verdict], deadline: float) -> None:
        from spamtune.inference.explain import WordAttributor

        try:
            attributor = WordAttributor(self.clf, self.temperature, self.n_steps, self.method)
        except ExplanationUnavailable as e:
            for v in verdicts:
                missing(v, str(e))
            return
        names = self.clf.label_names
        for text, v in zip(texts, verdicts):
            if time.monotonic() > deadline:
                missing(v, "the time budget ran out")
                continue
            try:
                words = attributor.words(text, names.index(v.label or names[0]))
            except Exception as e:  # never fail a decision for its explanation; a bug still shows in the log
                log.exception("explaining the model's verdict failed")
                missing(v, f"{type(e).__name__}")
                continue
            v.evidence = {"words": [[w, round(a, 6)] for w, a in words[:TOP_EVIDENCE]],
                          "method": attributor.describe()}


class ExplanationUnavailable(Exception):
    """This model cannot be explained here (no gradients: the ONNX runtime, an int8 model)."""


# ---------------------------------------------------------------------------------------------------------------
# The n-gram model of a stacked run


class NgramCheck:
    """The word + character n-gram SVM of a `--stack ngrams` run: its margin, and on demand the n-grams that
    contributed most to it (exact: a linear model's margin is the sum of its features' contributions)."""

    name = "ngrams"

    def __init__(self, ngrams: NgramModel, label_names: Sequence[str], char_cap: int) -> None:
        self.ngrams, self.names, self.char_cap = ngrams, list(label_names), char_cap

    def run(self, texts: Sequence[str], options: BatchOptions, senders: Sequence[str | None] | None = None,
            vectors: np.ndarray | None = None) -> CheckOutput:
        # the n-grams read what the tokenizer read: the first char_cap characters
        margin = self.ngrams.ngram_margin([t[: self.char_cap] for t in texts])
        verdicts: list[Verdict | None] = [
            Verdict(self.name, self.names[int(m > 0)], float(m), f"n-gram SVM: margin {m:+.3f}") for m in margin]
        return CheckOutput(verdicts, margin)

    def explain(self, texts: Sequence[str], verdicts: Sequence[Verdict], deadline: float) -> None:
        explain_ngrams(self.ngrams, self.names, self.char_cap, texts, verdicts, deadline)


def explain_ngrams(ngrams: NgramModel, names: Sequence[str], char_cap: int, texts: Sequence[str],
                   verdicts: Sequence[Verdict], deadline: float) -> None:
    """The n-grams that pushed each margin most towards the verdict's label (its sign's label when it has none)."""
    for text, v in zip(texts, verdicts):
        if time.monotonic() > deadline:
            missing(v, "the time budget ran out")
            continue
        top = ngrams.contributions(text[:char_cap])
        # a positive margin votes for the positive label
        label = v.label if v.label is not None else names[POSITIVE_ID if (v.score or 0.0) > 0 else 1 - POSITIVE_ID]
        towards = 1.0 if label == names[POSITIVE_ID] else -1.0
        top.sort(key=lambda gc: -towards * gc[1])
        v.evidence = {"ngrams": [[g, round(c, 6)] for g, c in top[:TOP_EVIDENCE]], "towards": label,
                      "method": "exact contributions of the linear model (tf-idf value x weight)"}


# ---------------------------------------------------------------------------------------------------------------
# The pipeline


class DecisionPipeline:
    """Ordered checks and the combiner at the run's operating point (see the module docstring).

    Args:
        clf: the classifier whose model, temperature and operating point decide.
        checks: in order; default: the run's own (the cascade's n-gram model of a --cascade run unless `cascade`
            is False, the model, then the n-grams of a stacked run).
    """

    def __init__(self, clf: TextClassifier, checks: list[Check] | None = None, cascade: bool = True) -> None:
        self.clf = clf
        self.cache: DecisionCache | None = None  # set by whoever wants one (`use_cache`): classify, the service
        self._seen: tuple = ()  # the store-reading checks' revisions the cache's rows were scored with
        stack = clf.run.stack
        self.stack = stack
        if checks is None:
            checks = [ModelCheck(clf, stacked=stack is not None)]
            bands = clf.run.run_config.cascade
            if cascade and clf.run.cascade is not None and bands is not None:
                checks.insert(0, CascadeCheck(clf.run.cascade, bands, clf.label_names, clf.char_cap))
            if stack is not None:
                checks.append(NgramCheck(stack.ngrams, clf.label_names, clf.char_cap))
        self.checks: list[Check] = checks

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.checks]

    def put_first(self, check: Check) -> None:
        """Run `check` before all others (the operator lists: what they decide, the model never sees); once."""
        if all(c.name != check.name for c in self.checks):
            self.checks.insert(0, check)

    def put_after_model(self, check: Check) -> None:
        """Run `check` right after the model, with the model's pooled vectors (the memory of corrections); once."""
        model = next(c for c in self.checks if isinstance(c, ModelCheck))
        if all(c.name != check.name for c in self.checks):
            model.pooled = True
            self.checks.insert(self.checks.index(model) + 1, check)
            cascade = self.check("cascade")
            if isinstance(cascade, CascadeCheck) and isinstance(check, MemoryCheck):
                cascade.memory = check  # a message like a remembered one goes on to the memory

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def use_cache(self, config: CacheConfig) -> None:
        """Keep decisions of recent messages (inference/cache.py); size 0: none."""
        self.cache = DecisionCache(config) if config.size else None

    def score(self, texts: Sequence[str], options: BatchOptions | None = None,
              senders: Sequence[str | None] | None = None) -> Scored:
        """Every check on the messages no earlier check decided, then the combined logits (a cached message's
        from the cache). `senders`: who sent each message (None: unknown), for the operator lists."""
        options = options or BatchOptions()
        if senders is not None and len(senders) != len(texts):
            raise ValueError(f"{len(senders)} senders for {len(texts)} messages")
        cache = self.cache
        if cache is None or not texts:
            return self._score(texts, options, senders)
        refreshers = [r for c in self.checks if isinstance(r := getattr(c, "refresh", None), Refresher)]
        for r in refreshers:  # a list or memory change since the cached rows were scored empties the cache
            r()
        seen = tuple(r.seen for r in refreshers)
        if seen != self._seen:
            cache.clear()
            self._seen = seen
        generation = cache.generation
        keys = [self.cache_key(t, None if senders is None else senders[i]) for i, t in enumerate(texts)]
        rows: list[tuple[np.ndarray, bool, list[Verdict]] | None] = [
            None if k is None else cache.get(k) for k in keys]
        todo = [i for i, row in enumerate(rows) if row is None]
        if todo:
            fresh = self._score([texts[i] for i in todo], options,
                                None if senders is None else [senders[i] for i in todo])
            for j, i in enumerate(todo):
                rows[i] = (fresh.logits[j], fresh.truncated[j], fresh.verdicts[j])
                if keys[i] is not None:
                    cache.put(keys[i], rows[i], generation)
        done = [row for row in rows if row is not None]
        scored = set(todo)
        return Scored(np.stack([r[0] for r in done]), [r[1] for r in done],
                      [[dataclasses.replace(v) for v in r[2]] for r in done],
                      [i not in scored for i in range(len(texts))])

    def cache_key(self, text: str, sender: str | None) -> tuple[str, str | None] | None:
        """The message as every check reads it (the run's normalization), and its sender; None: not cached (longer
        than the model reads, so a list entry may match what the key would leave out)."""
        if len(text) > self.clf.char_cap:
            return None
        return normalize_text(text, self.clf.run.run_config.normalize), sender

    def _score(self, texts: Sequence[str], options: BatchOptions, senders: Sequence[str | None] | None) -> Scored:
        n, n_classes = len(texts), len(self.clf.label_set)
        verdicts: list[list[Verdict]] = [[] for _ in range(n)]
        pending = np.ones(n, dtype=bool)
        signals: dict[str, np.ndarray] = {}
        truncated = [False] * n
        pooled: np.ndarray | None = None
        for check in self.checks:
            rows = np.flatnonzero(pending)
            if not len(rows):
                break
            out = check.run([texts[int(i)] for i in rows], options,
                            None if senders is None else [senders[int(i)] for i in rows],
                            pooled[rows] if pooled is not None and getattr(check, "reads_vectors", False) else None)
            if out.vectors is not None:
                pooled = np.full((n, out.vectors.shape[1]), np.nan, dtype=np.float32)
                pooled[rows] = out.vectors
            for i, v in zip(rows, out.verdicts):
                if v is not None:
                    verdicts[i].append(v)
                    pending[i] &= not v.final
            if out.signal is not None:
                full = np.full((n, *out.signal.shape[1:]), np.nan, dtype=out.signal.dtype)
                full[rows] = out.signal
                signals[check.name] = full
            for i, t in zip(rows, out.truncated or ()):
                truncated[i] = t
        return Scored(self.combine(signals, verdicts, n, n_classes), truncated, verdicts)

    def combine(self, signals: dict[str, np.ndarray], verdicts: list[list[Verdict]], n: int,
                n_classes: int) -> np.ndarray:
        """(N, C) logits: the model's (stacked with the n-grams' margin); a final verdict's label otherwise."""
        logits = signals.get("model")
        if logits is None:
            logits = np.zeros((n, n_classes), dtype=np.float32)
        if self.stack is not None and "ngrams" in signals:
            logits = self.stack.combine_margins(logits, signals["ngrams"])
        logits = np.array(logits, dtype=np.float32, copy=True)
        names = self.clf.label_names
        for i, vs in enumerate(verdicts):
            final = next((v for v in vs if v.final), None)
            if final is not None:  # a certain label: a margin far beyond any threshold
                logits[i] = -50.0
                logits[i, names.index(final.label or names[0])] = 50.0
        return logits

    def decide(self, scored: Scored, threshold: float | None = None,
               review_threshold: float | None = None) -> list[Decision]:
        """A `Decision` per message at the operating point (or the given thresholds), its verdicts attached."""
        clf = self.clf
        probs = clf.scores_from_logits(scored.logits)
        block = clf.block_threshold(threshold)
        review = clf.review_threshold(review_threshold, threshold)
        if block is not None and review is not None:
            review = min(review, block)  # a review threshold above the block one: no review band
        names = clf.label_names
        ids = SingleLabel.predict_ids(probs, block)
        band: list[Band | None] = [None] * len(probs)
        if clf.binary:  # no stored operating point: argmax, i.e. 0.5, and no review band
            band = list(bands(probs[:, 1], 0.5 if block is None else block, 0.5 if review is None else review))
        return [Decision(label=names[k], score=float(p[k]), scores=dict(zip(names, map(float, p))), band=b,
                         threshold=block, review_threshold=review, truncated=bool(t),
                         checks=[dataclasses.replace(v) for v in vs])
                for p, k, b, t, vs in zip(probs, ids, band, scored.truncated, scored.verdicts)]

    def explain(self, texts: Sequence[str], decided: Sequence[Decision], budget_s: float = 10.0) -> None:
        """Fill in each verdict's evidence within `budget_s` seconds in all; what is not explained by then (or
        fails) says why, and the decisions stand."""
        deadline = time.monotonic() + budget_s
        for check in self.checks:
            rows = [(t, v) for t, d in zip(texts, decided) for v in d.checks if v.check == check.name]
            if not rows:
                continue
            try:
                check.explain([t for t, _ in rows], [v for _, v in rows], deadline)
            except Exception as e:  # never fail a decision for its explanation
                log.exception("check %s failed to explain", check.name)
                for _, v in rows:
                    missing(v, type(e).__name__)


def format_checks(checks: Sequence[Verdict], indent: str = "  ") -> list[str]:
    """Rspamd-style lines: check, verdict, score, reason; then the evidence."""
    lines = []
    for v in checks:
        score = "" if v.score is None else f"{v.score:+.3f}"
        lines.append(f"{indent}{v.check:<8} {v.label or '-':<8} {score:>7}  {v.reason}")
        for key in ("words", "ngrams"):
            if v.evidence.get(key):
                shown = ", ".join(f"{w!r} {a:+.3f}" for w, a in v.evidence[key])
                lines.append(f"{indent}{'':<8} {key} towards {v.evidence.get('towards', v.label)}: {shown}")
        for e in v.evidence.get("neighbours", ()):
            lines.append(f"{indent}{'':<8} like prediction {e['id']} ({e['label']}, similarity "
                         f"{e['similarity']:.3f}): {e['text'][:120]!r}")
        for e in v.evidence.get("entries", ()):
            lines.append(f"{indent}{'':<8} entry #{e['id']} {e['action']} {e['kind']} {e['value']!r} matched "
                         f"{e['matched']!r}")
    return lines

