"""`spamtune monitor`: the state of a deployment from its prediction store, as an HTML report with charts and a
JSON summary; alerts make the command exit 1 (for cron, CI or an alert manager).

It shows volume and blocked share over time, latency, accuracy / FPR / FNR on the corrected messages, the same per
answering run (a canary beside the primary, versions before and after a swap), how often a shadow model agreed
with the answers and where it did not, and, given the run (its training-time `drift.Reference`), tests for
drift: of the scores (PSI), of the input (KS per feature) and of the pooled hidden states (MMD permutation test),
on the most recent messages.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

from spamtune.drift import Reference, drift_summary, message_features
from spamtune.errors import ConfigError
from spamtune.fsutil import atomic_file, write_json
from spamtune.monitoring.charts import CHARTS, figure, load_frame, png
from spamtune.monitoring.store import PredictionStore, now

FEATURE_SAMPLE = 2000  # the most recent messages with text whose features are tested
EMBEDDING_SAMPLE = 300


@dataclasses.dataclass
class MonitorResult:
    summary: dict[str, Any]
    html: Path
    json: Path


def parse_since(value: str | None) -> datetime.datetime | None:
    """"24h", "7d", "30m", "90s", or an ISO date/time (UTC unless it says otherwise)."""
    if value is None:
        return None
    if m := re.fullmatch(r"(\d+)\s*([smhdw])", value.strip()):
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m[2]]
        return now() - datetime.timedelta(**{unit: int(m[1])})
    try:
        t = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value!r}: give a duration like 24h or 7d, or a date like 2026-11-20") from None
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


def corrected_metrics(df: pd.DataFrame, positive: str | None) -> dict[str, Any]:
    """Accuracy of the decisions people corrected or confirmed, and FPR / FNR among them (binary runs)."""
    fb = df.dropna(subset=["feedback_label"])
    out: dict[str, Any] = {"n": len(fb)}
    if fb.empty:
        return out
    out["accuracy"] = float((fb["label"] == fb["feedback_label"]).mean())
    if positive is not None:
        neg, pos = fb[fb["feedback_label"] != positive], fb[fb["feedback_label"] == positive]
        out["fpr"] = float((neg["label"] == positive).mean()) if len(neg) else None
        out["fnr"] = float((pos["label"] != positive).mean()) if len(pos) else None
    return out


def monitor(store: PredictionStore, out_dir: str | Path, run_dir: str | Path | None = None,
            since: datetime.datetime | None = None) -> MonitorResult:
    """Write OUT/monitor.html and OUT/monitor.json; see the module docstring."""
    from spamtune.inference import TextClassifier

    out_dir = Path(out_dir)
    clf = TextClassifier.load(run_dir) if run_dir is not None else None
    run_id = clf.run_id if clf else None
    df = load_frame(store, since, run_id)
    positive = clf.label_names[-1] if clf is not None and clf.binary else None
    summary: dict[str, Any] = {
        "generated": now().isoformat(timespec="seconds"), "store": store.url, "run_id": run_id,
        "since": since.isoformat() if since else None, "n": len(df),
        "decisions": {str(k): int(v) for k, v in df["decision"].value_counts().items()},
        "labels": {str(k): int(v) for k, v in df["label"].value_counts().items()},
        "latency_ms": {"p50": float(df["latency_ms"].quantile(0.5)), "p95": float(df["latency_ms"].quantile(0.95))}
        if len(df) else None,
        "corrected": corrected_metrics(df, positive), "by_run": by_run(df, positive),
        "shadow": shadow_report(store, since), "alerts": []}
    if clf is not None:
        summary["drift"] = drift(clf, df)
        summary["alerts"] = summary["drift"]["alerts"]
    charts = {name: png(figure(df, name)) for name in CHARTS}
    if "corrected" in summary and summary["corrected"]["n"] and positive is not None:
        charts["corrected"] = png(corrected_figure(df, positive))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "monitor.json", summary)
    with atomic_file(out_dir / "monitor.html", encoding="utf-8") as f:
        f.write(render_html(summary, charts))
    return MonitorResult(summary, out_dir / "monitor.html", out_dir / "monitor.json")


def drift(clf: Any, df: pd.DataFrame) -> dict[str, Any]:
    """`drift.drift_summary` on the most recent messages, against the run's reference."""
    ref = Reference.load(clf.run.run_dir)
    if ref is None:
        return {"alerts": [], "note": "this run has no drift reference (trained before spamtune stored one)"}
    recent = df.tail(FEATURE_SAMPLE)
    scores = recent["positive_score"].dropna().to_numpy(dtype=float) if clf.binary else None
    texts = [t for t in recent["text"] if isinstance(t, str) and t.strip()]
    features = message_features(texts, clf.tokenizer) if texts else None
    embeddings = clf.embeddings(texts[-EMBEDDING_SAMPLE:]) if texts else None
    out = drift_summary(ref, scores, features, embeddings)
    out["with_text"] = len(texts)
    if not texts:
        out["note"] = "no stored texts (--no-store-text): only the scores were tested"
    return out


def by_run(df: pd.DataFrame, positive: str | None) -> list[dict[str, Any]]:
    """Per answering run: volume, blocked share and the corrected-message figures (a canary vs the primary)."""
    out = []
    for run_id, g in df.groupby("run_id", sort=False):
        row: dict[str, Any] = {"run_id": str(run_id), "n": len(g),
                               "blocked": float((g["decision"] == "block").mean()) if len(g) else None,
                               "corrected": corrected_metrics(g, positive)}
        out.append(row)
    return sorted(out, key=lambda r: -r["n"])


def shadow_report(store: PredictionStore, since: datetime.datetime | None, examples: int = 20) -> list[dict[str, Any]]:
    """Per (answering run, shadow run): how often the shadow decided the same label and band, and the messages
    where it did not (the most recent `examples`)."""
    pairs = pd.DataFrame(store.shadow_pairs(since))
    if pairs.empty:
        return []
    out = []
    for (run_id, shadow_id), g in pairs.groupby(["run_id", "shadow_run_id"], sort=False):
        differ = g[g["label"] != g["shadow_label"]]
        out.append({
            "run_id": run_id, "shadow_run_id": shadow_id, "n": len(g),
            "label_agreement": float((g["label"] == g["shadow_label"]).mean()),
            "decision_agreement": float((g["decision"] == g["shadow_decision"]).mean()),
            "disagreements": len(differ),
            "examples": [{"id": r.id, "text": r.text, "label": r.label, "score": r.positive_score,
                          "shadow_label": r.shadow_label, "shadow_score": r.shadow_positive_score}
                         for r in differ.tail(examples).itertuples()]})
    return out


def corrected_figure(df: pd.DataFrame, positive: str):
    """Accuracy, FPR and FNR on the corrected messages, per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fb = df.dropna(subset=["feedback_label"])
    fig, ax = plt.subplots(figsize=(6, 2.8))
    days = fb.groupby(pd.Grouper(freq="1D"))
    rows = [(t, corrected_metrics(g, positive)) for t, g in days if len(g)]
    for key, name in (("accuracy", "accuracy"), ("fpr", "false-positive rate"), ("fnr", "false-negative rate")):
        pts = [(t, m[key]) for t, m in rows if m.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=name)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7)
    ax.set_title(f"On corrected messages ({len(fb)})")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def render_html(summary: dict[str, Any], charts: dict[str, bytes]) -> str:
    esc = html.escape
    alerts = summary["alerts"]
    head = (f"<p class='alert'>{len(alerts)} alert(s): " + "; ".join(esc(a) for a in alerts) + "</p>" if alerts
            else "<p class='ok'>No alert.</p>")
    rows = []
    drift_info = summary.get("drift", {})
    if "score_psi" in drift_info:
        s = drift_info["score_psi"]
        flag = "ALERT" if s["alert"] else ""
        rows.append(f"<tr><td>scores (PSI)</td><td>{s['psi']:.3f}</td><td>{s['n']}</td><td>{flag}</td></tr>")
    for r in drift_info.get("input_drift", {}).get("features", []):
        rows.append(f"<tr><td>input: {esc(r['feature'])}</td><td>KS {r['ks']:.3f}, p {r['p']:.2g} (mean "
                    f"{r['reference_mean']:.3g} -> {r['current_mean']:.3g})</td><td>{drift_info['input_drift']['n']}"
                    f"</td><td>{'ALERT' if r['alert'] else ''}</td></tr>")
    if "embedding_drift" in drift_info:
        e = drift_info["embedding_drift"]
        rows.append(f"<tr><td>embeddings (MMD²)</td><td>{e['mmd2']:.4f}, permutation p {e['p']:.3f}</td>"
                    f"<td>{e['n']}</td><td>{'ALERT' if e['alert'] else ''}</td></tr>")
    note = f"<p>{esc(drift_info['note'])}</p>" if drift_info.get("note") else ""
    images = "".join(f"<figure><img alt='{esc(name)}' src='data:image/png;base64,"
                     f"{base64.b64encode(data).decode()}'></figure>" for name, data in charts.items())
    scope = (f", run {esc(str(summary['run_id']))}" if summary["run_id"] else "") + (
        f", since {esc(summary['since'])}" if summary["since"] else "")
    corrected = summary["corrected"]
    corr = (f"<p>Corrected or confirmed: {corrected['n']}; accuracy {corrected.get('accuracy', 0):.1%}"
            + (f", FPR {corrected['fpr']:.1%}" if corrected.get("fpr") is not None else "")
            + (f", FNR {corrected['fnr']:.1%}" if corrected.get("fnr") is not None else "") + "</p>"
            if corrected["n"] else "<p>No corrections yet.</p>")
    runs = "".join(
        f"<tr><td>{esc(r['run_id'])}</td><td>{r['n']}</td><td>{r['blocked']:.1%}</td><td>{r['corrected']['n']}</td>"
        f"<td>{_pct(r['corrected'].get('accuracy'))}</td><td>{_pct(r['corrected'].get('fpr'))}</td>"
        f"<td>{_pct(r['corrected'].get('fnr'))}</td></tr>" for r in summary.get("by_run", []))
    shadow = "".join(_shadow_html(s) for s in summary.get("shadow", [])) or "<p>No shadow model recorded.</p>"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>spamtune monitor</title>
<style>body{{font:15px/1.4 system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem}}
.alert{{background:#fdecea;border:1px solid #e0a39c;padding:.6rem}} .ok{{background:#e9f6ec;border:1px solid
#9ccaa8;padding:.6rem}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.2rem .5rem}}
figure{{display:inline-block;margin:.3rem}}</style></head><body>
<h1>spamtune monitor</h1>
<p>{summary['n']} predictions from {esc(str(summary['store']))}{scope}; generated {esc(summary['generated'])}.</p>
{head}
<h2>Drift</h2>{note}<table><tr><th>test</th><th>value</th><th>messages</th><th></th></tr>{''.join(rows)}</table>
<h2>Corrections</h2>{corr}
<h2>By answering run</h2><table><tr><th>run</th><th>answers</th><th>blocked</th><th>corrected</th><th>accuracy</th>
<th>FPR</th><th>FNR</th></tr>{runs}</table>
<h2>Shadow</h2>{shadow}
<h2>Charts</h2>{images}
</body></html>
"""


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _shadow_html(s: dict[str, Any]) -> str:
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(str(e['label']))} ({_num(e['score'])})</td><td>{esc(str(e['shadow_label']))} "
                   f"({_num(e['shadow_score'])})</td><td>{esc(e['text'] or '(text not stored)')[:300]}</td></tr>"
                   for e in s["examples"])
    return (f"<p>Shadow {esc(s['shadow_run_id'])} beside {esc(s['run_id'])}: {s['n']} messages, same label "
            f"{s['label_agreement']:.1%}, same band {s['decision_agreement']:.1%}; {s['disagreements']} "
            f"disagreement(s).</p><table><tr><th>answer</th><th>shadow</th><th>message</th></tr>{rows}</table>")


def _num(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.3f}"
