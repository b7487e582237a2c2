"""The feedback loop on a real run, end to end: a deployment meets a scam style its training data lacks, users
correct some of its mistakes, `spamtune retrain` learns from them, the challenger is compared and promoted, and
the service swaps it in. Catch rate and false positives before and after, on messages never streamed.

    .venv/bin/python -m benchmarks.feedback_loop runs/default --data-dir data

1. A registry with RUN as version 1; `spamtune serve --registry` in a subprocess on loopback, recording to SQLite.
2. benchmarks/data/new_scams.csv (parcel-fee and "hi mum, new number" scams, and ordinary messages about parcels
   and family, 30 templates each): per kind, 60 % of the templates are streamed, the other 40 % only measured.
3. Before: the measured messages through the service. Then the stream: the streamed templates mixed with
   ordinary traffic (calibration-half unused ham, training spam), in requests of 1-4 messages.
4. Users correct `--correct-share` of the misclassified streamed messages through POST /feedback.
5. `spamtune retrain --dry-run` lists corrections that contradict a confident prediction; an operator reviews
   them (here: confirms them, they are true) with `spamtune feedback`. Then `spamtune retrain --registry
   --promote`: warm start, comparison, promotion if the policy passes.
6. The service follows the registry: after the swap, the measured messages again.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import spamtune_server
from spamtune.calibration.decisions import split_halves
from spamtune.cli import main as spamtune
from spamtune.data import read_split
from spamtune.lifecycle import Registry
from spamtune.serving.loadtest import post_json

NEW_SCAMS = Path(__file__).with_name("data") / "new_scams.csv"
KINDS = ("new_number_scam", "parcel_scam", "family_ham", "delivery_ham")


@dataclass
class LoopConfig:
    run: str
    data_dir: str
    work: Path
    correct_share: float = 0.3  # of the misclassified streamed messages, corrected by users
    stream_share: float = 0.6  # of each kind's templates streamed; the rest are only measured
    normal_ham: int = 300  # ordinary traffic mixed into the stream
    normal_spam: int = 60
    per_kind: int | None = None  # at most this many messages per kind and side (tests)
    retrain_args: list[str] = field(default_factory=list)
    force: bool = False  # promote even if the policy says keep (tests: the swap must happen)
    seed: int = 0


def split_families(df: pd.DataFrame, share: float, seed: int, per_kind: int | None) -> tuple[pd.DataFrame,
                                                                                             pd.DataFrame]:
    """(streamed, measured): whole templates on each side, `share` of each kind's templates streamed."""
    rng = random.Random(seed)
    stream, measure = [], []
    for kind in KINDS:
        families = sorted(df[df["kind"] == kind]["family"].unique())
        rng.shuffle(families)
        cut = round(len(families) * share)
        for side, fams in ((stream, families[:cut]), (measure, families[cut:])):
            rows = df[df["family"].isin(fams)]
            side.append(rows.sample(frac=1, random_state=seed)[:per_kind])
    return pd.concat(stream), pd.concat(measure)


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def cli(*argv: str) -> tuple[int, str]:
    """A spamtune command in this process, as an operator would type it: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = spamtune(list(argv))
    return code, out.getvalue()


def classify(url: str, texts: list[str], rng: random.Random) -> tuple[list[dict[str, Any]], int]:
    """Every message through POST /classify in requests of 1-4: the results in order, and the failed requests."""
    results, errors, i = [], 0, 0
    while i < len(texts):
        n = rng.randint(1, 4)
        code, body = post_json(url + "/classify", {"texts": texts[i:i + n]})
        if code != 200:
            errors += 1
            body = {"results": [{}] * len(texts[i:i + n])}
        results += body["results"]
        i += n
    return results, errors


def rates(df: pd.DataFrame, results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per kind: the share blocked, and blocked or sent to review."""
    out = {}
    for kind in KINDS:
        rs = [r for r, k in zip(results, df["kind"]) if k == kind]
        if rs:
            out[kind] = {"n": len(rs), "blocked": sum(r.get("decision") == "block" for r in rs) / len(rs),
                         "flagged": sum(r.get("decision") in ("block", "review") for r in rs) / len(rs)}
    return out


def run_cycle(cfg: LoopConfig) -> dict[str, Any]:
    cfg.work.mkdir(parents=True, exist_ok=True)
    reg, db = cfg.work / "registry", f"sqlite:///{cfg.work / 'predictions.sqlite'}"
    rng = random.Random(cfg.seed)
    assert cli("registry", "add", cfg.run, "--registry", str(reg), "--note", "the deployed run")[0] == 0
    assert cli("registry", "promote", "1", "--registry", str(reg))[0] == 0

    scams = pd.read_csv(NEW_SCAMS, keep_default_na=False)
    streamed, measured = split_families(scams, cfg.stream_share, cfg.seed, cfg.per_kind)
    data = Path(cfg.data_dir)
    unused = read_split(data / "unused.csv")
    calib, _ = split_halves(list(unused["Text"]))
    train = read_split(data / "train.csv")
    normal = pd.concat([
        pd.DataFrame({"text": unused["Text"][calib & (unused["Label"] == 0)].sample(
            cfg.normal_ham, random_state=cfg.seed), "label": "ham", "kind": "ordinary"}),
        pd.DataFrame({"text": train["Text"][train["Label"] == 1].sample(cfg.normal_spam, random_state=cfg.seed),
                      "label": "spam", "kind": "ordinary"})])
    stream = pd.concat([streamed, normal]).sample(frac=1, random_state=cfg.seed).reset_index(drop=True)

    figures: dict[str, Any] = {"streamed": len(stream), "measured": len(measured)}
    serve_args = ["--registry", str(reg), "--db", db, "--poll", "0.5", "--no-access-log"]
    with spamtune_server(serve_args) as (url, _):
        before, errors = classify(url, list(measured["text"]), rng)
        figures["before"], figures["before_run_id"] = rates(measured, before), before[0]["run_id"]

        answered, stream_errors = classify(url, list(stream["text"]), rng)
        errors += stream_errors
        wrong = [(r, truth) for r, truth in zip(answered, stream["label"]) if r and r["label"] != truth]
        corrected = rng.sample(wrong, round(cfg.correct_share * len(wrong)))
        for r, truth in corrected:
            code, _ = post_json(url + "/feedback", {"id": r["id"], "label": truth})
            assert code == 200, code
        kinds = [k for r, truth, k in zip(answered, stream["label"], stream["kind"]) if r and r["label"] != truth]
        figures.update(misclassified=len(wrong), corrections_sent=len(corrected),
                       misclassified_by_kind=pd.Series(kinds, dtype=object).value_counts().to_dict())

        code, out = cli("retrain", "--db", db, "--registry", str(reg), "--dry-run", "--json", *cfg.retrain_args)
        plan = json.loads(out.splitlines()[-1])
        review = plan["corrections"]["needs_review"]
        for r in review:  # an operator reads each one; these are real scams and real ham: confirmed
            assert cli("feedback", "--db", db, r["id"], r["label"])[0] == 0
        figures["needs_review_confirmed"] = len(review)

        t0 = time.perf_counter()
        code, out = cli("retrain", "--db", db, "--registry", str(reg), "--promote", "--json", *cfg.retrain_args,
                        *(["--force"] if cfg.force else []))
        assert code == 0, out[-2000:]
        report = json.loads(out.splitlines()[-1])
        figures.update(retrain_s=time.perf_counter() - t0, retrain=report)
        if report["promoted"]:
            t0 = time.perf_counter()
            while get_json(url + "/health")["registry_version"] != report["version"]:
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError("the service did not swap in the promoted version")
                time.sleep(0.1)
            figures["swap_s"] = time.perf_counter() - t0
        after, after_errors = classify(url, list(measured["text"]), rng)
        errors += after_errors
        figures["after"], figures["after_run_id"] = rates(measured, after), after[0]["run_id"]
        figures["server_errors"] = errors
        figures["registry_version"] = Registry(reg).current()
    return figures


def render(f: dict[str, Any]) -> str:
    r = f["retrain"]
    c = r.get("comparison") or {}
    sets = c.get("sets", {})
    rows = ["| | before (v1) | after |", "|---|---|---|"]
    names = {"new_number_scam": "\"hi mum, new number\" scams blocked (flagged)",
             "parcel_scam": "parcel-fee scams blocked (flagged)", "family_ham": "family ham blocked (flagged)",
             "delivery_ham": "parcel ham blocked (flagged)"}
    for kind, name in names.items():
        b, a = f["before"].get(kind), f["after"].get(kind)
        if b and a:
            rows.append(f"| {name}, {b['n']} unseen | {b['blocked']:.1%} ({b['flagged']:.1%}) | "
                        f"{a['blocked']:.1%} ({a['flagged']:.1%}) |")
    for set_name, metric, label in (("test", "accuracy", "test accuracy"), ("test", "recall", "test recall"),
                                    ("unused ham (report half)", "fpr", "FPR, unused ham (report half)"),
                                    ("held-out corrections", "accuracy", "held-out corrections right")):
        s = sets.get(set_name)
        if s:
            rows.append(f"| {label} ({s['n']}) | {s['champion'][metric]:.2%} | {s['challenger'][metric]:.2%} |")
    corr = r["corrections"]
    left = ", ".join(f"{n} {k}" for k, n in corr["left_out"].items()) or "none"
    checks = "; ".join(f"{ch['name']}: {'yes' if ch['passed'] else 'no'}" for ch in c.get("checks", []))
    pooled = c.get("pooled", {})
    lines = [*rows, "",
             f"Stream: {f['streamed']} messages ({f['misclassified']} misclassified: "
             + ", ".join(f"{k} {v}" for k, v in f["misclassified_by_kind"].items())
             + f"); users corrected {f['corrections_sent']}. The operator confirmed {f['needs_review_confirmed']} "
             f"that contradicted a confident prediction. Retrain learnt {corr['train']} (+{corr['validation']} in "
             f"validation), held out {corr['holdout']}; left out: {left}.",
             f"Comparison: McNemar over all sets {pooled.get('challenger_only', '-')} won / "
             f"{pooled.get('champion_only', '-')} lost, p {pooled.get('p', float('nan')):.3g}; {checks}. "
             f"Decision: {c.get('decision', r['status'])}" + (" (forced)" if c.get("forced") else "")
             + f"; registry version {f['registry_version']} current.",
             f"Retrain (plan, train, compare) {f['retrain_s']:.0f} s; the service swapped versions "
             + (f"{f['swap_s']:.1f} s after the promotion" if "swap_s" in f else "not (nothing promoted)")
             + f"; {f['server_errors']} failed requests over the whole run."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--correct-share", type=float, default=0.3)
    ap.add_argument("--work", help="keep the registry and store here (default: a temp dir)")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()

    import tempfile

    from benchmarks.common import publish

    with tempfile.TemporaryDirectory() as tmp:
        cfg = LoopConfig(a.run, a.data_dir, Path(a.work or tmp), correct_share=a.correct_share)
        figures = run_cycle(cfg)
    print(json.dumps(figures, default=str)[:4000])
    publish(f"Feedback loop: a new scam style, corrections, retrain, promotion ({Path(a.run).name})", render(figures),
            not a.no_record)


if __name__ == "__main__":
    main()
