"""The deployment table: each runtime x precision on the same messages, in one run.

Rows: torch fp32 / bf16 / dynamic int8 (torch.ao, experimental), ONNX Runtime fp32 / int8 (the export's
model.int8.onnx). Per row: p50/p95 latency for 1 and 8 messages, throughput on the test split, label agreement
with torch fp32 on the test split and the unused ham, FPR on the report half of the unused ham at the stored
operating point, peak RSS of a serving process (`spamtune serve`, after 40 requests), and the model files on
disk. Every row is measured in its own process (a clean RSS), one after another.

    python -m benchmarks.deploy runs/default --export exported/onnx --data-dir data
    (spamtune export runs/default --format onnx --quantize int8 --out exported/onnx makes the export)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.common import publish, spamtune_server
from spamtune.calibration.decisions import binary_rates

ROWS = {  # name: (runtime, dtype, quantize)
    "torch fp32": ("torch", "fp32", None),
    "torch bf16": ("torch", "bf16", None),
    "torch int8 (torch.ao dynamic; experimental)": ("torch", "fp32", "int8"),
    "ONNX Runtime fp32": ("onnx", "fp32", None),
    "ONNX Runtime int8": ("onnx", "fp32", "int8"),
}


def worker(run: str, export: str, data_dir: str, row: str, out: str) -> None:
    """One row, in this process: latencies, throughput, probabilities of every message (saved for agreement)."""
    from spamtune.data import read_split
    from spamtune.inference import TextClassifier

    runtime, dtype, quantize = ROWS[row]
    clf = TextClassifier.load(export if runtime == "onnx" else run, dtype, quantize, "cpu", runtime)
    test = list(read_split(Path(data_dir) / "test.csv")["Text"])
    unused = list(read_split(Path(data_dir) / "unused.csv")["Text"])
    lat = {}
    for n in (1, 8):
        clf.predict_proba(test[:n])  # warm-up
        times = []
        for i in range(30):
            batch = [test[(i * n + j) % len(test)] for j in range(n)]
            start = time.perf_counter()
            clf.predict_proba(batch)
            times.append((time.perf_counter() - start) * 1000)
        lat[n] = (float(np.percentile(times, 50)), float(np.percentile(times, 95)))
    start = time.perf_counter()
    p_test = clf.predict_proba(test, batch_size=16)
    throughput = len(test) / (time.perf_counter() - start)
    p_unused = clf.predict_proba(unused, batch_size=16)
    labels = np.concatenate([clf.predict(test), clf.predict(unused)])
    np.savez(out, p_test=p_test, p_unused=p_unused, labels=labels.astype(str))
    Path(out + ".json").write_text(json.dumps({"lat": lat, "throughput": throughput,
                                               "block": clf.block_threshold()}))


def serve_rss(target: str, runtime: str, dtype: str, quantize: str | None, texts: list[str]) -> float:
    """Peak RSS (VmHWM, MB) of `spamtune serve` for a row after 40 requests of 8 messages."""
    args = [target, "--runtime", runtime, "--dtype", dtype, "--device", "cpu", "--no-store", "--no-access-log",
            *(["--quantize", quantize] if quantize else [])]
    with spamtune_server(args, wait_s=180, stderr=subprocess.DEVNULL) as (url, server):
        for i in range(40):
            body = json.dumps({"inputs": [texts[(i * 8 + j) % len(texts)] for j in range(8)]}).encode()
            req = urllib.request.Request(url + "/predict", body, {"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=120).read()
        status = Path(f"/proc/{server.pid}/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def files_mb(run: Path, export: Path, runtime: str, quantize: str | None) -> float:
    if runtime == "onnx":
        return (export / ("model.int8.onnx" if quantize else "model.onnx")).stat().st_size / 1e6
    from spamtune.weights.load import embedded_gguf_path

    # a run stores its trained tensors; the base weights come from the embedded GGUF
    return ((run / "model.safetensors").stat().st_size + embedded_gguf_path().stat().st_size) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--export", type=Path, required=True, help="the run's ONNX export (with --quantize int8)")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    if a.worker:
        worker(str(a.run), str(a.export), str(a.data_dir), a.worker, a.out)
        return
    from spamtune.calibration.decisions import split_halves
    from spamtune.data import read_split

    test = read_split(a.data_dir / "test.csv")
    unused = list(read_split(a.data_dir / "unused.csv")["Text"])
    validation = set(read_split(a.data_dir / "validation.csv")["Text"])
    report_half = split_halves(unused)[1] & np.array([t not in validation for t in unused])  # as evaluate does
    results = {}
    for row in a.rows.split(","):
        out = f"/tmp/deploy-{abs(hash(row))}"
        subprocess.run([sys.executable, "-m", "benchmarks.deploy", str(a.run), "--export", str(a.export),
                        "--data-dir", str(a.data_dir), "--worker", row, "--out", out], check=True)
        data = np.load(out + ".npz")
        results[row] = ({k: data[k] for k in data.files}, json.loads(Path(out + ".json").read_text()))
        runtime, dtype, quantize = ROWS[row]
        results[row][1]["rss"] = serve_rss(str(a.export if runtime == "onnx" else a.run), runtime, dtype, quantize,
                                           list(test["Text"]))
        results[row][1]["mb"] = files_mb(a.run, a.export, runtime, quantize)
        print(row, results[row][1], flush=True)
    base = results["torch fp32"][0]
    base_tput = results["torch fp32"][1]["throughput"]
    n_test = len(test)
    lines = ["| runtime | p50 / p95 ms, 1 msg | p50 / p95 ms, 8 msgs | test msgs/s | vs torch fp32 | agreement test "
             f"({n_test}) | agreement unused ({len(unused)}) | FPR report half | serve peak RSS (MB) | files (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row, (d, m) in results.items():
        agree_test = (d["labels"][:n_test] == base["labels"][:n_test]).mean()
        agree_unused = (d["labels"][n_test:] == base["labels"][n_test:]).mean()
        ham = d["labels"][n_test:][report_half]
        fpr = binary_rates(np.zeros(len(ham), dtype=int), ham == "spam")["fpr"]
        lines.append(f"| {row} | {m['lat']['1'][0]:.0f} / {m['lat']['1'][1]:.0f} | {m['lat']['8'][0]:.0f} / "
                     f"{m['lat']['8'][1]:.0f} | {m['throughput']:.1f} | {m['throughput'] / base_tput:.2f}x | "
                     f"{agree_test:.2%} | {agree_unused:.2%} | {fpr:.2%} | {m['rss']:.0f} | {m['mb']:.0f} |")
    publish("Deployment runtimes: torch, ONNX Runtime, int8", "\n".join(lines + [
        "", "Each row in its own process on the same messages; CPU, batch 16 for throughput; agreement is the "
        "decided label (stored operating point) against torch fp32; torch rows' files are the run's trained "
        "tensors plus the embedded base GGUF (Q4_1, dequantized at load)."]), record=not a.no_record)


if __name__ == "__main__":
    main()
