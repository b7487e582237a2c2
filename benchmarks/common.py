"""Shared by the benchmark scripts (run as `python -m benchmarks.NAME` from the repository root): where a figure
was measured, appending it to RESULTS.md, and `spamtune serve` in a subprocess."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    from spamtune.devices import native_bf16

    # one marketing name covers CPUs with and without bf16 in hardware, which decides what bf16 costs here
    bf16 = "bf16 native" if native_bf16(torch.device("cpu")) else "bf16 emulated"
    return (f"{model} ({bf16}), {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


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


def chart_path(given: Path | None, committed: Path, record: bool) -> Path | None:
    """Where a benchmark draws its chart: `--chart` when given, else its committed chart beside the script, but only
    for a recorded run: a `--no-record` trial leaves the committed chart as it is (None: draw nothing)."""
    return given or (committed if record else None)


def publish(title: str, body: str, record: bool = True) -> None:
    """Print the figures and, unless told not to, append them to RESULTS.md with the command that made them."""
    print(body)
    if record:
        append_results(title, " ".join([f"python -m benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]), body)


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """A process's memory figures from /proc/PID/status in MB: RssAnon (what the process itself holds, the figure
    to watch when a memory-mapped cache keeps file pages resident), VmRSS and VmHWM (peak RSS)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def spamtune_server(args: list[str], wait_s: float = 120, **popen) -> Iterator[tuple[str, subprocess.Popen]]:
    """`spamtune serve ARGS` on a free loopback port: waits up to `wait_s` for /health, yields (url, process),
    then stops it cleanly (terminate: the store's writer flushes what is queued)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "spamtune", "serve", *args, "--port", str(port)],
                              **{"stdout": subprocess.DEVNULL, **popen})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield url, server
    finally:
        server.terminate()
        server.wait(30)
