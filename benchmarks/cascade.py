"""Spend the LLM only where it pays: a `--cascade ngrams` run decided with and without its cascade, with and without
the decision cache, beside the n-gram SVM alone and a stacked run, in one process on one machine.

    python -m benchmarks.cascade runs/cascade --stacked runs/stacked --data-dir data   # appends to RESULTS.md
    python -m benchmarks.cascade runs/cascade --data-dir data --no-record --service 0
    python -m benchmarks.cascade --folds-from benchmarks/peers_store --data ../shared/data/SMSSpamCollection

Quality, each row deciding at its run's stored operating point ("block" is spam): on the test split MCC, spam
caught, ham blocked and McNemar's exact test against the LLM alone; ham blocked on the report half of the unused
ham; on the modern set (benchmarks/data/modern_sms.csv, styles of the 2020s) spam caught and ham blocked; and the
share of messages that reached the LLM on each.

Throughput on a traffic mix: the report-half ham and the test spam, one-time-password messages (each code new:
near repeats no cache can serve) and repeats drawn from all of those by a Zipf law (campaigns, templates and
forwarded chains repeat), in requests of 32 messages in order; in process (`TextClassifier.decide`), and over
HTTP against `spamtune serve` with one message per request at concurrency 32 (`--service N` messages; 0: skip).

`--folds-from STORE`: the cascade on the peers' 5-fold protocol (benchmarks/peers.py), over the stored spamtune
rows (the LLM alone and stacked, each deciding at argmax as there): on each fold the cascade's n-gram model and
bands are fitted as `train --cascade ngrams` fits them (its training split; out-of-fold and validation margins for
the bands; the protocol has no unused ham), the messages it is sure of take its label, the rest keep the stored
row's decision, which the row's per-message correctness gives exactly. McNemar's exact test against both rows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import publish, spamtune_server
from benchmarks.peers import fold_cell, fold_metrics, mcnemar, modern_set
from spamtune.calibration.decisions import in_calibration_half
from spamtune.calibration.stacking import fit_cascade
from spamtune.data import read_split
from spamtune.inference import TextClassifier
from spamtune.inference.cache import CacheConfig
from spamtune.serving.loadtest import post_json

BATCH = 32


def traffic_mix(report_ham: list[str], test_spam: list[str], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    services = ["WhatsApp", "Google", "Microsoft", "your bank", "Amazon", "PayPal", "Uber", "Revolut"]
    otp = [f"Your {rng.choice(services)} verification code is {rng.randrange(10**6):06d}. Do not share it with "
           "anyone." for _ in range(200)]
    base = [*report_ham, *test_spam, *otp]
    weights = (1 / np.arange(1, len(base) + 1) ** 1.1).tolist()  # a few messages repeat often, most rarely
    order = list(range(len(base)))
    rng.shuffle(order)
    repeats = rng.choices([base[i] for i in order], weights=weights, k=len(base) // 2)
    stream = [*base, *repeats]
    rng.shuffle(stream)
    return stream


def decide_all(clf: TextClassifier, texts: list[str]) -> tuple[np.ndarray, float, float]:
    """(spam decided, share that reached the model, seconds) over `texts` in requests of BATCH (a message from
    the decision cache did not reach it)."""
    assert clf.pipeline is not None
    spam, reached = [], 0
    t0 = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        scored = clf.score(texts[i: i + BATCH], BATCH)
        for d, hit in zip(clf.pipeline.decide(scored), scored.cached or [False] * len(scored.verdicts)):
            spam.append(d.band == "block")
            reached += not hit and any(v.check == "model" for v in d.checks)
    return np.array(spam), reached / max(len(texts), 1), time.perf_counter() - t0


def service_rate(run: str, texts: list[str], extra: list[str], concurrency: int = 32) -> float:
    """Messages per second through `spamtune serve` (no store), one message per request."""
    with spamtune_server([run, "--no-store", "--no-access-log", "--max-queue", "4096", *extra]) as (url, _):
        def one(t: str) -> int:
            return post_json(url + "/classify", {"texts": [t]}, timeout=600)[0]

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            codes = list(pool.map(one, texts))
        seconds = time.perf_counter() - t0
    if bad := sum(c != 200 for c in codes):
        raise RuntimeError(f"{bad} of {len(texts)} requests failed")
    return len(texts) / seconds


def folds_table(data: Path, store_root: Path, folds: int = 5, paper: bool = False) -> str:
    """The cascade over the stored spamtune rows of the peers' k-fold protocol, or of the paper's (`paper`; see
    the module docstring)."""
    import tempfile

    from benchmarks.peers import Store, paper_split
    from spamtune.config import CASCADE_HAM_BLOCKED, CASCADE_SPAM_ALLOWED
    from spamtune.data import prepare
    from spamtune.fsutil import sha256_file

    folds = 1 if paper else folds
    stored = Store(store_root, {"data_sha256": sha256_file(data), "folds": folds, "limit": None,
                                **({"protocol": "paper"} if paper else {})}).rows()
    bases = [b for b in ("spamtune", "spamtune_stacked") if b in stored]
    if not bases:
        raise SystemExit(f"{store_root} holds no spamtune row")
    y_parts, fold_of, sure_spam, sure_ham = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        if paper:
            dirs = [paper_split(data, Path(tmp))]
        else:
            prepare(Path(tmp) / "cv", data, folds=folds)
            dirs = [Path(tmp) / "cv" / f"fold{k}" for k in range(1, folds + 1)]
        for k, fold in enumerate(dirs, start=1):
            train, val, test = (read_split(fold / f"{split}.csv") for split in ("train", "validation", "test"))
            model, bands = fit_cascade(list(train["Text"]), train["Label"].to_numpy(), list(val["Text"]),
                                       val["Label"].to_numpy(), "nfkc", CASCADE_SPAM_ALLOWED, CASCADE_HAM_BLOCKED)
            m = model.ngram_margin(list(test["Text"]))
            y_parts.append(test["Label"].to_numpy())
            fold_of.append(np.full(len(test), k))
            sure_spam.append(m >= bands.block_at)
            sure_ham.append(m < bands.allow_below)
            print(f"fold {k}: bands {bands.allow_below:+.3f} / {bands.block_at:+.3f}, "
                  f"{(sure_spam[-1] | sure_ham[-1]).mean():.1%} of its test messages sure", flush=True)
    y, fold_ids = np.concatenate(y_parts), np.concatenate(fold_of)
    spam_sure, ham_sure = np.concatenate(sure_spam), np.concatenate(sure_ham)
    preds: dict[str, np.ndarray] = {}
    for base in bases:
        right = stored[base]["right"]
        if len(right) != len(y):
            raise SystemExit(f"{base}: {len(right)} stored decisions for {len(y)} test messages (other folds?)")
        preds[base] = np.where(right, y, 1 - y)
        cascaded = preds[base].copy()
        cascaded[ham_sure], cascaded[spam_sure] = 0, 1
        preds[f"cascade over {base}"] = cascaded
    if "tfidf_svm" in stored:
        preds["tfidf_svm (stored)"] = np.where(stored["tfidf_svm"]["right"], y, 1 - y)

    lines = ["| row | MCC | spam caught % | ham blocked % | reached the LLM % | "
             + " | ".join(f"vs {b}: wins / losses, McNemar p" for b in bases) + " |", "|---" * (5 + len(bases)) + "|"]
    for name, pred in preds.items():
        per = pd.DataFrame([fold_metrics(y[f], pred[f].astype(float), 0.5)
                            for f in (fold_ids == k for k in range(1, folds + 1))])
        reached = (float((~(spam_sure | ham_sure)).mean()) if name.startswith("cascade")
                   else 0.0 if name.startswith("tfidf") else 1.0)
        versus = []
        for b in bases:
            t = mcnemar(preds[b] == y, pred == y)
            versus.append("reference" if name == b else f"{t['wins']} / {t['losses']}, p={t['p']:.2f}")
        lines.append(f"| {name} | {fold_cell(per['mcc'], 'mcc')} | {fold_cell(per['recall'], 'recall')} | "
                     f"{fold_cell(per['fpr'], 'fpr')} | {reached * 100:.1f} | {' | '.join(versus)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", help="a run trained with --cascade ngrams")
    ap.add_argument("--folds-from", type=Path, help="the peers' store: the cascade on their 5-fold protocol instead")
    ap.add_argument("--data", type=Path, help="with --folds-from: the SMSSpamCollection file the store was made of")
    ap.add_argument("--paper", action="store_true", help="with --folds-from: a store of the paper's protocol")
    ap.add_argument("--stacked", help="a --stack ngrams run on the same data: its row beside them")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--service", type=int, default=600, help="traffic messages sent to the service per row (0: skip)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    a = ap.parse_args(argv)
    if a.folds_from is not None:
        if a.data is None or not a.data.is_file():
            raise SystemExit("--folds-from needs --data: the SMSSpamCollection file the store was made of")
        body = folds_table(a.data, a.folds_from, paper=a.paper)
        protocol = "the dataset paper's protocol (first 30 % trains)" if a.paper else "the peers' 5-fold protocol"
        publish(f"Cascade on {protocol}", body + "\n\nEach spamtune row decides at argmax, as in the peers' "
                "table; the cascade's n-gram model and bands are fitted per fold as `train --cascade ngrams` fits "
                "them (budgets 0.5 % spam allowed / 0.05 % ham blocked, held-out margins: out-of-fold train and "
                "validation; no unused ham in this protocol).", not a.no_record)
        return
    if a.run is None:
        raise SystemExit("give a --cascade run, or --folds-from STORE --data FILE")

    test = read_split(a.data_dir / "test.csv")
    unused = read_split(a.data_dir / "unused.csv")
    report = [t for t, y in zip(unused["Text"], unused["Label"]) if y == 0 and not in_calibration_half(t)]
    modern = modern_set()
    sets = {"test": (list(test["Text"]), test["Label"].to_numpy()),
            "report ham": (report, np.zeros(len(report), dtype=int)),
            "modern": (list(modern["Text"]), modern["Label"].to_numpy())}
    traffic = traffic_mix(report, [t for t, y in zip(test["Text"], test["Label"]) if y == 1])

    cascade = TextClassifier.load(a.run)
    if cascade.pipeline is None or cascade.pipeline.check("cascade") is None:
        raise SystemExit(f"{a.run} was not trained with --cascade ngrams")
    svm = cascade.run.cascade
    assert svm is not None

    rows: dict[str, dict] = {}
    configs = [("LLM alone", a.run, False, False), ("LLM + decision cache", a.run, False, True),
               ("cascade", a.run, True, False), ("cascade + decision cache", a.run, True, True)]
    if a.stacked:
        configs.insert(1, ("stacked (LLM + n-grams)", a.stacked, False, False))
    for name, run, use_cascade, cached in configs:
        clf = TextClassifier.load(run, cascade=use_cascade)
        assert clf.pipeline is not None
        r: dict = {}
        if not cached:  # quality: the cache changes no decision (tests/inference/test_cache.py)
            for set_name, (texts, y) in sets.items():
                r[set_name] = decide_all(clf, texts)[:2]
        clf.pipeline.use_cache(CacheConfig(size=10_000 if cached else 0))
        _, reached, seconds = decide_all(clf, traffic)
        r["traffic"] = (len(traffic) / seconds, reached)
        if a.service:
            extra = [*([] if use_cascade else ["--no-cascade"]), "--decision-cache", "10000" if cached else "0"]
            r["service"] = service_rate(run, traffic[: a.service], extra)
        rows[name] = r
        print(name, {k: (v[1] if isinstance(v, tuple) else v) for k, v in r.items()}, flush=True)

    rows["n-gram SVM alone"] = {k: (svm.ngram_margin(texts) >= 0, 0.0) for k, (texts, _) in sets.items()}
    t0 = time.perf_counter()
    for i in range(0, len(traffic), BATCH):
        svm.ngram_margin(traffic[i: i + BATCH])
    rows["n-gram SVM alone"]["traffic"] = (len(traffic) / (time.perf_counter() - t0), 0.0)

    y_test, y_modern = sets["test"][1], sets["modern"][1]
    reference = rows["LLM alone"]["test"][0] == y_test
    lines = ["| configuration | test MCC | spam caught | ham blocked | vs LLM alone: wins / losses, McNemar p | "
             "reached the LLM (test) | report ham blocked | reached (report ham) | modern: spam caught | "
             "modern: ham blocked | reached (modern) | traffic msgs/s in process | reached (traffic) | "
             "msgs/s over HTTP |", "|---" * 14 + "|"]
    base_rate = rows["LLM alone"]["traffic"][0]
    base_http = rows["LLM alone"].get("service")
    for name, r in rows.items():
        traffic_rate, traffic_reached = r["traffic"]
        http = r.get("service")
        http_cell = "-" if http is None else f"{http:.1f} ({http / base_http:.1f}x)" if base_http else f"{http:.1f}"
        if "test" not in r:  # the cache rows: decisions as the row above
            lines.append(f"| {name} | (as without the cache) | {' | '.join(['-'] * 9)} | {traffic_rate:.1f} "
                         f"({traffic_rate / base_rate:.1f}x) | {traffic_reached:.1%} | {http_cell} |")
            continue
        pred, reached = r["test"]
        t = mcnemar(reference, pred == y_test)
        rep, rep_reached = r["report ham"]
        mod, mod_reached = r["modern"]
        m, mm = fold_metrics(y_test, pred.astype(float), 0.5), fold_metrics(y_modern, mod.astype(float), 0.5)
        lines.append(
            f"| {name} | {m['mcc']:.4f} | {m['recall']:.2%} | {m['fpr']:.2%} | "
            f"{t['wins']} / {t['losses']}, p={t['p']:.2f} | {reached:.1%} | {rep.mean():.2%} | {rep_reached:.1%} | "
            f"{mm['recall']:.1%} | {mm['fpr']:.1%} | {mod_reached:.1%} | "
            f"{traffic_rate:.1f} ({traffic_rate / base_rate:.1f}x) | {traffic_reached:.1%} | {http_cell} |")
    bands = cascade.run.run_config.cascade
    assert bands is not None
    distinct = len(set(traffic))
    body = "\n".join([
        *lines, "",
        f"Run {a.run} (its bands: margin < {bands.allow_below:+.3f} ham, >= {bands.block_at:+.3f} spam, picked on "
        f"{sum((bands.picked_on or {}).values())} held-out messages with budgets {bands.spam_allowed:.2%} spam "
        f"allowed / {bands.ham_blocked:.2%} ham blocked). Sets: test {len(y_test)} messages, report half of the "
        f"unused ham {len(report)}, modern {len(y_modern)}; traffic {len(traffic)} messages ({distinct} distinct), "
        f"in requests of {BATCH}; HTTP: the first {a.service} of them, one per request, concurrency 32, no store. "
        "The n-gram SVM alone is the cascade's own model at margin 0 (no operating point of its own)."])
    publish(f"Cascade and decision cache: {Path(a.run).name}", body, not a.no_record)


if __name__ == "__main__":
    main()
