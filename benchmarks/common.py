"""Shared by the benchmark scripts (run as `python -m benchmarks.NAME` from the repository root): where a figure
was measured, and appending it to RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def append_results(title: str, command: str, body: str) -> None:
    """One dated section per benchmark run, newest last."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"\n## {title}\n\n{stamp} · commit {commit()} · {machine()}\n\n"
               f"Command: `{command}`\n\n{body.rstrip()}\n")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEvery section was appended by the script it names; figures are "
                           "measured, never edited by hand.\n")
    with open(RESULTS, "a") as f:
        f.write(section)


def publish(title: str, body: str, record: bool = True) -> None:
    """Print the figures and, unless told not to, append them to RESULTS.md with the command that made them."""
    print(body)
    if record:
        append_results(title, " ".join([f"python -m benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]), body)
