"""The training loop (book §6.7, `train_classifier_simple`): `fit` trains a `TrainSetup` for its epochs, evaluates
every `eval_freq` steps and after each epoch, keeps the best epoch's weights by full-validation loss, writes the
resume checkpoint, and stops early or at `max_steps` when told.

Two seams instead of patching: `callbacks` see every step and epoch end (tests stop a run mid-way through one;
the golden-values test records per-step losses), and a `MetricLogger` receives each logged record (log.jsonl by
default).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from spamtune.runs import WEIGHTS, weights_to_save
from spamtune.training.layerwise import frozen_for_epoch
from spamtune.training.loss import (
    calc_accuracy_loader,
    calc_loss_and_accuracy_loader,
    calc_loss_batch,
    calc_loss_loader,
)
from spamtune.training.setup import TrainSetup
from spamtune.training.state import TrainState, save_resume
from spamtune.weights import save_weights


class Callback:
    """Hooks into `fit`; subclasses override the ones they need."""

    def on_step(self, s: TrainSetup, state: TrainState, loss: torch.Tensor) -> None:
        """After each optimizer step; `loss` is that step's training loss."""

    def on_epoch_end(self, s: TrainSetup, state: TrainState) -> None:
        """After an epoch's evaluation, best-weights save and resume checkpoint."""


class KeepSetup(Callback):
    """Keeps the setup a run trained with, for a caller that reads on after `train_run` (`.s`: its model holds the
    last epoch, the run directory the best one)."""

    s: TrainSetup | None = None

    def on_epoch_end(self, s: TrainSetup, state: TrainState) -> None:
        self.s = s


class MetricLogger(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...


class JsonlLogger:
    """One JSON object per line, appended (RUN/log.jsonl)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class NullLogger:
    """What ranks other than 0 log to under torchrun."""

    def log(self, record: dict[str, Any]) -> None:
        pass


def evaluate_model(s: TrainSetup) -> tuple[float, float]:
    """The book's `evaluate_model`: loss on `eval_iter` batches of train and validation."""
    s.model.step.eval()
    train_loss = calc_loss_loader(s.data.train_eval_loader, s.model.forward, s.args.eval_iter, s.data.task)
    val_loss = calc_loss_loader(s.data.val_eval_loader, s.model.forward, s.args.eval_iter, s.data.task)
    s.model.step.train()
    return train_loss, val_loss


def fit(s: TrainSetup, state: TrainState | None = None, callbacks: Sequence[Callback] = (),
        logger: MetricLogger | None = None) -> TrainState:
    """Train for `args.epochs` (from `state` when resuming). Returns the final state (history, counters, times)."""
    from tqdm.auto import tqdm

    args = s.args
    main = s.dist.main  # under torchrun only rank 0 logs and writes; every rank evaluates (the same numbers)
    logger = logger or (JsonlLogger(s.run_dir / "log.jsonl") if main else NullLogger())
    state = state or TrainState()
    hist = state.history
    steps_per_epoch = len(s.data.train_loader)
    total = min(steps_per_epoch * args.epochs, args.max_steps or math.inf)
    bar = tqdm(total=total, initial=state.global_step, desc="training", unit="step", disable=not main)
    s.model.step.train()
    stop = False
    for epoch in range(state.epoch, args.epochs):
        t_epoch = time.perf_counter()
        frozen = frozen_for_epoch(s.model.module, epoch, args.unfreeze_every)  # gradual unfreezing (layerwise.py)
        for batch in s.data.train_loader:
            s.optim.optimizer.zero_grad()
            loss = calc_loss_batch(batch, s.model.forward, s.data.task, s.optim.loss_weight)
            loss.backward()
            for p in frozen:  # no gradient: AdamW skips them (no update, no decay, no moments)
                p.grad = None
            s.optim.optimizer.step()
            if s.optim.scheduler is not None:
                s.optim.scheduler.step()
            state.examples_seen += len(batch[2]) * s.dist.world_size  # every rank trains an equal share
            state.global_step += 1
            bar.update()
            for cb in callbacks:
                cb.on_step(s, state, loss)
            stop = args.max_steps is not None and state.global_step >= args.max_steps
            if state.global_step % args.eval_freq == 0:
                train_loss, val_loss = evaluate_model(s)
                hist.train_losses.append(train_loss)
                hist.val_losses.append(val_loss)
                hist.examples_seen.append(state.examples_seen)
                bar.set_postfix(train_loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}")
                logger.log({"step": state.global_step, "epoch": epoch + 1, "examples_seen": state.examples_seen,
                            "train_loss": train_loss, "val_loss": val_loss,
                            "lr": s.optim.optimizer.param_groups[0]["lr"]})
            if stop:
                break
        state.train_time_s += time.perf_counter() - t_epoch

        s.model.step.eval()
        forward, task = s.model.forward, s.data.task
        train_acc = calc_accuracy_loader(s.data.train_eval_loader, forward, args.eval_iter, task)
        val_acc = calc_accuracy_loader(s.data.val_eval_loader, forward, args.eval_iter, task)
        val_loss_full, val_acc_full = calc_loss_and_accuracy_loader(s.data.val_full_loader, forward, task=task)
        s.model.step.train()
        hist.train_accs.append(train_acc)
        hist.val_accs.append(val_acc)
        hist.val_loss_full.append(val_loss_full)
        hist.val_acc_full.append(val_acc_full)
        logger.log({"epoch": epoch + 1, "step": state.global_step, "train_acc": train_acc, "val_acc": val_acc,
                    "val_loss_full": val_loss_full, "val_acc_full": val_acc_full})
        if main:
            tqdm.write(f"epoch {epoch + 1}: train acc {train_acc:.2%} | val acc {val_acc:.2%} "
                       f"(full validation: loss {val_loss_full:.4f}, acc {val_acc_full:.2%})")

        if val_loss_full < state.best_val_loss:
            state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss_full, epoch + 1, 0
            if main:
                save_weights(s.run_dir / WEIGHTS, weights_to_save(s.model.module, args.random_init))
        else:
            state.bad_epochs += 1
        state.epoch = epoch + 1
        if main:
            save_resume(s, state)
        for cb in callbacks:
            cb.on_epoch_end(s, state)
        if stop:
            break
        if args.early_stopping and state.bad_epochs >= args.early_stopping:
            if main:
                tqdm.write(f"early stopping: no better validation loss for {args.early_stopping} epochs")
            break
    bar.close()
    return state
