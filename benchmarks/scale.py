"""Training and evaluation as the data grows: wall time and peak RSS at 1x, 4x and 16x the balanced training set,
with the frozen-prefix cache in memory and on disk (memory-mapped), plus `classify --engine ray` throughput with
1 and 2 workers.

Growing the data: 1x is data/train.csv (the book's balanced split). Larger sizes add the natural-distribution
messages of the corpus that no split holds (the unused ham, all of it) and, past that, synthetic variants of the
training messages: each copy k of a message gets a deterministic edit (k-th scheme of: upper-case, an appended
" (k)", doubled spaces, a trailing punctuation mark, the first word repeated) so its token ids differ and the
prefix cache cannot share rows. Validation and test stay as they are.

    python -m benchmarks.scale runs/default --data-dir data --sizes 1,4,16 [--dtype bf16]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import memory_mb, publish

EDITS = (str.upper, lambda t, k: f"{t} ({k})", lambda t: t.replace(" ", "  "), lambda t: t + "!",
         lambda t: f"{t.split(' ', 1)[0]} {t}")


def edit(text: str, k: int) -> str:
    fn = EDITS[k % len(EDITS)]
    return fn(text, k) if fn is EDITS[1] else fn(text)  # type: ignore[call-arg]


def grown_data(data_dir: Path, factor: int, out: Path) -> int:
    """A data directory whose train.csv is `factor` times data/train.csv (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("validation.csv", "test.csv", "labels.json"):
        shutil.copy(data_dir / name, out / name)
    train = pd.read_csv(data_dir / "train.csv")
    target = factor * len(train)
    parts = [train]
    if factor > 1:
        parts.append(pd.read_csv(data_dir / "unused.csv")[["Label", "Text"]])
    k = 1
    while sum(len(p) for p in parts) < target:
        parts.append(train.assign(Text=[edit(t, k) for t in train["Text"]]))
        k += 1
    grown = pd.concat(parts, ignore_index=True)[:target]
    grown.to_csv(out / "train.csv", index=False)
    return len(grown)


def measured(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS, peak anonymous RSS in MB) of a command that must succeed. Peak RSS is VmHWM; it
    counts the memory-mapped cache's pages the kernel keeps resident (page cache, reclaimable), so the peak of
    RssAnon (polled) is the memory the process itself holds."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"VmHWM": 0.0, "RssAnon": 0.0}

    def poll() -> None:
        while proc.poll() is None:
            try:
                now = memory_mb(proc.pid)
            except OSError:  # the process has just ended
                break
            peak.update({k: max(v, now.get(k, 0.0)) for k, v in peak.items()})  # a zombie has no RssAnon
            time.sleep(0.1)

    t = threading.Thread(target=poll)
    t.start()
    _, err = proc.communicate()
    t.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return time.perf_counter() - start, peak["VmHWM"], peak["RssAnon"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished run (for the Ray throughput rows)")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="train and evaluate precision")
    ap.add_argument("--ray-messages", type=int, default=1000, help="messages scored per Ray row (0: skip)")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    spamtune = [sys.executable, "-m", "spamtune"]
    rows = ["| size | train messages | cache | train wall (s) | train peak RSS (MB) | train peak anonymous RSS (MB) | "
            "evaluate wall (s) | evaluate peak RSS (MB) |", "|---|---|---|---|---|---|---|---|"]
    precision = ["--dtype", a.dtype, "--device", a.device]
    with tempfile.TemporaryDirectory() as tmp:
        for factor in map(int, a.sizes.split(",")):
            data = Path(tmp) / f"data{factor}"
            n = grown_data(a.data_dir, factor, data)
            for cache in ("none", "disk"):
                cache_dir = "none" if cache == "none" else str(Path(tmp) / "cache")
                run = Path(tmp) / f"run{factor}{cache}"
                train_s, train_rss, train_anon = measured(
                    [*spamtune, "train", "--data-dir", str(data), "--out", str(run), "--epochs", str(a.epochs),
                     "--cache-dir", cache_dir, *precision])
                evaluated = ""
                if cache == "disk":  # evaluate does not use the prefix cache: once per size
                    eval_s, eval_rss, _ = measured([*spamtune, "evaluate", str(run), "--data-dir", str(data),
                                                    "--json", "--no-unused", *precision])
                    evaluated = f" {eval_s:.0f} | {eval_rss:.0f} |"
                rows.append(f"| {factor}x | {n} | {'in memory' if cache == 'none' else 'on disk (mmap)'} | "
                            f"{train_s:.0f} | {train_rss:.0f} | {train_anon:.0f} |{evaluated or ' | |'}")
                print(rows[-1], flush=True)
                shutil.rmtree(run)
            shutil.rmtree(Path(tmp) / "cache", ignore_errors=True)  # each size builds its own cache
        ray_rows = ray_throughput(a.run, a.data_dir, a.ray_messages, Path(tmp)) if a.ray_messages else []
    body = "\n".join([*rows, "", f"SmolLM2-135M, last block, {a.epochs} epoch(s), {a.dtype}, device {a.device}; "
                      "evaluate scores train (which grows), validation and test, in blocks of rows. Peak RSS is "
                      "VmHWM (it includes the resident pages of the memory-mapped cache, which the kernel can "
                      "drop); anonymous RSS is what the process itself holds.", "", *ray_rows])
    publish("Scale: data size, in-memory vs disk prefix cache, Ray workers", body, record=not a.no_record)


def ray_throughput(run: Path, data_dir: Path, n: int, tmp: Path) -> list[str]:
    texts = pd.read_csv(data_dir / "unused.csv")["Text"].tolist()
    texts = (texts * (n // len(texts) + 1))[:n]
    src = tmp / "ray.txt"
    src.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
    out = ["| engine | workers | messages | wall (s) | messages/s |", "|---|---|---|---|---|"]
    for engine, workers in (("local", 1), ("ray", 1), ("ray", 2)):
        wall, _, _ = measured([sys.executable, "-m", "spamtune", "classify", str(run), "--file", str(src), "--out",
                            str(tmp / f"o{engine}{workers}.csv"), "--engine", engine, "--num-workers", str(workers),
                            "--device", "cpu"])
        out.append(f"| {engine} | {workers} | {n} | {wall:.1f} | {n / wall:.1f} |")
        print(out[-1], flush=True)
    return [*out, "", "Wall time includes starting Ray (a local instance) and loading one model per worker."]


if __name__ == "__main__":
    main()
