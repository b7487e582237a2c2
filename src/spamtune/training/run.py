"""The whole run (`spamtune train`): a fresh run directory or a resumed one -> setup -> fit -> the best epoch's
weights, thresholds (multi-label), history, metrics and plots.

Nothing is lost on the way: every input is checked (setup loads and validates the data and the model) before a
directory is touched; a new run goes into `--out` only if that is empty or absent; `--overwrite` of an existing
run trains beside it in `OUT.new` and swaps the finished run in with renames, so a failure or a kill leaves the
old run as it was (and `OUT.new` resumable); a directory that is not a spamtune run is never replaced.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from spamtune.config import TrainArgs
from spamtune.devices import dist_context
from spamtune.errors import CheckpointError, ConfigError
from spamtune.fsutil import atomic_file, read_json, swap_dir, write_json
from spamtune.runs import LABELS, RESUME, TRAIN_ARGS, WEIGHTS, RunConfig, is_run_dir
from spamtune.training.calibrate import calibrate
from spamtune.training.fit import Callback, MetricLogger, fit
from spamtune.training.loss import calc_accuracy_loader
from spamtune.training.prefix_cache import PrefixStore
from spamtune.training.setup import TrainSetup, setup
from spamtune.training.state import TrainState, load_resume


def has_resume_state(run_dir: Path) -> bool:
    return (run_dir / RESUME / "state.json").is_file()


def staging_dir(run_dir: Path) -> Path:
    """Where `--overwrite` trains the new run before it replaces the old one."""
    return run_dir.with_name(run_dir.name + ".new")


def check_run_dir(run_dir: Path, overwrite: bool) -> Path:
    """Before any work: where this run will be written (`run_dir`, or its staging directory when it replaces an
    existing run). Refuses a non-directory, an existing run without `overwrite`, and anything not a run."""
    if str(run_dir) in ("", "."):
        raise ConfigError("give the run directory with --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a directory")
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return run_dir
    resume = f" or continue it with --resume {run_dir}" if has_resume_state(run_dir) else ""
    if not overwrite:
        raise ConfigError(f"{run_dir} already exists; pass --overwrite to replace it{resume}")
    if not is_run_dir(run_dir):
        raise ConfigError(f"{run_dir} is not a spamtune run (no run manifest); refusing to replace it")
    staging = staging_dir(run_dir)
    if staging.exists():
        raise ConfigError(f"{staging} is left from an interrupted --overwrite of {run_dir}: continue it with "
                          f"--resume {staging}, or delete it")
    return staging


def _trim_log(run_dir: Path, epoch: int) -> None:
    """Drop log.jsonl records of the epoch a kill interrupted: it is trained again after a resume."""
    log = run_dir / "log.jsonl"
    if not log.is_file():
        return
    kept = [line for line in log.read_text().splitlines() if line and json.loads(line).get("epoch", 0) <= epoch]
    with atomic_file(log) as f:
        f.write("".join(line + "\n" for line in kept))


def train_run(args: TrainArgs, data_dir: str | Path, run_dir: str | Path, overwrite: bool = False,
              callbacks: Sequence[Callback] = (), logger: MetricLogger | None = None,
              store: PrefixStore | None = None) -> dict[str, Any]:
    """prepare the run dir -> setup -> fit -> history, metrics and plots. Returns the metrics.

    Args:
        callbacks: see `fit` (every step, every epoch end; `KeepSetup` keeps the setup for a caller that reads on).
        logger: where logged records go (default: RUN/log.jsonl).
        store: shares prefix caches between runs on one base model (experiments).
    """
    run_dir = Path(run_dir)
    target = check_run_dir(run_dir, overwrite)
    return _run(args, data_dir, target, callbacks, logger, store, replaces=run_dir if target != run_dir else None)


def resume_run(run_dir: str | Path, callbacks: Sequence[Callback] = (),
               logger: MetricLogger | None = None) -> dict[str, Any]:
    """Continue a run from its last finished epoch (RUN/resume/), with its own settings and data directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no such run directory: {run_dir}")
    run_config = RunConfig.from_dir(run_dir)
    if not has_resume_state(run_dir):
        raise CheckpointError(f"{run_dir}: no resume state yet (the run was stopped before its first epoch "
                              "ended); train it again instead")
    if run_config.data_dir is None:
        raise CheckpointError(f"{run_dir}: written by an older spamtune without its data directory; train it again")
    args = TrainArgs.from_dict(read_json(run_dir / TRAIN_ARGS, CheckpointError))
    args = dataclasses.replace(args, init_from=None)  # the resume state replaces a warm start's tensors anyway
    return _run(args, run_config.data_dir, run_dir, callbacks, logger, None, resume=run_config)


def _run(args: TrainArgs, data_dir: str | Path, run_dir: Path, callbacks: Sequence[Callback],
         logger: MetricLogger | None, store: PrefixStore | None, resume: RunConfig | None = None,
         replaces: Path | None = None) -> dict[str, Any]:
    """Under torchrun every rank trains its share of each batch; only rank 0 writes the run, calibrates it and
    reports (the other ranks return after the last step with no metrics)."""
    torch.manual_seed(args.seed)
    with dist_context(args.device) as (dist, device):
        s = setup(args, data_dir, run_dir, store, dist, device)  # loads and checks everything; writes nothing
        state: TrainState | None = None
        if resume is not None:
            s.run_config = resume  # the same run: its id and creation time stay
            state = load_resume(s)
            if dist.main:
                _trim_log(run_dir, state.epoch)
                print(f"resuming {run_dir} after epoch {state.epoch} (step {state.global_step})")
        elif dist.main:
            s.run_config.replaces = None if replaces is None else str(replaces.resolve())
            run_dir.mkdir(parents=True, exist_ok=True)
            s.run_config.write(run_dir)
            write_json(run_dir / LABELS, s.data.label_set.to_json())
            write_json(run_dir / TRAIN_ARGS, args.to_dict())
            s.model.step.eval()
            accs = [calc_accuracy_loader(dl, s.model.forward, 10, s.data.task) for dl in (s.data.train_eval_loader,
                                                                                  s.data.val_eval_loader)]
            print(f"untrained head: train acc {accs[0]:.2%}, val acc {accs[1]:.2%} (10 batches)")
        state = fit(s, state, callbacks, logger)
        dist.barrier()
    if not dist.main:
        return {}
    calibrate(s)
    metrics = _finish(s, state)
    if s.run_config.replaces is not None:  # an --overwrite: the finished run takes the old one's place
        dest = Path(s.run_config.replaces)
        s.run_config.replaces = None
        s.run_config.write(run_dir)
        swap_dir(run_dir, dest)
        s.run_dir = dest
        print(f"replaced {dest} with the new run")
    return metrics


def _finish(s: TrainSetup, state: TrainState) -> dict[str, Any]:
    """history.json, metrics.json, loss and accuracy plots; a one-line summary."""
    from spamtune.training.plots import plot_values

    args, run_dir, hist = s.args, s.run_dir, state.history
    examples = state.examples_seen
    metrics = {
        "run_id": s.run_config.run_id, "model": args.model, "trainable": args.trainable, "pooling": args.pooling,
        "padding": args.padding, "cached_prefix": s.model.cached, "epochs_run": state.epoch, "steps": state.global_step,
        "examples_seen": examples, "best_epoch": state.best_epoch, "best_val_loss": state.best_val_loss,
        "val_acc_full": hist.val_acc_full, "load_s": s.timings["load_s"], "cache_s": s.timings["cache_s"],
        "train_time_s": state.train_time_s,
        "total_time_s": s.timings["load_s"] + s.timings["cache_s"] + state.train_time_s,
        "examples_per_s": examples / max(state.train_time_s, 1e-9),
    }
    write_json(run_dir / "history.json", dataclasses.asdict(hist))
    write_json(run_dir / "metrics.json", metrics)
    if hist.train_losses:
        n = len(hist.train_losses)
        plot_values([state.epoch * (i + 1) / n for i in range(n)], hist.examples_seen, hist.train_losses,
                    hist.val_losses, "loss", run_dir / "loss")
    if hist.train_accs:
        n = len(hist.train_accs)
        plot_values(list(range(1, n + 1)), [examples * (i + 1) // n for i in range(n)], hist.train_accs,
                    hist.val_accs, "accuracy", run_dir / "accuracy")
    print(f"done: {state.epoch} epochs, {examples} examples in {state.train_time_s:.0f} s "
          f"({metrics['examples_per_s']:.1f} examples/s; load {s.timings['load_s']:.0f} s, "
          f"cache {s.timings['cache_s']:.0f} s); best epoch {state.best_epoch} "
          f"(val loss {state.best_val_loss:.4f}) -> {run_dir / WEIGHTS}")
    return metrics
