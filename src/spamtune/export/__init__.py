"""Export: a run as a directory another ecosystem loads with the same probabilities (hf.py: transformers'
`AutoModelForSequenceClassification`)."""

from spamtune.export.hf import export_hf
from spamtune.export.onnx import export_onnx

__all__ = ["export_hf", "export_onnx"]
