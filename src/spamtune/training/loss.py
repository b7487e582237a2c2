"""The book's loss and accuracy helpers (§6.6), for any task and for either kind of batch: `forward` maps a batch
(a token `Batch` or a cached `HiddenBatch`; its third field is the targets) to logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from spamtune.tasks import TASKS, Task

Forward = Callable[[Any], torch.Tensor]
SINGLE_LABEL = TASKS["single_label"]


def calc_loss_batch(batch: tuple, forward: Forward, task: Task = SINGLE_LABEL,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
    logits = forward(batch)
    return task.loss(logits, on(batch[2], logits), None if weight is None else weight.to(logits.device))


def on(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The targets where the logits are (asynchronous from pinned memory)."""
    return targets.to(logits.device, non_blocking=True)


@torch.no_grad()
def calc_loss_and_accuracy_loader(loader: DataLoader, forward: Forward, num_batches: int | None = None,
                                  task: Task = SINGLE_LABEL) -> tuple[float, float]:
    """Mean batch loss (the book's `calc_loss_loader`) and accuracy over examples, from one forward per batch.
    A task without accuracy (regression) gives nan."""
    total, n, correct, seen = 0.0, 0, 0, 0
    for i, batch in enumerate(loader):
        if num_batches is not None and i >= num_batches:
            break
        logits = forward(batch)
        targets = on(batch[2], logits)
        total += task.loss(logits, targets).item()
        n += 1
        correct += task.correct(logits, targets)
        seen += len(batch[2])
    nan = float("nan")
    return (total / n if n else nan), (correct / seen if seen and task.has_accuracy else nan)


def calc_loss_loader(loader: DataLoader, forward: Forward, num_batches: int | None = None,
                     task: Task = SINGLE_LABEL) -> float:
    return calc_loss_and_accuracy_loader(loader, forward, num_batches, task)[0]


def calc_accuracy_loader(loader: DataLoader, forward: Forward, num_batches: int | None = None,
                         task: Task = SINGLE_LABEL) -> float:
    return calc_loss_and_accuracy_loader(loader, forward, num_batches, task)[1]


@torch.no_grad()
def collect_logits(loader: DataLoader, forward: Forward) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) float logits and (N, ...) targets of a whole loader, in the loader's order."""
    logits, targets = [], []
    for batch in loader:
        logits.append(forward(batch).float().cpu())
        targets.append(batch[2])
    return torch.cat(logits), torch.cat(targets)
