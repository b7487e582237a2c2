"""Training setup per backend (book §6.3–6.5): load the model, swap the head, freeze the scope, tokenize, build the
frozen-prefix cache when it applies, and make the loaders, optimizer, lr schedule and loss weights.

Both backends give the same `TrainSetup`, which `fit` trains without knowing which one it is.
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

from spamtune.batching import TextDataset, create_dataloader
from spamtune.classifier import CachedSuffix, Classifier, apply_trainable, default_head_bias, prefix_is_cacheable
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
from spamtune.tokenizers import load_tokenizer
from spamtune.training.layerwise import param_groups
from spamtune.training.loss import Forward
from spamtune.training.prefix_cache import DiskCache, PrefixStore, base_key, collate_hidden, default_cache_dir
from spamtune.weights import load_backbone, read_safetensors

log = logging.getLogger(__name__)

@dataclass
class TrainSetup:
    args: TrainArgs
    run_dir: Path
    clf: nn.Module  # a Classifier, or backends.hf.HFClassifier for --backend hf
    module: nn.Module  # what trains and is saved (clf, or its peft wrapper): model.safetensors uses its names
    model: nn.Module  # what a training step calls: `module`, or a CachedSuffix over the prefix cache
    predictor: nn.Module  # (B, T) ids + (B,) lengths -> logits, the whole model (scoring new messages)
    forward: Forward  # batch -> logits, through `model.__call__`
    train_loader: DataLoader
    train_eval_loader: DataLoader  # unshuffled: the periodic evaluations look at the same batches
    val_eval_loader: DataLoader
    val_full_loader: DataLoader
    run_config: RunConfig
    label_set: LabelSet
    task: Task
    cached: bool
    timings: dict[str, float]
    device: torch.device = torch.device("cpu")
    dist: Dist = Dist()  # this process's place in a torchrun job; only the main one writes
    base: str = ""  # what the frozen layers' output depends on (prefix_cache.base_key); "" when not cached
    tokenizer: Any = None  # what encoded the splits
    optimizer: torch.optim.Optimizer | None = None  # set by `setup`, the same way for both backends
    scheduler: Any = None  # a transformers LambdaLR, or None for the book's constant lr
    loss_weight: torch.Tensor | None = None  # --class-weights; the training loss only (validation stays plain)


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


def _model_spec(args: TrainArgs, random: bool) -> str:
    """The spec a run stores for re-reading its base weights: an absolute path for a local file or directory."""
    return args.model if random or not Path(args.model).exists() else str(Path(args.model).resolve())


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
    for flag, value in (("--stack", args.stack), ("--cascade", args.cascade)):
        if value != "none" and (label_set.task != "single_label" or len(label_set) != 2):
            raise ConfigError(f"{flag} {value} needs two labels (a binary single-label task); {data_dir} has "
                              f"{len(label_set)} ({label_set.task})")
    loss_weight = loss_weights(args, data_dir, label_set)
    if args.backend == "hf":
        s = setup_hf(args, data_dir, run_dir, label_set, dist, device)
    else:
        s = setup_scratch(args, data_dir, run_dir, label_set, store, dist, device)
    steps = len(s.train_loader) * args.epochs
    s.optimizer, s.scheduler = make_optimizer(args, s.module, min(steps, args.max_steps or steps))
    s.loss_weight = loss_weight
    return s


def setup_scratch(args: TrainArgs, data_dir: Path, run_dir: Path, label_set: LabelSet,
                  store: PrefixStore | None, dist: Dist, device: torch.device) -> TrainSetup:
    """`setup` for spamtune's own GPT-2/Llama modules."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    task = task_for(label_set)
    if task.name != "single_label":
        raise ConfigError(f"{data_dir}: task {task.name!r} needs --backend hf")
    backbone = load_backbone(args.model, random_init=args.random_init, seed=args.seed)
    tokenizer = normalizing(load_tokenizer(backbone.tokenizer), args.normalize)
    timings["load_s"] = time.perf_counter() - t0

    train_ds, val_ds = make_datasets(args, data_dir, tokenizer, backbone.cfg.context_length)
    num_classes = len(label_set)
    if max(cast(list[int], train_ds.targets + val_ds.targets)) >= num_classes:  # class ids on this backend
        raise DataError(f"{data_dir}: a label id is outside labels.json's {num_classes} classes")
    run_config = _run_config(args, data_dir, label_set, backend="scratch",
                             model=_model_spec(args, backbone.source == "random"), max_length=train_ds.max_length,
                             pooling=args.pooling, weights="full" if args.random_init else "trainable",
                             tokenizer=backbone.tokenizer, architecture=backbone.cfg, random_init=args.random_init,
                             head_bias=default_head_bias(backbone.cfg.arch))

    clf = Classifier(backbone.model, num_classes, args.pooling, args.trainable, seed=args.seed)
    module = apply_trainable(clf, args.lora_rank, args.lora_alpha)
    if args.init_from:  # before the prefix cache: a full-weights run replaces frozen tensors too
        warm_start(args.init_from, module, run_config, label_set)
    module.to(device)
    cached = args.cache_prefix and prefix_is_cacheable(clf, args.padding)
    fixed = {"dynamic": None, "longest_train": train_ds.max_length,
             "context": backbone.cfg.context_length}[args.padding]

    t0 = time.perf_counter()
    model: nn.Module
    train_src: Any  # a PrefixCache of the frozen layers' output, or the token dataset
    val_src: Any
    base = base_key(args, backbone.source, device) if cached else ""  # hashes the weights file: only when used
    if cached:
        clf.eval()
        store = store or PrefixStore(disk_cache(args), args.dtype, dist)
        train_src, val_src = (store.get(base, clf, ds, fixed, split)
                              for ds, split in ((train_ds, "train"), (val_ds, "validation")))
        log.info("prefix cache: %.1f MB", (train_src.nbytes() + val_src.nbytes()) / 1e6)
        model = distribute(CachedSuffix(clf), device, dist)

        def forward(b):
            with autocast(device, args.dtype):
                return model(b.hidden.to(device, non_blocking=True), b.lengths.to(device, non_blocking=True)).float()
    else:
        train_src, val_src = train_ds, val_ds
        model = distribute(module, device, dist)

        def forward(b):
            with autocast(device, args.dtype):
                return model(b.input_ids.to(device, non_blocking=True),
                             b.lengths.to(device, non_blocking=True)).float()
    timings["cache_s"] = time.perf_counter() - t0

    # `last` pooling reads position -1, which a wider batch would move: its widths stay exact
    multiple = width_multiple(device, args.dtype) if args.pooling != "last" else None

    def loader(ds, buckets: bool = args.padding == "dynamic", train: bool = False, **kw) -> DataLoader:
        # one set of batching rules and seeds for tokens and cached hidden states -> the same batches; under
        # torchrun each rank trains on its share of the global batch and evaluates everything at the global size
        return create_dataloader(ds, args.batch_size * (1 if train else dist.world_size), padding=args.padding,
                                 pad_to=fixed, buckets=buckets, seed=args.seed, pin_memory=device.type == "cuda",
                                 collate_fn=functools.partial(collate_hidden, multiple=multiple) if cached else None,
                                 rank=dist.rank if train else 0, world_size=dist.world_size if train else 1,
                                 multiple=multiple, **kw)

    return TrainSetup(
        args=args, run_dir=run_dir, clf=clf, module=module, model=model, predictor=module, forward=forward,
        train_loader=loader(train_src, shuffle=True, drop_last=True, train=True),
        train_eval_loader=loader(train_src, buckets=False), val_eval_loader=loader(val_src, buckets=False),
        val_full_loader=loader(val_src), run_config=run_config, label_set=label_set, task=task, cached=cached,
        timings=timings, device=device, dist=dist, base=base, tokenizer=tokenizer)


def setup_hf(args: TrainArgs, data_dir: Path, run_dir: Path, label_set: LabelSet, dist: Dist,
             device: torch.device) -> TrainSetup:
    """`setup` for `--backend hf`: AutoModelForSequenceClassification, its tokenizer, the same loaders."""
    from spamtune.backends.hf import HFClassifier, apply_hf_trainable, load_hf

    task = task_for(label_set)
    t0 = time.perf_counter()
    model, tok, head = load_hf(args.model, label_set, args.dtype, args.seed)
    tok = normalizing(tok, args.normalize)
    module = apply_hf_trainable(model, head, args.trainable, args.lora_rank, args.lora_alpha)
    clf = HFClassifier(module)
    timings = {"load_s": time.perf_counter() - t0, "cache_s": 0.0}
    context = getattr(model.config, "max_position_embeddings", None) or tok.tok.model_max_length
    # truncate at 512 tokens (or --max-length), not at the longest training message: cutting ids would drop an
    # encoder's final [SEP], and no SMS comes near 512
    hf_args = dataclasses.replace(args, max_length=args.max_length or min(context, 512))
    train_ds, val_ds = make_datasets(hf_args, data_dir, tok, context, lambda col: task.targets(col, label_set))
    run_config = _run_config(args, data_dir, label_set, backend="hf", model=_model_spec(args, False),
                             max_length=train_ds.max_length, pooling="last_real", weights="trainable",
                             tokenizer="transformers", head=head, dtype=args.dtype)
    if args.init_from:
        warm_start(args.init_from, module, run_config, label_set)
    clf.to(device)
    model = distribute(clf, device, dist)

    def loader(ds, buckets: bool = True, train: bool = False, **kw) -> DataLoader:
        return create_dataloader(ds, args.batch_size * (1 if train else dist.world_size), buckets=buckets,
                                 seed=args.seed, pin_memory=device.type == "cuda", rank=dist.rank if train else 0,
                                 world_size=dist.world_size if train else 1, **kw)

    def forward(b):
        return model(b.input_ids.to(device, non_blocking=True), b.lengths.to(device, non_blocking=True))

    return TrainSetup(
        args=args, run_dir=run_dir, clf=clf, module=module, model=model, predictor=clf, forward=forward,
        train_loader=loader(train_ds, shuffle=True, drop_last=True, train=True),
        train_eval_loader=loader(train_ds, False), val_eval_loader=loader(val_ds, False),
        val_full_loader=loader(val_ds), run_config=run_config, label_set=label_set, task=task, cached=False,
        timings=timings, device=device, dist=dist, tokenizer=tok)
