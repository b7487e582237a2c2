"""`spamtune retrain`: a challenger trained on the champion's data plus what users corrected, then compared with
the champion on the same messages.

    corrections (store) -> lifecycle.corrections (guards, held-out slice) -> OUT.data/ -> train (warm start from
    the champion's trained tensors, or fresh) -> OUT/ with its data in OUT/data -> compare -> OUT/compare.json

Safe to run from cron: it does nothing (status "nothing to do", exit 0) while fewer than `min_feedback` new
corrections can be learnt, or with `if_drift` while the champion's recent traffic shows no drift alert.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spamtune.config import MIN_FEEDBACK, TrainArgs
from spamtune.data import read_label_set, read_split
from spamtune.errors import CheckpointError, ConfigError
from spamtune.fsutil import read_json, write_json
from spamtune.inference import TextClassifier
from spamtune.lifecycle.compare import Comparison, PromotionPolicy, compare_runs
from spamtune.lifecycle.corrections import (
    CorrectionPolicy,
    CorrectionSet,
    boost_copies,
    from_store_rows,
    select_corrections,
    write_data,
)
from spamtune.monitoring.store import PredictionStore
from spamtune.runs import RUN_DATA, TRAIN_ARGS, RunConfig, is_run_dir

RETRAIN_JSON = "retrain.json"
OWNER = ".owner"  # in a retrain's staging directory: the pid of the retrain writing it


@dataclass
class RetrainOptions:
    from_scratch: bool = False  # train from the base model instead of the champion's trained tensors
    epochs: int | None = None  # default: the champion's
    min_feedback: int = MIN_FEEDBACK  # new learnable corrections needed before anything is trained
    if_drift: bool = False  # ...and a drift alert on the champion's recent traffic
    drift_since: datetime.datetime | None = None  # the window the drift test looks at (default: all)
    corrections: CorrectionPolicy = field(default_factory=CorrectionPolicy)
    promotion: PromotionPolicy = field(default_factory=PromotionPolicy)

    def __post_init__(self) -> None:
        if self.min_feedback < 1:
            raise ConfigError("--min-feedback must be at least 1")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError("--epochs must be at least 1")


@dataclass
class RetrainResult:
    status: Literal["nothing to do", "trained"]
    reason: str
    corrections: CorrectionSet
    run_dir: Path | None = None
    comparison: Comparison | None = None
    drift: dict[str, Any] | None = None


def champion_data_dir(run_dir: Path) -> Path:
    """Where a run's training data is: RUN/data for a retrained run, else the directory its manifest names."""
    if (run_dir / RUN_DATA / "train.csv").is_file():
        return run_dir / RUN_DATA
    run_config = RunConfig.from_dir(run_dir)
    if run_config.data_dir is None:
        raise ConfigError(f"{run_dir} does not record its data directory: give --data-dir")
    return Path(run_config.data_dir)


def check_out(out: Path) -> Path:
    """Before any work: `out` must be new (or an empty directory); returns where its data will be staged."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists; give a new --out (a retrain never replaces a run)")
    staging = out.with_name(out.name + ".data")
    if staging.exists():
        raise ConfigError(f"{staging} exists: another retrain is writing {out}, or one was interrupted (delete it "
                          f"and {out}, then run again)")
    return staging


def claim(staging: Path) -> None:
    """Create the staging directory exclusively (mkdir fails if it exists: a second retrain with the same --out
    stops here) and write our pid in it, so a later retrain can tell a killed one's leftovers (`clean_stale`)."""
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.mkdir()
    except FileExistsError:
        raise ConfigError(f"{staging} exists: another retrain is writing it") from None
    (staging / OWNER).write_text(str(os.getpid()))


def clean_stale(incoming: Path) -> list[Path]:
    """Remove what retrains that were killed left in a registry's incoming directory: a staging directory whose
    owner process is gone, and the challenger directory beside it. Returns what was removed."""
    removed = []
    for staging in sorted(incoming.glob("*.data")) if incoming.is_dir() else []:
        try:
            pid = int((staging / OWNER).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        try:
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        for path in (staging, staging.with_name(staging.name.removesuffix(".data"))):
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def plan(store: PredictionStore, champion_dir: Path, data_dir: Path,
         options: RetrainOptions) -> tuple[CorrectionSet, str | None, dict[str, Any] | None]:
    """The corrections a retrain would learn, and why it should not run (None: it should), and the drift summary
    when `if_drift` asked for one."""
    args = TrainArgs.from_dict(read_json(champion_dir / TRAIN_ARGS, CheckpointError))
    label_set = read_label_set(data_dir)
    selected = select_corrections(from_store_rows(store.corrections()), data_dir, label_set, options.corrections,
                                  args.limit)
    n = len(selected.learnt)
    if n < options.min_feedback:
        return selected, (f"nothing to do: {n} new learnable correction(s), fewer than --min-feedback "
                          f"{options.min_feedback}"), None
    drift = None
    if options.if_drift:
        from spamtune.monitoring.report import FEATURE_SAMPLE
        from spamtune.monitoring.report import drift as drift_of

        clf = TextClassifier.load(champion_dir)
        drift = drift_of(clf, store.recent(clf.run_id, options.drift_since, FEATURE_SAMPLE))
        if not drift["alerts"]:
            return selected, "nothing to do: no drift alert on the champion's recent traffic (--if-drift)", drift
    return selected, None, drift


def retrain(store: PredictionStore, champion_dir: str | Path, out: str | Path, data_dir: str | Path | None = None,
            options: RetrainOptions | None = None) -> RetrainResult:
    """Plan, and unless there is nothing to do: write the challenger's data, train it into `out`, compare it with
    the champion and write OUT/compare.json, compare.md and retrain.json. See the module docstring."""
    options = options or RetrainOptions()
    champion_dir, out = Path(champion_dir), Path(out)
    if not is_run_dir(champion_dir):
        raise ConfigError(f"--run {champion_dir}: not a spamtune run")
    data_dir = Path(data_dir) if data_dir is not None else champion_data_dir(champion_dir)
    staging = check_out(out)
    selected, skip, drift = plan(store, champion_dir, data_dir, options)
    if skip is not None:
        return RetrainResult("nothing to do", skip, selected, drift=drift)

    from spamtune.training import train_run

    champion_args = TrainArgs.from_dict(read_json(champion_dir / TRAIN_ARGS, CheckpointError))
    args = dataclasses.replace(champion_args, limit=None, epochs=options.epochs or champion_args.epochs,
                               init_from=None if options.from_scratch else str(champion_dir.resolve()))
    label_set = read_label_set(data_dir)
    claim(staging)
    try:
        n_train = len(read_split(data_dir / "train.csv")[: champion_args.limit])
        copies = boost_copies(options.corrections, n_train, len(selected.train))
        write_data(staging, data_dir, selected, label_set, champion_args.limit, copies)
        print(f"retrain: learning {len(selected.train)} correction(s) (+{copies} perturbed copies each; "
              f"+{len(selected.validation)} in validation), {len(selected.holdout)} held out; "
              + ("from the base model" if options.from_scratch else f"warm start from {champion_dir}"), flush=True)
        train_run(args, staging, out)
    except BaseException:  # a failed (or interrupted) retrain leaves nothing behind; kill -9: see clean_stale
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        raise
    # the run keeps its data: OUT/data, and the manifest says so
    (staging / OWNER).unlink()
    shutil.move(staging, out / RUN_DATA)
    run_config = RunConfig.from_dir(out)
    run_config.data_dir = str((out / RUN_DATA).resolve())
    run_config.write(out)

    comparison = compare_runs(TextClassifier.load(champion_dir), TextClassifier.load(out), out / RUN_DATA,
                              options.promotion)
    comparison.write(out)
    write_json(out / RETRAIN_JSON, {"champion": str(champion_dir.resolve()), "champion_run_id":
                                    RunConfig.from_dir(champion_dir).run_id, "from_scratch": options.from_scratch,
                                    "corrections": selected.summary(),
                                    "policy": dataclasses.asdict(options.corrections), "drift": drift})
    return RetrainResult("trained", f"trained {out}; the comparison says {comparison.decision}", selected, out,
                         comparison, drift)
