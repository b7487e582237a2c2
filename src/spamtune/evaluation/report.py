"""Evaluating a run (book §6.7 and beyond): accuracy on every split, precision/recall/F1/MCC/ROC-AUC and the
confusion matrix on test (scikit-learn, through the run's Task), the false-positive rate on `unused.csv` (real ham
the balanced split never saw), the run at its operating point (FPR on the report half of the unused ham only), and
calibration (ECE, Brier). Writes RUN/eval.json, confusion_matrix.png, reliability.png and thresholds.png (a
--limit evaluation writes RUN/eval-limitN.json and leaves those alone)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spamtune.calibration.decisions import (
    BANDS,
    OperatingPoint,
    bands,
    binary_rates,
    brier_score,
    expected_calibration_error,
    pick_operating_point,
    split_halves,
)
from spamtune.config import DEFAULT_REVIEW_FPR, DEFAULT_TARGET_FPR
from spamtune.data import count_rows, iter_split
from spamtune.data.labels import POSITIVE_ID
from spamtune.data.perturb import PERTURBATIONS
from spamtune.data.perturb import perturb as perturb_text
from spamtune.errors import ConfigError
from spamtune.fsutil import check_writable_dir, write_json
from spamtune.inference import TextClassifier, check_threshold
from spamtune.runs import RunConfig
from spamtune.tasks import SingleLabel

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
LENGTH_BINS = (0, 40, 80, 120, 160)  # characters: short messages are where spam slips through


def recall_by_length(lengths: np.ndarray, y: np.ndarray, pred: np.ndarray, positive: int = 1) -> list[dict[str, Any]]:
    """Recall of the positive class (spam) per message-length bin: [{"chars": "0-39", "n": ..., "recall": ...}]."""
    edges = [*LENGTH_BINS, np.inf]
    out = []
    for lo, hi in zip(edges, edges[1:]):
        mask = (lengths >= lo) & (lengths < hi) & (y == positive)
        label = f"{lo}-{int(hi) - 1}" if np.isfinite(hi) else f"{lo}+"
        out.append({"chars": label, "n": int(mask.sum()),
                    "recall": float((pred[mask] == positive).mean()) if mask.any() else None})
    return out


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike, threshold: float | None = None,
                 limit: int | None = None, unused: bool = True, batch_size: int = 16, progress: bool = True,
                 target_fpr: float | None = None, target_precision: float | None = None,
                 review_fpr: float | None = None, store: bool = False, device: str = "cpu",
                 dtype: str = "fp32", runtime: str = "torch", perturb: tuple[str, ...] = (),
                 cascade: bool = True, reuse: bool = True) -> dict[str, Any]:
    """Score a run on every split; write `eval.json` and the figures into the run directory.

    Binary runs are also scored at their operating point (the stored one, or one picked here for `target_fpr` /
    `target_precision` by the protocol of decisions.py, and with `store` written into the run's manifest), with
    FPR on the report half of the unused ham only; single-label runs get ECE and Brier before and after
    calibration. A --cascade run is scored as it decides (`cascade=False`: every message through the model), with
    the share of each split that reached the model. With `reuse` (the default) no message is scored by the model
    twice: the run's memo of the model's logits (runs.LogitsMemo: what training scored after the fit, what earlier
    evaluations scored) answers what it holds, and what this evaluation scores is added to it.
    """
    check_threshold(threshold)
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be at least 1")
    repick = target_fpr is not None or target_precision is not None or review_fpr is not None
    if unknown := set(perturb) - set(PERTURBATIONS):
        raise ConfigError(f"--perturb: unknown {', '.join(sorted(unknown))} (known: {', '.join(PERTURBATIONS)})")
    if store and not repick:
        raise ConfigError("--store saves a new operating point: give --target-fpr, --target-precision or --review-fpr")
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    check_writable_dir(run_dir)  # before the model loads, not after the scoring
    # a partial evaluation never replaces the full one
    report = run_dir / ("eval.json" if limit is None else f"eval-limit{limit}.json")
    clf = TextClassifier.load(run_dir, dtype, device=device, runtime=runtime, cascade=cascade)
    memo = clf.keep_logits() if reuse else None
    if (repick or perturb) and not clf.binary:
        raise ConfigError("an operating point and --perturb are for binary runs only")
    paths = {name: data_dir / f"{name}.csv" for name in SPLITS}
    if unused and (data_dir / "unused.csv").is_file():
        paths["unused"] = data_dir / "unused.csv"
    # a first pass reads every file (a damaged one fails before any scoring) and sizes the progress bar
    rows = {name: min(count_rows(path), limit or np.inf) for name, path in paths.items()}
    result: dict[str, Any] = {"run": str(run_dir), "run_id": clf.run_id, "threshold": threshold,
                              "labels": clf.label_names, "accuracy": {}, "n": {}}
    try:
        with tqdm(total=int(sum(rows.values())), desc="evaluating", unit="msg", disable=not progress) as bar:
            if clf.task.name != "single_label":
                return _evaluate_task(clf, paths, limit, result, report, batch_size, bar)
            scored = {name: Scored.of(clf, path, batch_size, bar, limit) for name, path in paths.items()
                      if rows[name]}
            if perturb and rows["test"]:
                bar.reset(total=len(perturb) * int(scored["test"].y.sum()))
                bar.set_description("perturbed spam")
                result["robustness"] = robustness(decides_spam(clf, threshold, batch_size), paths["test"], perturb,
                                                  bar, limit)
    finally:  # an interrupted evaluation keeps what it scored
        if memo is not None:
            memo.save()
    if memo is not None:
        result["model_logits"] = {"reused": memo.reused, "scored": memo.scored}
    if clf.pipeline is not None and clf.pipeline.check("cascade") is not None:
        result["reached_model"] = {name: float(sc.reached.mean()) for name, sc in scored.items()}
    for name, sc in scored.items():
        result["n"][name] = len(sc.y)
        if name == "unused":
            # unused rows are the undersampled majority class (ham): every positive prediction is a false positive
            result["fpr_unused"] = float((SingleLabel.predict_ids(sc.probs, threshold) != sc.y).mean())
            continue
        m = clf.task.metrics(sc.y, sc.probs, clf.label_set, threshold=threshold)
        result["accuracy"][name] = m["accuracy"]
        if name == "test":
            result.update({k: v for k, v in m.items() if k != "accuracy"})
            if clf.binary:
                result["recall_by_length"] = recall_by_length(sc.lengths, sc.y,
                                                              SingleLabel.predict_ids(sc.probs, threshold))
    result.setdefault("fpr_unused", None)
    if "test" in scored:
        result["calibration"] = calibration_report(clf, scored["test"])
    op = clf.operating_point
    if repick:
        op = repick_operating_point(clf, scored, target_fpr, target_precision, review_fpr)
        if store:
            run_config = RunConfig.from_dir(run_dir)
            run_config.operating_point = op
            run_config.write(run_dir)
    if clf.binary and op is not None and "test" in scored:
        result["operating_point"] = operating_point_report(op, scored, stored=not repick or store)
    write_json(report, result)
    if limit is None:
        _plots(clf, result, scored, op, run_dir)
    return result


@dataclass
class Scored:
    """One split scored once, read in blocks: calibrated and raw probabilities, labels, and of each text only what
    the report needs (its length, its half of the unused ham, a key to match twins), so memory does not hold texts."""

    probs: np.ndarray
    raw: np.ndarray
    y: np.ndarray
    lengths: np.ndarray
    calibration_half: np.ndarray
    keys: np.ndarray  # hash() of each text: equal texts, equal keys (within this process)
    reached: np.ndarray  # the message reached the model (an earlier check, the cascade's, did not decide it)

    @classmethod
    def of(cls, clf: TextClassifier, path: Path, batch_size: int, bar: tqdm, limit: int | None = None) -> Scored:
        parts: dict[str, list[np.ndarray]] = {f.name: [] for f in dataclasses.fields(cls)}
        for df in split_blocks(path, limit):
            texts = list(df["Text"])
            decided = clf.score(clf.check_messages(texts), batch_size)
            logits = decided.logits
            parts["reached"].append(np.array([any(v.check == "model" for v in vs) for vs in decided.verdicts]))
            parts["probs"].append(clf.scores_from_logits(logits))
            parts["raw"].append(clf.scores_from_logits(logits, calibrated=False))
            parts["y"].append(df["Label"].to_numpy())
            parts["lengths"].append(np.array([len(t) for t in texts], dtype=np.int64))
            parts["calibration_half"].append(split_halves(texts)[0])
            parts["keys"].append(np.array([hash(t) for t in texts], dtype=np.int64))
            bar.update(len(texts))
        return cls(**{name: np.concatenate(p) for name, p in parts.items()})


def split_blocks(path: Path, limit: int | None = None) -> Iterator[pd.DataFrame]:
    """`iter_split`'s blocks, cut after the first `limit` rows (--limit)."""
    left = limit or np.inf
    for df in iter_split(path):
        df = df[: int(min(left, len(df)))]
        left -= len(df)
        yield df
        if left <= 0:
            return


def robustness(is_spam: Callable[[list[str]], np.ndarray], path: Path, names: tuple[str, ...],
               bar: tqdm | None = None, limit: int | None = None) -> dict[str, dict[str, Any]]:
    """Spam recall and accuracy on a split (test) with every spam message under each perturbation (data/perturb.py;
    ham stays clean), beside the clean figures. `is_spam`: a model's decisions for a list of texts (any model: the
    benchmarks pass a scikit-learn peer). `recall_changed`: recall on the messages the perturbation changed."""
    positive = 1
    tally = {name: np.zeros(4, dtype=np.int64) for name in ("clean", *names)}  # spam, changed, caught, caught changed
    ham = ham_right = 0
    for df in split_blocks(path, limit):
        spam_rows = (df["Label"] == positive).to_numpy()
        spam = list(df["Text"][spam_rows])
        hams = list(df["Text"][~spam_rows])
        ham += len(hams)
        ham_right += int((~is_spam(hams)).sum()) if hams else 0
        for name in tally:
            texts = spam if name == "clean" else [perturb_text(t, name) for t in spam]
            changed = np.array([a != b for a, b in zip(texts, spam)], dtype=bool)
            caught = is_spam(texts) if texts else np.zeros(0, dtype=bool)
            tally[name] += [len(texts), changed.sum(), caught.sum(), (caught & changed).sum()]
            if bar is not None and name != "clean":
                bar.update(len(texts))
    return {name: {"n_spam": int(n), "changed": int(ch), "recall": c / n if n else None,
                   "recall_changed": cc / ch if ch else None,
                   "accuracy": (c + ham_right) / (n + ham) if n + ham else None}
            for name, (n, ch, c, cc) in tally.items()}


def decides_spam(clf: TextClassifier, threshold: float | None, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    """A run's spam decisions at `threshold` (argmax when None), as `robustness` takes them."""
    return lambda texts: SingleLabel.predict_ids(clf.predict_proba(texts, batch_size), threshold) == 1


def report_half(scored: dict[str, Scored]) -> tuple[np.ndarray, np.ndarray]:
    """P(positive) of the unused negatives in (calibration half, report half); empty without unused.csv. The
    corpus repeats some messages: a report-half message that is also in the validation split (which picks) is left
    out of the report half."""
    sc = scored.get("unused")
    if sc is None:
        return np.zeros(0), np.zeros(0)
    calib = sc.calibration_half
    rep = ~calib
    if "validation" in scored:
        rep &= ~np.isin(sc.keys, scored["validation"].keys)
    negative = sc.y == 0
    return sc.probs[calib & negative, 1], sc.probs[rep & negative, 1]


def repick_operating_point(clf: TextClassifier, scored: dict[str, Scored], target_fpr: float | None,
                           target_precision: float | None, review_fpr: float | None) -> OperatingPoint:
    """decisions.py's protocol on this evaluation's scores: validation + the calibration half pick."""
    val = scored["validation"]
    p_val = val.probs[:, 1]
    calib, _ = report_half(scored)
    stored = clf.operating_point
    return pick_operating_point(
        p_val[val.y == 1], p_val[val.y == 0], calib, clf.label_names[POSITIVE_ID],
        target_fpr if target_fpr is not None else (stored.target_fpr if stored and stored.target_fpr else
                                                   DEFAULT_TARGET_FPR),
        target_precision, review_fpr if review_fpr is not None else DEFAULT_REVIEW_FPR)


def operating_point_report(op: OperatingPoint, scored: dict[str, Scored], stored: bool) -> dict[str, Any]:
    """Test metrics and band counts at the block threshold, and FPR on the report half only."""
    test = scored["test"]
    p = test.probs[:, 1]
    rates = binary_rates(test.y, p >= op.block_threshold)
    band_of = bands(p, op.block_threshold, op.review_threshold)
    _, rep = report_half(scored)
    out = {**dataclasses.asdict(op), "stored": stored,
           "accuracy": rates["accuracy"], "recall": rates["recall"] or 0.0, "precision": rates["precision"],
           "confusion_matrix": rates["confusion_matrix"],
           "bands_test": {b: band_of.count(b) for b in BANDS},
           "recall_with_review": float((p[test.y == 1] >= op.review_threshold).mean()) if (test.y == 1).any()
           else None,
           "fpr_report_half": float((rep >= op.block_threshold).mean()) if len(rep) else None,
           "review_rate_report_half": float(((rep >= op.review_threshold) & (rep < op.block_threshold)).mean())
           if len(rep) else None, "n_report_half": len(rep)}
    return out


def calibration_report(clf: TextClassifier, test: Scored) -> dict[str, Any]:
    """Temperature, and ECE and Brier on test before (temperature 1) and after calibration."""
    cal = clf.run.run_config.calibration
    return {"temperature": clf.temperature, "fitted_on": cal.fitted_on if cal else 0,
            "ece_before": expected_calibration_error(test.raw, test.y),
            "ece_after": expected_calibration_error(test.probs, test.y),
            "brier_before": brier_score(test.raw, test.y), "brier_after": brier_score(test.probs, test.y)}


def _plots(clf: TextClassifier, result: dict[str, Any], scored: dict[str, Scored], op: OperatingPoint | None,
           run_dir: Path) -> None:
    from spamtune.training.plots import plot_confusion_matrix, plot_reliability, plot_thresholds

    if "confusion_matrix" in result:
        plot_confusion_matrix(result["confusion_matrix"], clf.label_names, run_dir / "confusion_matrix.png")
    if "test" in scored:
        test = scored["test"]
        plot_reliability(test.raw, test.probs, test.y, run_dir / "reliability.png")
        if clf.binary:
            plot_thresholds(test.probs[:, 1], test.y, report_half(scored)[1], op, run_dir / "thresholds.png")


def _evaluate_task(clf: TextClassifier, paths: dict[str, Path], limit: int | None, result: dict[str, Any],
                   report: Path, batch_size: int, bar: tqdm) -> dict[str, Any]:
    """Multi-label and regression runs (HF backend): the task's metrics per split."""
    result.update(task=clf.task.name, thresholds=clf.thresholds, metrics={})
    for name, path in paths.items():
        if name == "unused":
            continue
        scores, targets = [], []
        for df in split_blocks(path, limit):
            scores.append(clf.predict_proba(list(df["Text"]), batch_size))
            targets.extend(clf.task.targets(df["Label"], clf.label_set))
            bar.update(len(df))
        if not targets:
            continue
        y = np.asarray(targets)
        result["metrics"][name] = clf.task.metrics(y, np.concatenate(scores), clf.label_set, clf.thresholds)
        result["n"][name] = len(y)
    write_json(report, result)
    return result


def format_report(r: dict[str, Any]) -> str:
    """eval.json as the lines `spamtune evaluate` prints."""
    if "metrics" in r:  # multi-label / regression
        return "\n".join(f"{split}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in m.items()) for split, m in r["metrics"].items())
    lines = ["accuracy: " + ", ".join(f"{k} {v:.2%}" for k, v in r["accuracy"].items())]
    if "f1" in r:
        auc = "n/a" if r["roc_auc"] is None else f"{r['roc_auc']:.4f}"
        lines.append(f"test: precision {r['precision']:.2%}, recall {r['recall']:.2%}, F1 {r['f1']:.2%}, "
                     f"MCC {r['mcc']:.4f}, ROC-AUC {auc}")
        names = r["labels"]
        width = max(map(len, names)) + 2
        lines.append("confusion matrix (rows true, columns predicted):")
        lines.append(" " * width + "".join(f"{lab:>{width}}" for lab in names))
        for lab, row in zip(names, r["confusion_matrix"]):
            lines.append(f"{lab:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    if op := r.get("operating_point"):
        lines.append(_format_operating_point(op, names=r["labels"]))
    if rob := r.get("robustness"):
        lines.append(f"robustness on test ({r['labels'][1]} perturbed, {r['labels'][0]} clean):")
        lines.append(f"  {'perturbation':<16}{'changed':>9}{'recall':>9}{'(changed)':>11}{'accuracy':>10}")
        for name, m in rob.items():
            rc = "" if m["recall_changed"] is None else f"{m['recall_changed']:.2%}"
            lines.append(f"  {name:<16}{m['changed']:>9}{m['recall']:>9.2%}{rc:>11}{m['accuracy']:>10.2%}")
    if cal := r.get("calibration"):
        lines.append(f"calibration (test): temperature {cal['temperature']:.3f}; ECE {cal['ece_before']:.4f} -> "
                     f"{cal['ece_after']:.4f}, Brier {cal['brier_before']:.4f} -> {cal['brier_after']:.4f}")
    if r.get("recall_by_length"):
        lines.append(f"recall of {r['labels'][1]} on test by message length: " + ", ".join(
            f"{b['chars']} chars {b['recall']:.0%} (n={b['n']})" for b in r["recall_by_length"] if b["n"]))
    if r.get("fpr_unused") is not None:
        where = "argmax" if r.get("threshold") is None else f"threshold {r['threshold']}"
        lines.append(f"false-positive rate at {where} on all {r['n']['unused']} unused real messages: "
                     f"{r['fpr_unused']:.2%}")
    if reached := r.get("reached_model"):
        lines.append("cascade: messages that reached the model (the n-gram model decided the rest): " + ", ".join(
            f"{name} {share:.1%}" for name, share in reached.items()))
    if kept := r.get("model_logits"):
        lines.append(f"model logits: {kept['reused']} messages read from the run's memo (RUN/logits/), "
                     f"{kept['scored']} distinct texts scored now")
    return "\n".join(lines)


def _format_operating_point(op: dict[str, Any], names: list[str]) -> str:
    width = max(map(len, names)) + 2
    what = (f"for FPR <= {op['target_fpr']:.2%}" if op.get("target_fpr") is not None
            else f"for precision >= {op['target_precision']:.2%}")
    lines = [f"at the {'stored ' if op['stored'] else ''}operating point ({what}): block at P({names[1]}) >= "
             f"{op['block_threshold']:.4f}, review from {op['review_threshold']:.4f}",
             f"  test: accuracy {op['accuracy']:.2%}, recall {op['recall']:.2%} (with the review band "
             f"{op['recall_with_review']:.2%}); bands {op['bands_test']}"]
    lines.append("  confusion matrix at the operating point (rows true, columns predicted):")
    lines.append("  " + " " * width + "".join(f"{lab:>{width}}" for lab in names))
    for lab, row in zip(names, op["confusion_matrix"]):
        lines.append(f"  {lab:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    if op.get("fpr_report_half") is not None:
        lines.append(f"  false-positive rate on the report half of the unused ham ({op['n_report_half']} messages, "
                     f"never used to pick): {op['fpr_report_half']:.2%}; sent to review: "
                     f"{op['review_rate_report_half']:.2%}")
    return "\n".join(lines)
