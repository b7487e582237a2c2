"""The frozen-prefix cache: the exact fast path of fine-tuning.

When the layers below the trainable ones are frozen and deterministic, each message's hidden states after them are
computed once (`build_prefix_cache`) and every epoch trains only the suffix on those (`classifier.CachedSuffix`).
The batches, losses and updates are the same as running the whole model each step (tests/training checks it).

Caches live in memory or, by default, on disk (`DiskCache`): one memory-mapped file of float32 rows per (base
weights, depth, token ids) so memory stays flat as data grows and a cache is reused across runs, seeds and
experiments. Under torchrun the ranks of a node split the build between them (`Dist`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from spamtune.batching import Target, TextDataset, pad_ids, round_width
from spamtune.classifier import Classifier
from spamtune.config import TrainArgs
from spamtune.devices import Dist, autocast, width_multiple
from spamtune.fsutil import sha256_file, write_json
from spamtune.weights.sources import local_weight_files

log = logging.getLogger(__name__)
CACHE_FORMAT = "spamtune-prefix-cache/1"


class HiddenBatch(NamedTuple):
    hidden: torch.Tensor  # (B, T, D) prefix output, zero-padded on the right
    lengths: torch.Tensor  # (B,) real tokens
    targets: torch.Tensor  # (B,)


class MappedRows(Sequence):
    """Rows of a (tokens, D) memory-mapped array: row i is `array[offsets[i]:offsets[i + 1]]`, read on demand."""

    def __init__(self, array: np.ndarray, offsets: np.ndarray) -> None:
        self.array, self.offsets = array, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        return torch.from_numpy(self.array[self.offsets[i] : self.offsets[i + 1]])


class PrefixCache(Dataset):
    """Per message: its prefix hidden states (T_i, D), true length and target. Same indices as its TextDataset."""

    def __init__(self, hidden: Sequence[torch.Tensor], lengths: list[int], targets: list[Target]) -> None:
        self.hidden, self.lengths, self.targets = hidden, lengths, targets

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, Target]:
        return self.hidden[i], self.lengths[i], self.targets[i]

    def nbytes(self) -> int:
        if isinstance(self.hidden, MappedRows):
            return self.hidden.array.nbytes
        return sum(h.numel() * h.element_size() for h in self.hidden)


def collate_hidden(items: list[tuple[torch.Tensor, int, Target]], multiple: int | None = None) -> HiddenBatch:
    """Zero right-padded prefix rows: as good as pad tokens, since causal attention never lets a real token see
    them. Width: the longest row, rounded up to `multiple`."""
    width = round_width(max(h.shape[0] for h, _, _ in items), multiple)
    hidden = items[0][0].new_zeros(len(items), width, items[0][0].shape[1])
    for r, (h, _, _) in enumerate(items):
        hidden[r, : h.shape[0]] = h
    return HiddenBatch(hidden, torch.tensor([n for _, n, _ in items]), torch.tensor([y for _, _, y in items]))


def stored_widths(classifier: Classifier, ds: TextDataset, fixed_width: int | None) -> list[int]:
    """Positions kept per message: the real ones, except for `last` pooling with fixed padding, which reads a pad
    position: then rows are padded to `fixed_width` exactly as the uncached batches are."""
    if classifier.pooling == "last" and fixed_width is not None:
        return [fixed_width] * len(ds)
    return list(ds.lengths)


@torch.inference_mode()
def prefix_rows(classifier: Classifier, ds: TextDataset, fixed_width: int | None, batch_size: int = 16,
                desc: str = "cache", shallower: tuple[int, PrefixCache] | None = None,
                dtype: str = "fp32", dist: Dist = Dist()) -> Iterator[tuple[int, torch.Tensor]]:
    """(message index, its kept prefix rows in float32 on the CPU), in length-sorted batches (little padding).

    `shallower` = (begin, cache of the first `begin` blocks for the same messages): only blocks begin.. run.
    `dist`: this process computes every `local_world_size`-th batch (the ranks of a node split the work).
    """
    from tqdm.auto import tqdm

    widths = stored_widths(classifier, ds, fixed_width)
    keep_pads = classifier.pooling == "last" and fixed_width is not None
    order = sorted(range(len(ds)), key=lambda i: len(ds.encoded[i]))
    device = next(classifier.parameters()).device
    multiple = width_multiple(device, dtype)
    starts = list(range(0, len(order), batch_size))[dist.local_rank :: dist.local_world_size]
    for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=not dist.main):
        rows = order[start : start + batch_size]
        ids, _ = pad_ids([ds.encoded[i] for i in rows], ds.pad_id, fixed_width if keep_pads else None, multiple)
        with autocast(device, dtype):
            if shallower is None:
                out = classifier.prefix(ids.to(device, non_blocking=True))
            else:
                begin, cache = shallower
                hidden = collate_hidden([cache[i] for i in rows], multiple).hidden
                out = classifier.prefix(None, hidden.to(device), begin)
        out = out.float().cpu()
        for r, i in enumerate(rows):
            yield i, out[r, : widths[i]].clone()


def build_prefix_cache(classifier: Classifier, ds: TextDataset, fixed_width: int | None, batch_size: int = 16,
                       desc: str = "cache", shallower: tuple[int, PrefixCache] | None = None,
                       dtype: str = "fp32") -> PrefixCache:
    """The whole cache in memory (see `prefix_rows`)."""
    hidden: list[torch.Tensor] = [torch.empty(0)] * len(ds)
    for i, rows in prefix_rows(classifier, ds, fixed_width, batch_size, desc, shallower, dtype):
        hidden[i] = rows
    return PrefixCache(hidden, ds.lengths, ds.targets)


def default_cache_dir() -> Path:
    """$SPAMTUNE_CACHE_DIR, else $XDG_CACHE_HOME/spamtune/prefix (~/.cache/spamtune/prefix)."""
    if env := os.environ.get("SPAMTUNE_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spamtune" / "prefix"


def ids_digest(ds: TextDataset, widths: Sequence[int]) -> str:
    """What a cache's rows depend on besides the weights: every message's token ids and kept width (so the
    tokenizer, the data file, truncation and padding are all in it)."""
    h = hashlib.sha256()
    for ids, w in zip(ds.encoded, widths):
        h.update(np.asarray([len(ids), w, *ids], dtype=np.int64).tobytes())
    return h.hexdigest()


@dataclass
class Entry:
    """One stored cache: its directory and index (`index.json`, written last: its presence means complete)."""

    path: Path
    index: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return int(self.index["bytes"])

    @property
    def last_used(self) -> float:
        return float(self.index.get("last_used", 0))


class DiskCache:
    """Prefix caches on disk under `root`, one directory per key: `hidden.f32` (all kept rows, float32, row-major),
    `offsets.npy` and `index.json` (the key's parts, sizes, hidden.f32's sha256). A partial, truncated or altered
    entry is detected when opened (sizes and sha256) and rebuilt, never used. `max_bytes` caps the total: the least
    recently used entries are removed after a new one is written."""

    def __init__(self, root: str | os.PathLike, max_bytes: int | None = None) -> None:
        self.root, self.max_bytes = Path(root), max_bytes

    def entries(self) -> list[Entry]:
        out = []
        for index in sorted(self.root.glob("*/index.json")):
            try:
                out.append(Entry(index.parent, json.loads(index.read_text())))
            except (OSError, ValueError):
                out.append(Entry(index.parent, {"bytes": 0, "damaged": True}))
        return out

    def partials(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*.partial") if p.is_dir())

    def clear(self) -> int:
        """Remove every entry and leftover partial build; returns the bytes freed."""
        freed = 0
        with self._lock("all"):
            for e in self.entries():
                freed += _dir_bytes(e.path)
                shutil.rmtree(e.path)
            for p in self.partials():
                freed += _dir_bytes(p)
                shutil.rmtree(p)
        return freed

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def open(self, key: str, ds: TextDataset, verify: bool = True) -> PrefixCache | None:
        """The stored cache of `key` if it is complete and intact (else None: the caller rebuilds it). `verify`:
        hash the rows against the index; only skipped for an entry this job has just written or verified."""
        path = self.root / key
        index_file = path / "index.json"
        if not index_file.is_file():
            return None
        try:
            index = json.loads(index_file.read_text())
            offsets = np.load(path / "offsets.npy", allow_pickle=False)
            data = path / "hidden.f32"
            ok = (index.get("format") == CACHE_FORMAT and index["rows"] == len(ds) == len(offsets) - 1
                  and data.stat().st_size == index["bytes"] == int(offsets[-1]) * index["dim"] * 4
                  and (not verify or sha256_file(data) == index["sha256"]))
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            log.warning("prefix cache %s is damaged or incomplete: rebuilding it", path)
            shutil.rmtree(path, ignore_errors=True)
            return None
        index["last_used"] = time.time()
        write_json(index_file, index)
        array = np.memmap(data, dtype=np.float32, mode="c", shape=(int(offsets[-1]), int(index["dim"])))
        return PrefixCache(MappedRows(array, offsets), ds.lengths, ds.targets)

    def find_shallower(self, base: str, digest: str, depth: int) -> tuple[int, str] | None:
        """(depth, key) of the deepest stored cache of the same weights and messages below `depth`."""
        found = [(e.index["depth"], e.path.name) for e in self.entries()
                 if e.index.get("base") == base and e.index.get("ids") == digest and e.index.get("depth", 1e9) < depth]
        return max(found) if found else None

    def build(self, key: str, meta: dict[str, Any], classifier: Classifier, ds: TextDataset, fixed_width: int | None,
              desc: str, shallower: tuple[int, PrefixCache] | None, dtype: str, dist: Dist) -> PrefixCache:
        """Compute the cache into `key.partial/` and rename it into place when complete. The ranks of a torchrun
        node each write their share of the rows into the same memory-mapped file."""
        widths = stored_widths(classifier, ds, fixed_width)
        offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        dim = classifier.backbone.cfg.emb_dim
        partial = self.root / f"{key}.partial"
        data = partial / "hidden.f32"
        if dist.local_rank == 0:
            shutil.rmtree(partial, ignore_errors=True)  # left by a killed build
            partial.mkdir(parents=True)
            np.memmap(data, dtype=np.float32, mode="w+", shape=(max(int(offsets[-1]), 1), dim)).flush()
            if offsets[-1] == 0:
                os.truncate(data, 0)
        dist.barrier()
        if offsets[-1]:
            array = np.memmap(data, dtype=np.float32, mode="r+", shape=(int(offsets[-1]), dim))
            for i, rows in prefix_rows(classifier, ds, fixed_width, desc=desc, shallower=shallower, dtype=dtype,
                                       dist=dist):
                array[offsets[i] : offsets[i + 1]] = rows.numpy()
            array.flush()
            del array
        dist.barrier()
        if dist.local_rank == 0:
            np.save(partial / "offsets.npy", offsets, allow_pickle=False)
            nbytes = int(offsets[-1]) * dim * 4
            write_json(partial / "index.json", {
                "format": CACHE_FORMAT, **meta, "rows": len(ds), "dim": dim, "bytes": nbytes,
                "sha256": sha256_file(data), "created": time.time(), "last_used": time.time()})
            shutil.rmtree(self.root / key, ignore_errors=True)
            os.replace(partial, self.root / key)
            self._evict(keep=key)
        dist.barrier()
        return self.open_checked(key, ds)

    def open_checked(self, key: str, ds: TextDataset) -> PrefixCache:
        """An entry this job has just written or verified (its sizes still checked, not rehashed)."""
        cache = self.open(key, ds, verify=False)
        assert cache is not None, f"the prefix cache {self.root / key} does not read back"
        return cache

    def _evict(self, keep: str) -> None:
        if self.max_bytes is None:
            return
        entries = sorted(self.entries(), key=lambda e: e.last_used)
        total = sum(e.nbytes for e in entries)
        for e in entries:
            if total <= self.max_bytes:
                break
            if e.path.name != keep:
                shutil.rmtree(e.path, ignore_errors=True)
                total -= e.nbytes
        if total > self.max_bytes:
            log.warning("the prefix cache %s alone exceeds the size cap (%.1f GB)", keep, self.max_bytes / 1e9)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class PrefixStore:
    """Prefix caches shared between runs on one base model (experiments: rows x seeds), in memory and, with a
    `DiskCache`, on disk across processes.

    Keyed by base weights, the messages' token ids and kept widths, and depth. A deeper prefix is built on top
    of the deepest shallower one already stored, so `head`, `last_block` and `last_two_blocks` pay for one pass.
    """

    def __init__(self, disk: DiskCache | None = None, dtype: str = "fp32", dist: Dist = Dist()) -> None:
        self.entries: dict[tuple, PrefixCache] = {}
        self.disk, self.dtype, self.dist = disk, dtype, dist

    def get(self, base: str, classifier: Classifier, ds: TextDataset, fixed_width: int | None,
            split: str) -> PrefixCache:
        digest = ids_digest(ds, stored_widths(classifier, ds, fixed_width))
        key = (base, digest)
        if (*key, classifier.start) in self.entries:
            return self.entries[(*key, classifier.start)]
        desc = f"caching frozen layers ({split})"
        depths = [k[-1] for k in self.entries if k[:-1] == key and k[-1] < classifier.start]
        shallower = (max(depths), self.entries[(*key, max(depths))]) if depths else None
        if self.disk is None:
            cache = build_prefix_cache(classifier, ds, fixed_width, desc=desc, shallower=shallower, dtype=self.dtype)
        else:
            cache = self._from_disk(base, digest, classifier, ds, fixed_width, desc, shallower)
        self.entries[(*key, classifier.start)] = cache
        return cache

    def _from_disk(self, base: str, digest: str, classifier: Classifier, ds: TextDataset, fixed_width: int | None,
                   desc: str, shallower: tuple[int, PrefixCache] | None) -> PrefixCache:
        assert self.disk is not None
        meta = {"base": base, "ids": digest, "depth": classifier.start, "dtype": self.dtype}
        name = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:32]
        # one builder per key across processes (rank 0 of a node takes the lock for its ranks)
        lock = self.disk._lock(name) if self.dist.local_rank == 0 else contextlib.nullcontext()
        with lock:
            hit = self.disk.open(name, ds) if self.dist.local_rank == 0 else None
            if self.dist.enabled:  # every rank of the node learns whether rank 0 found it
                flag = torch.tensor([hit is not None], dtype=torch.int32)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                if flag.item():
                    return hit or self.disk.open_checked(name, ds)
            elif hit is not None:
                return hit
            if shallower is None and (found := self.disk.find_shallower(base, digest, classifier.start)):
                depth, skey = found
                if (cache := self.disk.open(skey, ds)) is not None:
                    shallower = (depth, cache)
            return self.disk.build(name, meta, classifier, ds, fixed_width, desc, shallower, self.dtype, self.dist)


def base_key(args: TrainArgs, source: str, device: torch.device | None = None) -> str:
    """What the frozen weights' output depends on: the weights file `source` by content (random init: the seed
    that drew them; a full-weights warm start: its parent too) and the device type (kernels differ)."""
    key = f"{args.model}|random:{args.seed}" if args.random_init else model_digest(source)
    if args.random_init and args.init_from:
        key += f"|init:{Path(args.init_from).resolve()}"
    return f"{key}|{(device or torch.device('cpu')).type}"


_DIGESTS: dict[tuple, str] = {}


def model_digest(source: str) -> str:
    """sha256 of a model's weight files (a file, or a directory's *.safetensors / *.gguf), once per process per
    (path, size, mtime); a name that is not a local path stays as it is."""
    if not Path(source).exists():
        return source
    files = local_weight_files(source)
    stamp = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp not in _DIGESTS:
        _DIGESTS[stamp] = "sha256:" + hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()
    return _DIGESTS[stamp]
