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

import numpy as np

from spamtune.calibration.drift import Reference, drift_summary, message_features
from spamtune.errors import ConfigError
from spamtune.fsutil import atomic_file, write_json
from spamtune.monitoring.charts import CHARTS, Traffic, figure, png
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
        try:
            return now() - datetime.timedelta(**{unit: int(m[1])})
        except (OverflowError, ValueError):  # more than datetime can count back (about 10,000 years)
            raise ConfigError(f"--since {value!r}: too far back; give a duration like 24h or 7d") from None
    try:
        t = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value!r}: give a duration like 24h or 7d, or a date like 2026-11-20") from None
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


def monitor(store: PredictionStore, out_dir: str | Path, run_dir: str | Path | None = None,
            since: datetime.datetime | None = None) -> MonitorResult:
    """Write OUT/monitor.html and OUT/monitor.json; see the module docstring. Memory stays bounded: the answers are
    aggregated as they stream by (charts.Traffic); only the most recent FEATURE_SAMPLE texts are read, for drift."""
    from spamtune.inference import TextClassifier

    out_dir = Path(out_dir)
    clf = TextClassifier.load(run_dir) if run_dir is not None else None
    run_id = clf.run_id if clf else None
    traffic = Traffic.of(store, since, run_id)
    positive = clf.positive_label if clf is not None else None
    p50, p95 = traffic.latency_quantile(0.5), traffic.latency_quantile(0.95)
    summary: dict[str, Any] = {
        "generated": now().isoformat(timespec="seconds"), "store": store.url, "run_id": run_id,
        "since": since.isoformat() if since else None, "n": traffic.n,
        "decisions": {str(k): int(v) for k, v in traffic.decisions.most_common()},
        "labels": {str(k): int(v) for k, v in traffic.labels.most_common()},
        "latency_ms": {"p50": p50, "p95": p95, "note": "upper edge of a log-spaced bin (about 12 % wide)"}
        if traffic.n else None,
        "corrected": traffic.corrected_metrics(positive), "by_run": by_run(traffic, positive),
        "shadow": shadow_report(store, since), "alerts": []}
    if clf is not None:
        summary["drift"] = drift(clf, store.recent(run_id, since, FEATURE_SAMPLE))
        summary["alerts"] = summary["drift"]["alerts"]
    charts = {name: png(figure(traffic, name)) for name in CHARTS}
    if summary["corrected"]["n"] and positive is not None:
        charts["corrected"] = png(corrected_figure(traffic, positive))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "monitor.json", summary)
    with atomic_file(out_dir / "monitor.html", encoding="utf-8") as f:
        f.write(render_html(summary, charts))
    return MonitorResult(summary, out_dir / "monitor.html", out_dir / "monitor.json")


def drift(clf: Any, recent: list[dict[str, Any]]) -> dict[str, Any]:
    """`drift.drift_summary` on the most recent answers (`PredictionStore.recent`), against the run's reference."""
    ref = Reference.load(clf.run.run_dir)
    if ref is None:
        return {"alerts": [], "note": "this run has no drift reference (trained before spamtune stored one)"}
    recent = recent[-FEATURE_SAMPLE:]
    scores = (np.array([r["positive_score"] for r in recent if r["positive_score"] is not None], dtype=float)
              if clf.binary else None)
    texts = [r["text"] for r in recent if isinstance(r["text"], str) and r["text"].strip()]
    features = message_features(texts, clf.tokenizer) if texts else None
    embeddings = clf.embeddings(texts[-EMBEDDING_SAMPLE:]) if texts else None
    out = drift_summary(ref, scores, features, embeddings)
    out["with_text"] = len(texts)
    if not texts:
        out["note"] = "no stored texts (--no-store-text): only the scores were tested"
    return out


def by_run(traffic: Traffic, positive: str | None) -> list[dict[str, Any]]:
    """Per answering run: volume, blocked share and the corrected-message figures (a canary vs the primary)."""
    out = [{"run_id": str(run_id), "n": c["n"], "blocked": c["blocked"] / c["n"] if c["n"] else None,
            "corrected": traffic.corrected_metrics(positive, run_id=run_id)} for run_id, c in traffic.runs.items()]
    return sorted(out, key=lambda r: -r["n"])


def shadow_report(store: PredictionStore, since: datetime.datetime | None, examples: int = 20) -> list[dict[str, Any]]:
    """Per (answering run, shadow run): how often the shadow decided the same label and band (counted in the
    database), and the most recent `examples` messages where it did not."""
    out = []
    differ = store.shadow_pairs(since, limit=examples * 10, disagreeing=True)
    for g in store.shadow_agreement(since):
        n = int(g["n"])
        mine = [r for r in differ if r["run_id"] == g["run_id"] and r["shadow_run_id"] == g["shadow_run_id"]]
        out.append({
            "run_id": g["run_id"], "shadow_run_id": g["shadow_run_id"], "n": n,
            "label_agreement": int(g["same_label"]) / n, "decision_agreement": int(g["same_band"]) / n,
            "disagreements": n - int(g["same_label"]),
            "examples": [{"id": r["id"], "text": r["text"], "label": r["label"], "score": r["positive_score"],
                          "shadow_label": r["shadow_label"], "shadow_score": r["shadow_positive_score"]}
                         for r in mine[-examples:]]})
    return sorted(out, key=lambda r: -r["n"])


def corrected_figure(traffic: Traffic, positive: str):
    """Accuracy, FPR and FNR on the corrected messages, per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.8))
    days = sorted({day for _, day, _, _ in traffic.corrected})
    rows = [(datetime.date.fromisoformat(d), traffic.corrected_metrics(positive, day=d)) for d in days]
    for key, name in (("accuracy", "accuracy"), ("fpr", "false-positive rate"), ("fnr", "false-negative rate")):
        pts = [(t, m[key]) for t, m in rows if m.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=name)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7)
    ax.set_title(f"On corrected messages ({sum(traffic.corrected.values())})")
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
