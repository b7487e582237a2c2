"""`spamtune export --format onnx`: the whole classifier as an ONNX graph with dynamic batch and sequence axes, for
ONNX Runtime (`--runtime onnx` in classify, evaluate and serve).

Inputs `input_ids` (B, T) int64 right-padded and `lengths` (B,) int64; output `logits` (B, C), uncalibrated (the
run's temperature and operating point are applied by spamtune as for torch). Exported with torch.onnx's dynamo
exporter (`torch.export` underneath) for spamtune's GPT-2/Llama modules and for `--backend hf` runs alike; the
manifest, labels and tokenizer files go beside the graph. `--quantize int8` adds model.int8.onnx: ONNX Runtime's
dynamic quantization (int8 weights per output channel, activations quantized per batch), keeping the sensitive
layers in fp32 (`KEEP_FP32`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spamtune.calibration.stacking import CASCADE_FILE, STACK_FILE
from spamtune.errors import ConfigError
from spamtune.export.hf import EXPORT_MARKER, _hf_tokenizer, check_export_dir
from spamtune.fsutil import atomic_dir, write_json
from spamtune.inference import load_run
from spamtune.inference.onnx_runtime import ONNX_INT8, ONNX_MODEL
from spamtune.inference.precision import prepare_for_inference
from spamtune.runs import LABELS, created_now

OPSET = 18


class _Graph(nn.Module):
    """The predictor with named inputs, as the graph's signature."""

    def __init__(self, predictor: nn.Module) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.predictor(input_ids, lengths)


def export_onnx(run_dir: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
                quantize: str | None = None) -> Path:
    """Write model.onnx (+ model.int8.onnx), run.json, labels.json and the tokenizer files into `out` (atomic)."""
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize must be int8, not {quantize!r}")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("--format onnx needs onnx and onnxruntime: pip install 'spamtune[onnx]'") from None
    check_export_dir(run_dir, out, overwrite)
    run = load_run(run_dir)
    graph = _Graph(prepare_for_inference(run.predictor)).eval()  # LoRA merged, fp32
    config = run.run_config
    width = min(config.max_length, 16)
    ids = torch.full((2, width), run.tokenizer.pad_id, dtype=torch.long)
    ids[:, : width // 2] = 1
    lengths = torch.tensor([width // 2, width], dtype=torch.long)
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=1,
                                                                               max=max(config.max_length, 2))
    marker = {"format": "spamtune-export/1", "runtime": "onnx", "run_id": config.run_id,
              "run": str(Path(run_dir).resolve()), "created": created_now(), "opset": OPSET,
              "int8": quantize == "int8", "operating_point": dataclasses.asdict(config.operating_point)
              if config.operating_point else None}
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        with torch.no_grad():
            program = torch.onnx.export(graph, (ids, lengths), dynamo=True, opset_version=OPSET,
                                        input_names=["input_ids", "lengths"], output_names=["logits"],
                                        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "lengths": {0: batch}},
                                        optimize=True, verbose=False)
        assert program is not None
        program.save(str(tmp / ONNX_MODEL), external_data=False)
        if quantize == "int8":
            arch = config.architecture
            marker["int8_fp32_nodes"] = len(quantize_int8(tmp / ONNX_MODEL, tmp / ONNX_INT8,
                                                          arch.n_layers if arch else None))
        config.write(tmp)
        shutil.copy(Path(run_dir) / LABELS, tmp / LABELS)
        if run.stack is not None:  # the n-gram half runs beside the graph, as in the run (stacking.py)
            shutil.copy(Path(run_dir) / STACK_FILE, tmp / STACK_FILE)
        if run.cascade is not None:  # so is the cascade's n-gram model
            shutil.copy(Path(run_dir) / CASCADE_FILE, tmp / CASCADE_FILE)
        _write_tokenizer(run, tmp)
        write_json(tmp / EXPORT_MARKER, marker)
    return Path(out)


# int8 keeps these in fp32 (a MatMul whose weight's name matches): the class head, the MLPs' output projections
# (the widest activations: int8 activations clip their outliers) and the last block, which is the trained one by
# default. Measured on SmolLM2's default run: 98.3 % label agreement with all MatMuls in int8, 99.4 % keeping the
# output projections, 99.5 % keeping both (benchmarks/RESULTS.md, "Deployment runtimes").
KEEP_FP32 = ("out_head", "score", "classifier", "ff_fc3", "ff_layers_2", "mlp_down_proj", "output_dense")


def weight_of(node: Any) -> str:
    """The torch parameter a dynamo-exported MatMul multiplies by (from the exporter's fx_node metadata), or ''."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.fx_node":
            found = re.findall(r"%p_([A-Za-z0-9_]+)", prop.value)
            return found[-1] if found else ""
    return ""


def quantize_int8(src: Path, dest: Path, n_layers: int | None) -> list[str]:
    """ONNX Runtime dynamic int8 (weights per output channel, activations per batch) of every MatMul except those
    `KEEP_FP32` and the last block's names. Returns the nodes kept in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    last = f"trf_blocks_{n_layers - 1}_" if n_layers else None
    model = onnx.load(str(src), load_external_data=False)
    keep = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and (w := weight_of(n))
            and (any(k in w for k in KEEP_FP32) or (last is not None and last in w))]
    quantize_dynamic(str(src), str(dest), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=keep)
    return keep


def _write_tokenizer(run: Any, tmp: Path) -> None:
    if run.run_config.backend == "hf":
        run.tokenizer.tok.save_pretrained(tmp)
        return
    _hf_tokenizer(run.run_config.tokenizer, run.tokenizer.pad_id).save_pretrained(tmp)
