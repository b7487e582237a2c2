"""Training state: the counters and metric history `fit` carries (`TrainState`, the book's `History`), and the
resume checkpoint (RUN/resume/: weights, AdamW moments, lr schedule, counters and RNG states; safetensors + JSON,
no pickle), so a killed run continues to the same weights as an uninterrupted one."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from spamtune.batching import LengthBucketSampler, RankBatches
from spamtune.errors import CheckpointError
from spamtune.fsutil import atomic_dir, read_json, write_json
from spamtune.runs import RESUME, load_weights_into, weights_to_save
from spamtune.weights import read_safetensors, save_weights

if TYPE_CHECKING:
    from spamtune.training.setup import TrainSetup


@dataclass
class History:
    """What the book's `train_classifier_simple` returns, plus full-validation figures per epoch."""

    train_losses: list[float] = field(default_factory=list)  # every eval_freq steps, on eval_iter batches
    val_losses: list[float] = field(default_factory=list)
    examples_seen: list[int] = field(default_factory=list)  # at each of those evaluations
    train_accs: list[float] = field(default_factory=list)  # each epoch, on eval_iter batches
    val_accs: list[float] = field(default_factory=list)
    val_loss_full: list[float] = field(default_factory=list)  # each epoch, whole validation split
    val_acc_full: list[float] = field(default_factory=list)


@dataclass
class TrainState:
    """Where a run is: counters, the best epoch so far (by full-validation loss) and the history."""

    epoch: int = 0  # epochs finished
    global_step: int = 0
    examples_seen: int = 0
    best_val_loss: float = math.inf
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs in a row without a better validation loss (early stopping)
    history: History = field(default_factory=History)
    train_time_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainState:
        best = d.get("best_val_loss")  # JSON has no inf: written as null before any epoch improved on it
        return cls(**{**d, "best_val_loss": math.inf if best is None else best, "history": History(**d["history"])})


def _rng_of(loader: DataLoader):
    """The loader's shuffling state: a LengthBucketSampler's random.Random (also behind torchrun's RankBatches)
    or the DataLoader's torch.Generator."""
    if isinstance(loader.batch_sampler, (LengthBucketSampler, RankBatches)):
        return loader.batch_sampler.rng
    return loader.generator


def save_resume(s: TrainSetup, state: TrainState) -> None:
    """Write RUN/resume/ (replacing the previous one in one rename)."""
    tensors = {f"model.{k}": v for k, v in weights_to_save(s.model.module, s.args.random_init).items()}
    opt = s.optim.optimizer.state_dict()
    for idx, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"optim.{idx}.{k}"] = v.detach().clone().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    rng = _rng_of(s.data.train_loader)
    record = {**state.to_json(), "param_groups": opt["param_groups"]}
    if s.optim.scheduler is not None:
        record["scheduler"] = s.optim.scheduler.state_dict()
    if isinstance(rng, torch.Generator):
        tensors["rng.loader"] = rng.get_state()
    else:
        record["rng_loader"] = rng.getstate()
    with atomic_dir(s.run_dir / RESUME, overwrite=True) as tmp:
        save_weights(tmp / "state.safetensors", tensors)
        write_json(tmp / "state.json", record)


def load_resume(s: TrainSetup) -> TrainState:
    """Restore weights, optimizer, lr schedule and RNG states from RUN/resume/; returns the state to continue."""
    where = s.run_dir / RESUME
    if not (where / "state.json").is_file():
        raise CheckpointError(f"{s.run_dir}: no resume state yet (the run was stopped before its first epoch "
                              "ended); start it again instead")
    tensors = read_safetensors(where / "state.safetensors")
    record = read_json(where / "state.json", CheckpointError)
    load_weights_into(s.model.module, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(where))
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    s.optim.optimizer.load_state_dict({"state": opt_state, "param_groups": record.pop("param_groups")})
    if s.optim.scheduler is not None:
        s.optim.scheduler.load_state_dict(record.pop("scheduler"))
    torch.set_rng_state(tensors["rng.torch"])
    rng = _rng_of(s.data.train_loader)
    if isinstance(rng, torch.Generator):
        rng.set_state(tensors["rng.loader"])
    else:
        v, internal, gauss = record.pop("rng_loader")
        rng.setstate((v, tuple(internal), gauss))
    return TrainState.from_json(record)
