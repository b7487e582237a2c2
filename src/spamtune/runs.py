"""Run directories: the typed, versioned manifest (`RunConfig`), the file names, and the weight files.

    RUN/run.json           RunConfig: run_id, backend, base model, architecture, tokenizer, task, pooling, scope,
                           max length, calibration and operating point, library versions, sha256 of the data
                           files (format spamtune-run/2)
    RUN/labels.json        the label set (LabelSet)
    RUN/train_args.json    the TrainArgs of the run
    RUN/model.safetensors  the best classifier by validation loss: the trained tensors only when the base weights
                           are a pretrained file (they are re-read from it), every tensor for random-init runs
    RUN/resume/            last epoch's weights, optimizer moments, counters and RNG states (for --resume)
    RUN/data/              a retrained run's data (the champion's splits + corrections; `spamtune retrain`)
    RUN/logits/            the model's logits per message already scored (LogitsMemo): evaluation reuses them
    RUN/log.jsonl, history.json, metrics.json, *.png/*.pdf

Safetensors and JSON only: no pickle, `torch.load` never runs. Every file is written atomically. The manifest is
not named config.json, so a run directory is never mistaken for a transformers model directory (`spamtune
export` makes one); runs written before (format spamtune-run/1, config.json) still load.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from spamtune.calibration.decisions import Calibration, CascadeBands, OperatingPoint
from spamtune.config import (
    Backend,
    DType,
    ModelConfig,
    Normalization,
    Pooling,
    Stack,
    Trainable,
    check_field_types,
)
from spamtune.data.labels import TaskName
from spamtune.errors import CheckpointError, ConfigError
from spamtune.fsutil import atomic_file, read_json, sha256_file, write_json

FORMAT = "spamtune-run/2"
LEGACY_FORMAT = "spamtune-run/1"
MANIFEST, LEGACY_MANIFEST = "run.json", "config.json"
LABELS, TRAIN_ARGS, WEIGHTS, RESUME = "labels.json", "train_args.json", "model.safetensors", "resume"
RUN_DATA = "data"
LOGITS = "logits"
DATA_FILES = ("train.csv", "validation.csv", "test.csv", "unused.csv", "labels.json")

log = logging.getLogger(__name__)


@dataclass
class LoraSpec:
    rank: int = 16
    alpha: int = 16


@dataclass
class RunConfig:
    """What a run is, enough to rebuild its model for prediction: the manifest run.json.

    Scratch runs carry `architecture` and `head_bias`; `--backend hf` runs carry `head` (the modules
    `from_pretrained` initialised) and `dtype`. `thresholds` are multi-label runs' per-label thresholds.
    """

    run_id: str
    backend: Backend
    model: str  # the spec the base weights are re-read from (an absolute path for files)
    task: TaskName
    num_classes: int
    max_length: int
    pooling: Pooling
    trainable: Trainable
    weights: Literal["full", "trainable"]  # what model.safetensors holds
    tokenizer: str  # a tokenizers.load_tokenizer spec; "transformers" for the hf backend
    lora: LoraSpec | None = None
    architecture: ModelConfig | None = None
    random_init: bool = False
    head_bias: bool | None = None
    head: list[str] | None = None
    dtype: DType = "fp32"
    normalize: Normalization = "none"  # runs from before normalization read raw text
    stack: Stack = "none"  # ngrams: RUN/stack.safetensors combines the logits with an n-gram model (stacking.py)
    seed: int = 123
    thresholds: list[float] | None = None
    calibration: Calibration | None = None  # single-label runs: the temperature fitted on validation
    operating_point: OperatingPoint | None = None  # binary runs: block / review thresholds (decisions.py)
    cascade: CascadeBands | None = None  # --cascade ngrams: RUN/cascade.safetensors decides in these bands
    data_dir: str | None = None  # where it was trained (resume reads it again)
    replaces: str | None = None  # while training with --overwrite: the run this one replaces when it finishes
    parent: str | None = None  # the run_id a warm start (--init-from) began from
    data: dict[str, str] = field(default_factory=dict)  # prepared file -> sha256 at training time
    versions: dict[str, str | None] = field(default_factory=dict)  # spamtune, torch, transformers, python
    created: str = ""
    format: str = FORMAT

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.num_classes < 1 or self.max_length < 1:
            raise ConfigError("num_classes and max_length must be at least 1")
        if self.backend == "scratch" and self.architecture is None:
            raise ConfigError("a scratch run needs its architecture")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Any, where: str) -> RunConfig:
        """Validate a manifest object (either format); anything missing or of the wrong type is one
        `CheckpointError` naming the file."""
        if not isinstance(d, dict) or d.get("format") not in (FORMAT, LEGACY_FORMAT):
            raise CheckpointError(f"{where}: not a spamtune run manifest (format {FORMAT})")
        d = _upgrade(dict(d), where)
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(d) - known:
            raise CheckpointError(f"{where}: unknown keys {sorted(unknown)} (incompatible or damaged manifest)")
        try:
            arch = d.get("architecture")
            if isinstance(arch, dict):
                d["architecture"] = ModelConfig.from_dict(arch)
            for name, kind in (("lora", LoraSpec), ("calibration", Calibration), ("operating_point", OperatingPoint),
                               ("cascade", CascadeBands)):
                if isinstance(d.get(name), dict):
                    d[name] = kind(**d[name])
                    check_field_types(d[name])  # a band that is not a number fails here, not mid-request
            return cls(**d)
        except (TypeError, ConfigError) as e:
            raise CheckpointError(f"{where}: incompatible or damaged manifest ({e})") from None

    @classmethod
    def from_dir(cls, run_dir: str | os.PathLike) -> RunConfig:
        run_dir = Path(run_dir)
        path = run_dir / MANIFEST
        if not path.is_file() and (run_dir / LEGACY_MANIFEST).is_file():
            path = run_dir / LEGACY_MANIFEST
        return cls.from_json(read_json(path, CheckpointError), str(path))

    def write(self, run_dir: str | os.PathLike) -> None:
        write_json(Path(run_dir) / MANIFEST, self.to_json())


def _upgrade(d: dict[str, Any], where: str) -> dict[str, Any]:
    """A spamtune-run/1 config.json (no run_id, versions or data hashes; backend implied) as format 2."""
    if d["format"] == FORMAT:
        return d
    d["format"] = FORMAT
    d.setdefault("backend", "scratch")
    d.setdefault("task", "single_label")
    d.setdefault("run_id", "legacy-" + secrets.token_hex(4))
    if d["backend"] == "scratch":
        d.setdefault("head_bias", True)  # runs written before `head_bias` was recorded all had the book's head
    return d


def is_run_dir(path: str | os.PathLike) -> bool:
    """A directory with a readable spamtune run manifest (either format)."""
    try:
        RunConfig.from_dir(path)
    except CheckpointError:
        return False
    return True


def new_run_id() -> str:
    """A sortable, unique id: UTC time of creation + 6 random hex digits, e.g. 20261124T101500Z-3f9a1c."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def library_versions() -> dict[str, str | None]:
    """The versions a run was trained with (None: not installed)."""
    import platform

    def of(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    return {"spamtune": of("spamtune"), "torch": torch.__version__, "transformers": of("transformers"),
            "python": platform.python_version()}


def data_hashes(data_dir: str | os.PathLike) -> dict[str, str]:
    """sha256 of each prepared file of a data directory (the ones present)."""
    data_dir = Path(data_dir)
    return {name: sha256_file(data_dir / name) for name in DATA_FILES if (data_dir / name).is_file()}


def created_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------------------
# Weight files


def weights_to_save(module: nn.Module, full: bool) -> dict[str, torch.Tensor]:
    """Every tensor (full) or the trainable ones, detached, contiguous and on the CPU, by parameter name."""
    if full:
        return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return {k: p.detach().cpu().contiguous() for k, p in module.named_parameters() if p.requires_grad}


def load_weights_into(module: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Load saved tensors by name; an unknown name or shape means the checkpoint is not for this model."""
    own = dict(module.state_dict())
    for name, t in tensors.items():
        if name not in own:
            raise CheckpointError(f"{where}: tensor {name!r} does not exist in the model (incompatible checkpoint)")
        if own[name].shape != t.shape:
            raise CheckpointError(f"{where}: {name} has shape {tuple(t.shape)}, the model expects "
                                  f"{tuple(own[name].shape)} (incompatible checkpoint)")
    module.load_state_dict(tensors, strict=False)


# ---------------------------------------------------------------------------------------------------------------
# The model's logits, kept


def text_keys(texts: list[str]) -> list[bytes]:
    """A 16-byte BLAKE2b digest per text: what the memo is keyed by."""
    return [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts]


def memo_setting(run_dir: Path, run_config: RunConfig, dtype: str, quantize: str | None, device: str) -> dict:
    """What the model's logits depend on besides the text: the run's trained weights (by content), its base weights
    and a tokenizer directory's tokenizer.json (by path, size and mtime), its width and normalization, the
    precision, quantization, device type and torch."""
    from spamtune.weights.sources import local_weight_files

    tokenizer = Path(run_config.tokenizer) / "tokenizer.json"
    files = [*local_weight_files(run_config.model), *([tokenizer] if tokenizer.is_file() else [])]
    return {"run_id": run_config.run_id, "weights": sha256_file(run_dir / WEIGHTS),
            "base": [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files] or run_config.model,
            "max_length": run_config.max_length, "normalize": run_config.normalize, "dtype": dtype,
            "quantize": quantize, "device": device, "torch": torch.__version__}


class LogitsMemo:
    """The fine-tuned model's own logits (and whether the text was truncated) per message text, kept in
    RUN/logits/ so that the same model never scores a message twice: training leaves what it scored after the fit
    (the training split from its cached prefix, validation, the calibration ham), `spamtune evaluate` reads them
    and adds what it scored. One file per `memo_setting`: a memo made at another precision, on another device or
    for other weights is never read. A damaged file is a cache miss (one warning), never an error."""

    def __init__(self, run_dir: str | os.PathLike, setting: dict) -> None:
        digest = hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:32]
        self.path = Path(run_dir) / LOGITS / f"{digest}.safetensors"
        self.rows: dict[bytes, tuple[np.ndarray, bool]] = {}
        self.scored = self.reused = 0  # distinct texts scored and added; messages answered without scoring
        self.unsaved = False
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        from safetensors import SafetensorError
        from safetensors.numpy import load

        try:
            t = load(self.path.read_bytes())
            keys, logits, truncated = t["keys"], t["logits"], t["truncated"]
            if keys.ndim != 2 or keys.shape[1] != 16 or logits.ndim != 2 or not (
                    len(keys) == len(logits) == len(truncated)):
                raise ValueError("inconsistent shapes")
        except (SafetensorError, KeyError, ValueError, OSError) as e:
            log.warning("%s: unreadable (%s); scoring again", self.path, e)
            return
        self.rows = {k.tobytes(): (row, bool(cut)) for k, row, cut in zip(keys, logits.astype(np.float32), truncated)}

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, keys: list[bytes]) -> list[tuple[np.ndarray, bool] | None]:
        return [self.rows.get(k) for k in keys]

    def add(self, texts: list[str], logits: np.ndarray, truncated: list[bool]) -> None:
        assert len(texts) == len(logits) == len(truncated)
        for k, row, cut in zip(text_keys(texts), logits, truncated):
            self.scored += k not in self.rows
            self.unsaved = True
            self.rows[k] = (np.asarray(row, dtype=np.float32), bool(cut))

    def save(self) -> None:
        """Write the memo if anything was added (atomically; a concurrent writer's memo is replaced, not mixed)."""
        if not self.unsaved:
            return
        from safetensors.numpy import save

        keys = list(self.rows)
        data = save({"keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16),
                     "logits": np.stack([self.rows[k][0] for k in keys]),
                     "truncated": np.array([self.rows[k][1] for k in keys], dtype=np.uint8)})
        with atomic_file(self.path, "wb") as f:
            f.write(data)
        self.unsaved = False
