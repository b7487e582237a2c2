"""Monitoring charts from the prediction store (PNG, matplotlib): volume, decisions, scores and latency over
time. The admin page shows them; `spamtune monitor` puts them in its report."""

from __future__ import annotations

import datetime
import io

import numpy as np
import pandas as pd

from spamtune.monitoring.store import PredictionStore, now

CHARTS = ("volume", "decisions", "scores", "latency")


def load_frame(store: PredictionStore, since: datetime.datetime | None = None,
               run_id: str | None = None) -> pd.DataFrame:
    """The matching predictions as a DataFrame indexed by time (UTC), oldest first."""
    rows = list(store.iter_all(run_id=run_id, since=since))
    columns = ["created_at", "run_id", "text", "label", "decision", "positive_score", "latency_ms", "truncated",
               "feedback_label", "feedback_learn"]
    df = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    return df.set_index("created_at").sort_index()


def bucket(df: pd.DataFrame) -> str:
    """A resampling rule that gives roughly 10-60 points over the data's span."""
    if df.empty:
        return "1h"
    span = (df.index.max() - df.index.min()).total_seconds()
    for rule, seconds in (("1min", 60), ("10min", 600), ("1h", 3600), ("6h", 21600), ("1D", 86400)):
        if span / seconds <= 60:
            return rule
    return "7D"


def figure(df: pd.DataFrame, name: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.8))
    if df.empty:
        ax.text(0.5, 0.5, "no predictions in this window", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    rule = bucket(df)
    if name == "volume":
        counts = df["label"].resample(rule).count()
        ax.bar(counts.index, counts.values, width=pd.Timedelta(rule) * 0.8, align="edge")
        ax.set_ylabel(f"messages per {rule}")
        ax2 = ax.twinx()
        rate = df["decision"].eq("block").resample(rule).mean()
        ax2.plot(rate.index + pd.Timedelta(rule) / 2, rate.values, color="tab:red", marker=".")
        ax2.set_ylabel("blocked share", color="tab:red")
        ax2.set_ylim(0, 1)
        ax.set_title("Volume and blocked share")
    elif name == "decisions":
        table = df.groupby([pd.Grouper(freq=rule), df["decision"].fillna(df["label"])]).size().unstack(fill_value=0)
        bottom = np.zeros(len(table))
        colors = {"allow": "tab:green", "review": "goldenrod", "block": "tab:red"}
        for col in table.columns:
            ax.bar(table.index, table[col].values, bottom=bottom, width=pd.Timedelta(rule) * 0.8, align="edge",
                   label=str(col), color=colors.get(str(col)))
            bottom += table[col].values
        ax.legend(fontsize=7)
        ax.set_title("Decisions")
    elif name == "scores":
        scores = df["positive_score"].dropna()
        ax.hist(scores, bins=list(np.linspace(0, 1, 21)), color="tab:blue")
        ax.set_xlabel("calibrated P(positive)")
        ax.set_title(f"Scores ({len(scores)} messages)")
    elif name == "latency":
        lat = df["latency_ms"].resample(rule)
        ax.plot(lat.median().index, lat.median().values, marker=".", label="p50")
        ax.plot(lat.quantile(0.95).index, lat.quantile(0.95).values, marker=".", label="p95")
        ax.set_ylabel("ms")
        ax.legend(fontsize=7)
        ax.set_title("Latency")
    if name != "scores":  # one bucket would otherwise be drawn on an axis of years
        ax.set_xlim(df.index.min() - pd.Timedelta(rule), df.index.max() + pd.Timedelta(rule))
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
    return png(figure(load_frame(store, now() - datetime.timedelta(hours=hours), run_id), name))
