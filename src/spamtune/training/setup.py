"""Training setup (book §6.3–6.5): the backend builds the model (head swapped, scope frozen: backends/), then this
tokenizes, builds the frozen-prefix cache when it applies, and makes the loaders, optimizer, lr schedule and loss
weights.

Both backends give the same `TrainSetup` (the model, the data, the optimisation), which `fit` trains without
knowing which backend built it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from spamtune.backends import NewModel, build_new_model
from spamtune.batching import TextDataset, create_dataloader
from spamtune.classifier import CachedSuffix, Classifier, prefix_is_cacheable
from spamtune.config import TrainArgs
from spamtune.data import LabelSet, read_label_set, read_split
from spamtune.data.perturb import augment
from spamtune.devices import Dist, autocast, resolve_device, resolve_dtype, width_multiple
from spamtune.errors import ConfigError, DataError
from spamtune.normalize import normalizing
from spamtune.runs import (
    WEIGHTS,
    LoraSpec,
    RunConfig,
    created_now,
    data_hashes,
    library_versions,
    load_weights_into,
    new_run_id,
    weights_to_save,
)
from spamtune.tasks import Task, task_for
from spamtune.training.layerwise import param_groups
from spamtune.training.loss import Forward
from spamtune.training.prefix_cache import DiskCache, PrefixStore, base_key, collate_hidden, default_cache_dir
from spamtune.weights import read_safetensors

log = logging.getLogger(__name__)


@dataclass
class TrainModel:
    """The model a run trains, by role (the first four are `backends.BuiltModel`'s; one object may fill several)."""

    classifier: nn.Module  # backbone + new head: a Classifier, or backends.hf.HFClassifier for --backend hf
    module: nn.Module  # what trains and is saved (classifier, or its peft wrapper): model.safetensors uses its names
    predictor: nn.Module  # (B, T) ids + (B,) lengths -> logits, the whole model (scoring new messages)
    tokenizer: Any  # what encoded the splits (with the run's normalization)
    step: nn.Module  # what a training step calls: `module`, or a CachedSuffix over the prefix cache (DDP: wrapped)
    forward: Forward  # batch -> logits, through `step.__call__`
    cached: bool = False  # `step` reads the frozen prefix's cached output
    base: str = ""  # what the frozen layers' output depends on (prefix_cache.base_key); "" when not cached


@dataclass
class TrainData:
    """The encoded splits as the loop reads them, and what their labels mean."""

    train_loader: DataLoader
    train_eval_loader: DataLoader  # unshuffled: the periodic evaluations look at the same batches
    val_eval_loader: DataLoader
    val_full_loader: DataLoader
    label_set: LabelSet
    task: Task


@dataclass
class Optimisation:
    optimizer: torch.optim.Optimizer  # AdamW on the trainable parameters, the same way for both backends
    scheduler: Any = None  # a transformers LambdaLR, or None for the book's constant lr
    loss_weight: torch.Tensor | None = None  # --class-weights; the training loss only (validation stays plain)


@dataclass
class TrainSetup:
    args: TrainArgs
    run_dir: Path
    run_config: RunConfig
    model: TrainModel
    data: TrainData
    optim: Optimisation
    timings: dict[str, float]
    device: torch.device = torch.device("cpu")
    dist: Dist = Dist()  # this process's place in a torchrun job; only the main one writes


def make_datasets(args: TrainArgs, data_dir: Path, tokenizer, context_length: int,
                  targets: Callable[[Any], list] = list) -> tuple[TextDataset, TextDataset]:
    """The train and validation splits, encoded; validation is truncated at the training width."""
    frames = [read_split(data_dir / f"{name}.csv") for name in ("train", "validation")]
    if args.limit:
        frames = [df[: args.limit] for df in frames]
    if min(len(df) for df in frames) == 0:
        raise DataError(f"{data_dir}: an empty train or validation split")
    if args.augment:
        frames[0] = augment(frames[0], args.augment, args.seed)
    train = TextDataset(frames[0]["Text"], targets(frames[0]["Label"]), tokenizer, args.max_length, context_length)
    val = TextDataset(frames[1]["Text"], targets(frames[1]["Label"]), tokenizer, train.max_length, context_length)
    return train, val


def make_optimizer(args: TrainArgs, module: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW on the trainable parameters (book §6.7; per-layer rates with --lr-decay, layerwise.py), and
    transformers' lr scheduler unless the lr is constant."""
    assert args.lr is not None  # TrainArgs fills it in
    optimizer = torch.optim.AdamW(param_groups(module, args.lr, args.lr_decay), lr=args.lr,
                                  weight_decay=args.weight_decay)
    if args.lr_schedule == "constant":
        return optimizer, None
    from transformers import get_scheduler

    return optimizer, get_scheduler(args.lr_schedule, optimizer, num_warmup_steps=round(args.warmup_ratio * steps),
                                    num_training_steps=steps)


def loss_weights(args: TrainArgs, data_dir: Path, label_set: LabelSet) -> torch.Tensor | None:
    """--class-weights as a cross-entropy weight tensor; "balanced" is scikit-learn's n / (k * count) over the
    training split. Checked before the model loads, so a bad value costs no time."""
    spec = args.class_weight_values()
    if spec is None:
        return None
    if label_set.task != "single_label":
        raise ConfigError(f"--class-weights needs a single-label task, not {label_set.task}")
    num_classes = len(label_set)
    if spec == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        y = read_split(data_dir / "train.csv")["Label"][: args.limit].to_numpy()
        if len(set(y)) < num_classes:
            raise ConfigError("--class-weights balanced: a class has no training example")
        spec = compute_class_weight("balanced", classes=np.arange(num_classes), y=y).tolist()
    if len(spec) != num_classes:
        raise ConfigError(f"--class-weights has {len(spec)} values for {num_classes} classes")
    return torch.tensor(spec, dtype=torch.float32)


def _run_config(args: TrainArgs, data_dir: Path, label_set: LabelSet, **fields: Any) -> RunConfig:
    return RunConfig(run_id=new_run_id(), task=label_set.task, num_classes=len(label_set),
                     trainable=args.trainable, seed=args.seed, normalize=args.normalize, stack=args.stack,
                     lora=LoraSpec(args.lora_rank, args.lora_alpha) if args.trainable == "lora" else None,
                     data_dir=str(data_dir.resolve()), data=data_hashes(data_dir), versions=library_versions(),
                     created=created_now(), **fields)


def warm_start(source: str, module: nn.Module, run_config: RunConfig, label_set: LabelSet) -> None:
    """--init-from: load a finished run's trained tensors into `module`. The run must share this one's base model,
    backend, scope, pooling and labels (then its weight file holds exactly the tensors this run trains)."""
    where = f"--init-from {source}"
    src = Path(source)
    if not (src / WEIGHTS).is_file():
        raise ConfigError(f"{where}: not a finished run (no {WEIGHTS})")
    parent = RunConfig.from_dir(src)
    for name in ("backend", "model", "task", "num_classes", "trainable", "pooling", "lora", "weights",
                 "architecture"):
        if getattr(parent, name) != getattr(run_config, name):
            raise ConfigError(f"{where}: its {name} is {getattr(parent, name)!r}, this run's is "
                              f"{getattr(run_config, name)!r}; a warm start needs the same base and scope")
    parent_labels = LabelSet.from_file(src / "labels.json")
    if parent_labels.names != label_set.names:
        raise ConfigError(f"{where}: its labels {parent_labels.names} differ from the data's {label_set.names}")
    tensors = read_safetensors(src / WEIGHTS)
    expected = set(weights_to_save(module, full=run_config.weights == "full"))
    if set(tensors) != expected:
        raise ConfigError(f"{where}: its weight file does not hold the tensors this run trains")
    load_weights_into(module, tensors, str(src / WEIGHTS))
    run_config.parent = parent.run_id


def disk_cache(args: TrainArgs) -> DiskCache | None:
    """--cache-dir as a DiskCache (None: in memory)."""
    if args.cache_dir == "none":
        return None
    root = default_cache_dir() if args.cache_dir == "auto" else Path(args.cache_dir)
    return DiskCache(root, None if args.cache_max_gb is None else int(args.cache_max_gb * 1e9))


def distribute(model: nn.Module, device: torch.device, dist: Dist) -> nn.Module:
    """DistributedDataParallel around what a training step calls, under torchrun: gradients are averaged over
    the ranks in backward, so every rank holds the same weights after each step."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                   broadcast_buffers=False)


def setup(args: TrainArgs, data_dir: str | Path, run_dir: str | Path, store: PrefixStore | None = None,
          dist: Dist = Dist(), device: torch.device | None = None) -> TrainSetup:
    """Load the backbone, swap the head, freeze, tokenize, (cache the prefix,) and build loaders, optimizer,
    lr schedule and loss weights. `store` keeps prefix caches across calls (experiments); without it they live
    in --cache-dir (or as long as the setup). `dist`/`device`: this torchrun rank and its device (default: one
    process on --device)."""
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    device = device or resolve_device(args.device)
    resolve_dtype(args.dtype, device)  # bf16 on a CPU that emulates it: one warning line
    label_set = read_label_set(data_dir)
    task = task_for(label_set)
    for flag, value in (("--stack", args.stack), ("--cascade", args.cascade)):
        if value != "none" and (label_set.task != "single_label" or len(label_set) != 2):
            raise ConfigError(f"{flag} {value} needs two labels (a binary single-label task); {data_dir} has "
                              f"{len(label_set)} ({label_set.task})")
    if args.backend == "scratch" and task.name != "single_label":
        raise ConfigError(f"{data_dir}: task {task.name!r} needs --backend hf")
    loss_weight = loss_weights(args, data_dir, label_set)  # checked before the model loads: a bad value is cheap

    t0 = time.perf_counter()
    new = build_new_model(args, label_set)
    tokenizer = normalizing(new.built.tokenizer, args.normalize)
    timings = {"load_s": time.perf_counter() - t0}
    if args.backend == "hf":
        # truncate at 512 tokens (or --max-length), not at the longest training message: cutting ids would drop an
        # encoder's final [SEP], and no SMS comes near 512
        data_args = dataclasses.replace(args, max_length=args.max_length or min(new.context_length, 512))
        train_ds, val_ds = make_datasets(data_args, data_dir, tokenizer, new.context_length,
                                         lambda col: task.targets(col, label_set))
    else:
        train_ds, val_ds = make_datasets(args, data_dir, tokenizer, new.context_length)
        if max(cast(list[int], train_ds.targets + val_ds.targets)) >= len(label_set):  # class ids on this backend
            raise DataError(f"{data_dir}: a label id is outside labels.json's {len(label_set)} classes")
    run_config = _run_config(args, data_dir, label_set, max_length=train_ds.max_length, **new.manifest)
    if args.init_from:  # before the prefix cache: a full-weights run replaces frozen tensors too
        warm_start(args.init_from, new.built.module, run_config, label_set)
    new.built.module.to(device)

    t0 = time.perf_counter()
    if args.backend == "hf":
        model, sources, loader = hf_step(new, tokenizer, train_ds, val_ds, args, dist, device)
    else:
        model, sources, loader = scratch_step(new, tokenizer, train_ds, val_ds, args, store, dist, device)
    timings["cache_s"] = time.perf_counter() - t0
    data = TrainData(train_loader=loader(sources[0], shuffle=True, drop_last=True, train=True),
                     train_eval_loader=loader(sources[0], buckets=False),
                     val_eval_loader=loader(sources[1], buckets=False), val_full_loader=loader(sources[1]),
                     label_set=label_set, task=task)
    steps = len(data.train_loader) * args.epochs
    optimizer, scheduler = make_optimizer(args, new.built.module, min(steps, args.max_steps or steps))
    return TrainSetup(args=args, run_dir=run_dir, run_config=run_config, model=model, data=data,
                      optim=Optimisation(optimizer, scheduler, loss_weight), timings=timings, device=device,
                      dist=dist)


Loader = Callable[..., DataLoader]  # (source, buckets=, train=, shuffle=, drop_last=) -> DataLoader
Step = tuple[TrainModel, tuple[Any, Any], Loader]  # the model, the train and validation sources, their loader


def scratch_step(new: NewModel, tokenizer: Any, train_ds: TextDataset, val_ds: TextDataset, args: TrainArgs,
                 store: PrefixStore | None, dist: Dist, device: torch.device) -> Step:
    """spamtune's own modules: the training step over the cached frozen prefix where that is exact (the splits
    become caches of the frozen layers' output, built or read once), else over the whole module."""
    classifier, module = cast(Classifier, new.built.classifier), new.built.module
    # the width every batch pads to under --padding (None: each batch's longest message)
    fixed = {"dynamic": None, "longest_train": train_ds.max_length, "context": new.context_length}[args.padding]
    step: nn.Module
    if not (args.cache_prefix and prefix_is_cacheable(classifier, args.padding)):
        step = distribute(module, device, dist)

        def forward(b):
            with autocast(device, args.dtype):
                return step(b.input_ids.to(device, non_blocking=True),
                            b.lengths.to(device, non_blocking=True)).float()

        return (TrainModel(classifier, module, new.built.predictor, tokenizer, step, forward), (train_ds, val_ds),
                _scratch_loader(args, False, fixed, dist, device))
    base = base_key(args, new.source or "", device)  # hashes the weights file: only when used
    classifier.eval()
    store = store or PrefixStore(disk_cache(args), args.dtype, dist)
    train_src, val_src = (store.get(base, classifier, ds, fixed, split)
                          for ds, split in ((train_ds, "train"), (val_ds, "validation")))
    log.info("prefix cache: %.1f MB", (train_src.nbytes() + val_src.nbytes()) / 1e6)
    step = distribute(CachedSuffix(classifier), device, dist)

    def forward_cached(b):
        with autocast(device, args.dtype):
            return step(b.hidden.to(device, non_blocking=True), b.lengths.to(device, non_blocking=True)).float()

    return (TrainModel(classifier, module, new.built.predictor, tokenizer, step, forward_cached, True, base),
            (train_src, val_src), _scratch_loader(args, True, fixed, dist, device))


def _scratch_loader(args: TrainArgs, cached: bool, fixed: int | None, dist: Dist, device: torch.device) -> Loader:
    # `last` pooling reads position -1, which a wider batch would move: its widths stay exact
    multiple = width_multiple(device, args.dtype) if args.pooling != "last" else None

    def loader(ds, buckets: bool = args.padding == "dynamic", train: bool = False, **kw) -> DataLoader:
        # one set of batching rules and seeds for tokens and cached hidden states -> the same batches; under
        # torchrun each rank trains on its share of the global batch and evaluates everything at the global size
        return create_dataloader(ds, args.batch_size * (1 if train else dist.world_size), padding=args.padding,
                                 pad_to=fixed, buckets=buckets, seed=args.seed, pin_memory=device.type == "cuda",
                                 collate_fn=functools.partial(collate_hidden, multiple=multiple) if cached
                                 else None, rank=dist.rank if train else 0,
                                 world_size=dist.world_size if train else 1, multiple=multiple, **kw)

    return loader


def hf_step(new: NewModel, tokenizer: Any, train_ds: TextDataset, val_ds: TextDataset, args: TrainArgs, dist: Dist,
            device: torch.device) -> Step:
    """`--backend hf`: the training step calls the whole transformers model."""
    step = distribute(new.built.classifier, device, dist)

    def forward(b):
        return step(b.input_ids.to(device, non_blocking=True), b.lengths.to(device, non_blocking=True))

    def loader(ds, buckets: bool = True, train: bool = False, **kw) -> DataLoader:
        return create_dataloader(ds, args.batch_size * (1 if train else dist.world_size), buckets=buckets,
                                 seed=args.seed, pin_memory=device.type == "cuda", rank=dist.rank if train else 0,
                                 world_size=dist.world_size if train else 1, **kw)

    return (TrainModel(new.built.classifier, new.built.module, new.built.predictor, tokenizer, step, forward),
            (train_ds, val_ds), loader)
