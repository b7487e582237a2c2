"""The frozen-prefix cache: the exact fast path of fine-tuning.

When the layers below the trainable ones are frozen and deterministic, each message's hidden states after them are
computed once (`build_prefix_cache`) and every epoch trains only the suffix on those (`classifier.CachedSuffix`).
The batches, losses and updates are the same as running the whole model each step (tests/training checks it).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from spamtune.batching import Target, TextDataset, pad_ids
from spamtune.classifier import Classifier
from spamtune.config import TrainArgs


class HiddenBatch(NamedTuple):
    hidden: torch.Tensor  # (B, T, D) prefix output, zero-padded on the right
    lengths: torch.Tensor  # (B,) real tokens
    targets: torch.Tensor  # (B,)


class PrefixCache(Dataset):
    """Per message: its prefix hidden states (T_i, D), true length and target. Same indices as its TextDataset."""

    def __init__(self, hidden: list[torch.Tensor], lengths: list[int], targets: list[Target]) -> None:
        self.hidden, self.lengths, self.targets = hidden, lengths, targets

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, Target]:
        return self.hidden[i], self.lengths[i], self.targets[i]

    def nbytes(self) -> int:
        return sum(h.numel() * h.element_size() for h in self.hidden)


def collate_hidden(items: list[tuple[torch.Tensor, int, Target]]) -> HiddenBatch:
    width = max(h.shape[0] for h, _, _ in items)
    hidden = items[0][0].new_zeros(len(items), width, items[0][0].shape[1])
    for r, (h, _, _) in enumerate(items):
        hidden[r, : h.shape[0]] = h
    return HiddenBatch(hidden, torch.tensor([n for _, n, _ in items]), torch.tensor([y for _, _, y in items]))


@torch.inference_mode()
def build_prefix_cache(clf: Classifier, ds: TextDataset, fixed_width: int | None, batch_size: int = 16,
                       desc: str = "cache", shallower: tuple[int, PrefixCache] | None = None) -> PrefixCache:
    """Run the frozen prefix once per message, in length-sorted batches (little padding).

    Only real positions are kept, except for `last` pooling with fixed padding, which reads a pad position:
    then rows are padded to `fixed_width` exactly as the uncached batches are. `shallower` = (begin, cache of
    the first `begin` blocks for the same messages): only blocks begin.. run.
    """
    from tqdm.auto import tqdm

    keep_pads = clf.pooling == "last"
    order = sorted(range(len(ds)), key=lambda i: len(ds.encoded[i]))
    hidden: list[torch.Tensor] = [torch.empty(0)] * len(ds)
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
    return PrefixCache(hidden, ds.lengths, ds.targets)


class PrefixStore:
    """Prefix caches shared between runs on one base model (experiments: rows x seeds), in memory.

    Keyed by base weights, split, truncation, kept pad width and depth. A deeper prefix is built on top of the
    deepest shallower one already stored, so `head`, `last_block` and `last_two_blocks` pay for one full pass.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple, PrefixCache] = {}

    def get(self, base: str, clf: Classifier, ds: TextDataset, fixed_width: int | None, split: str) -> PrefixCache:
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
