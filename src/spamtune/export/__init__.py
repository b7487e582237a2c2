"""Export: a run as a directory another ecosystem loads with the same probabilities (hf.py: transformers'
`AutoModelForSequenceClassification`)."""

from spamtune.export.hf import export_hf

__all__ = ["export_hf"]
