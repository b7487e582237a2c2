"""Champion vs challenger on the same messages in one run, and the promotion policy that decides between them.

Each model decides at its own stored operating point (the label a deployment would act on). The sets:

    test                       the test split (never trained on, never used to pick a threshold)
    unused ham (report half)   the half of the unused ham no operating point was picked on (decisions.py)
    held-out corrections       the fixed share of corrected messages a retrain never learns (lifecycle.corrections)

Per set: accuracy, FPR and recall (binary runs); the paired predictions' discordant counts and McNemar's exact
test (a binomial test on the discordant pairs); and every message the two decide differently.

The default policy promotes when the challenger's FPR on the unused ham is not more than `fpr_margin` above the
champion's, and either recall on test and accuracy on the held-out corrections are not worse, or it is
significantly better over all sets (McNemar, p < alpha, more pairs won than lost). `--force` overrides a "keep",
and the report says so.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spamtune.data import read_split
from spamtune.decisions import split_halves
from spamtune.errors import ConfigError
from spamtune.fsutil import atomic_file, write_json
from spamtune.inference import TextClassifier
from spamtune.lifecycle.corrections import read_holdout
from spamtune.tasks import SingleLabel

COMPARE_JSON, COMPARE_MD = "compare.json", "compare.md"  # written into the challenger's run directory
SETS = ("test", "unused ham (report half)", "held-out corrections")


@dataclass
class PromotionPolicy:
    fpr_margin: float = 0.002  # the challenger's FPR may exceed the champion's by at most this (absolute)
    recall_margin: float = 0.0  # ...and its test recall fall short by at most this
    alpha: float = 0.05  # McNemar's exact test: "significantly better" below this p-value

    def __post_init__(self) -> None:
        if not (0 <= self.fpr_margin < 1 and 0 <= self.recall_margin < 1 and 0 < self.alpha < 1):
            raise ConfigError("--fpr-margin and --recall-margin must be in [0, 1), --alpha in (0, 1)")


@dataclass
class Comparison:
    champion: dict[str, Any]  # run_id, dir, operating point
    challenger: dict[str, Any]
    sets: dict[str, dict[str, Any]]  # set -> n, champion/challenger metrics, mcnemar
    pooled: dict[str, Any]  # McNemar over all sets
    checks: list[dict[str, Any]]
    promote: bool  # what the policy decided
    forced: bool = False
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    policy: dict[str, float] = field(default_factory=dict)

    @property
    def decision(self) -> str:
        return "promote" if self.promote or self.forced else "keep"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "decision": self.decision}

    def write(self, run_dir: str | os.PathLike) -> None:
        """compare.json and compare.md into the challenger's run directory."""
        write_json(Path(run_dir) / COMPARE_JSON, self.to_json())
        with atomic_file(Path(run_dir) / COMPARE_MD, encoding="utf-8") as f:
            f.write(self.to_markdown())

    def to_markdown(self, max_rows: int = 30) -> str:
        ch, cl = self.champion, self.challenger
        lines = [f"# Champion {ch['run_id']} vs challenger {cl['run_id']}", "",
                 "| set | n | metric | champion | challenger |", "|---|---|---|---|---|"]
        for name, s in self.sets.items():
            for metric in ("accuracy", "fpr", "recall"):
                a, b = s["champion"].get(metric), s["challenger"].get(metric)
                if a is not None and b is not None:
                    lines.append(f"| {name} | {s['n']} | {metric} | {a:.2%} | {b:.2%} |")
        lines += ["", "| set | champion right, challenger wrong | challenger right, champion wrong | McNemar p |",
                  "|---|---|---|---|"]
        for name, m in [*((n, s["mcnemar"]) for n, s in self.sets.items()), ("all", self.pooled)]:
            lines.append(f"| {name} | {m['champion_only']} | {m['challenger_only']} | {m['p']:.3g} |")
        lines += ["", "| check | passed |", "|---|---|"]
        lines += [f"| {c['name']} | {'yes' if c['passed'] else 'no'} |" for c in self.checks]
        verdict = {("promote", False): "**promote** (the policy passed)",
                   ("promote", True): "**promote, forced** (the policy said keep; --force overrode it)",
                   ("keep", False): "**keep the champion** (the policy did not pass)"}[(self.decision, self.forced)]
        lines += ["", f"Decision: {verdict}.", "", f"Messages decided differently: {len(self.disagreements)}", ""]
        if self.disagreements:
            lines += ["| set | true | champion | challenger | message |", "|---|---|---|---|---|"]
            for d in self.disagreements[:max_rows]:
                text = d["text"].replace("|", "\\|").replace("\n", " ")[:120]
                lines.append(f"| {d['set']} | {d['label']} | {d['champion']} ({d['champion_score']:.3f}) | "
                             f"{d['challenger']} ({d['challenger_score']:.3f}) | {text} |")
        return "\n".join(lines) + "\n"


def mcnemar(champion_right: np.ndarray, challenger_right: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test on paired correctness: a two-sided binomial test of the discordant pairs at 1/2."""
    from scipy.stats import binomtest

    b = int((champion_right & ~challenger_right).sum())
    c = int((~champion_right & challenger_right).sum())
    p = binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
    return {"champion_only": b, "challenger_only": c, "p": float(p)}


def evaluation_sets(data_dir: str | os.PathLike) -> dict[str, tuple[list[str], np.ndarray]]:
    """The comparison's messages and true label ids per set (module docstring); sets without data are absent."""
    data_dir = Path(data_dir)
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    test = read_split(data_dir / "test.csv")
    out["test"] = (list(test["Text"]), test["Label"].to_numpy())
    if (data_dir / "unused.csv").exists():
        unused = read_split(data_dir / "unused.csv")
        picking = set(read_split(data_dir / "validation.csv")["Text"])  # its twins helped pick: not reported
        _, report = split_halves(list(unused["Text"]))
        keep = report & (unused["Label"].to_numpy() == 0) & np.array([t not in picking for t in unused["Text"]])
        if keep.any():
            out["unused ham (report half)"] = (list(unused["Text"][keep]), unused["Label"].to_numpy()[keep])
    holdout = read_holdout(data_dir)
    if holdout is not None and len(holdout):
        out["held-out corrections"] = (list(holdout["Text"]), holdout["Label"].to_numpy())
    return out


def _metrics(pred: np.ndarray, y: np.ndarray, binary: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"accuracy": float((pred == y).mean())}
    if binary:
        out["fpr"] = float((pred[y == 0] == 1).mean()) if (y == 0).any() else None
        out["recall"] = float((pred[y == 1] == 1).mean()) if (y == 1).any() else None
    return out


def _model_info(clf: TextClassifier) -> dict[str, Any]:
    op = clf.operating_point
    return {"run_id": clf.run_id, "dir": str(clf.run.run_dir),
            "block_threshold": op.block_threshold if op else None, "review_threshold": op.review_threshold if op
            else None}


def compare_runs(champion: TextClassifier, challenger: TextClassifier, data_dir: str | os.PathLike,
                 policy: PromotionPolicy | None = None, progress: bool = True) -> Comparison:
    """Score every set with both models and apply the policy (see the module docstring)."""
    policy = policy or PromotionPolicy()
    for clf in (champion, challenger):
        clf.require_single_label("compare")
    if champion.label_names != challenger.label_names:
        raise ConfigError(f"the two runs have different labels ({champion.label_names} vs "
                          f"{challenger.label_names}): nothing to compare")
    names, binary = champion.label_names, champion.binary
    sets, disagreements = {}, []
    rights: dict[str, list[np.ndarray]] = {"champion": [], "challenger": []}
    for name, (texts, y) in evaluation_sets(data_dir).items():
        per: dict[str, Any] = {"n": len(texts)}
        preds, probs = {}, {}
        for role, clf in (("champion", champion), ("challenger", challenger)):
            if progress:
                print(f"{role}: {name} ({len(texts)} messages)", flush=True)
            probs[role] = clf.predict_proba(texts, progress=progress)
            preds[role] = SingleLabel.predict_ids(probs[role], clf.block_threshold())
            per[role] = _metrics(preds[role], y, binary)
            rights[role].append(preds[role] == y)
        per["mcnemar"] = mcnemar(preds["champion"] == y, preds["challenger"] == y)
        sets[name] = per
        for i in np.flatnonzero(preds["champion"] != preds["challenger"]):
            a, b = int(preds["champion"][i]), int(preds["challenger"][i])
            disagreements.append({"set": name, "text": texts[i], "label": names[int(y[i])], "champion": names[a],
                                  "champion_score": float(probs["champion"][i, a]), "challenger": names[b],
                                  "challenger_score": float(probs["challenger"][i, b])})
    pooled = mcnemar(np.concatenate(rights["champion"]), np.concatenate(rights["challenger"]))
    checks = _checks(sets, pooled, policy, binary)
    by_name = {c["name"]: c["passed"] for c in checks}
    not_worse = all(passed for name, passed in by_name.items() if name.startswith("not worse"))
    safe = all(passed for name, passed in by_name.items() if name.startswith("no FPR regression"))
    promote = safe and (not_worse or by_name["significantly better over all sets"])
    return Comparison(_model_info(champion), _model_info(challenger), sets, pooled, checks, promote,
                      disagreements=disagreements, policy=dataclasses.asdict(policy))


def _checks(sets: dict[str, dict[str, Any]], pooled: dict[str, Any], policy: PromotionPolicy,
            binary: bool) -> list[dict[str, Any]]:
    checks = []

    def add(name: str, set_name: str, metric: str, passed) -> None:
        s = sets[set_name]
        a, b = s["champion"][metric], s["challenger"][metric]
        if a is not None and b is not None:
            checks.append({"name": name, "champion": a, "challenger": b, "passed": bool(passed(a, b))})

    if binary and "unused ham (report half)" in sets:
        add(f"no FPR regression on the unused ham (at most +{policy.fpr_margin:.2%})", "unused ham (report half)",
            "fpr", lambda a, b: b <= a + policy.fpr_margin + 1e-12)
    if binary:
        add("not worse: recall on test", "test", "recall", lambda a, b: b >= a - policy.recall_margin - 1e-12)
    else:
        add("not worse: accuracy on test", "test", "accuracy", lambda a, b: b >= a - 1e-12)
    if "held-out corrections" in sets:
        add("not worse: accuracy on the held-out corrections", "held-out corrections", "accuracy",
            lambda a, b: b >= a - 1e-12)
    checks.append({"name": "significantly better over all sets", "p": pooled["p"],
                   "passed": pooled["p"] < policy.alpha and pooled["challenger_only"] > pooled["champion_only"]})
    return checks
