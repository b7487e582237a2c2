"""`--runtime onnx`: a run exported by `spamtune export --format onnx`, scored by ONNX Runtime.

The export directory holds the run's manifest and labels, so `load_onnx_run` gives the same `LoadedRun` as a
torch run with an `OnnxPredictor` in place of the module: tokenization, calibration, thresholds and decisions are
the torch path's own (inference/api.py). The CUDA execution provider is used when asked for and present.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spamtune.calibration.stacking import NgramStack, load_cascade
from spamtune.data.labels import LabelSet
from spamtune.errors import CheckpointError, ConfigError, DataError
from spamtune.fsutil import read_json
from spamtune.inference.loading import LoadedRun
from spamtune.runs import LABELS, RunConfig

ONNX_MODEL, ONNX_INT8 = "model.onnx", "model.int8.onnx"
INPUTS = {"input_ids": 2, "lengths": 1}  # name -> rank; both int64


def check_graph(path: Path, num_labels: int) -> None:
    """Before ONNX Runtime allocates anything: the graph takes exactly spamtune's inputs (int64 input_ids (B, T) and
    lengths (B,)) and gives float logits (B, num_labels); every tensor stored outside the file lies inside the
    export directory, in a file that holds all the bytes its shape and type declare."""
    import onnx
    from onnx import TensorProto, helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # a truncated or foreign file: protobuf's own errors
        raise CheckpointError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
    graph, where = model.graph, str(path)
    initializers = {t.name for t in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in initializers}
    if set(inputs) != set(INPUTS):
        raise CheckpointError(f"{where}: the graph takes {sorted(inputs)}, not spamtune's input_ids and lengths "
                              "(not a spamtune export)")
    for name, rank in INPUTS.items():
        t = inputs[name].type.tensor_type
        if t.elem_type != TensorProto.INT64 or len(t.shape.dim) != rank:
            raise CheckpointError(f"{where}: input {name} must be int64 of rank {rank}")
    outputs = {o.name: o for o in graph.output}
    if "logits" not in outputs:
        raise CheckpointError(f"{where}: the graph has no logits output (outputs: {sorted(outputs)})")
    t = outputs["logits"].type.tensor_type
    dims = t.shape.dim
    if t.elem_type != TensorProto.FLOAT or len(dims) != 2:
        raise CheckpointError(f"{where}: logits must be float32 of rank 2")
    if dims[1].HasField("dim_value") and dims[1].dim_value != num_labels:
        raise CheckpointError(f"{where}: the graph gives {dims[1].dim_value} logits per message, the run has "
                              f"{num_labels} labels")
    root = path.parent.resolve()
    for tensor in graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = Path(info.get("location", ""))
        target = (root / location).resolve()
        if location.is_absolute() or not target.is_relative_to(root) or not target.is_file():
            raise CheckpointError(f"{where}: tensor {tensor.name} is stored outside the export directory or in a "
                                  f"missing file ({location})")
        need = math.prod(int(d) for d in tensor.dims) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        offset, length = int(info.get("offset", 0)), int(info.get("length", need))
        if length != need or offset < 0 or offset + length > target.stat().st_size:
            raise CheckpointError(f"{where}: tensor {tensor.name} declares {need} bytes that {location} does not "
                                  "hold (damaged or forged external data)")


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

    def check_width(self, num_labels: int) -> None:
        """A symbolic output width is checked on one message: (1, num_labels) logits, finite."""
        try:
            logits = self(torch.ones(1, 2, dtype=torch.long), torch.tensor([2]))
        except Exception as e:
            raise CheckpointError(f"{self.path}: the graph fails on a two-token message "
                                  f"({str(e).splitlines()[0][:200]})") from None
        if tuple(logits.shape) != (1, num_labels) or not bool(torch.isfinite(logits).all()):
            raise CheckpointError(f"{self.path}: the graph gives logits of shape {tuple(logits.shape)} for one "
                                  f"message, not (1, {num_labels}) finite values")

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
    run_config = RunConfig.from_dir(export_dir)
    try:
        label_set = LabelSet.from_json(read_json(export_dir / LABELS, CheckpointError), str(export_dir / LABELS))
    except DataError as e:
        raise CheckpointError(str(e)) from None
    tokenizer = load_run_tokenizer(run_config, export_dir)
    check_graph(export_dir / name, len(label_set))
    predictor = OnnxPredictor(export_dir / name, device)
    predictor.check_width(len(label_set))
    stack = NgramStack.load(export_dir, run_config.normalize) if run_config.stack == "ngrams" else None
    cascade = load_cascade(export_dir, run_config.normalize) if run_config.cascade is not None else None
    return LoadedRun(predictor, predictor, run_config, label_set, tokenizer, export_dir, stack, cascade)
