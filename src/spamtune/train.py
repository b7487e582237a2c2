"""Fine-tuning (book §6.6–6.7): `setup` -> `fit` -> results, with a frozen-prefix cache as the exact fast path.

The fast path: when the layers below the trainable ones are frozen and deterministic, each message's hidden states
after them are computed once (`build_prefix_cache`) and every epoch trains only the suffix on those. The batches,
losses and updates are the same as running the whole model each step (tests/test_train.py checks it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from spamtune.batching import LengthBucketSampler, SpamDataset, create_dataloader, pad_ids
from spamtune.checkpoint import (
    CONFIG,
    LABELS,
    TRAIN_ARGS,
    WEIGHTS,
    load_weights_into,
    run_config,
    save_weights,
    weights_to_save,
)
from spamtune.classifier import Classifier, apply_trainable, prefix_is_cacheable
from spamtune.config import TrainArgs
from spamtune.data import read_label_maps, read_split
from spamtune.errors import SpamtuneError
from spamtune.fsutil import atomic_dir, read_json, write_json
from spamtune.hf import label_task
from spamtune.tokenizer import load_tokenizer
from spamtune.weights import load_backbone, read_safetensors

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# The frozen-prefix cache


class HiddenBatch(NamedTuple):
    hidden: torch.Tensor  # (B, T, D) prefix output, zero-padded on the right
    lengths: torch.Tensor  # (B,) real tokens
    labels: torch.Tensor  # (B,)


class PrefixCache(Dataset):
    """Per message: its prefix hidden states (T_i, D), true length and label. Same indices as its SpamDataset."""

    def __init__(self, hidden: list[torch.Tensor], lengths: list[int], labels: list[int]) -> None:
        self.hidden, self.lengths, self.labels = hidden, lengths, labels

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return self.hidden[i], self.lengths[i], self.labels[i]

    def nbytes(self) -> int:
        return sum(h.numel() * h.element_size() for h in self.hidden)


def collate_hidden(items: list[tuple[torch.Tensor, int, int]]) -> HiddenBatch:
    width = max(h.shape[0] for h, _, _ in items)
    hidden = items[0][0].new_zeros(len(items), width, items[0][0].shape[1])
    for r, (h, _, _) in enumerate(items):
        hidden[r, : h.shape[0]] = h
    return HiddenBatch(hidden, torch.tensor([n for _, n, _ in items]), torch.tensor([y for _, _, y in items]))


@torch.inference_mode()
def build_prefix_cache(clf: Classifier, ds: SpamDataset, fixed_width: int | None, batch_size: int = 16,
                       desc: str = "cache", shallower: tuple[int, PrefixCache] | None = None) -> PrefixCache:
    """Run the frozen prefix once per message, in length-sorted batches (little padding).

    Only real positions are kept, except for `last` pooling with fixed padding, which reads a pad position:
    then rows are padded to `fixed_width` exactly as the uncached batches are. `shallower` = (begin, cache of
    the first `begin` blocks for the same messages): only blocks begin.. run.
    """
    from tqdm.auto import tqdm

    keep_pads = clf.pooling == "last"
    order = sorted(range(len(ds)), key=lambda i: len(ds.encoded[i]))
    hidden: list[torch.Tensor | None] = [None] * len(ds)
    device = next(clf.parameters()).device
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        rows = order[start : start + batch_size]
        ids, lengths = pad_ids([ds.encoded[i] for i in rows], ds.pad_id, fixed_width if keep_pads else None)
        if shallower is None:
            out = clf.prefix(ids.to(device))
        else:  # zero right-padding is as good as pad tokens: causal attention never lets a real token see it
            begin, cache = shallower
            out = clf.prefix(None, collate_hidden([cache[i] for i in rows]).hidden.to(device), begin)
        for r, i in enumerate(rows):
            hidden[i] = out[r, : (ids.shape[1] if keep_pads else int(lengths[r]))].clone()
    return PrefixCache(hidden, ds.lengths, ds.labels)


class PrefixStore:
    """Prefix caches shared between runs on one base model (experiments: rows x seeds), in memory.

    Keyed by base weights, split, truncation, kept pad width and depth. A deeper prefix is built on top of the
    deepest shallower one already stored, so `head`, `last_block` and `last_two_blocks` pay for one full pass.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple, PrefixCache] = {}

    def get(self, base: str, clf: Classifier, ds: SpamDataset, fixed_width: int | None, split: str) -> PrefixCache:
        key = (base, split, ds.max_length, fixed_width if clf.pooling == "last" else None)
        if (*key, clf.start) not in self.entries:
            depths = [k[-1] for k in self.entries if k[:-1] == key and k[-1] < clf.start]
            shallower = (max(depths), self.entries[(*key, max(depths))]) if depths else None
            self.entries[(*key, clf.start)] = build_prefix_cache(clf, ds, fixed_width, shallower=shallower,
                                                                 desc=f"caching frozen layers ({split})")
        return self.entries[(*key, clf.start)]


def base_key(args: TrainArgs) -> str:
    """What the frozen weights depend on: the model, and for random init the seed that drew them."""
    return f"{args.model}|random:{args.seed}" if args.random_init else args.model


# ---------------------------------------------------------------------------------------------------------------
# The book's helpers; `forward` maps a batch (token Batch or HiddenBatch) to logits


Forward = Callable[[tuple], torch.Tensor]


def task_loss(logits: torch.Tensor, y: torch.Tensor, task: str = "single_label",
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """The loss `transformers` uses for each problem type: cross-entropy (optionally class-weighted), BCE on
    logits, MSE."""
    if task == "multi_label":
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    if task == "regression":
        return F.mse_loss(logits.squeeze(-1), y.to(logits.dtype))
    return F.cross_entropy(logits, y, weight=weight)


def correct_count(logits: torch.Tensor, y: torch.Tensor, task: str = "single_label") -> int:
    """Right answers: argmax; multi-label: every label right at 0.5 (subset accuracy); regression: none."""
    if task == "multi_label":
        return int(((logits >= 0) == y.bool()).all(-1).sum())
    if task == "regression":
        return 0
    return int((logits.argmax(-1) == y).sum())


def calc_loss_batch(batch: tuple, forward: Forward, task: str = "single_label",
                    weight: torch.Tensor | None = None) -> torch.Tensor:
    return task_loss(forward(batch), batch[2], task, weight)


@torch.no_grad()
def calc_loss_and_accuracy_loader(loader: DataLoader, forward: Forward, num_batches: int | None = None,
                                  task: str = "single_label") -> tuple[float, float]:
    """Mean batch loss (the book's `calc_loss_loader`) and accuracy over examples, from one forward per batch.
    Regression has no accuracy (nan)."""
    total, n, correct, seen = 0.0, 0, 0, 0
    for i, batch in enumerate(loader):
        if num_batches is not None and i >= num_batches:
            break
        logits = forward(batch)
        total += task_loss(logits, batch[2], task).item()
        n += 1
        correct += correct_count(logits, batch[2], task)
        seen += len(batch[2])
    nan = float("nan")
    return (total / n if n else nan), (correct / seen if seen and task != "regression" else nan)


@torch.no_grad()
def collect_logits(loader: DataLoader, forward: Forward) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) float logits and (N, ...) targets of a whole loader, in the loader's order."""
    logits, targets = [], []
    for batch in loader:
        logits.append(forward(batch).float())
        targets.append(batch[2])
    return torch.cat(logits), torch.cat(targets)


def calc_loss_loader(loader: DataLoader, forward: Forward, num_batches: int | None = None,
                     task: str = "single_label") -> float:
    return calc_loss_and_accuracy_loader(loader, forward, num_batches, task)[0]


def calc_accuracy_loader(loader: DataLoader, forward: Forward, num_batches: int | None = None,
                         task: str = "single_label") -> float:
    return calc_loss_and_accuracy_loader(loader, forward, num_batches, task)[1]


# ---------------------------------------------------------------------------------------------------------------
# Setup


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
class TrainSetup:
    args: TrainArgs
    run_dir: Path
    clf: nn.Module  # a Classifier, or hf.HFClassifier for --backend hf
    module: nn.Module  # what trains (clf, or its peft wrapper)
    forward: Forward
    train_loader: DataLoader
    train_eval_loader: DataLoader  # unshuffled: the periodic evaluations look at the same batches
    val_eval_loader: DataLoader
    val_full_loader: DataLoader
    config: dict
    labels: dict  # labels.json of the data directory
    cached: bool
    timings: dict[str, float]
    tokenizer: Any = None  # what encoded the splits
    task: str = "single_label"  # labels.json's task (the HF backend also does multi_label and regression)
    optimizer: torch.optim.Optimizer | None = None  # set by `setup`, the same way for both backends
    scheduler: Any = None  # a transformers LambdaLR, or None for the book's constant lr
    loss_weight: torch.Tensor | None = None  # --class-weights; the training loss only (validation stays plain)


def _datasets(args: TrainArgs, data_dir: Path, tokenizer, context_length: int,
              targets: Callable = list) -> tuple[SpamDataset, SpamDataset]:
    frames = [read_split(data_dir / f"{name}.csv") for name in ("train", "validation")]
    if args.limit:
        frames = [df[: args.limit] for df in frames]
    if min(len(df) for df in frames) == 0:
        raise SpamtuneError(f"{data_dir}: an empty train or validation split")
    train = SpamDataset(frames[0]["Text"], targets(frames[0]["Label"]), tokenizer, args.max_length, context_length)
    val = SpamDataset(frames[1]["Text"], targets(frames[1]["Label"]), tokenizer, train.max_length, context_length)
    return train, val


def make_optimizer(args: TrainArgs, module: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW on the trainable parameters (book §6.7), and transformers' lr scheduler unless the lr is constant."""
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=args.weight_decay)
    if args.lr_schedule == "constant":
        return optimizer, None
    from transformers import get_scheduler

    return optimizer, get_scheduler(args.lr_schedule, optimizer, num_warmup_steps=round(args.warmup_ratio * steps),
                                    num_training_steps=steps)


def loss_weights(args: TrainArgs, data_dir: Path, labels: dict) -> torch.Tensor | None:
    """--class-weights as a cross-entropy weight tensor; "balanced" is scikit-learn's n / (k * count) over the
    training split. Checked before the model loads, so a bad value costs no time."""
    spec = args.class_weight_values()
    if spec is None:
        return None
    task, num_classes = label_task(labels), len(labels["id2label"])
    if task != "single_label":
        raise SpamtuneError(f"--class-weights needs a single-label task, not {task}")
    if spec == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        y = read_split(data_dir / "train.csv")["Label"][: args.limit].to_numpy()
        if len(set(y)) < num_classes:
            raise SpamtuneError("--class-weights balanced: a class has no training example")
        spec = compute_class_weight("balanced", classes=np.arange(num_classes), y=y).tolist()
    if len(spec) != num_classes:
        raise SpamtuneError(f"--class-weights has {len(spec)} values for {num_classes} classes")
    return torch.tensor(spec, dtype=torch.float32)


def setup(args: TrainArgs, data_dir: str | Path, run_dir: str | Path, store: PrefixStore | None = None) -> TrainSetup:
    """Load the backbone, swap the head, freeze, tokenize, (cache the prefix,) and build loaders, optimizer,
    lr schedule and loss weights. `store` keeps prefix caches across calls (experiments); without it they live
    as long as the setup."""
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    labels = read_label_maps(data_dir)
    loss_weight = loss_weights(args, data_dir, labels)
    if args.backend == "hf":
        s = setup_hf(args, data_dir, run_dir, labels)
    else:
        s = setup_scratch(args, data_dir, run_dir, labels, store)
    s.optimizer, s.scheduler = make_optimizer(args, s.module, min(len(s.train_loader) * args.epochs,
                                                                  args.max_steps or math.inf))
    s.loss_weight = loss_weight
    return s


def setup_scratch(args: TrainArgs, data_dir: Path, run_dir: Path, labels: dict,
                  store: PrefixStore | None) -> TrainSetup:
    """`setup` for spamtune's own GPT-2/Llama modules."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if label_task(labels) != "single_label":
        raise SpamtuneError(f"{data_dir}: task {labels['task']!r} needs --backend hf")
    backbone = load_backbone(args.model, random_init=args.random_init, seed=args.seed)
    tokenizer = load_tokenizer(backbone.tokenizer)
    timings["load_s"] = time.perf_counter() - t0

    train_ds, val_ds = _datasets(args, data_dir, tokenizer, backbone.cfg.context_length)
    num_classes = len(labels["id2label"])
    if max(train_ds.labels + val_ds.labels) >= num_classes:
        raise SpamtuneError(f"{data_dir}: a label id is outside labels.json's {num_classes} classes")
    config = run_config(args, backbone.cfg, backbone.tokenizer, train_ds.max_length, num_classes, backbone.source)

    clf = Classifier(backbone.model, num_classes, args.pooling, args.trainable, seed=args.seed)
    module = apply_trainable(clf, args.lora_rank, args.lora_alpha)
    cached = args.cache_prefix and prefix_is_cacheable(clf, args.padding)
    fixed = {"dynamic": None, "longest_train": train_ds.max_length,
             "context": backbone.cfg.context_length}[args.padding]

    t0 = time.perf_counter()
    if cached:
        clf.eval()
        store = store or PrefixStore()
        train_src, val_src = (store.get(base_key(args), clf, ds, fixed, split)
                              for ds, split in ((train_ds, "train"), (val_ds, "validation")))
        log.info("prefix cache: %.1f MB", (train_src.nbytes() + val_src.nbytes()) / 1e6)

        def forward(b):
            return clf.suffix(b.hidden, b.lengths)
    else:
        train_src, val_src = train_ds, val_ds

        def forward(b):
            return module(b.input_ids, b.lengths)
    timings["cache_s"] = time.perf_counter() - t0

    def loader(ds, buckets: bool = args.padding == "dynamic", **kw) -> DataLoader:
        # one set of batching rules and seeds for tokens and cached hidden states -> the same batches
        return create_dataloader(ds, args.batch_size, padding=args.padding, pad_to=fixed, buckets=buckets,
                                 seed=args.seed, collate_fn=collate_hidden if cached else None, **kw)

    return TrainSetup(
        args=args, run_dir=run_dir, clf=clf, module=module, forward=forward,
        train_loader=loader(train_src, shuffle=True, drop_last=True),
        train_eval_loader=loader(train_src, buckets=False), val_eval_loader=loader(val_src, buckets=False),
        val_full_loader=loader(val_src), config=config, labels=labels, cached=cached, timings=timings,
        tokenizer=tokenizer)


def setup_hf(args: TrainArgs, data_dir: Path, run_dir: Path, labels: dict) -> TrainSetup:
    """`setup` for `--backend hf`: AutoModelForSequenceClassification, its tokenizer, the same loaders."""
    from spamtune.checkpoint import run_config_hf
    from spamtune.hf import HFClassifier, apply_hf_trainable, load_hf, read_targets

    t0 = time.perf_counter()
    model, tok, head = load_hf(args.model, labels, args.dtype, args.seed)
    module = apply_hf_trainable(model, head, args.trainable, args.lora_rank, args.lora_alpha)
    clf = HFClassifier(module)
    timings = {"load_s": time.perf_counter() - t0, "cache_s": 0.0}
    context = getattr(model.config, "max_position_embeddings", None) or tok.tok.model_max_length
    # truncate at 512 tokens (or --max-length), not at the longest training message: cutting ids would drop an
    # encoder's final [SEP], and no SMS comes near 512
    hf_args = dataclasses.replace(args, max_length=args.max_length or min(context, 512))
    train_ds, val_ds = _datasets(hf_args, data_dir, tok, context, lambda col: read_targets(col, labels))
    config = run_config_hf(args, labels, head, train_ds.max_length)

    def loader(ds, buckets: bool = True, **kw) -> DataLoader:
        return create_dataloader(ds, args.batch_size, buckets=buckets, seed=args.seed, **kw)

    def forward(b):
        return clf(b.input_ids, b.lengths)

    return TrainSetup(
        args=args, run_dir=run_dir, clf=clf, module=module, forward=forward,
        train_loader=loader(train_ds, shuffle=True, drop_last=True), train_eval_loader=loader(train_ds, False),
        val_eval_loader=loader(val_ds, False), val_full_loader=loader(val_ds), config=config, labels=labels,
        cached=False, timings=timings, tokenizer=tok, task=label_task(labels))


# ---------------------------------------------------------------------------------------------------------------
# Resume state: weights, AdamW moments, counters, RNG states (safetensors + JSON; no pickle)


def _rng_of(loader: DataLoader):
    """The loader's shuffling state: a LengthBucketSampler's random.Random or the DataLoader's torch.Generator."""
    return loader.batch_sampler.rng if isinstance(loader.batch_sampler, LengthBucketSampler) else loader.generator


def save_resume(s: TrainSetup, state: dict) -> None:
    tensors = {f"model.{k}": v for k, v in weights_to_save(s.module, s.args.random_init).items()}
    opt = s.optimizer.state_dict()
    for idx, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"optim.{idx}.{k}"] = v.detach().clone().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    rng = _rng_of(s.train_loader)
    state = {**state, "param_groups": opt["param_groups"]}
    if s.scheduler is not None:
        state["scheduler"] = s.scheduler.state_dict()
    if isinstance(rng, torch.Generator):
        tensors["rng.loader"] = rng.get_state()
    else:
        state["rng_loader"] = rng.getstate()
    with atomic_dir(s.run_dir / "resume", overwrite=True) as tmp:
        save_weights(tmp / "state.safetensors", tensors)
        write_json(tmp / "state.json", state)


def load_resume(s: TrainSetup) -> dict:
    tensors = read_safetensors(s.run_dir / "resume" / "state.safetensors")
    state = read_json(s.run_dir / "resume" / "state.json")
    load_weights_into(s.module, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                      str(s.run_dir / "resume"))
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    s.optimizer.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    if s.scheduler is not None:
        s.scheduler.load_state_dict(state.pop("scheduler"))
    torch.set_rng_state(tensors["rng.torch"])
    rng = _rng_of(s.train_loader)
    if isinstance(rng, torch.Generator):
        rng.set_state(tensors["rng.loader"])
    else:
        v, internal, gauss = state.pop("rng_loader")
        rng.setstate((v, tuple(internal), gauss))
    return state


# ---------------------------------------------------------------------------------------------------------------
# Fit


def evaluate_model(s: TrainSetup) -> tuple[float, float]:
    """The book's `evaluate_model`: loss on `eval_iter` batches of train and validation."""
    s.module.eval()
    train_loss = calc_loss_loader(s.train_eval_loader, s.forward, s.args.eval_iter, s.task)
    val_loss = calc_loss_loader(s.val_eval_loader, s.forward, s.args.eval_iter, s.task)
    s.module.train()
    return train_loss, val_loss


def _log(s: TrainSetup, record: dict) -> None:
    with open(s.run_dir / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def fit(s: TrainSetup, state: dict | None = None, on_epoch_end: Callable[[int], None] | None = None) -> dict:
    """Train for `args.epochs` (from `state` when resuming). Returns the final state (history, counters, times)."""
    from tqdm.auto import tqdm

    args = s.args
    state = state or {"epoch": 0, "global_step": 0, "examples_seen": 0, "best_val_loss": math.inf,
                      "best_epoch": None, "bad_epochs": 0, "history": asdict(History()), "train_time_s": 0.0}
    hist = History(**state["history"])
    steps_per_epoch = len(s.train_loader)
    total = min(steps_per_epoch * args.epochs, args.max_steps or math.inf)
    bar = tqdm(total=total, initial=state["global_step"], desc="training", unit="step")
    s.module.train()
    stop = False
    for epoch in range(state["epoch"], args.epochs):
        t_epoch = time.perf_counter()
        for batch in s.train_loader:
            s.optimizer.zero_grad()
            loss = calc_loss_batch(batch, s.forward, s.task, s.loss_weight)
            loss.backward()
            s.optimizer.step()
            if s.scheduler is not None:
                s.scheduler.step()
            state["examples_seen"] += len(batch[2])
            state["global_step"] += 1
            bar.update()
            stop = args.max_steps is not None and state["global_step"] >= args.max_steps
            if state["global_step"] % args.eval_freq == 0:
                train_loss, val_loss = evaluate_model(s)
                hist.train_losses.append(train_loss)
                hist.val_losses.append(val_loss)
                hist.examples_seen.append(state["examples_seen"])
                bar.set_postfix(train_loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}")
                _log(s, {"step": state["global_step"], "epoch": epoch + 1, "examples_seen": state["examples_seen"],
                         "train_loss": train_loss, "val_loss": val_loss, "lr": s.optimizer.param_groups[0]["lr"]})
            if stop:
                break
        state["train_time_s"] += time.perf_counter() - t_epoch

        s.module.eval()
        train_acc = calc_accuracy_loader(s.train_eval_loader, s.forward, args.eval_iter, s.task)
        val_acc = calc_accuracy_loader(s.val_eval_loader, s.forward, args.eval_iter, s.task)
        val_loss_full, val_acc_full = calc_loss_and_accuracy_loader(s.val_full_loader, s.forward, task=s.task)
        s.module.train()
        hist.train_accs.append(train_acc)
        hist.val_accs.append(val_acc)
        hist.val_loss_full.append(val_loss_full)
        hist.val_acc_full.append(val_acc_full)
        _log(s, {"epoch": epoch + 1, "step": state["global_step"], "train_acc": train_acc, "val_acc": val_acc,
                 "val_loss_full": val_loss_full, "val_acc_full": val_acc_full})
        tqdm.write(f"epoch {epoch + 1}: train acc {train_acc:.2%} | val acc {val_acc:.2%} "
                   f"(full validation: loss {val_loss_full:.4f}, acc {val_acc_full:.2%})")

        if val_loss_full < state["best_val_loss"]:
            state.update(best_val_loss=val_loss_full, best_epoch=epoch + 1, bad_epochs=0)
            save_weights(s.run_dir / WEIGHTS, weights_to_save(s.module, args.random_init))
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["history"] = asdict(hist)
        save_resume(s, state)
        if on_epoch_end:
            on_epoch_end(epoch + 1)
        if stop:
            break
        if args.early_stopping and state["bad_epochs"] >= args.early_stopping:
            tqdm.write(f"early stopping: no better validation loss for {args.early_stopping} epochs")
            break
    bar.close()
    return state


# ---------------------------------------------------------------------------------------------------------------
# The whole run


def load_best_epoch(s: TrainSetup) -> None:
    """Put the saved best epoch (by validation loss) back into the model that trained, in eval mode."""
    load_weights_into(s.module, read_safetensors(s.run_dir / WEIGHTS), "best epoch")
    s.module.eval()


def _pick_label_thresholds(s: TrainSetup) -> None:
    """Multi-label: one threshold per label, the best F1 on validation with the best epoch's weights."""
    from spamtune.hf import pick_thresholds

    load_best_epoch(s)
    logits, y = collect_logits(s.val_full_loader, s.forward)
    s.config["thresholds"] = pick_thresholds(y.numpy(), torch.sigmoid(logits).numpy())
    write_json(s.run_dir / CONFIG, s.config)


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise SpamtuneError(f"{run_dir} already exists; pass --overwrite to replace it or --resume {run_dir}")
        if not (run_dir / CONFIG).is_file():
            raise SpamtuneError(f"{run_dir} is not a spamtune run; refusing to delete it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def train_run(args: TrainArgs, data_dir: str | Path, run_dir: str | Path, overwrite: bool = False,
              resume: bool = False) -> dict:
    """prepare the run dir -> setup -> (resume) -> fit -> history, metrics and plots. Returns metrics."""
    return run_training(args, data_dir, run_dir, overwrite, resume)[1]


def run_training(args: TrainArgs, data_dir: str | Path, run_dir: str | Path, overwrite: bool = False,
                 resume: bool = False, store: PrefixStore | None = None) -> tuple[TrainSetup, dict]:
    """`train_run`, also returning the setup (its model holds the last epoch; the run dir the best one)."""
    from spamtune.plots import plot_values

    run_dir = Path(run_dir)
    if resume:
        args = TrainArgs(**read_json(run_dir / TRAIN_ARGS))
        data_dir = read_json(run_dir / "data_dir.json")["data_dir"]
    else:
        prepare_run_dir(run_dir, overwrite)
    torch.manual_seed(args.seed)
    s = setup(args, data_dir, run_dir, store)
    if resume:
        state = load_resume(s)
        print(f"resuming {run_dir} after epoch {state['epoch']} (step {state['global_step']})")
    else:
        write_json(run_dir / CONFIG, s.config)
        write_json(run_dir / LABELS, s.labels)
        write_json(run_dir / TRAIN_ARGS, args.to_dict())
        write_json(run_dir / "data_dir.json", {"data_dir": str(Path(data_dir).resolve())})
        state = None
        s.module.eval()
        accs = [calc_accuracy_loader(dl, s.forward, 10, s.task) for dl in (s.train_eval_loader, s.val_eval_loader)]
        print(f"untrained head: train acc {accs[0]:.2%}, val acc {accs[1]:.2%} (10 batches)")

    state = fit(s, state)
    if s.task == "multi_label":
        _pick_label_thresholds(s)
    hist = History(**state["history"])
    examples = state["examples_seen"]
    metrics = {
        "model": args.model, "trainable": args.trainable, "pooling": args.pooling, "padding": args.padding,
        "cached_prefix": s.cached, "epochs_run": state["epoch"], "steps": state["global_step"],
        "examples_seen": examples, "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"],
        "val_acc_full": hist.val_acc_full, "load_s": s.timings["load_s"], "cache_s": s.timings["cache_s"],
        "train_time_s": state["train_time_s"],
        "total_time_s": s.timings["load_s"] + s.timings["cache_s"] + state["train_time_s"],
        "examples_per_s": examples / max(state["train_time_s"], 1e-9),
    }
    write_json(run_dir / "history.json", asdict(hist))
    write_json(run_dir / "metrics.json", metrics)
    if hist.train_losses:
        n = len(hist.train_losses)
        plot_values([state["epoch"] * (i + 1) / n for i in range(n)], hist.examples_seen, hist.train_losses,
                    hist.val_losses, "loss", run_dir / "loss")
    if hist.train_accs:
        n = len(hist.train_accs)
        plot_values(list(range(1, n + 1)), [examples * (i + 1) // n for i in range(n)], hist.train_accs,
                    hist.val_accs, "accuracy", run_dir / "accuracy")
    print(f"done: {state['epoch']} epochs, {examples} examples in {state['train_time_s']:.0f} s "
          f"({metrics['examples_per_s']:.1f} examples/s; load {s.timings['load_s']:.0f} s, "
          f"cache {s.timings['cache_s']:.0f} s); best epoch {state['best_epoch']} "
          f"(val loss {state['best_val_loss']:.4f}) -> {run_dir / WEIGHTS}")
    return s, metrics

