"""Evaluation: a run scored on every split of a data directory, with the task's metrics, the false-positive rate
on unused ham, and the report `spamtune evaluate` prints (report.py)."""

from spamtune.evaluation.report import evaluate_run, format_report

__all__ = ["evaluate_run", "format_report"]
