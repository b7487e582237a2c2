"""`--runtime onnx`: a run exported by `spamtune export --format onnx`, scored by ONNX Runtime.

The export directory holds the run's manifest and labels, so `load_onnx_run` gives the same `LoadedRun` as a
torch run with an `OnnxPredictor` in place of the module: tokenization, calibration, thresholds and decisions are
the torch path's own (inference/api.py). The CUDA execution provider is used when asked for and present.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spamtune.data.labels import LabelSet
from spamtune.errors import CheckpointError, ConfigError, DataError
from spamtune.fsutil import read_json
from spamtune.inference.loading import LoadedRun
from spamtune.runs import LABELS, RunConfig
from spamtune.stacking import NgramStack

ONNX_MODEL, ONNX_INT8 = "model.onnx", "model.int8.onnx"


class OnnxPredictor(nn.Module):
    """(B, T) ids + (B,) lengths -> (B, C) logits through an ONNX Runtime session (CPU tensors in and out)."""

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError("--runtime onnx --device cuda: this onnxruntime has no CUDA provider "
                                  "(install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for a damaged file
            raise CheckpointError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
        self.path = path

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(["logits"], {"input_ids": input_ids.cpu().numpy().astype(np.int64),
                                                  "lengths": lengths.cpu().numpy().astype(np.int64)})
        return torch.from_numpy(logits)


def load_onnx_run(export_dir: str | os.PathLike, quantize: str | None = None, device: str = "cpu") -> LoadedRun:
    """An ONNX export directory as a `LoadedRun` (int8: its model.int8.onnx)."""
    from spamtune.backends import load_run_tokenizer

    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise CheckpointError(f"no such directory: {export_dir}")
    name = ONNX_INT8 if quantize == "int8" else ONNX_MODEL
    if not (export_dir / name).is_file():
        hint = (f"export it with: spamtune export RUN --format onnx{' --quantize int8' if quantize else ''} "
                f"--out {export_dir}")
        raise CheckpointError(f"{export_dir}: no {name}; --runtime onnx reads an ONNX export ({hint})")
    run = RunConfig.from_dir(export_dir)
    try:
        label_set = LabelSet.from_json(read_json(export_dir / LABELS, CheckpointError), str(export_dir / LABELS))
    except DataError as e:
        raise CheckpointError(str(e)) from None
    tokenizer = load_run_tokenizer(run, export_dir)
    predictor = OnnxPredictor(export_dir / name, device)
    stack = NgramStack.load(export_dir, run.normalize) if run.stack == "ngrams" else None
    return LoadedRun(predictor, predictor, run, label_set, tokenizer, export_dir, stack)
