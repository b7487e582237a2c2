"""The whole run (`spamtune train`): a fresh run directory or a resumed one -> setup -> fit -> the best epoch's
weights, thresholds (multi-label), history, metrics and plots."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from spamtune.config import TrainArgs
from spamtune.errors import CheckpointError, ConfigError
from spamtune.fsutil import read_json, write_json
from spamtune.runs import LABELS, MANIFEST, TRAIN_ARGS, WEIGHTS, RunConfig, load_weights_into
from spamtune.training.fit import Callback, MetricLogger, fit
from spamtune.training.loss import calc_accuracy_loader, collect_logits
from spamtune.training.prefix_cache import PrefixStore
from spamtune.training.setup import TrainSetup, setup
from spamtune.training.state import TrainState, load_resume
from spamtune.weights import read_safetensors


def load_best_epoch(s: TrainSetup) -> None:
    """Put the saved best epoch (by validation loss) back into the model that trained, in eval mode."""
    load_weights_into(s.module, read_safetensors(s.run_dir / WEIGHTS), "best epoch")
    s.model.eval()


def _pick_thresholds(s: TrainSetup) -> None:
    """Thresholds the task picks on validation with the best epoch's weights (multi-label: one per label)."""
    if not s.task.picks_thresholds:
        return
    load_best_epoch(s)
    logits, y = collect_logits(s.val_full_loader, s.forward)
    thresholds = s.task.pick_thresholds(y.numpy(), s.task.scores(logits.numpy()))
    if thresholds is not None:
        s.run_config.thresholds = thresholds
        s.run_config.write(s.run_dir)


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(f"{run_dir} already exists; pass --overwrite to replace it or --resume {run_dir}")
        if not (run_dir / MANIFEST).is_file() and not (run_dir / "config.json").is_file():
            raise ConfigError(f"{run_dir} is not a spamtune run; refusing to delete it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def train_run(args: TrainArgs, data_dir: str | Path, run_dir: str | Path, overwrite: bool = False,
              callbacks: Sequence[Callback] = (), logger: MetricLogger | None = None) -> dict[str, Any]:
    """prepare the run dir -> setup -> fit -> history, metrics and plots. Returns the metrics.

    Args:
        callbacks: see `fit` (every step, every epoch end).
        logger: where logged records go (default: RUN/log.jsonl).
    """
    return run_training(args, data_dir, run_dir, overwrite, callbacks, logger=logger)[1]


def resume_run(run_dir: str | Path, callbacks: Sequence[Callback] = (),
               logger: MetricLogger | None = None) -> dict[str, Any]:
    """Continue a run from its last finished epoch (RUN/resume/), with its own settings and data directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no such run directory: {run_dir}")
    run = RunConfig.from_dir(run_dir)
    if run.data_dir is None:
        raise CheckpointError(f"{run_dir}: written by an older spamtune without its data directory; train it again")
    args = TrainArgs.from_dict(read_json(run_dir / TRAIN_ARGS, CheckpointError))
    return _run(args, run.data_dir, run_dir, callbacks, logger, None, resume=run)[1]


def run_training(args: TrainArgs, data_dir: str | Path, run_dir: str | Path, overwrite: bool = False,
                 callbacks: Sequence[Callback] = (), store: PrefixStore | None = None,
                 logger: MetricLogger | None = None) -> tuple[TrainSetup, dict]:
    """`train_run`, also returning the setup (its model holds the last epoch; the run dir the best one).
    `store` shares prefix caches between runs on one base model (experiments)."""
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, overwrite)
    return _run(args, data_dir, run_dir, callbacks, logger, store)


def _run(args: TrainArgs, data_dir: str | Path, run_dir: Path, callbacks: Sequence[Callback],
         logger: MetricLogger | None, store: PrefixStore | None,
         resume: RunConfig | None = None) -> tuple[TrainSetup, dict]:
    torch.manual_seed(args.seed)
    s = setup(args, data_dir, run_dir, store)
    state: TrainState | None = None
    if resume is not None:
        s.run_config = resume  # the same run: its id and creation time stay
        state = load_resume(s)
        print(f"resuming {run_dir} after epoch {state.epoch} (step {state.global_step})")
    else:
        s.run_config.write(run_dir)
        write_json(run_dir / LABELS, s.label_set.to_json())
        write_json(run_dir / TRAIN_ARGS, args.to_dict())
        s.model.eval()
        accs = [calc_accuracy_loader(dl, s.forward, 10, s.task) for dl in (s.train_eval_loader, s.val_eval_loader)]
        print(f"untrained head: train acc {accs[0]:.2%}, val acc {accs[1]:.2%} (10 batches)")

    state = fit(s, state, callbacks, logger)
    _pick_thresholds(s)
    metrics = _finish(s, state)
    return s, metrics


def _finish(s: TrainSetup, state: TrainState) -> dict[str, Any]:
    """history.json, metrics.json, loss and accuracy plots; a one-line summary."""
    from spamtune.plots import plot_values

    args, run_dir, hist = s.args, s.run_dir, state.history
    examples = state.examples_seen
    metrics = {
        "run_id": s.run_config.run_id, "model": args.model, "trainable": args.trainable, "pooling": args.pooling,
        "padding": args.padding, "cached_prefix": s.cached, "epochs_run": state.epoch, "steps": state.global_step,
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
