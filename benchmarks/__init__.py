"""Benchmarks: scripts that measure spamtune and append their figures to RESULTS.md. Run each from the
repository root as `python -m benchmarks.NAME --help`."""
