"""Champion vs challenger on the same messages in one run, and the promotion policy that decides between them.

Each model decides at its own stored operating point (the label a deployment would act on). The sets:

    test                       the test split (never trained on, never used to pick a threshold)
    unused ham (report half)   the half of the unused ham no operating point was picked on (decisions.py)
    held-out corrections       the fixed share of corrected messages a retrain never learns (lifecycle.corrections)

Per set: accuracy, FPR and recall (binary runs); the paired predictions' discordant counts and McNemar's exact
test (a binomial test on the discordant pairs); and every message the two decide differently.

The policy has guards that nothing overrides, on the trusted sets only (test and the report half of the unused
ham, which no user can write into): the challenger's FPR may exceed the champion's by at most `fpr_margin`, and its
test recall (accuracy, with more classes) may fall at most `max_recall_drop` below the champion's. Past the guards
it promotes when recall on test and accuracy on the held-out corrections are not worse, or when it is
significantly better over all sets (McNemar, p < alpha, more pairs won than lost). The held-out corrections are
operators' corrections only (lifecycle.corrections), so end users' reports never serve as ground truth. `--force`
overrides a "keep", and the report says so.

A comparison binds what it compared: the sha256 of each model's files, the policy and the sets' messages and
labels (`binding`); the registry keeps its own record of the comparisons spamtune made and promotes only on one
whose binding matches the versions as they are (lifecycle.registry).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spamtune.calibration.decisions import binary_rates, split_halves
from spamtune.config import PromotionPolicy
from spamtune.data import read_split
from spamtune.data.labels import POSITIVE_ID
from spamtune.errors import ConfigError
from spamtune.fsutil import atomic_file, write_json
from spamtune.inference import TextClassifier
from spamtune.lifecycle.corrections import read_holdout
from spamtune.tasks import SingleLabel

COMPARE_JSON, COMPARE_MD = "compare.json", "compare.md"  # written into the challenger's run directory
SETS = ("test", "unused ham (report half)", "held-out corrections")


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
    binding: dict[str, str] = field(default_factory=dict)  # sha256 of champion, challenger, policy and data

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
        """The report as Markdown; every message is escaped (no HTML, no terminal control sequences) so the file
        and the terminal show text, never markup."""
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
        lines += [f"| {c['name']}{' (guard)' if c.get('guard') else ''} | {'yes' if c['passed'] else 'no'} |"
                  for c in self.checks]
        verdict = {("promote", False): "**promote** (the policy passed)",
                   ("promote", True): "**promote, forced** (the policy said keep; --force overrode it)",
                   ("keep", False): "**keep the champion** (the policy did not pass)"}[(self.decision, self.forced)]
        lines += ["", f"Decision: {verdict}.", "", f"Messages decided differently: {len(self.disagreements)}", ""]
        if self.disagreements:
            lines += ["| set | true | champion | challenger | message |", "|---|---|---|---|---|"]
            for d in self.disagreements[:max_rows]:
                lines.append(f"| {d['set']} | {shown(d['label'])} | {shown(d['champion'])} "
                             f"({d['champion_score']:.3f}) | {shown(d['challenger'])} ({d['challenger_score']:.3f}) | "
                             f"{shown(d['text'], 120)} |")
        return "\n".join(lines) + "\n"


def shown(text: str, width: int | None = None) -> str:
    """A message as a Markdown table cell for a file or a terminal: control and bidi characters escaped, HTML
    escaped, pipes escaped, cut to `width`."""
    from spamtune.normalize import printable

    return html.escape(printable(text, width), quote=False).replace("|", "\\|")


def digest_files(run_dir: str | os.PathLike) -> str:
    """sha256 over what decides in a run: its weights, n-gram stack and cascade, labels and manifest (without
    `data_dir`, which a registry rewrites when it takes a run in). The identity a comparison is bound to."""
    from spamtune.calibration.stacking import CASCADE_FILE, STACK_FILE
    from spamtune.runs import WEIGHTS

    h = hashlib.sha256()
    for name in (WEIGHTS, STACK_FILE, CASCADE_FILE, "labels.json"):
        path = Path(run_dir) / name
        if path.is_file():
            h.update(name.encode() + b"\0")
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
    manifest = Path(run_dir) / "run.json"
    if manifest.is_file():
        try:
            fields = json.loads(manifest.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            fields = {"unreadable": manifest.read_bytes().hex()}
        if isinstance(fields, dict):
            fields.pop("data_dir", None)
        h.update(b"run.json\0" + json.dumps(fields, sort_keys=True).encode())
    return h.hexdigest()


def digest_sets(sets: dict[str, tuple[list[str], np.ndarray]]) -> str:
    h = hashlib.sha256()
    for name, (texts, y) in sorted(sets.items()):
        h.update(json.dumps([name, texts, [int(v) for v in y]], ensure_ascii=True).encode())
    return h.hexdigest()


def digest_policy(policy: PromotionPolicy) -> str:
    return hashlib.sha256(json.dumps(dataclasses.asdict(policy), sort_keys=True).encode()).hexdigest()


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
    if not binary:
        return {"accuracy": float((pred == y).mean())}
    rates = binary_rates(y, pred == POSITIVE_ID)
    return {k: rates[k] for k in ("accuracy", "fpr", "recall")}


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
    data = evaluation_sets(data_dir)
    for name, (texts, y) in data.items():
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
    guards = all(c["passed"] for c in checks if c.get("guard"))
    not_worse = all(c["passed"] for c in checks if c["name"].startswith("not worse"))
    significant = next(c["passed"] for c in checks if c["name"] == "significantly better over all sets")
    promote = guards and (not_worse or significant)
    binding = {"champion": digest_files(champion.run.run_dir), "challenger": digest_files(challenger.run.run_dir),
               "policy": digest_policy(policy), "data": digest_sets(data)}
    return Comparison(_model_info(champion), _model_info(challenger), sets, pooled, checks, promote,
                      disagreements=disagreements, policy=dataclasses.asdict(policy), binding=binding)


def _checks(sets: dict[str, dict[str, Any]], pooled: dict[str, Any], policy: PromotionPolicy,
            binary: bool) -> list[dict[str, Any]]:
    """The policy's checks; `guard` ones (trusted sets only) must all pass, whatever the others say."""
    checks = []

    def add(name: str, set_name: str, metric: str, passed, guard: bool = False) -> None:
        s = sets.get(set_name)
        a, b = (s["champion"].get(metric), s["challenger"].get(metric)) if s else (None, None)
        if a is not None and b is not None:
            checks.append({"name": name, "champion": a, "challenger": b, "passed": bool(passed(a, b)),
                           "guard": guard})
        elif guard:  # a guard that cannot be checked does not pass
            checks.append({"name": name, "champion": a, "challenger": b, "passed": False, "guard": True})

    if binary:
        fpr_set = "unused ham (report half)" if "unused ham (report half)" in sets else "test"
        add(f"no FPR regression on the {'unused ham' if fpr_set != 'test' else 'test ham'} (at most "
            f"+{policy.fpr_margin:.2%})", fpr_set, "fpr", lambda a, b: b <= a + policy.fpr_margin + 1e-12,
            guard=True)
        add(f"no recall collapse on test (at most -{policy.max_recall_drop:.2%})", "test", "recall",
            lambda a, b: b >= a - policy.max_recall_drop - 1e-12, guard=True)
        add("not worse: recall on test", "test", "recall", lambda a, b: b >= a - policy.recall_margin - 1e-12)
    else:
        add(f"no accuracy collapse on test (at most -{policy.max_recall_drop:.2%})", "test", "accuracy",
            lambda a, b: b >= a - policy.max_recall_drop - 1e-12, guard=True)
        add("not worse: accuracy on test", "test", "accuracy", lambda a, b: b >= a - 1e-12)
    if "held-out corrections" in sets:
        add("not worse: accuracy on the held-out corrections", "held-out corrections", "accuracy",
            lambda a, b: b >= a - 1e-12)
    checks.append({"name": "significantly better over all sets", "p": pooled["p"], "guard": False,
                   "passed": pooled["p"] < policy.alpha and pooled["challenger_only"] > pooled["champion_only"]})
    return checks
