"""Learning in seconds: how much of a new scam style each way of learning from operators' reports stops, and at
what cost in false positives, after k = 1, 3, 5, 10, 20 reports of that style.

    .venv/bin/python -m benchmarks.learning_stream runs/demo --data-dir data            # appends to RESULTS.md
    .venv/bin/python -m benchmarks.learning_stream runs/demo --data-dir data --retrain-ks 5,20

Styles the 2011 corpus lacks, each with the ordinary ham it is confused with: parcel fees and "hi mum, new number"
(benchmarks/data/new_scams.csv: 30 templates each, whole templates either reported or measured, never both), bank
payee alerts, crypto and task scams (benchmarks/data/modern_sms.csv: a seeded two thirds reported, the rest
measured). Operators correct what the run misses: the first k reported messages of each style that the run lets
through are corrected to spam (a style the run already blocks gets no corrections).

- model: the run as trained (k = 0).
- memory: the memory of corrections (inference/memory.py) over those reports, the run unchanged.
- retrain (today): `retrain` learning each report once, warm-started; retrain (boost): the same with --boost 10
  perturbed copies of each (lifecycle/corrections.py). Both as the comparison would judge them (promote / keep).
- retrain + memory: the boosted challenger with the memory of the same reports (not retired, to see them add up).

Figures: recall on each style's reports after the k-th correction (the wave going on) and on its new templates,
FPR on its look-alike ham, FPR on the report half of the unused ham (the whole half), and the time from an
operator's fifth `spamtune feedback` (another process) to the first changed decision of a `spamtune serve` on the
same SQLite store.
"""

from __future__ import annotations

import argparse
import datetime
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import publish, spamtune_server
from spamtune.calibration.decisions import MemoryCalibration, in_calibration_half, unit_rows
from spamtune.data import read_split
from spamtune.inference import TextClassifier
from spamtune.inference.memory import MemoryCheck, MemoryEntry, Remembered
from spamtune.serving.loadtest import post_json

DATA = Path(__file__).with_name("data")
KS = (1, 3, 5, 10, 20)
UTC = datetime.UTC


@dataclass
class Style:
    name: str
    reported: list[str]  # in the order operators report them
    measured: list[str]  # the style's later messages
    lookalike: list[str]  # the ordinary ham it is confused with


def styles(seed: int) -> list[Style]:
    rng = random.Random(seed)
    scams = pd.read_csv(DATA / "new_scams.csv", keep_default_na=False)
    modern = pd.read_csv(DATA / "modern_sms.csv", keep_default_na=False)
    out = []
    for name, kind, ham_kind in (("parcel fees", "parcel_scam", "delivery_ham"),
                                 ("hi mum", "new_number_scam", "family_ham")):
        rows = scams[scams["kind"] == kind]
        families = sorted(rows["family"].unique())
        rng.shuffle(families)
        cut = round(0.6 * len(families))
        reported = rows[rows["family"].isin(families[:cut])].sample(frac=1, random_state=seed)
        measured = rows[rows["family"].isin(families[cut:])]
        out.append(Style(name, list(reported["text"]), list(measured["text"]),
                         list(scams[scams["kind"] == ham_kind]["text"])))
    for name, category, ham_category in (("bank payee alerts", "bank", "bank"), ("crypto", "crypto", "money"),
                                         ("task scams", "job", "work")):
        texts = list(modern[(modern["label"] == "spam") & (modern["category"] == category)]["text"])
        rng.shuffle(texts)
        cut = round(2 * len(texts) / 3)
        out.append(Style(name, texts[:cut], texts[cut:],
                         list(modern[(modern["label"] == "ham") & (modern["category"] == ham_category)]["text"])))
    return out


class Reports:
    """A memory source holding the operators' reports directly (the store's rules are tested elsewhere)."""

    def __init__(self, texts: list[str]) -> None:
        now = datetime.datetime.now(UTC)
        self.list = [MemoryEntry(f"r{i}", t, "spam", "cli", True, now) for i, t in enumerate(texts)]

    def revision(self) -> int:
        return len(self.list)

    def entries(self) -> list[MemoryEntry]:
        return list(self.list)


def missed(scored: Scored, style: Style) -> list[str]:
    """The style's reports the run did not block, in stream order: what operators correct."""
    return [t for t in style.reported if not scored.blocked[scored.index[t]]]


def corrections(scored: Scored, all_styles: list[Style], k: int) -> list[str]:
    """The first k messages of each style's reports that the run did not block."""
    return [t for s in all_styles for t in missed(scored, s)[:k]]


def later(scored: Scored, style: Style, k: int) -> list[str]:
    """The style's reports after its k-th correction in the stream (the wave going on: mostly the reported
    templates again), or all of them for k = 0."""
    fixed = missed(scored, style)[:k]
    return style.reported[style.reported.index(fixed[-1]) + 1:] if fixed else list(style.reported)


class Scored:
    """One model's pass over every message the benchmark measures: blocked or not, and the pooled vectors."""

    def __init__(self, clf: TextClassifier, texts: list[str]) -> None:
        self.clf, self.index = clf, {t: i for i, t in enumerate(texts)}
        logits, self.vectors, _ = clf.model_logits_pooled(texts, 32, progress=True)
        self.blocked = clf.scores_from_logits(logits)[:, 1] >= clf.block_threshold()

    def blocked_with(self, texts: list[str], reports: list[str]) -> np.ndarray:
        rows = [self.index[t] for t in texts]
        blocked = self.blocked[rows].copy()
        cal = MemoryCalibration.load(self.clf.run.run_dir)
        if reports and cal is not None:
            memory = MemoryCheck(Reports(reports), self.clf, cal)
            memory.refresh()
            index = memory.index
            nearest, _, within = index.nearest(self.vectors[rows])
            for i in np.flatnonzero(within):
                blocked[i] = index.active[int(nearest[i])].label == "spam"
        return blocked


def figures(scored: Scored, base: Scored, all_styles: list[Style], report_ham: list[str], k: int,
            reports: list[str]) -> dict:
    """Per style (recall on the reports after the k-th correction, the run as trained on them, recall on the new
    templates, FPR on the look-alike ham), with a memory of `reports` (none: the model alone); and the report
    half's FPR."""
    out = {"report_fpr": float(scored.blocked_with(report_ham, reports).mean())}
    for s in all_styles:
        after = later(base, s, k)
        out[s.name] = (float(scored.blocked_with(after, reports).mean()) if after else float("nan"),
                       float(base.blocked_with(after, []).mean()) if after else float("nan"),
                       float(scored.blocked_with(s.measured, reports).mean()),
                       float(scored.blocked_with(s.lookalike, reports).mean()))
    return out


def retrained(run: str, data_dir: str, texts: list[str], boost: int, work: Path) -> tuple[str, str]:
    """A challenger learning `texts` as spam: (its run dir, the comparison's decision)."""
    from spamtune.lifecycle import CorrectionPolicy, RetrainOptions, retrain
    from spamtune.monitoring.store import PredictionRecord, PredictionStore

    clf = TextClassifier.load(run)
    name = f"n{len(texts)}-b{boost}"
    store = PredictionStore.open(f"sqlite:///{work / f'{name}.sqlite'}")
    records = [PredictionRecord.of(d, t, clf.run_id, "cli", 1.0, positive_label="spam")
               for d, t in zip(clf.decide(texts, batch_size=32), texts)]
    store.insert(records)
    for r in records:
        store.add_feedback(r.id, "spam", source="cli")
    out = work / f"challenger-{name}"
    result = retrain(store, run, out, data_dir, RetrainOptions(
        min_feedback=1, corrections=CorrectionPolicy(holdout=0.0, boost=boost)))
    assert result.comparison is not None
    return str(out), result.comparison.decision


def seconds_to_first_change(run: str, reports: list[str], measured: list[str], work: Path) -> float | None:
    """`spamtune serve` on a SQLite store; the reports classified through it and corrected with `spamtune feedback`
    from other processes; then the seconds from the last correction's commit until the service decides one of the
    `measured` messages by the memory (None: none of them is within a report's reach)."""
    db = f"sqlite:///{work / 'latency.sqlite'}"
    with spamtune_server([run, "--db", db, "--no-access-log"], stderr=subprocess.DEVNULL) as (url, _):
        ids = []
        for text in reports:
            status, body = post_json(url + "/classify", {"texts": [text]})
            assert status == 200, body
            ids.append(body["results"][0]["id"])
        time.sleep(1.5)  # the answers' records are written in the background
        for pid in ids:
            subprocess.run([sys.executable, "-m", "spamtune", "feedback", pid, "spam", "--db", db], check=True,
                           capture_output=True)
        start = time.monotonic()
        while time.monotonic() - start < 15:
            status, body = post_json(url + "/classify", {"texts": measured})
            if any(r["checks"][-1]["check"] == "memory" for r in body["results"]):
                return time.monotonic() - start
        return None


def nearest_ms(clf: TextClassifier, n: int = 10_000, queries: int = 200) -> float:
    """Milliseconds of the memory's nearest-neighbour step for one message against `n` remembered ones."""
    cal = MemoryCalibration.load(clf.run.run_dir)
    assert cal is not None
    rng = np.random.default_rng(0)
    dim = cal.guard_vectors.shape[1]
    index = Remembered([MemoryEntry("x", "x", "spam", "cli", True, datetime.datetime.now(UTC))] * n,
                       unit_rows(rng.standard_normal((n, dim))), np.full(n, cal.threshold, dtype=np.float32))
    q = rng.standard_normal((1, dim)).astype(np.float32)
    start = time.perf_counter()
    for _ in range(queries):
        index.nearest(q)
    return 1000 * (time.perf_counter() - start) / queries


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--ks", default=",".join(map(str, KS)), help="reports per style (default: 1,3,5,10,20)")
    ap.add_argument("--retrain-ks", default="5,20", help="the k a challenger is trained for ('' for none)")
    ap.add_argument("--report-ham", type=int, help="only the first N of the report half (a quick trial)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    a = ap.parse_args(argv)
    ks = [int(k) for k in a.ks.split(",")]
    retrain_ks = [int(k) for k in a.retrain_ks.split(",") if k]
    all_styles = styles(a.seed)
    unused = read_split(Path(a.data_dir) / "unused.csv")
    report_ham = [t for t, y in zip(unused["Text"], unused["Label"]) if y == 0 and not in_calibration_half(t)]
    report_ham = report_ham[: a.report_ham]
    styled = [t for s in all_styles for t in (*s.reported, *s.measured, *s.lookalike)]
    texts = list(dict.fromkeys([*report_ham, *styled]))
    t0 = time.monotonic()
    champion = Scored(TextClassifier.load(a.run), texts)
    lookup_ms = nearest_ms(champion.clf)
    rows = [("model", 0, "", figures(champion, champion, all_styles, report_ham, 0, []))]
    for k in ks:
        rows.append(("memory", k, "", figures(champion, champion, all_styles, report_ham, k,
                                              corrections(champion, all_styles, k))))
    with tempfile.TemporaryDirectory(prefix="learning-stream-") as tmp:
        work = Path(tmp)
        for k in retrain_ks:
            learnt = corrections(champion, all_styles, k)
            for boost, name in ((0, "retrain (today)"), (10, "retrain (boost)")):
                out, decision = retrained(a.run, a.data_dir, learnt, boost, work)
                challenger = Scored(TextClassifier.load(out), texts)
                rows.append((name, k, decision, figures(challenger, champion, all_styles, report_ham, k, [])))
                if boost:
                    rows.append(("retrain + memory", k, decision,
                                 figures(challenger, champion, all_styles, report_ham, k, learnt)))
        reached = None
        for s in all_styles:  # the first style whose fifth correction brings a later message within reach
            reports = corrections(champion, [s], 5)
            (work / s.name).mkdir()
            # a later message these five reports bring within reach (in this process), asked alone
            after = later(champion, s, 5)
            caught = [t for t, b in zip(after, champion.blocked_with(after, reports))
                      if b and not champion.blocked[champion.index[t]]]
            if len(reports) == 5 and caught and (sec := seconds_to_first_change(a.run, reports, caught[:1],
                                                                                 work / s.name)):
                reached = (s.name, sec)
                break
    names = [s.name for s in all_styles]
    lines = [f"Run {a.run}; the report half of the unused ham: {len(report_ham)} messages; measured messages per "
             "style: " + ", ".join(f"{s.name} {len(s.measured)} (reported {len(s.reported)}, look-alike ham "
                                   f"{len(s.lookalike)})" for s in all_styles) + ".", "",
             "Per style (%): recall on its reports after the k-th correction (the run as trained, in brackets) / "
             "recall on its new templates / FPR on its look-alike ham; FPR on the report half of the unused ham; "
             "a challenger's comparison decision.", "",
             "| learning | k | " + " | ".join(names) + " | unused-ham FPR | comparison |",
             "|---|---:|" + "---|" * len(names) + "---:|---|"]
    for name, k, decision, f in rows:
        cells = [f"{100 * f[n][0]:.0f} ({100 * f[n][1]:.0f}) / {100 * f[n][2]:.0f} / {100 * f[n][3]:.1f}"
                 for n in names]
        lines.append(f"| {name} | {k} | " + " | ".join(cells) + f" | {100 * f['report_fpr']:.2f} % | {decision} |")
    lines += ["", "Time from the fifth `spamtune feedback` (another process) to the first later message the "
              "serving process decides by the memory: "
              + (f"{reached[1]:.2f} s ({reached[0]})." if reached else "none was within a report's reach."),
              f"The memory's nearest-neighbour step against 10,000 remembered messages (numpy, exact): "
              f"{lookup_ms:.2f} ms a message.", f"Wall time {time.monotonic() - t0:.0f} s."]
    publish("Learning from a handful of reports: memory, retrain, both", "\n".join(lines), record=not a.no_record)


if __name__ == "__main__":
    main()
