"""Monitoring charts from the prediction store (PNG, matplotlib): volume, decisions, scores and latency over
time. The admin page shows them; `spamtune monitor` puts them in its report.

Memory stays bounded whatever the store holds: `Traffic.of` streams the matching rows in chunks (never their
texts) and keeps only aggregates: counts per time bucket (at most ~60 buckets), a 20-bin score histogram, a
log-binned latency histogram per bucket (quantiles read from it, within one bin: ~12 %), counts per answering run
and per corrected day. A store with millions of rows costs what one with thousands does.
"""

from __future__ import annotations

import datetime
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spamtune.calibration.decisions import binary_rates
from spamtune.data.labels import POSITIVE_ID
from spamtune.monitoring.store import PredictionStore, now

CHARTS = ("volume", "decisions", "scores", "latency")
RULES = (("1min", 60), ("10min", 600), ("1h", 3600), ("6h", 21600), ("1D", 86400), ("7D", 604800))
LATENCY_EDGES = np.geomspace(0.01, 1e6, 161)  # ms: 20 bins a decade
SCORE_BINS = 20


def rule_for(span_s: float) -> tuple[str, int]:
    """A bucket that gives at most ~60 points over a span."""
    for rule, seconds in RULES:
        if span_s / seconds <= 60:
            return rule, seconds
    return RULES[-1]


def quantile(hist: np.ndarray, q: float) -> float | None:
    """The q-quantile of a latency histogram: the upper edge of the bin it falls in."""
    total = hist.sum()
    if not total:
        return None
    k = int(np.searchsorted(np.cumsum(hist), q * total))
    return float(LATENCY_EDGES[min(k + 1, len(LATENCY_EDGES) - 1)])


@dataclass
class Traffic:
    """The answers in a window, aggregated (see the module docstring)."""

    start: datetime.datetime | None = None
    rule: str = "1h"
    seconds: int = 3600
    n: int = 0
    decisions: Counter = field(default_factory=Counter)  # band (or label, for runs without bands) -> count
    labels: Counter = field(default_factory=Counter)
    volume: Counter = field(default_factory=Counter)  # bucket index -> answers
    blocked: Counter = field(default_factory=Counter)
    stacked: Counter = field(default_factory=Counter)  # (bucket, band) -> count
    scores: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, dtype=np.int64))
    latency: dict[int, np.ndarray] = field(default_factory=dict)  # bucket -> histogram over LATENCY_EDGES
    runs: dict[str, Counter] = field(default_factory=dict)  # run_id -> {"n", "blocked"}
    corrected: Counter = field(default_factory=Counter)  # (run_id, day, label, feedback_label) -> count

    @classmethod
    def of(cls, store: PredictionStore, since: datetime.datetime | None = None,
           run_id: str | None = None) -> Traffic:
        first, last, _ = store.span(run_id, since)
        if first is None or last is None:
            return cls()
        rule, seconds = rule_for((last - first).total_seconds())
        t = cls(start=first, rule=rule, seconds=seconds)
        for row in store.iter_all(run_id=run_id, since=since, with_text=False):
            t.add(row)
        return t

    def bucket(self, when: datetime.datetime) -> int:
        assert self.start is not None
        return int((when - self.start).total_seconds() // self.seconds)

    def add(self, r: dict[str, Any]) -> None:
        b = self.bucket(r["created_at"])
        band = r["decision"] or r["label"]
        self.n += 1
        self.decisions[band] += 1
        self.labels[r["label"]] += 1
        self.volume[b] += 1
        self.blocked[b] += r["decision"] == "block"
        self.stacked[b, band] += 1
        if r["positive_score"] is not None:
            self.scores[min(int(r["positive_score"] * SCORE_BINS), SCORE_BINS - 1)] += 1
        hist = self.latency.setdefault(b, np.zeros(len(LATENCY_EDGES) - 1, dtype=np.int64))
        hist[min(max(int(np.searchsorted(LATENCY_EDGES, r["latency_ms"])) - 1, 0), len(hist) - 1)] += 1
        run = self.runs.setdefault(r["run_id"], Counter())
        run["n"] += 1
        run["blocked"] += r["decision"] == "block"
        if r["feedback_label"] is not None:
            day = r["created_at"].date().isoformat()
            self.corrected[r["run_id"], day, r["label"], r["feedback_label"]] += 1

    def when(self, bucket: int) -> datetime.datetime:
        assert self.start is not None
        return self.start + datetime.timedelta(seconds=bucket * self.seconds)

    def latency_quantile(self, q: float) -> float | None:
        if not self.latency:
            return None
        return quantile(np.sum(list(self.latency.values()), axis=0), q)

    def corrected_metrics(self, positive: str | None, run_id: str | None = None,
                          day: str | None = None) -> dict[str, Any]:
        """Accuracy of the decisions people corrected or confirmed, and FPR / FNR among them (binary runs)."""
        rows = [(label, fb, k) for (run, d, label, fb), k in self.corrected.items()
                if (run_id is None or run == run_id) and (day is None or d == day)]
        n = sum(k for *_, k in rows)
        out: dict[str, Any] = {"n": n}
        if not n:
            return out
        out["accuracy"] = sum(k for label, fb, k in rows if label == fb) / n  # any label set
        if positive is not None:  # the people's label is the truth, the stored decision what was blocked
            rates = binary_rates(np.array([POSITIVE_ID if fb == positive else 1 - POSITIVE_ID for _, fb, _ in rows]),
                                 np.array([label == positive for label, _, _ in rows]),
                                 np.array([k for *_, k in rows]))
            out["fpr"] = rates["fpr"]
            out["fnr"] = None if rates["recall"] is None else 1 - rates["recall"]
        return out


def figure(t: Traffic, name: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.8))
    if not t.n:
        ax.text(0.5, 0.5, "no predictions in this window", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    buckets = sorted(t.volume)
    times = mdates.date2num([t.when(b) for b in buckets])  # days, as matplotlib's date axis counts
    day = t.seconds / 86400
    width = 0.8 * day
    if name == "volume":
        ax.bar(times, [t.volume[b] for b in buckets], width=width, align="edge")
        ax.set_ylabel(f"messages per {t.rule}")
        ax2 = ax.twinx()
        ax2.plot(times + day / 2, [t.blocked[b] / t.volume[b] for b in buckets], color="tab:red", marker=".")
        ax2.set_ylabel("blocked share", color="tab:red")
        ax2.set_ylim(0, 1)
        ax.set_title("Volume and blocked share")
    elif name == "decisions":
        bottom = np.zeros(len(buckets))
        colors = {"allow": "tab:green", "review": "goldenrod", "block": "tab:red"}
        for band in sorted(t.decisions, key=str):
            counts = np.array([t.stacked[b, band] for b in buckets])
            ax.bar(times, counts, bottom=bottom, width=width, align="edge", label=str(band),
                   color=colors.get(str(band)))
            bottom += counts
        ax.legend(fontsize=7)
        ax.set_title("Decisions")
    elif name == "scores":
        ax.bar(np.arange(SCORE_BINS) / SCORE_BINS, t.scores, width=1 / SCORE_BINS, align="edge", color="tab:blue")
        ax.set_xlabel("calibrated P(positive)")
        ax.set_title(f"Scores ({int(t.scores.sum())} messages)")
    elif name == "latency":
        for q, label in ((0.5, "p50"), (0.95, "p95")):
            ax.plot(times, [quantile(t.latency[b], q) or 0.0 for b in buckets], marker=".", label=label)
        ax.set_ylabel("ms")
        ax.legend(fontsize=7)
        ax.set_title("Latency")
    if name != "scores":  # one bucket would otherwise be drawn on an axis of years
        ax.xaxis_date()
        ax.set_xlim(times[0] - day, times[-1] + 2 * day)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def render_chart(store: PredictionStore, name: str, hours: int, run_id: str | None = None) -> bytes:
    """One of CHARTS over the last `hours` (all runs unless `run_id`)."""
    return png(figure(Traffic.of(store, now() - datetime.timedelta(hours=hours), run_id), name))
