"""Inference speed, side by side in one run, on one trained run directory and the test split:

- spamtune's batched prediction (batches of similar length, batching.length_batches, at most 16) in fp32, bf16
  and int8 (dynamic quantization): messages/s, agreement of the predicted labels with fp32, largest probability
  difference;
- the book's `classify_review`: one message per forward, padded to the longest training message;
- latency p50/p95 of one message and of batches of 8 and 32;
- achieved GFLOP/s as a fraction of this machine's fp32 matmul rate, measured here in the same run.

    .venv/bin/python -m benchmarks.inference runs/demo --data-dir data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import publish
from spamtune.data import read_split
from spamtune.inference import TextClassifier


def matmul_gflops(dtype=torch.float32, n: int = 1024, seconds: float = 2.0) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


@torch.inference_mode()
def classify_review_book(clf: TextClassifier, text: str) -> int:
    """The book's `classify_review`: encode, truncate, pad to the training max length, one forward."""
    ids = clf.encode([text])[0]
    padded = ids + [clf.tokenizer.pad_id] * (clf.max_length - len(ids))
    logits = clf.module(torch.tensor([padded]), torch.tensor([len(ids)]))
    return int(logits.argmax(-1))


def timed(fn, *a) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--book-messages", type=int, default=100, help="messages for the one-at-a-time loop")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()

    texts = list(read_split(Path(a.data_dir) / "test.csv")["Text"])
    fp32 = TextClassifier.load(a.run)
    n_tokens = sum(len(ids) for ids in fp32.encode(texts))
    # forward FLOPs per token ~ 2 x parameters used per token (the embedding table is a lookup, not a matmul)
    core = sum(p.numel() for n, p in fp32.module.named_parameters() if "tok_emb" not in n and "pos_emb" not in n)
    peak = matmul_gflops()
    peak_bf16 = matmul_gflops(torch.bfloat16)

    rows, base_probs, base_rate = [], None, None
    for dtype, quant in (("fp32", None), ("bf16", None), ("fp32", "int8")):
        clf = fp32 if (dtype, quant) == ("fp32", None) else TextClassifier.load(a.run, dtype, quant)
        clf.predict_proba(texts[:16])  # warm-up
        seconds, probs = timed(clf.predict_proba, texts)
        rate = len(texts) / seconds
        if base_probs is None:
            base_probs, base_rate = probs, rate
        agree = float((probs.argmax(1) == base_probs.argmax(1)).mean())
        gflops = 2 * core * n_tokens / seconds / 1e9
        name = f"{dtype}{'+' + quant if quant else ''}"
        rows.append(f"| spamtune batched, {name} | {rate:.1f} | {rate / base_rate:.2f}x | {agree:.2%} | "
                    f"{np.abs(probs - base_probs).max():.4f} | {gflops:.0f} ({gflops / peak:.0%} of fp32 matmul) |")

    book_texts = texts[: a.book_messages]
    seconds, _ = timed(lambda: [classify_review_book(fp32, t) for t in book_texts])
    book_rate = len(book_texts) / seconds
    rows.append(f"| book `classify_review` (1 message, padded to {fp32.max_length}) | {book_rate:.1f} | "
                f"{book_rate / base_rate:.2f}x | | | |")

    lat = []
    for size in (1, 8, 32):
        samples = []
        for i in range(0, min(len(texts), 40 * size), size):
            t, _ = timed(fp32.predict_proba, texts[i : i + size])
            samples.append(t * 1000)
        lat.append(f"| {size} | {np.percentile(samples, 50):.0f} | {np.percentile(samples, 95):.0f} | "
                   f"{len(samples)} |")

    body = "\n".join([
        f"{len(texts)} test messages, {n_tokens} tokens; fp32 matmul here: {peak:.0f} GFLOP/s, bf16: "
        f"{peak_bf16:.0f} GFLOP/s.", "",
        "| mode | messages/s | vs fp32 | label agreement with fp32 | max prob diff | achieved GFLOP/s |",
        "|---|---|---|---|---|---|", *rows, "",
        f"Batched fp32 vs the book's one-at-a-time loop: **{base_rate / book_rate:.1f}x** throughput.", "",
        "| batch size | p50 ms | p95 ms | batches timed |", "|---|---|---|---|", *lat])
    publish(f"Inference: {Path(a.run).name} ({fp32.run.run_config.model})", body, not a.no_record)


if __name__ == "__main__":
    main()
