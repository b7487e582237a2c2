"""Dataset and batching (book §6.3): encode once, pad per batch (dynamic) or to a fixed length (the book's way).

Padding is always on the right and every batch carries the true lengths, so the classifier pools each message's
last real token from `lengths` — never by looking for a pad id.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from spamtune.tokenizers import Tokenizer


class Batch(NamedTuple):
    input_ids: torch.Tensor  # (B, T) token ids, right-padded with the pad id
    lengths: torch.Tensor  # (B,) number of real tokens per row, 1..T
    targets: torch.Tensor  # (B,) class ids, or (B,) floats / (B, L) multi-hot for the HF backend's other tasks


Target = int | float | list[float]  # a class id; a regression value; a multi-hot row (tasks.py makes them)

# Work per message is bounded: a text is cut to 32 characters per token kept (at least 4,096) before tokenizing,
# far more than the kept tokens ever span, so a 50 MB message costs what a short one does.
MIN_CHAR_CAP = 4096
CHARS_PER_TOKEN_CAP = 32


def char_cap(max_tokens: int | None) -> int:
    """Characters of a message read before tokenizing, for `max_tokens` kept tokens."""
    return max(MIN_CHAR_CAP, CHARS_PER_TOKEN_CAP * (max_tokens or 0))


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int | None) -> list[list[int]]:
    """Token ids of each text cut to `char_cap(max_tokens)` characters (not yet truncated to max_tokens)."""
    cap = char_cap(max_tokens)
    capped = [t[:cap] for t in texts]
    encode_batch = getattr(tokenizer, "encode_batch", None)
    return encode_batch(capped) if encode_batch else [tokenizer.encode(t) for t in capped]


def encode_for_model(tokenizer: Tokenizer, texts: Sequence[str],
                     max_tokens: int) -> tuple[list[list[int]], list[bool]]:
    """What the model reads of each text (its first `max_tokens` ids; one pad id for a text with none) and whether
    the text was truncated (more tokens, or more characters than `char_cap`)."""
    full = encode_texts(tokenizer, texts, max_tokens)
    cap = char_cap(max_tokens)
    truncated = [len(ids) > max_tokens or len(t) > cap for ids, t in zip(full, texts)]
    return [ids[:max_tokens] or [tokenizer.pad_id] for ids in full], truncated


class TextDataset(Dataset):
    """Encoded messages truncated to `max_length` (default: the longest message, as in the book): the book's
    `SpamDataset`, for any label set.

    Args:
        texts: the messages.
        targets: one per message: a class id (or a float / multi-hot row for the HF backend's other tasks).
        tokenizer: anything with `encode` and `pad_id`.
        max_length: truncate to this many tokens; None = the longest encoded message (capped at `context_length`).
        context_length: the model's context; no message is ever longer.
    """

    def __init__(self, texts: Sequence[str], targets: Sequence[Target], tokenizer: Tokenizer,
                 max_length: int | None = None, context_length: int | None = None) -> None:
        if len(texts) != len(targets):
            raise ValueError("texts and targets differ in length")
        encoded = encode_texts(tokenizer, texts, max_length or context_length)
        # an empty encoding (only possible for odd input) becomes one pad token so every row has a last token
        encoded = [ids or [tokenizer.pad_id] for ids in encoded]
        longest = max((len(ids) for ids in encoded), default=1)
        limit = max_length or longest
        if context_length is not None:
            limit = min(limit, context_length)
        self.max_length = limit
        self.encoded = [ids[:limit] for ids in encoded]
        # class ids; floats (regression) and multi-hot lists (multi-label) pass through for the HF backend
        self.targets: list[Target] = [y if isinstance(y, (float, list)) else int(y) for y in targets]
        self.pad_id = tokenizer.pad_id

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> tuple[list[int], Target]:
        return self.encoded[index], self.targets[index]

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.encoded]


def round_width(width: int, multiple: int | None) -> int:
    """`width` rounded up to a multiple of `multiple` (None: unchanged): few distinct batch shapes."""
    return width if not multiple else -(-width // multiple) * multiple


# What one forward pass costs beyond its tokens, in padded tokens: on a CPU every pass streams all the weights from
# memory once (SmolLM2-135M, this project's 2-core machines: a 1-token pass ~40x a token of a large batch); on a GPU
# kernel launches, far more, so there batches stay as large as allowed.
PASS_COST_TOKENS = {"cpu": 32, "other": 100_000}


def length_batches(lengths: Sequence[int], batch_size: int, pass_cost: int = PASS_COST_TOKENS["cpu"],
                   width: int | None = None) -> list[list[int]]:
    """Indices of `lengths` cut into batches of at most `batch_size`, in order of length, at the cut that costs the
    least padded tokens plus `pass_cost` per batch (dynamic programming over the sorted lengths): a request of short
    and long messages is not all padded to its longest, nor split into passes that cost more than the padding saved.
    `width`: every batch is padded to it (then only the number of passes counts)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    widths = np.array([lengths[i] if width is None else width for i in order], dtype=np.float64)
    best = np.zeros(len(order) + 1)  # best[j]: the least cost of the first j sorted messages
    start = np.zeros(len(order) + 1, dtype=np.int64)  # where the last batch of that cut begins
    for j in range(1, len(order) + 1):
        lo = max(0, j - batch_size)
        cost = best[lo:j] + pass_cost + widths[j - 1] * (j - np.arange(lo, j))
        k = int(np.argmin(cost))  # the first minimum: the largest batch among equals
        best[j], start[j] = cost[k], lo + k
    batches, j = [], len(order)
    while j > 0:
        batches.append(order[start[j] : j])
        j = int(start[j])
    return batches[::-1]


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int, width: int | None = None,
            multiple: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences to `width` (default: the longest, rounded up to `multiple`). Returns ((B, T) ids,
    (B,) lengths)."""
    lengths = [len(ids) for ids in seqs]
    input_ids = torch.full((len(seqs), width or round_width(max(lengths), multiple)), pad_id, dtype=torch.long)
    for row, ids in enumerate(seqs):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return input_ids, torch.tensor(lengths)


def collate(items: list[tuple[list[int], Target]], pad_id: int, pad_to: int | None = None,
            multiple: int | None = None) -> Batch:
    """Right-pad to `pad_to` (fixed padding) or to the longest item of the batch rounded up to `multiple` (dynamic
    padding)."""
    input_ids, lengths = pad_ids([ids for ids, _ in items], pad_id, pad_to, multiple)
    return Batch(input_ids, lengths, torch.tensor([y for _, y in items]))


def attention_mask_from_lengths(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T) bool, True at real tokens."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length: shuffle, cut into buckets of `bucket_batches` batches, sort each bucket by length,
    batch it, then shuffle the batches. Less padding per batch, still a fresh order each epoch."""

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 123, bucket_batches: int = 50) -> None:
        self.lengths, self.batch_size, self.shuffle, self.drop_last = list(lengths), batch_size, shuffle, drop_last
        self.rng = random.Random(seed)
        self.bucket = batch_size * bucket_batches

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.lengths)))
        if self.shuffle:
            self.rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.bucket):
            bucket = sorted(order[start : start + self.bucket], key=self.lengths.__getitem__)
            batches += [bucket[i : i + self.batch_size] for i in range(0, len(bucket), self.batch_size)]
        # drop_last drops one short batch overall, like DataLoader(drop_last=True), not one per bucket
        short = [b for b in batches if len(b) < self.batch_size]
        batches = [b for b in batches if len(b) == self.batch_size]
        if short:
            rest = [i for b in short for i in b]
            batches += [rest[i : i + self.batch_size] for i in range(0, len(rest), self.batch_size)]
            if self.drop_last and len(batches[-1]) < self.batch_size:
                batches.pop()
        if self.shuffle:
            self.rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class RankBatches(Sampler[list[int]]):
    """torchrun's share of a global batch: the global batches of `batch_size * world_size` (length buckets, or a
    seeded shuffle) are drawn the same way on every rank and each rank takes its slice, so N ranks see the same
    global batches as one process with an N times larger batch."""

    def __init__(self, inner: Sampler[list[int]], rank: int, world_size: int, rng: Any) -> None:
        self.inner, self.rank, self.world_size, self.rng = inner, rank, world_size, rng

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.inner:
            share = -(-len(batch) // self.world_size)
            yield batch[self.rank * share : (self.rank + 1) * share]

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]


def create_dataloader(dataset: Any, batch_size: int = 8, shuffle: bool = False, drop_last: bool = False,
                      padding: str = "dynamic", pad_to: int | None = None, buckets: bool = False,
                      seed: int = 123, collate_fn=None, pin_memory: bool = False, rank: int = 0,
                      world_size: int = 1, multiple: int | None = None) -> DataLoader:
    """The book's loader settings (batch 8; train: shuffle + drop_last) with a padding choice.

    Args:
        dataset: a `TextDataset`, or any dataset with `lengths` and its own `collate_fn` (the prefix cache).
        padding: "dynamic" pads to the longest message of each batch; "longest_train" pads to `dataset.max_length`
            (the book); "context" pads to `pad_to` (the model's context, the book's slow ablation row).
        buckets: group messages of similar length into batches (with dynamic padding).
        seed: the same seed gives the same batches for any dataset of the same lengths.
        pin_memory: page-locked batches (CUDA: asynchronous copies to the GPU).
        rank, world_size: torchrun's share of each global batch of `batch_size * world_size` (`RankBatches`).
        multiple: with dynamic padding, round each batch's width up to a multiple of this (`width_multiple`).
    """
    if collate_fn is None:
        width = {"dynamic": None, "longest_train": dataset.max_length, "context": pad_to}[padding]
        if padding == "context" and pad_to is None:
            raise ValueError("padding='context' needs pad_to")

        def collate_fn(items):
            return collate(items, dataset.pad_id, width, multiple)

    if buckets:
        sampler = LengthBucketSampler(dataset.lengths, batch_size * world_size, shuffle, drop_last, seed)
        if world_size > 1:
            sampler = RankBatches(sampler, rank, world_size, sampler.rng)  # type: ignore[assignment]
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn, pin_memory=pin_memory)
    generator = torch.Generator().manual_seed(seed)
    if world_size > 1:
        from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

        order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        ranked = RankBatches(BatchSampler(order, batch_size * world_size, drop_last), rank, world_size, generator)
        return DataLoader(dataset, batch_sampler=ranked, collate_fn=collate_fn, pin_memory=pin_memory)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, collate_fn=collate_fn,
                      generator=generator, pin_memory=pin_memory)
